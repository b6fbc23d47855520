"""External clustering metrics (Rand index, ARI, NMI, purity) from one contingency matrix.

The k-means sweep scores about 500 clusterings against two labellings, so every metric here is
computed from the classes x clusters contingency matrix (one ``np.bincount`` over the points)
instead of from the label vectors; each metric then costs O(classes x clusters), not O(n).
The definitions and the edge cases follow scikit-learn 1.x (``rand_score``,
``adjusted_rand_score``, ``normalized_mutual_info_score`` with the arithmetic average), which the
tests check.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from soundharvest.io import SoundharvestError

METRIC_NAMES: tuple[str, ...] = ("ri", "ari", "nmi", "purity")


def _as_1d(labels: Sequence | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise SoundharvestError(f"{name}: expected a 1-D label vector, got shape {arr.shape}")
    return arr


def encode(labels: Sequence | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map arbitrary labels (strings, ints) to codes 0..m-1.

    :param labels: one label per point.
    :return: ``(codes, classes)`` with ``classes[codes] == labels``.
    """
    classes, codes = np.unique(_as_1d(labels, "labels"), return_inverse=True)
    return codes.astype(np.int64, copy=False), classes


def contingency_codes(
    true_codes: np.ndarray, n_true: int, pred_codes: np.ndarray, n_pred: int
) -> np.ndarray:
    """Contingency matrix of two already encoded labellings (fast path for the sweep).

    :param true_codes: class code per point, in ``0..n_true-1``.
    :param n_true: number of classes.
    :param pred_codes: cluster code per point, in ``0..n_pred-1``.
    :param n_pred: number of clusters.
    :return: int64 array ``(n_true, n_pred)``; empty rows/columns are kept.
    """
    flat = true_codes.astype(np.int64, copy=False) * n_pred + pred_codes
    return np.bincount(flat, minlength=n_true * n_pred).reshape(n_true, n_pred)


def contingency(
    labels_true: Sequence | np.ndarray, labels_pred: Sequence | np.ndarray
) -> np.ndarray:
    """Classes x clusters count matrix (rows: ``labels_true``, columns: ``labels_pred``).

    :param labels_true: reference labels, one per point.
    :param labels_pred: cluster labels, one per point.
    :return: int64 array; row ``i`` / column ``j`` follow the sorted unique labels.
    """
    t = _as_1d(labels_true, "labels_true")
    p = _as_1d(labels_pred, "labels_pred")
    if t.shape != p.shape:
        raise SoundharvestError(
            f"labels: labels_true has {t.size} entries but labels_pred has {p.size}; "
            "pass one label per point in both"
        )
    tc, tk = encode(t)
    pc, pk = encode(p)
    return contingency_codes(tc, tk.size, pc, pk.size)


def _comb2(x: np.ndarray) -> int:
    """Sum of C(x, 2) over ``x`` as an exact Python int (pair counts reach ~1e8 at n = 20k)."""
    x = x.astype(np.int64, copy=False)
    return int((x * (x - 1) // 2).sum())


def _pairs(c: np.ndarray) -> tuple[int, int, int, int]:
    """Pair confusion counts (tn, fp, fn, tp), each unordered pair counted once."""
    n = int(c.sum())
    same_both = _comb2(c.ravel())
    same_true = _comb2(c.sum(axis=1))
    same_pred = _comb2(c.sum(axis=0))
    total = n * (n - 1) // 2
    tp = same_both
    fp = same_pred - same_both  # same cluster, different class
    fn = same_true - same_both  # same class, different cluster
    tn = total - tp - fp - fn
    return tn, fp, fn, tp


def rand_index_from(c: np.ndarray) -> float:
    """Rand index from a contingency matrix (``sklearn.metrics.rand_score``)."""
    tn, fp, fn, tp = _pairs(c)
    total = tn + fp + fn + tp
    if total == 0 or tp + tn == total:
        return 1.0
    return (tp + tn) / total


def adjusted_rand_index_from(c: np.ndarray) -> float:
    """Adjusted Rand index from a contingency matrix (``sklearn.metrics.adjusted_rand_score``)."""
    tn, fp, fn, tp = _pairs(c)
    if fn == 0 and fp == 0:
        return 1.0
    # Python ints: the products reach ~1e16 at n = 20k, exact and overflow-free.
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


def _entropy(counts: np.ndarray) -> float:
    counts = counts[counts > 0].astype(np.float64)
    if counts.size <= 1:
        return 0.0
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def nmi_from(c: np.ndarray) -> float:
    """NMI with the arithmetic mean of the entropies (sklearn's default), natural log."""
    c = np.asarray(c)
    rows = c.sum(axis=1)
    cols = c.sum(axis=0)
    n_rows = int((rows > 0).sum())
    n_cols = int((cols > 0).sum())
    if n_rows == n_cols == 1 or n_rows == n_cols == 0:
        return 1.0  # neither labelling splits the data: a perfect match, as in sklearn
    if n_rows == 1 or n_cols == 1:
        return 0.0
    n = float(c.sum())
    i, j = np.nonzero(c)
    nij = c[i, j].astype(np.float64)
    # MI = sum p_ij log(p_ij / (p_i p_j)) = sum (n_ij/n) log(n n_ij / (n_i n_j))
    mi = float(
        (nij / n * (np.log(nij) + np.log(n) - np.log(rows[i] * 1.0) - np.log(cols[j] * 1.0))).sum()
    )
    mi = max(mi, 0.0)
    if mi < np.finfo(np.float64).eps * nij.size:
        return 0.0
    norm = 0.5 * (_entropy(rows) + _entropy(cols))
    return mi / norm


def purity_from(c: np.ndarray) -> float:
    """Purity: each cluster votes for its majority class; the share of points so matched."""
    c = np.asarray(c)
    n = c.sum()
    if n == 0:
        return 1.0
    return float(c.max(axis=0).sum() / n)


def metrics_from_contingency(c: np.ndarray) -> dict[str, float]:
    """All four metrics from one contingency matrix (rows: classes, columns: clusters).

    :param c: integer count matrix.
    :return: ``{"ri", "ari", "nmi", "purity"}`` as floats.
    """
    c = np.asarray(c)
    return {
        "ri": rand_index_from(c),
        "ari": adjusted_rand_index_from(c),
        "nmi": nmi_from(c),
        "purity": purity_from(c),
    }


def rand_index(labels_true: Sequence | np.ndarray, labels_pred: Sequence | np.ndarray) -> float:
    """Rand index: the share of point pairs on which both labellings agree (same/different).

    :param labels_true: reference labels.
    :param labels_pred: cluster labels.
    """
    return rand_index_from(contingency(labels_true, labels_pred))


def adjusted_rand_index(
    labels_true: Sequence | np.ndarray, labels_pred: Sequence | np.ndarray
) -> float:
    """Rand index adjusted for chance (0 for random labels, 1 for a perfect match).

    :param labels_true: reference labels.
    :param labels_pred: cluster labels.
    """
    return adjusted_rand_index_from(contingency(labels_true, labels_pred))


def nmi(labels_true: Sequence | np.ndarray, labels_pred: Sequence | np.ndarray) -> float:
    """Normalised mutual information, arithmetic normalisation.

    :param labels_true: reference labels.
    :param labels_pred: cluster labels.
    """
    return nmi_from(contingency(labels_true, labels_pred))


def purity(labels_true: Sequence | np.ndarray, labels_pred: Sequence | np.ndarray) -> float:
    """Purity: sum over clusters of the largest class count, divided by n.

    :param labels_true: reference labels.
    :param labels_pred: cluster labels.
    """
    return purity_from(contingency(labels_true, labels_pred))


def cluster_metrics(
    labels_true: Sequence | np.ndarray, labels_pred: Sequence | np.ndarray
) -> dict[str, float]:
    """Rand index, ARI, NMI and purity of a clustering against reference labels.

    :param labels_true: reference labels (any hashable values), one per point.
    :param labels_pred: cluster labels, one per point.
    :return: ``{"ri": ..., "ari": ..., "nmi": ..., "purity": ...}``.
    """
    return metrics_from_contingency(contingency(labels_true, labels_pred))
