"""Baseline codes (PCA of the raw features) and 2-D projections (PCA, t-SNE, UMAP) for figures.

The latent codes themselves come from the models; this module holds what the evaluation adds:
the PCA baseline at the latent size (the "is the autoencoder better than a linear map?" check)
and the deterministic 2-D maps of thesis figure 4.3 and appendix A.
"""

from __future__ import annotations

import warnings

import numpy as np

from soundharvest.io import SoundharvestError

PROJECTIONS: tuple[str, ...] = ("pca", "tsne", "umap")


def _check(X: np.ndarray, name: str) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise SoundharvestError(f"{name}: expected a 2-D array (points x dims), got {X.shape}")
    if not np.isfinite(X).all():
        raise SoundharvestError(f"{name}: contains NaN or inf; re-create it")
    return X


def pca_codes(
    X: np.ndarray, n_components: int, seed: int = 0, fit_on: np.ndarray | None = None
) -> np.ndarray:
    """Project ``X`` on the first ``n_components`` principal axes (the PCA baseline).

    :param X: frames to encode (e.g. the eval frames), ``(n, n_bins)``.
    :param n_components: output size (the models' latent size, 10 in the thesis).
    :param seed: seed of the randomized SVD that scikit-learn uses for large inputs.
    :param fit_on: frames to fit the axes on (e.g. a training sample); default ``X`` itself.
    :return: float32 codes ``(n, n_components)``.
    """
    from sklearn.decomposition import PCA

    X = _check(X, "X")
    F = X if fit_on is None else _check(fit_on, "fit_on")
    if F.shape[1] != X.shape[1]:
        raise SoundharvestError(
            f"fit_on: {F.shape[1]} features but X has {X.shape[1]}; use frames of the same kind"
        )
    limit = min(F.shape)
    if not 1 <= n_components <= limit:
        raise SoundharvestError(
            f"n_components: {n_components} is out of range for {F.shape[0]} frames x "
            f"{F.shape[1]} features; use 1..{limit}"
        )
    pca = PCA(n_components=n_components, random_state=seed)
    pca.fit(np.asarray(F, dtype=np.float64))
    return pca.transform(np.asarray(X, dtype=np.float64)).astype(np.float32)


def project_2d(
    codes: np.ndarray, method: str = "pca", seed: int = 0, threads: int | None = 1
) -> np.ndarray:
    """Map codes to 2-D for a scatter plot, deterministically given ``seed``.

    :param codes: ``(n, d)`` latent codes.
    :param method: ``"pca"``, ``"tsne"`` (scikit-learn, Barnes-Hut, PCA init) or ``"umap"``
        (umap-learn; a fixed ``random_state`` makes it single-threaded and reproducible).
    :param seed: random seed.
    :param threads: OpenMP/BLAS threads while it runs (None: the libraries' default). One is
        the default: on a shared machine t-SNE with 2 OpenMP threads under load was measured
        ~100x slower than with 1 (37 s vs 0.4 s for 80 points).
    :return: float32 ``(n, 2)``.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        return _project_2d(codes, method, seed)


def _project_2d(codes: np.ndarray, method: str, seed: int) -> np.ndarray:
    X = _check(codes, "codes").astype(np.float64)
    n, d = X.shape
    if method not in PROJECTIONS:
        raise SoundharvestError(f"method: unknown projection {method!r}; use one of {PROJECTIONS}")
    if d == 1:  # nothing to project: put the single dimension on x
        return np.column_stack([X[:, 0], np.zeros(n)]).astype(np.float32)
    if n < 3 or method == "pca":
        if n < 3:
            return np.column_stack([X[:, 0], X[:, 1]]).astype(np.float32)
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(X).astype(np.float32)
    if method == "tsne":
        from sklearn.manifold import TSNE

        # Perplexity must stay below n; 30 is the usual value for 1-5k points.
        perplexity = float(min(30.0, max(1.0, (n - 1) / 3.0)))
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
        return tsne.fit_transform(X).astype(np.float32)
    try:
        import umap
    except ImportError:
        raise SoundharvestError(
            "method 'umap': the umap-learn package is not installed; pip install umap-learn "
            "or use 'pca'/'tsne'"
        ) from None
    with warnings.catch_warnings():
        # "n_jobs overridden to 1 by setting random_state": intended, it makes UMAP reproducible.
        warnings.simplefilter("ignore", UserWarning)
        reducer = umap.UMAP(
            n_components=2,
            n_neighbors=int(min(15, n - 1)),
            random_state=seed,
            init="spectral" if n > 10 else "random",
        )
        return reducer.fit_transform(X).astype(np.float32)
