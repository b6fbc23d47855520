"""Label models: how a code becomes a label, without any labelled audio.

The latent space is turned into a classifier by naming k-means clusters: k-means clusters the
latent codes of a sample of the *training* frames, and each cluster is named after the query
label most of its frames came from (its *majority label*), with that majority's share as the
cluster's confidence (:class:`ClusterLabelModel`, fitted by :func:`fit_clusters`). A new frame
takes the name of its nearest centroid. The weak recogniser needs no clusters: its
classification head is its label model (:class:`HeadLabelModel`).

Both answer the same questions (``labels``, ``cluster_names``, ``k``, ``dim``, ``predict``,
``closed_predict``, ``log_probs``) and save to plain ``.npz`` arrays, readable without torch:
:mod:`soundharvest.predict` puts them in a predictor directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .io import Pathlike, SoundharvestError, read_npz, write_npz

#: Rows per block when assigning points to centroids: 8192 x k float32 distances stay a few MB.
ASSIGN_BLOCK = 8192


def name_clusters(
    assignment: np.ndarray, labels: np.ndarray, k: int, n_labels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label histogram, majority label and majority share of every cluster.

    Ties between labels with the same count go to the lowest label id (the label listed first),
    so naming never depends on the order of the points. A cluster without points is named after
    label 0 with share 0.0 (it can still be nearest to a new frame; its zero confidence says
    that nothing supports it).

    :param assignment: cluster id of each point, ``(n,)`` in ``0..k-1``.
    :param labels: label id of each point, ``(n,)`` in ``0..n_labels-1``.
    :param k: number of clusters.
    :param n_labels: number of labels.
    :return: ``(counts (k, n_labels) int64, names (k,) int64 label ids, shares (k,) float64)``.
    """
    a = np.asarray(assignment, dtype=np.int64)
    y = np.asarray(labels, dtype=np.int64)
    if a.shape != y.shape or a.ndim != 1:
        raise SoundharvestError(
            f"name_clusters: {a.shape} assignments for {y.shape} labels; give one label per point"
        )
    if len(a) and (a.min() < 0 or a.max() >= k or y.min() < 0 or y.max() >= n_labels):
        raise SoundharvestError("name_clusters: cluster or label id out of range")
    counts = np.bincount(a * n_labels + y, minlength=k * n_labels).reshape(k, n_labels)
    names = np.argmax(counts, axis=1)  # argmax returns the first maximum: lowest label id
    totals = counts.sum(axis=1)
    shares = np.where(totals > 0, counts[np.arange(k), names] / np.maximum(totals, 1), 0.0)
    return counts.astype(np.int64), names.astype(np.int64), shares.astype(np.float64)


def nearest_centroid(X: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (squared Euclidean distance) of every row of ``X``.

    Computed in float64 blocks as ``||c||^2 - 2 x.c`` (``||x||^2`` does not change the argmin);
    ties go to the lowest centroid index.

    :param X: points ``(n, d)`` (any float dtype, e.g. a memmap).
    :param centroids: ``(k, d)``.
    """
    C = np.asarray(centroids, dtype=np.float64)
    cc = np.einsum("ij,ij->i", C, C)
    out = np.empty(len(X), dtype=np.int64)
    for a in range(0, len(X), ASSIGN_BLOCK):
        x = np.asarray(X[a : a + ASSIGN_BLOCK], dtype=np.float64)
        out[a : a + len(x)] = np.argmin(cc[None, :] - 2.0 * (x @ C.T), axis=1)
    return out


class ClusterLabelModel:
    """k-means centroids, each named after the majority label of its training points.

    :param centroids: ``(k, d)``.
    :param counts: ``(k, n_labels)`` label histogram of each cluster's training points.
    :param labels: the label names (id = position).
    """

    def __init__(self, centroids: np.ndarray, counts: np.ndarray, labels: Sequence[str]) -> None:
        self.centroids = np.asarray(centroids, dtype=np.float32)
        self.counts = np.asarray(counts, dtype=np.int64)
        self.labels = [str(x) for x in labels]
        k = self.centroids.shape[0]
        if self.centroids.ndim != 2 or self.counts.shape != (k, len(self.labels)):
            raise SoundharvestError(
                f"cluster model: centroids {self.centroids.shape}, counts {self.counts.shape} "
                f"and {len(self.labels)} labels do not fit together"
            )
        totals = self.counts.sum(axis=1)
        self.names = np.argmax(self.counts, axis=1).astype(np.int64)
        self.shares = np.where(
            totals > 0, self.counts[np.arange(k), self.names] / np.maximum(totals, 1), 0.0
        )

    @property
    def k(self) -> int:
        """Number of clusters."""
        return int(self.centroids.shape[0])

    @property
    def dim(self) -> int:
        """Dimension of the space the centroids live in."""
        return int(self.centroids.shape[1])

    @property
    def cluster_names(self) -> list[str]:
        """Majority label name of every cluster."""
        return [self.labels[i] for i in self.names]

    @classmethod
    def fit(
        cls,
        codes: np.ndarray,
        labels: np.ndarray | Sequence,
        k: int,
        seed: int = 0,
        label_names: Sequence[str] | None = None,
        n_init: int = 3,
        device: str = "cpu",
    ) -> ClusterLabelModel:
        """k-means on ``codes`` (:func:`soundharvest.evaluate.kmeans.kmeans`), then naming.

        :param codes: points ``(n, d)``.
        :param labels: one label per point: integer ids (then ``label_names`` names them) or
            names (then the label list is their sorted set, or ``label_names`` if given).
        :param k: number of clusters (``1 <= k <= n``).
        :param seed: k-means seed.
        :param label_names: the label list (id = position).
        :param n_init: k-means++ restarts.
        :param device: k-means device.
        """
        from .evaluate.kmeans import kmeans

        codes = np.asarray(codes, dtype=np.float32)
        ids, names = _label_ids(labels, label_names)
        centroids, _, _ = kmeans(codes, int(k), seed=seed, n_init=n_init, device=device)
        return cls.from_centroids(centroids, codes, ids, names)

    @classmethod
    def from_centroids(
        cls, centroids: np.ndarray, codes: np.ndarray, ids: np.ndarray, names: Sequence[str]
    ) -> ClusterLabelModel:
        """Name given centroids by the labels of ``codes`` assigned to them (nearest centroid,
        the same rule :meth:`assign` applies to new frames)."""
        a = nearest_centroid(codes, centroids)
        counts, _, _ = name_clusters(a, ids, len(centroids), len(names))
        return cls(centroids, counts, names)

    def assign(self, codes: np.ndarray) -> np.ndarray:
        """Nearest cluster of every code, ``(n,)`` int64."""
        codes = np.asarray(codes) if not isinstance(codes, np.ndarray) else codes
        if codes.ndim != 2 or codes.shape[1] != self.dim:
            raise SoundharvestError(
                f"codes: shape {codes.shape}, the cluster model expects (n, {self.dim}); "
                "use codes of the model the clusters were made with"
            )
        return nearest_centroid(codes, self.centroids)

    def predict(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Label id and cluster confidence (majority share) of every code."""
        a = self.assign(codes)
        return self.names[a], self.shares[a]

    def log_probs(self, codes: np.ndarray, alpha: float = 1.0) -> np.ndarray:
        """``(n, n_labels)``: the log of each code's nearest cluster's label histogram,
        Laplace-smoothed by ``alpha`` (a cluster without points gives every label alike)."""
        smoothed = self.counts + float(alpha)
        logp = np.log(smoothed / smoothed.sum(axis=1, keepdims=True))
        return logp[self.assign(codes)]

    def closed_predict(self, codes: np.ndarray, allowed: Sequence[int]) -> np.ndarray:
        """The label of each code's nearest cluster among those named after an ``allowed``
        label id (-1 for every code when no cluster is)."""
        keep = np.flatnonzero(np.isin(self.names, np.asarray(list(allowed), dtype=np.int64)))
        if not len(keep):
            return np.full(len(codes), -1, dtype=np.int64)
        return self.names[keep][nearest_centroid(codes, self.centroids[keep])]

    def save(self, path: Pathlike) -> None:
        """Write ``clusters.npz`` (plain arrays, no pickle) atomically."""
        write_npz(
            path,
            centroids=self.centroids,
            counts=self.counts,
            names=np.array(self.cluster_names, dtype=str),
            shares=self.shares.astype(np.float64),
            labels=np.array(self.labels, dtype=str),
        )

    @classmethod
    def load(cls, path: Pathlike) -> ClusterLabelModel:
        """Read a ``clusters.npz`` written by :meth:`save`."""
        return read_npz(
            path,
            "cluster",
            lambda z: cls(z["centroids"], z["counts"], [str(x) for x in z["labels"]]),
        )


def _label_ids(
    labels: np.ndarray | Sequence, label_names: Sequence[str] | None
) -> tuple[np.ndarray, list[str]]:
    lab = np.asarray(labels)
    if lab.dtype.kind in "iu":
        if label_names is None:
            label_names = [str(i) for i in range(int(lab.max()) + 1 if lab.size else 0)]
        return lab.astype(np.int64), [str(x) for x in label_names]
    names = [str(x) for x in (label_names if label_names is not None else sorted(set(lab)))]
    index = {n: i for i, n in enumerate(names)}
    try:
        return np.array([index[str(x)] for x in lab], dtype=np.int64), names
    except KeyError as e:
        raise SoundharvestError(f"labels: {e} is not in the label list {names}") from None


def fit_clusters(
    codes: np.ndarray,
    ids: np.ndarray,
    label_names: Sequence[str],
    k: int | str = "elbow",
    max_k: int = 50,
    seed: int = 0,
    n_init: int = 3,
    device: str = "cpu",
) -> tuple[ClusterLabelModel, dict[str, Any], pd.DataFrame | None]:
    """Choose k (an int, or ``"elbow"`` over a sweep k = 2..max_k) and fit the named clusters.

    :param codes: ``(n, d)`` points; ``ids`` their label ids; ``label_names`` the label list.
    :param k: an int, or ``"elbow"``: a warm-started k-means sweep (:func:`~soundharvest.
        evaluate.kmeans.sweep`) over k = 2..``max_k`` and the elbow of its inertia curve.
    :param max_k: the sweep's largest k (clipped to n - 1).
    :return: ``(model, info dict with k and k_choice, the sweep table or None)``.
    """
    from .evaluate.elbow import elbow_k
    from .evaluate.kmeans import kmeans, sweep

    n = len(codes)
    if n < 2:
        raise SoundharvestError(f"label_clusters: {n} frame(s) sampled; need at least 2")
    if isinstance(k, str):
        if k != "elbow":
            raise SoundharvestError(f"label_clusters.k = {k!r}: use 'elbow' or an integer >= 1")
        top = min(int(max_k), n - 1)
        if top < 2:
            raise SoundharvestError(
                f"label_clusters.max_k = {max_k}: the elbow needs max_k >= 3 and more frames"
            )
        centroids: dict[int, np.ndarray] = {}
        table = sweep(
            codes,
            range(2, top + 1),
            {"label": ids},
            seed=seed,
            n_init=n_init,
            device=device,
            on_result=lambda kk, c, _a: centroids.__setitem__(kk, c),
        )
        chosen = elbow_k(table["k"].tolist(), table["inertia"].tolist())
        model = ClusterLabelModel.from_centroids(centroids[chosen], codes, ids, label_names)
        return model, {"k": chosen, "k_choice": f"elbow(max_k={top})"}, table
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= int(k) <= n:
        raise SoundharvestError(f"label_clusters.k = {k!r}: use 'elbow' or an integer in 1..{n}")
    centroids_k, _, _ = kmeans(codes, int(k), seed=seed, n_init=n_init, device=device)
    model = ClusterLabelModel.from_centroids(centroids_k, codes, ids, label_names)
    return model, {"k": int(k), "k_choice": "config"}, None


class HeadLabelModel:
    """The weak recogniser's head as a label model: ``logits = codes @ weight.T + bias``.

    Saved as ``head.npz`` (``weight`` (n_labels, d), ``bias`` (n_labels,), ``labels``), so that
    scoring codes needs no torch. It answers the same questions as :class:`ClusterLabelModel`.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, labels: Sequence[str]) -> None:
        self.weight = np.asarray(weight, dtype=np.float32)
        self.bias = np.asarray(bias, dtype=np.float32)
        self.labels = [str(x) for x in labels]
        if self.weight.shape != (len(self.labels), self.weight.shape[-1]) or self.bias.shape != (
            len(self.labels),
        ):
            raise SoundharvestError(
                f"head: weight {self.weight.shape}, bias {self.bias.shape} and "
                f"{len(self.labels)} labels do not fit together"
            )

    @property
    def dim(self) -> int:
        """Dimension of the codes the head reads."""
        return int(self.weight.shape[1])

    @property
    def k(self) -> int:
        """Number of outputs (one per label)."""
        return len(self.labels)

    @property
    def cluster_names(self) -> list[str]:
        """Each output's label (one per label; the clusters' counterpart)."""
        return list(self.labels)

    def logits(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, dtype=np.float32)
        if codes.ndim != 2 or codes.shape[1] != self.dim:
            raise SoundharvestError(
                f"codes: shape {codes.shape}, the head expects (n, {self.dim}); "
                "use codes of the model the head belongs to"
            )
        return codes @ self.weight.T + self.bias

    def log_probs(self, codes: np.ndarray) -> np.ndarray:
        """``(n, n_labels)`` log-softmax of the head's logits."""
        z = self.logits(codes).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    def predict(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Label id and softmax probability of the best label of every code."""
        lp = self.log_probs(codes)
        ids = lp.argmax(axis=1)
        return ids.astype(np.int64), np.exp(lp[np.arange(len(lp)), ids])

    def closed_predict(self, codes: np.ndarray, allowed: Sequence[int]) -> np.ndarray:
        """The best label among ``allowed`` label ids of every code."""
        allowed = np.asarray(list(allowed), dtype=np.int64)
        return allowed[self.logits(codes)[:, allowed].argmax(axis=1)]

    def save(self, path: Pathlike) -> None:
        write_npz(path, weight=self.weight, bias=self.bias, labels=np.array(self.labels, str))

    @classmethod
    def load(cls, path: Pathlike) -> HeadLabelModel:
        """Read a ``head.npz`` written by :meth:`save`."""
        return read_npz(
            path, "head", lambda z: cls(z["weight"], z["bias"], [str(x) for x in z["labels"]])
        )
