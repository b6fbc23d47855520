"""How typical audio is of the training data: the distance test behind ``unknown``.

A softmax's confidence says which label is likeliest, not whether the audio resembles anything
the model was trained on: white noise can get 0.999 for ``guitar``. So every predictor also
carries a density model of its training codes (Lee et al. 2018, "A simple unified framework for
detecting out-of-distribution samples"): one Gaussian per label, all sharing one covariance, fitted
on the same sample of training codes (held-out calibration clips left out) that names the clusters.
A frame's *distance* is its smallest squared Mahalanobis distance to a label's mean; a file's is
the mean over its voiced frames. The covariance is the Ledoit-Wolf shrinkage estimate, so that the
513 raw STFT bins of the ``raw`` baseline (many nearly constant) give a well-conditioned inverse.

The threshold above which an answer is ``unknown`` is chosen on held-out training clips by
:func:`soundharvest.calibrate.choose_thresholds`, beside the confidence threshold.

Saved as ``typicality.npz`` in a predictor directory: ``means`` (n_labels, d) float64,
``precision`` (d, d) float64, ``labels`` (n_labels,) and ``counts`` (n_labels,) (plain arrays).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .io import Pathlike, SoundharvestError, read_npz, write_npz

TYPICALITY_NAME = "typicality.npz"
#: Codes per block when computing distances: a block's (n, n_labels) products stay small.
BLOCK = 16384


class CodeDensity:
    """Class-conditional Gaussians with a shared covariance over a model's codes.

    :param means: ``(n_labels, d)`` the labels' mean codes (a label without codes: NaN row,
        never nearest).
    :param precision: ``(d, d)`` the inverse of the shared covariance.
    :param labels: the label names.
    :param counts: codes per label in the fit.
    """

    def __init__(
        self,
        means: np.ndarray,
        precision: np.ndarray,
        labels: Sequence[str],
        counts: np.ndarray | None = None,
    ) -> None:
        self.means = np.asarray(means, dtype=np.float64)
        self.precision = np.asarray(precision, dtype=np.float64)
        self.labels = [str(x) for x in labels]
        k, d = self.means.shape if self.means.ndim == 2 else (0, 0)
        if k != len(self.labels) or self.precision.shape != (d, d):
            raise SoundharvestError(
                f"typicality: means {self.means.shape}, precision {self.precision.shape} and "
                f"{len(self.labels)} labels do not fit together; re-run label_clusters"
            )
        self.counts = (
            np.zeros(k, dtype=np.int64) if counts is None else np.asarray(counts, dtype=np.int64)
        )
        present = np.isfinite(self.means).all(axis=1)
        self._present = present
        self._means = self.means[present]
        # Precomputed parts of (c - m)' P (c - m) = c'Pc - 2 c'Pm + m'Pm.
        self._pm = self._means @ self.precision  # (k', d)
        self._mpm = np.einsum("kd,kd->k", self._pm, self._means)

    @property
    def dim(self) -> int:
        """Dimension of the codes."""
        return int(self.precision.shape[0])

    @classmethod
    def fit(cls, codes: np.ndarray, ids: np.ndarray, labels: Sequence[str]) -> CodeDensity:
        """Fit on training codes and their (query) label ids.

        :raises SoundharvestError: with fewer than two codes, or codes that are not finite.
        """
        from sklearn.covariance import ledoit_wolf

        x = np.asarray(codes, dtype=np.float64)
        y = np.asarray(ids, dtype=np.int64)
        if x.ndim != 2 or len(x) < 2 or len(y) != len(x):
            raise SoundharvestError(
                f"typicality: need at least two codes with a label each, got {x.shape} codes "
                f"and {y.shape} labels; sample more training frames (label_clusters.sample_frames)"
            )
        if not np.isfinite(x).all():
            raise SoundharvestError("typicality: the training codes hold NaN or infinite values")
        k = len(labels)
        counts = np.bincount(y, minlength=k)
        means = np.full((k, x.shape[1]), np.nan)
        for i in np.flatnonzero(counts):
            means[i] = x[y == i].mean(axis=0)
        centred = x - means[y]
        cov, _ = ledoit_wolf(centred, assume_centered=True)
        precision = np.linalg.pinv(cov, hermitian=True)
        return cls(means, precision, labels, counts)

    def distance(self, codes: np.ndarray) -> np.ndarray:
        """``(n,)`` each code's smallest squared Mahalanobis distance to a label's mean."""
        return self.label_distances(codes)[:, self._present].min(axis=1)

    def label_distances(self, codes: np.ndarray) -> np.ndarray:
        """``(n, labels)`` each code's squared Mahalanobis distance to every label's mean (NaN
        for a label without training codes)."""
        x = np.asarray(codes, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise SoundharvestError(
                f"codes: shape {x.shape}, the typicality model expects (n, {self.dim}); "
                "use codes of the model it belongs to"
            )
        out = np.full((len(x), len(self.labels)), np.nan)
        cols = np.flatnonzero(self._present)
        for a in range(0, len(x), BLOCK):
            c = x[a : a + BLOCK]
            cpc = np.einsum("nd,nd->n", c @ self.precision, c)  # one GEMM
            d2 = cpc[:, None] - 2.0 * (c @ self._pm.T) + self._mpm[None, :]
            out[a : a + BLOCK, cols] = np.maximum(d2, 0.0)
        return out

    def save(self, path: Pathlike) -> None:
        write_npz(
            path,
            means=self.means,
            precision=self.precision,
            labels=np.array(self.labels, str),
            counts=self.counts,
        )

    @classmethod
    def load(cls, path: Pathlike) -> CodeDensity:
        """Read a ``typicality.npz`` written by :meth:`save`."""
        return read_npz(
            path,
            "typicality",
            lambda z: cls(z["means"], z["precision"], [str(x) for x in z["labels"]], z["counts"]),
        )
