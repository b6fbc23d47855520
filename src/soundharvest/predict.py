"""Cluster -> label model, predictor directories, scoring on labelled notes and ``predict``.

The latent space is turned into a classifier without any labelled audio: k-means clusters the
latent codes of a sample of the *training* frames, and each cluster is named after the query
label most of its frames came from (its *majority label*), with that majority's share as the
cluster's confidence. A new frame takes the name of its nearest centroid; a file takes the
label most of its frames take.

A **predictor directory** (``results/predictor/<kind>/<model>/``) holds all a prediction needs,
readable without Snakemake or this package's workflow:

``model.safetensors``
    a copy of the trained weights (absent for the ``raw`` baseline, whose encoder is the
    identity: clusters live in the feature space itself);
``clusters.npz``
    ``centroids`` (k, d) float32, ``counts`` (k, n_labels) int64 label histogram per cluster,
    ``names`` (k,) majority label per cluster, ``shares`` (k,) float64 majority share,
    ``labels`` (n_labels,) the label names (all plain arrays: ``np.load(allow_pickle=False)``);
``meta.json``
    format, model name, encoder (``weights`` or ``identity``), the feature spec (kind, params,
    sample rate) needed to compute features of new audio, k and how it was chosen, the sample.
    Written last: its presence marks a complete directory.

File-to-file entry points (what the workflow's scripts call): :func:`label_clusters_file`,
:func:`score_eval_file`, :func:`collect_scores_file`. The ``soundharvest predict`` command uses
:class:`Predictor`.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .io import (
    Pathlike,
    SoundharvestError,
    atomic_path,
    load_npy,
    read_json,
    read_npz,
    write_json,
    write_tsv,
)

log = logging.getLogger("soundharvest.predict")

PREDICTOR_FORMAT = "soundharvest-predictor"
PREDICTOR_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CLUSTERS_NAME = "clusters.npz"
HEAD_NAME = "head.npz"
META_NAME = "meta.json"

#: Rows per block when assigning points to centroids: 8192 x k float32 distances stay a few MB.
ASSIGN_BLOCK = 8192

#: Name of the predicted family of a cluster whose label has no NSynth family.
NO_FAMILY = "(none)"


# --------------------------------------------------------------------------------------------
# Cluster naming
# --------------------------------------------------------------------------------------------


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
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
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


# --------------------------------------------------------------------------------------------
# Training-frame samples
# --------------------------------------------------------------------------------------------


#: Bytes of frames one block of a sample gathers before it is encoded: the windows of a model
#: with context (40,000 of 8 x 513 float32 frames are 0.66 GB) are gathered and encoded block by
#: block, and only their codes are kept.
SAMPLE_BLOCK_BYTES = 64 << 20


def _sample_index(
    shard_paths: Sequence[Pathlike], n: int, with_rows: bool = False
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Where a uniform sample of ``n`` frames lies in the shards, without reading the frames.

    :return: ``(the shards' memmaps, shard of each sampled frame (m,), its row in that shard,
        its label id, its global source row or None)``, in :func:`sample_shards`' order.
    """
    from .dataset import shard_side_paths
    from .loader import side_array

    arrays = [load_npy(p) for p in shard_paths]
    if not arrays:
        raise SoundharvestError("label_clusters: no shards given")
    sizes = np.array([len(a) for a in arrays], dtype=np.int64)
    total = int(sizes.sum())
    n = min(int(n), total)
    # Largest-remainder split of n over the shards, proportional to their sizes.
    quota = sizes * n / max(total, 1)
    take = np.floor(quota).astype(np.int64)
    rest = n - int(take.sum())
    if rest:
        take[np.argsort(-(quota - take), kind="stable")[:rest]] += 1
    ids, rows = [], []
    for path, arr, m in zip(shard_paths, arrays, take, strict=True):
        labels_p, rows_p = shard_side_paths(path)
        ids.append(np.asarray(side_array(labels_p, path, len(arr))[:m], dtype=np.int64))
        if with_rows:
            rows.append(np.asarray(side_array(rows_p, path, len(arr))[:m], dtype=np.int64))
    shard = np.repeat(np.arange(len(arrays)), take)
    local = np.concatenate([np.arange(m, dtype=np.int64) for m in take])
    return arrays, shard, local, np.concatenate(ids), np.concatenate(rows) if with_rows else None


def _gather(arrays: Sequence[np.ndarray], shard: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Float32 frames at rows ``local`` of shards ``shard`` (in that order)."""
    out = np.empty((len(shard), arrays[0].shape[1]), dtype=np.float32)
    for i in np.unique(shard):
        sel = np.flatnonzero(shard == i)
        out[sel] = arrays[i][local[sel]]
    return out


def sample_shards(
    shard_paths: Sequence[Pathlike], n: int, seed: int = 0, with_rows: bool = False
) -> tuple[np.ndarray, ...]:
    """A uniform sample of ``n`` training frames and their label ids, from the shuffle's shards.

    Every shard is a random permutation of a random share of all frames (see
    :mod:`soundharvest.dataset`), so a leading run of rows of each shard is already a uniform
    sample: reading prefixes keeps the I/O sequential. The rows are split over the shards in
    proportion to their sizes. ``seed`` is accepted for symmetry and unused (the shuffle's seed
    fixed the order). The frames are all read at once: :func:`sample_codes` encodes a sample
    block by block instead.

    :param shard_paths: ``shard-XX.npy`` files with their ``.labels.npy`` beside them.
    :param n: frames wanted (all of them when the shards hold fewer).
    :param with_rows: also return each frame's global source row (``shard-XX.rows.npy``),
        which locates its clip in the concatenate files (for windows of several frames).
    :return: ``(frames (m, bins) float32, label ids (m,) int64)``, plus ``rows (m,) int64``
        with ``with_rows``.
    """
    del seed
    arrays, shard, local, ids, rows = _sample_index(shard_paths, n, with_rows)
    out = (_gather(arrays, shard, local), ids)
    return (*out, rows) if with_rows else out


def sample_codes(
    shard_paths: Sequence[Pathlike],
    n: int,
    model: Any = None,
    sources: Sequence[Pathlike] | None = None,
    holdout: float = 0.0,
    bins: int | None = None,
    where: str = "label_clusters",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Codes of a uniform sample of ``n`` training datapoints, gathered and encoded in blocks.

    The sample is :func:`sample_shards`' (a little larger when clips are held out, whose
    frames are then dropped, the first ``n`` of the rest kept). Each block of at most
    :data:`SAMPLE_BLOCK_BYTES` of frames (for a model with context: the window of its clip
    that starts at each sampled frame, :meth:`~soundharvest.loader.ClipPositives.window_rows`)
    is encoded before the next is read, so memory holds the codes (n x latent) and one block,
    whatever ``n``. Without a model (the raw baseline) the codes are the frames.

    :param shard_paths: the shuffle stage's ``shard-XX.npy``.
    :param n: datapoints wanted.
    :param model: the encoder (:func:`soundharvest.train.load_model`), or None.
    :param sources: the concatenate files, in the shuffle's order: needed for windows and for
        ``holdout``.
    :param holdout: the share of clips held out (:func:`soundharvest.calibrate.held_out`).
    :param bins: the bins per frame the caller expects (checked against the shards).
    :param where: what errors name first (the weights, say).
    :return: ``(codes (m, d) float32, label ids (m,) int64, global source rows or None)``.
    """
    context, stride = (1, 1)
    if model is not None:
        from .models import context_of

        context, stride = context_of(model)
    need_rows = context > 1 or holdout > 0
    if need_rows and not sources:
        raise SoundharvestError(
            f"{where}: give the concatenate files (sources) to find each sampled frame's clip "
            "(windows of a model with context, clips held out)"
        )
    # Sample a little more when some frames will be left out as held-out clips'.
    n_sample = int(np.ceil(n / (1.0 - holdout))) if holdout > 0 else int(n)
    arrays, shard, local, ids, rows = _sample_index(shard_paths, n_sample, need_rows)
    width = arrays[0].shape[1] if arrays[0].ndim == 2 else None
    if bins is not None and width != bins:
        raise SoundharvestError(
            f"{shard_paths[0]}: {width} bins per frame, the features have {bins}; use the "
            "shards of the model's feature kind"
        )
    clips = None
    if need_rows:
        from .loader import ClipPositives

        clips = ClipPositives(sources)
        if holdout > 0:
            keep = np.flatnonzero(~clips.held_out(rows, holdout))[:n]
            shard, local, ids, rows = shard[keep], local[keep], ids[keep], rows[keep]
    if model is None:
        return _gather(arrays, shard, local), ids, rows
    from .train import encode

    block = max(1, SAMPLE_BLOCK_BYTES // (4 * context * int(width)))
    codes = np.empty((len(ids), int(model.latent_dim)), dtype=np.float32)
    for a in range(0, len(ids), block):
        b = min(a + block, len(ids))
        if context > 1:
            frames = clips.frames(clips.window_rows(rows[a:b], context, stride))
        else:
            frames = _gather(arrays, shard[a:b], local[a:b])
        codes[a:b] = encode(model, frames)
    return codes, ids, rows


# --------------------------------------------------------------------------------------------
# Predictor directories
# --------------------------------------------------------------------------------------------


def _check_features(features: Mapping[str, Any], where: str) -> dict[str, Any]:
    from .features import KINDS, make_params

    if not isinstance(features, Mapping) or features.get("kind") not in KINDS:
        raise SoundharvestError(
            f"{where}: field 'features' must hold kind ({' or '.join(KINDS)}), params and "
            "sample_rate"
        )
    make_params(features["kind"], features.get("params"))  # validates the params
    return {
        "kind": str(features["kind"]),
        "params": dict(features.get("params") or {}),
        "sample_rate": int(features.get("sample_rate") or 16000),
    }


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
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, weight=self.weight, bias=self.bias, labels=np.array(self.labels, str))

    @classmethod
    def load(cls, path: Pathlike) -> HeadLabelModel:
        """Read a ``head.npz`` written by :meth:`save`."""
        return read_npz(
            path, "head", lambda z: cls(z["weight"], z["bias"], [str(x) for x in z["labels"]])
        )


def load_label_model(directory: Pathlike, meta: Mapping[str, Any]) -> Any:
    """The label model of a predictor directory: the weak recogniser's head (``head.npz``) or
    the named clusters (``clusters.npz``), as ``meta.json``'s ``label_model`` says."""
    d = Path(directory)
    if meta.get("label_model", "clusters") == "head":
        return HeadLabelModel.load(d / HEAD_NAME)
    return ClusterLabelModel.load(d / CLUSTERS_NAME)


#: The predictor's default silence threshold (the convert stage's default), dBFS RMS per frame.
SILENCE_DBFS = -60.0


class Predictor:
    """An encoder (trained weights, or the identity for the raw baseline), a label model (named
    clusters, or the weak recogniser's head), the feature spec and, once the ``calibrate``
    stage has run, a temperature and an ``unknown`` threshold: everything needed to label new
    audio honestly. Load with :meth:`load`.

    A file's answer: frames quieter than the silence threshold do not vote (no frame above it:
    ``silent``); every other frame gives one log-probability per label (the head's log-softmax,
    or the Laplace-smoothed label histogram of its nearest cluster); the file's probabilities
    are ``softmax(mean log-probability / T)``; below the threshold the answer is ``unknown``.
    """

    def __init__(
        self,
        label_model: Any,
        features: Mapping[str, Any],
        model: Any = None,
        meta: Mapping[str, Any] | None = None,
        calibration: Mapping[str, Any] | None = None,
        typicality: Any = None,
    ) -> None:
        self.label_model = label_model
        self.typicality = typicality
        self.features = dict(features)
        self.model = model
        self.meta = dict(meta or {})
        self.calibration = dict(calibration) if calibration else None
        self.silence_dbfs = float(self.meta.get("silence_dbfs", SILENCE_DBFS))

    @property
    def clusters(self) -> Any:
        """The label model (kept under its first name: named clusters or the head)."""
        return self.label_model

    @property
    def kind(self) -> str:
        """The feature kind (``stft`` or ``mel``)."""
        return str(self.features["kind"])

    @property
    def labels(self) -> list[str]:
        """The label names."""
        return self.label_model.labels

    @property
    def sample_rate(self) -> int:
        return int(self.features["sample_rate"])

    @property
    def temperature(self) -> float:
        return float(self.calibration["temperature"]) if self.calibration else 1.0

    @property
    def threshold(self) -> float:
        return float(self.calibration["threshold"]) if self.calibration else 0.0

    @property
    def distance_threshold(self) -> float:
        """The typicality distance above which the answer is ``unknown`` (inf: no such test)."""
        t = (self.calibration or {}).get("distance_threshold")
        return float(t) if t is not None and self.typicality is not None else float("inf")

    @property
    def hop_seconds(self) -> float:
        """Seconds between frame centres."""
        from .features import make_params

        p = make_params(self.kind, self.features.get("params"))
        return p.hop_length / float(self.features["sample_rate"])

    @property
    def min_samples(self) -> int:
        """The shortest signal that holds one datapoint: a frame's ``n_fft`` samples, and for a
        model with context the whole window (``(span - 1) * hop + n_fft``)."""
        from .features import make_params
        from .models import context_of, context_span

        p = make_params(self.kind, self.features.get("params"))
        span = context_span(*context_of(self.model)) if self.model is not None else 1
        return int(p.n_fft + (span - 1) * p.hop_length)

    @classmethod
    def load(
        cls,
        directory: Pathlike,
        device: str = "cpu",
        expect_kind: str | None = None,
        calibrated: bool = True,
    ) -> Predictor:
        """Load a predictor directory (see the module doc), checking that its parts agree.

        :param directory: e.g. ``results/predictor/stft/acai``.
        :param device: torch device of the encoder.
        :param expect_kind: if given, the feature kind the caller expects; another is an error.
        :param calibrated: read ``calibration.json`` when present (``False``: temperature 1 and
            no ``unknown``, what the calibrate stage itself starts from).
        """
        from .calibrate import CALIBRATION_NAME, read_calibration
        from .features import n_bins

        d = Path(directory)
        meta_p = d / META_NAME
        if not d.is_dir():
            raise SoundharvestError(f"{d}: not a directory; give a predictor directory")
        if not meta_p.is_file():
            raise SoundharvestError(
                f"{d}: not a predictor directory (no {META_NAME}); give one made by the "
                "label_clusters stage, e.g. results/predictor/<kind>/<model>"
            )
        meta = read_json(meta_p)
        if not isinstance(meta, dict) or meta.get("format") != PREDICTOR_FORMAT:
            raise SoundharvestError(
                f"{meta_p}: field 'format' is not {PREDICTOR_FORMAT!r}; not a predictor directory"
            )
        features = _check_features(meta.get("features"), str(meta_p))
        if expect_kind is not None and features["kind"] != expect_kind:
            raise SoundharvestError(
                f"{d}: feature kind mismatch: the model uses {features['kind']} features, "
                f"{expect_kind} was asked for; use a {expect_kind} model directory or drop --kind"
            )
        label_model = load_label_model(d, meta)
        bins = n_bins(features["kind"], features["params"])
        model = None
        if meta.get("encoder", "weights") == "identity":
            dim = bins
        else:
            from .train import load_model

            model, wmeta = load_model(d / WEIGHTS_NAME, device=device)
            if int(wmeta["in_dim"]) != bins:
                raise SoundharvestError(
                    f"{meta_p}: feature kind mismatch: {features['kind']} features have {bins} "
                    f"bins, the weights expect {wmeta['in_dim']}; rebuild the directory"
                )
            dim = int(model.latent_dim)
        if label_model.dim != dim:
            raise SoundharvestError(
                f"{d}: the label model reads {label_model.dim} dimensions, the encoder "
                f"gives {dim}; re-run the label_clusters stage"
            )
        typicality = None
        if meta.get("typicality"):
            from .typicality import CodeDensity

            typicality = CodeDensity.load(d / str(meta["typicality"]))
            if typicality.dim != dim:
                raise SoundharvestError(
                    f"{d}: the typicality model reads {typicality.dim} dimensions, the encoder "
                    f"gives {dim}; re-run the label_clusters stage"
                )
        calibration = read_calibration(d / CALIBRATION_NAME) if calibrated else None
        return cls(label_model, features, model, meta, calibration, typicality)

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """Codes of a sequence of feature frames, one per frame (the frames themselves for the
        identity encoder; for a model with context, the window that starts at each frame)."""
        if self.model is None:
            return np.asarray(frames, dtype=np.float32)
        from .train import encode_sequence

        return encode_sequence(self.model, frames)

    def frames_of(self, samples: np.ndarray) -> np.ndarray:
        """Feature frames of a mono signal at the predictor's sample rate."""
        from .features import compute_features

        frames, _ = compute_features(
            samples, self.features["sample_rate"], self.kind, self.features["params"]
        )
        return frames

    def frame_log_probs(self, samples: np.ndarray, name: str = "audio") -> tuple[np.ndarray, ...]:
        """``(log-probabilities (n, n_labels) of the voiced frames, voiced mask (n_frames,),
        typicality distances (n,) of the voiced frames)`` (distances NaN without a typicality
        model, :mod:`soundharvest.typicality`).

        :raises SoundharvestError: for NaN or infinite samples, and for a signal shorter than
            one datapoint of the model.
        """
        from .features import frame_rms_db

        x = np.asarray(samples, dtype=np.float32)
        bad = int(np.count_nonzero(~np.isfinite(x)))
        if bad:
            raise SoundharvestError(
                f"{name}: {bad} of {x.size} samples are NaN or infinite; the file is corrupt: "
                "re-encode it or give another"
            )
        if x.size < self.min_samples:
            raise SoundharvestError(
                f"{name}: {x.size / self.sample_rate:.3f} s of audio is shorter than one "
                f"datapoint of this model ({self.min_samples / self.sample_rate:.3f} s); "
                "give a longer recording"
            )
        voiced = frame_rms_db(x, self.kind, self.features["params"]) >= self.silence_dbfs
        if not voiced.any():
            return np.zeros((0, len(self.labels))), voiced, np.zeros(0)
        codes = self.encode(self.frames_of(x))[voiced]
        if self.typicality is not None:
            distances = self.typicality.distance(codes)
        else:
            distances = np.full(len(codes), np.nan)
        return self.label_model.log_probs(codes), voiced, distances

    def score_samples(self, samples: np.ndarray, name: str = "audio") -> dict[str, Any]:
        """A signal's mean frame log-probabilities (``logits``, ``None`` when silent) and mean
        typicality ``distance``, with the voiced frames' count and the duration: what
        :meth:`answer` and calibration start from."""
        logp, voiced, dist = self.frame_log_probs(samples, name)
        return {
            "logits": logp.mean(axis=0) if len(logp) else None,
            "distance": float(dist.mean()) if len(dist) else None,
            "voiced_frames": int(voiced.sum()),
            "n_frames": int(len(voiced)),
            "seconds": round(np.asarray(samples).size / self.sample_rate, 3),
        }

    def decode(self, path: Pathlike, ffmpeg: str | None = None) -> np.ndarray:
        """Decode any file ffmpeg reads at the predictor's rate (float, so that NaN and
        infinite samples stay visible)."""
        from .audio import decode

        p = Path(path)
        if not p.is_file():
            raise SoundharvestError(f"{p}: file not found")
        samples = decode(p, self.sample_rate, ffmpeg=ffmpeg, sample_format="f32")
        if samples.size == 0:
            raise SoundharvestError(f"{p}: no audio samples decoded (empty or not audio)")
        return samples

    def score_file(self, path: Pathlike, ffmpeg: str | None = None) -> dict[str, Any]:
        """:meth:`score_samples` of a decoded file."""
        return self.score_samples(self.decode(path, ffmpeg), str(path))

    def answer(self, logits: np.ndarray | None, distance: float | None = None) -> dict[str, Any]:
        """The verdict on mean frame log-probabilities and the mean typicality distance:
        ``answer`` (a label, ``unknown`` or ``silent``), ``label`` (the most probable one),
        ``confidence``, ``distance`` and every label's calibrated ``probabilities`` (most
        probable first). ``unknown`` (``unknown_because``): audio unlike the training data
        (``atypical``: distance above its threshold), or a confidence below the threshold
        (``unsure``)."""
        from .calibrate import SILENT, UNKNOWN, softmax

        if logits is None:
            return {
                "answer": SILENT,
                "label": None,
                "confidence": None,
                "distance": None,
                "unknown_because": None,
                "probabilities": {},
            }
        p = softmax(np.asarray(logits)[None, :], self.temperature)[0]
        order = np.lexsort((np.arange(len(p)), -p))
        top = int(order[0])
        conf = float(p[top])
        dist = None if distance is None or not np.isfinite(distance) else float(distance)
        atypical = dist is not None and dist > self.distance_threshold
        unsure = conf < self.threshold
        return {
            "answer": UNKNOWN if unsure or atypical else self.labels[top],
            # Why an answer is unknown: audio unlike the training data, or a low confidence.
            "unknown_because": "atypical" if atypical else ("unsure" if unsure else None),
            "label": self.labels[top],
            "confidence": round(conf, 4),
            "distance": None if dist is None else round(dist, 3),
            "probabilities": {self.labels[i]: round(float(p[i]), 4) for i in order},
        }

    def predict_samples(self, samples: np.ndarray, name: str = "audio") -> dict[str, Any]:
        """The verdict on a signal, with a per-second ``timeline`` of the same verdict."""
        logp, voiced, dist = self.frame_log_probs(samples, name)
        out = self.answer(
            logp.mean(axis=0) if len(logp) else None, float(dist.mean()) if len(dist) else None
        )
        out |= {
            "n_frames": int(len(voiced)),
            "voiced_frames": int(voiced.sum()),
            "calibrated": self.calibration is not None,
        }
        sec = np.floor(np.arange(len(voiced)) * self.hop_seconds + 1e-9).astype(np.int64)
        seconds = np.asarray(samples).size / self.sample_rate
        if len(sec):
            sec = np.minimum(sec, max(int(np.ceil(seconds - 1e-9)) - 1, 0))
        voiced_sec = sec[voiced]
        timeline = []
        for s in range(int(sec[-1]) + 1 if len(sec) else 0):
            sel = voiced_sec == s
            verdict = (
                self.answer(logp[sel].mean(axis=0), float(dist[sel].mean()))
                if sel.any()
                else self.answer(None)
            )
            timeline.append({"start": s, "end": s + 1, **verdict})
        out["timeline"] = timeline
        return out

    def predict_file(self, path: Pathlike, ffmpeg: str | None = None) -> dict[str, Any]:
        """Decode any file ffmpeg reads and label it (see :meth:`predict_samples`)."""
        samples = self.decode(path, ffmpeg)
        out = self.predict_samples(samples, str(path))
        return {"file": str(path), "seconds": round(samples.size / self.sample_rate, 3)} | out


def write_predictor_dir(
    out_dir: Pathlike,
    clusters: ClusterLabelModel | HeadLabelModel,
    features: Mapping[str, Any],
    weights: Pathlike | None,
    info: Mapping[str, Any],
    typicality: Any = None,
) -> dict[str, Any]:
    """Write a predictor directory: weights copy, ``clusters.npz`` (or the weak recogniser's
    ``head.npz``), ``typicality.npz``, then ``meta.json`` (last). An older ``calibration.json``
    is removed.

    :param weights: the trained weights to copy, or ``None`` for the identity encoder.
    :param info: extra fields for ``meta.json`` (model name, k, k_choice, sample size, ...).
    :param typicality: the training codes' density
        (:class:`~soundharvest.typicality.CodeDensity`), or ``None`` for none.
    :return: the ``meta.json`` content.
    """
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / META_NAME).unlink(missing_ok=True)  # the directory is incomplete until meta.json is back
    from .calibrate import CALIBRATION_NAME

    # A calibration belongs to the label model it was fitted on: the calibrate stage re-makes it.
    (d / CALIBRATION_NAME).unlink(missing_ok=True)
    if weights is not None:
        with atomic_path(d / WEIGHTS_NAME) as tmp:
            shutil.copyfile(weights, tmp)
    else:
        (d / WEIGHTS_NAME).unlink(missing_ok=True)
    head = isinstance(clusters, HeadLabelModel)
    (d / (CLUSTERS_NAME if head else HEAD_NAME)).unlink(missing_ok=True)
    clusters.save(d / (HEAD_NAME if head else CLUSTERS_NAME))
    from .typicality import TYPICALITY_NAME

    (d / TYPICALITY_NAME).unlink(missing_ok=True)
    if typicality is not None:
        typicality.save(d / TYPICALITY_NAME)
    meta = {
        "format": PREDICTOR_FORMAT,
        "version": PREDICTOR_VERSION,
        "encoder": "weights" if weights is not None else "identity",
        "label_model": "head" if head else "clusters",
        "features": dict(features),
        "labels": clusters.labels,
        "cluster_names": clusters.cluster_names,
        **({"typicality": TYPICALITY_NAME} if typicality is not None else {}),
        **({} if head else {"cluster_shares": [round(float(s), 4) for s in clusters.shares]}),
        **dict(info),
    }
    write_json(d / META_NAME, meta)
    return meta


def _write_head_dir(
    model: Any,
    wmeta: Mapping[str, Any],
    names: Sequence[str],
    spec: Mapping[str, Any],
    weights: Pathlike | None,
    out_dir: Pathlike,
    base_info: Mapping[str, Any],
    t0: float,
    typicality: Any = None,
) -> dict[str, Any]:
    """The weak recogniser's predictor directory: its head is its label model."""
    if list(model.classes) != list(names):
        raise SoundharvestError(
            f"{weights}: the head's labels {list(model.classes)} are not the shuffle's "
            f"{list(names)}; retrain the classifier on these shards"
        )
    head = HeadLabelModel(
        model.head.weight.detach().cpu().numpy(), model.head.bias.detach().cpu().numpy(), names
    )
    info = {
        "model": (wmeta.get("extra") or {}).get("model", ""),
        "model_type": "classifier",
        **base_info,
        "k": head.k,
        "k_choice": "head",
    }
    meta = write_predictor_dir(out_dir, head, spec, weights, info, typicality)
    log.info("label_clusters %s: the classifier's head (%d labels) in %.1f s", info["model"],
             head.k, time.perf_counter() - t0)  # fmt: skip
    return meta


def label_clusters_file(
    shard_paths: Sequence[Pathlike],
    labels_json: Pathlike,
    weights: Pathlike | None,
    out_dir: Pathlike,
    k: int | str = "elbow",
    sample_frames: int = 50_000,
    seed: int = 0,
    max_k: int = 50,
    features: Mapping[str, Any] | None = None,
    model_name: str | None = None,
    out_sweep_tsv: Pathlike | None = None,
    n_init: int = 3,
    device: str = "cpu",
    sources: Sequence[Pathlike] | None = None,
    holdout: float = 0.0,
    silence_dbfs: float = SILENCE_DBFS,
) -> dict[str, Any]:
    """Rule ``label_clusters``: shards + weights -> a predictor directory.

    For the weak recogniser (model type ``classifier``) the label model is its own head, copied
    as ``head.npz``; every other model gets named clusters, fitted on a sample of training
    frames that skips the clips held out for calibration. Every model gets the typicality model
    of the same sample (:mod:`soundharvest.typicality`), behind the predictor's distance test.

    :param shard_paths: the shuffle stage's ``shard-XX.npy`` of one feature kind.
    :param labels_json: the shuffle's ``labels.json`` (label names, id = position).
    :param weights: the model's ``weights.safetensors``; ``None`` for the raw-feature baseline
        (identity encoder: k-means on the frames themselves).
    :param out_dir: the predictor directory, e.g. ``results/predictor/<kind>/<model>``.
    :param k: ``"elbow"`` (default) or a fixed number of clusters.
    :param sample_frames: training frames sampled for k-means, gathered and encoded block by
        block (:func:`sample_codes`).
    :param seed: k-means seed.
    :param max_k: largest k of the elbow sweep.
    :param features: the feature spec ``{kind, params, sample_rate}``; default: the one the
        weights carry (``extra.features``, written by the train stage); required for ``raw``.
    :param model_name: name recorded in ``meta.json`` (default: the weights' or ``raw``).
    :param out_sweep_tsv: optional table of the elbow sweep (k, inertia, label purity/NMI...).
    :param n_init: k-means++ restarts.
    :param device: torch device of the encoder and k-means.
    :param sources: for a model with context T > 1: the concatenate-stage ``.npy`` files the
        shuffle read, in its order; each sampled frame's datapoint is the window of its clip
        that starts there (as in training, :meth:`~soundharvest.loader.ClipPositives.
        window_rows`).
    :param holdout: the share of clips held out for calibration
        (:func:`soundharvest.calibrate.held_out`); their frames are left out of the sample
        (needs ``sources`` to find each frame's clip).
    :param silence_dbfs: frames quieter than this (dBFS RMS) do not vote in a prediction.
    :return: the ``meta.json`` content.
    """
    from .dataset import read_labels
    from .features import n_bins

    t0 = time.perf_counter()
    names = read_labels(labels_json)
    model = None
    wmeta: dict[str, Any] = {}
    if weights is not None:
        from .train import load_model

        model, wmeta = load_model(weights, device=device)
    spec = features if features is not None else (wmeta.get("extra") or {}).get("features")
    if spec is None:
        raise SoundharvestError(
            f"{weights or 'raw baseline'}: no feature spec; pass features={{kind, params, "
            "sample_rate}} (the train stage stores it in the weights' metadata)"
        )
    spec = _check_features(spec, str(weights or "features"))
    bins = n_bins(spec["kind"], spec["params"])
    base_info = {"silence_dbfs": float(silence_dbfs), "holdout": float(holdout)}
    # Gathered and encoded block by block: memory holds the codes, not the windows.
    codes, ids, _ = sample_codes(
        shard_paths, sample_frames, model, sources, holdout, bins, str(weights or "raw baseline")
    )
    if len(ids) and ids.max() >= len(names):
        raise SoundharvestError(f"{labels_json}: {len(names)} labels, shards use id {ids.max()}")
    from .typicality import CodeDensity

    typicality = CodeDensity.fit(codes, ids, names)
    if wmeta.get("model_type") == "classifier":
        return _write_head_dir(
            model, wmeta, names, spec, weights, out_dir, base_info, t0, typicality
        )
    clusters, info, table = fit_clusters(
        codes, ids, names, k=k, max_k=max_k, seed=seed, n_init=n_init, device=device
    )
    if out_sweep_tsv is not None:
        write_tsv(out_sweep_tsv, table if table is not None else pd.DataFrame(columns=["k"]))
    name = model_name or (wmeta.get("extra") or {}).get("model") or ("raw" if model is None else "")
    info = {
        "model": name,
        "model_type": wmeta.get("model_type", "identity"),
        **base_info,
        **info,
        "sample_frames": int(len(codes)),
        "seed": int(seed),
        "label_frames": {
            n: int(c) for n, c in zip(names, np.bincount(ids, minlength=len(names)), strict=True)
        },
    }
    meta = write_predictor_dir(out_dir, clusters, spec, weights, info, typicality)
    log.info(
        "label_clusters %s: k = %d (%s) on %d frames in %.1f s; clusters: %s",
        name,
        clusters.k,
        info["k_choice"],
        len(codes),
        time.perf_counter() - t0,
        ", ".join(
            f"{n} {s:.0%}" for n, s in zip(clusters.cluster_names, clusters.shares, strict=True)
        ),
    )
    return meta


# --------------------------------------------------------------------------------------------
# Scoring on labelled notes
# --------------------------------------------------------------------------------------------


def family_scores(
    true: Sequence[str], pred: Sequence[str], families: Sequence[str] | None = None
) -> tuple[dict[str, float], pd.DataFrame]:
    """Accuracy, balanced accuracy (mean per-family recall) and the confusion matrix.

    :param true: true family per note; ``pred`` the predicted family (or :data:`NO_FAMILY`).
    :param families: row order of the matrix (default: the sorted true families).
    :return: ``(scores, confusion)``; the confusion has one row per true family and one column
        per predicted value (true families first, then any other predicted value).
    """
    t = np.asarray(true, dtype=str)
    p = np.asarray(pred, dtype=str)
    rows = list(families) if families is not None else sorted(set(t))
    cols = rows + sorted(set(p) - set(rows))
    conf = pd.crosstab(pd.Categorical(t, rows), pd.Categorical(p, cols), dropna=False)
    conf.index.name, conf.columns.name = "true", "predicted"
    conf = conf.reindex(index=rows, columns=cols, fill_value=0)
    n = len(t)
    correct = int((t == p).sum())
    recalls = [float(conf.loc[f, f] / conf.loc[f].sum()) for f in rows if conf.loc[f].sum() > 0]
    scores = {
        "n_notes": n,
        "accuracy": correct / n if n else float("nan"),
        "balanced_accuracy": float(np.mean(recalls)) if recalls else float("nan"),
        # What always guessing the most common family scores: the floor accuracy must beat.
        "majority_baseline": float(conf.sum(axis=1).max() / n) if n else float("nan"),
        "chance_balanced": 1.0 / len(rows) if rows else float("nan"),
    }
    return scores, conf


def plot_confusion(
    conf: pd.DataFrame,
    path: Pathlike,
    title: str = "",
    closed: pd.DataFrame | None = None,
    closed_title: str = "",
) -> None:
    """Write a confusion matrix (rows: true, columns: predicted; cells: counts, colour: row
    share) as a PNG; with ``closed``, the closed-set prediction's matrix beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(conf, title)] + ([(closed, closed_title)] if closed is not None else [])
    width = sum(1.2 + 0.7 * c.shape[1] for c, _ in panels)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(width, 1.0 + 0.6 * conf.shape[0]), squeeze=False
    )
    for ax, (c, t) in zip(axes[0], panels, strict=True):
        m = c.to_numpy(dtype=float)
        share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center",
                        color="white" if share[i, j] > 0.5 else "black", fontsize=8)  # fmt: skip
        ax.set_xticks(range(m.shape[1]), c.columns, rotation=45, ha="right")
        ax.set_yticks(range(m.shape[0]), c.index)
        ax.set_xlabel("predicted family")
        ax.set_ylabel("true family")
        ax.set_title(t, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def score_eval_file(
    codes_npy: Pathlike,
    notes_tsv: Pathlike,
    predictor_dir: Pathlike,
    label_families_tsv: Pathlike,
    out_tsv: Pathlike,
    out_confusion_png: Pathlike,
    out_confusion_tsv: Pathlike | None = None,
    out_closed_confusion_tsv: Pathlike | None = None,
    calibration_json: Pathlike | None = None,
) -> dict[str, Any]:
    """Rule ``score_eval``: the family of every eval note through the label -> family map.

    Each note's code (``results/embed/<kind>/<model>.npy``, from the same model; for ``raw`` the
    frames) goes to its nearest named cluster; the cluster's label maps to an NSynth family
    (``resources/label_families.tsv``; a label without a family predicts :data:`NO_FAMILY`,
    always wrong). ``closed_accuracy`` makes the same prediction among the clusters named after
    a label of one of the evaluated families only (a closed-set choice among the families the
    notes come from; ``closed_clusters`` says how many competed).

    :param codes_npy: the notes' codes, one row per row of ``notes_tsv``.
    :param notes_tsv: the eval_frames table (``note_str``, ``family``, ...).
    :param predictor_dir: the model's predictor directory.
    :param label_families_tsv: label -> NSynth family table.
    :param out_tsv: one row: kind, model, k, n_notes, accuracy, balanced_accuracy, baselines.
    :param out_confusion_png: the confusion matrices' figure (open set; closed set beside it).
    :param out_confusion_tsv: optional confusion matrix as TSV.
    :param out_closed_confusion_tsv: optional confusion matrix of the closed-set prediction
        (where ``closed_accuracy``'s errors go; only the ``true`` header when no cluster is
        named after an evaluated family).
    :param calibration_json: the predictor's ``calibration.json``: its figures (ECE, open-set
        rejection) join the row.
    :return: the row as a dict.
    """
    from .calibrate import read_calibration
    from .evaluate.nsynth import families_of, load_label_families

    d = Path(predictor_dir)
    meta = read_json(d / META_NAME) if (d / META_NAME).is_file() else None
    if not isinstance(meta, dict) or meta.get("format") != PREDICTOR_FORMAT:
        raise SoundharvestError(f"{d}: not a predictor directory (no valid {META_NAME})")
    clusters = load_label_model(d, meta)
    codes = np.asarray(load_npy(codes_npy), dtype=np.float32)
    notes = pd.read_csv(notes_tsv, sep="\t", dtype={"note_str": str, "family": str})
    if len(notes) != len(codes):
        raise SoundharvestError(
            f"{codes_npy}: {len(codes)} codes for {len(notes)} notes in {notes_tsv}; re-run embed"
        )
    if codes.ndim != 2 or codes.shape[1] != clusters.dim:
        raise SoundharvestError(
            f"{codes_npy}: codes of {codes.shape[1] if codes.ndim == 2 else '?'} dimensions, "
            f"the label model in {d} reads {clusters.dim}; use the codes of the same model and kind"
        )
    fam = families_of(clusters.labels, load_label_families(label_families_tsv))
    ids, _ = clusters.predict(codes)
    pred = [fam[clusters.labels[i]] or NO_FAMILY for i in ids]
    true = notes["family"].astype(str).tolist()
    scores, conf = family_scores(true, pred)
    reachable = {f for f in fam.values() if f}
    # Closed set: only clusters named after a label of an evaluated family compete (a choice
    # among the families the notes come from, as a classifier on them would make).
    evaluated = set(true)
    allowed = [i for i, lab in enumerate(clusters.labels) if fam[lab] in evaluated]
    # How many outputs compete in the closed set: clusters named after an allowed label, or
    # (the weak recogniser's head) the allowed labels themselves.
    names_of = np.asarray([clusters.labels.index(n) for n in clusters.cluster_names])
    keep = np.flatnonzero(np.isin(names_of, allowed))
    closed_conf = None
    if len(keep):
        closed = np.array(
            [fam[clusters.labels[i]] for i in clusters.closed_predict(codes, allowed)]
        )
        closed_acc = float(np.mean(closed == np.asarray(true)))
        _, closed_conf = family_scores(true, closed)  # rows and columns: evaluated families
    else:
        closed_acc = float("nan")  # no cluster is named after an evaluated family
    row = {
        "kind": meta["features"]["kind"],
        "model": meta.get("model", d.name),
        "k": clusters.k,
        "k_choice": meta.get("k_choice", ""),
        **scores,
        "closed_accuracy": closed_acc,
        "closed_clusters": int(len(keep)),
        # Notes whose family no label maps to can never be right: say how many there are.
        "n_unreachable": int(sum(t not in reachable for t in true)),
    }
    for key in (
        "accuracy", "balanced_accuracy", "majority_baseline", "chance_balanced", "closed_accuracy"
    ):  # fmt: skip
        row[key] = round(float(row[key]), 4)
    cal = read_calibration(calibration_json) if calibration_json is not None else None
    if cal is not None:
        for key in ("temperature", "threshold", "distance_threshold", "ece",
                    "on_topic_rejected", "open_set_rejected", "open_set_handled",
                    "synthetic_rejected"):  # fmt: skip
            row[key] = cal.get(key)
    write_tsv(out_tsv, pd.DataFrame([row]))
    if out_confusion_tsv is not None:
        write_tsv(out_confusion_tsv, conf.reset_index())
    if out_closed_confusion_tsv is not None:
        empty = pd.DataFrame(columns=["true"])
        table = closed_conf.reset_index() if closed_conf is not None else empty
        write_tsv(out_closed_confusion_tsv, table)
    plot_confusion(
        conf,
        out_confusion_png,
        f"{row['model']} ({row['kind']}), k = {row['k']}: accuracy {row['accuracy']:.1%}, "
        f"balanced {row['balanced_accuracy']:.1%}",
        closed=closed_conf,
        closed_title=f"closed set ({row['closed_clusters']} clusters): "
        f"accuracy {row['closed_accuracy']:.1%}",
    )
    log.info(
        "score_eval %s/%s: accuracy %.3f, balanced %.3f on %d notes",
        row["kind"],
        row["model"],
        row["accuracy"],
        row["balanced_accuracy"],
        row["n_notes"],
    )
    return row


def collect_scores_file(score_tsvs: Sequence[Pathlike], out_tsv: Pathlike) -> pd.DataFrame:
    """Join the one-row score tables of every model and kind into one table (kind, model order
    as given)."""
    table = pd.concat([pd.read_csv(p, sep="\t") for p in score_tsvs], ignore_index=True)
    write_tsv(out_tsv, table)
    return table


# --------------------------------------------------------------------------------------------
# The ``soundharvest predict`` command
# --------------------------------------------------------------------------------------------


def _verdict(r: Mapping[str, Any]) -> str:
    if r["answer"] == "silent":
        return "silent"
    runner = list(r["probabilities"].items())[1:2]
    best = f"{r['label']} {r['confidence']:.1%}"
    if r["answer"] == "unknown":
        if r.get("unknown_because") == "atypical":
            return f"unknown (unlike the training audio; best guess {best})"
        return f"unknown (not confident; best guess {best})"
    return best + (f" (next {runner[0][0]} {runner[0][1]:.1%})" if runner else "")


def format_result(result: Mapping[str, Any], frames: bool = False) -> str:
    """Human-readable lines for one file's :meth:`Predictor.predict_file` result: the answer
    with its calibrated probability, and with ``frames`` the per-second timeline."""
    line = f"{result['file']}: {_verdict(result)}"
    line += f", {result['voiced_frames']} of {result['n_frames']} frames voiced, "
    line += f"{result['seconds']:.1f} s"
    if not result.get("calibrated", True):
        line += " (uncalibrated: no calibration.json, nothing is called unknown)"
    lines = [line]
    if frames:
        for t in result["timeline"]:
            span = f"{t['start']}-{t['end']} s"
            lines.append(f"  {span:>12}  {_verdict(t)}")
    return "\n".join(lines)


def cli_arguments(p: Any) -> None:
    """Arguments of ``soundharvest predict`` (``p`` is an ``argparse.ArgumentParser``)."""
    p.add_argument(
        "model_dir", type=Path, help="a predictor directory (results/predictor/<kind>/<model>)"
    )
    p.add_argument("files", nargs="+", type=Path, help="audio files (any format ffmpeg reads)")
    p.add_argument("--json", action="store_true", help="print one JSON document for machines")
    p.add_argument("--frames", action="store_true", help="also print a per-second timeline")
    p.add_argument("--kind", default=None, help="fail unless the model uses this feature kind")
    p.add_argument("--device", default="cpu", help="torch device of the encoder (default cpu)")


def cli_run(args: Any) -> int:
    """Run ``soundharvest predict``: one verdict per file; an unreadable file gets a one-line
    error on stderr and the others go on (exit status 1 if any failed)."""
    import json
    import sys

    predictor = Predictor.load(args.model_dir, device=args.device, expect_kind=args.kind)
    results, failed = [], 0
    for f in args.files:
        try:
            res = predictor.predict_file(f)
        except SoundharvestError as e:
            failed += 1
            print(f"soundharvest predict: {e}", file=sys.stderr)
            results.append({"file": str(f), "error": str(e)})
            continue
        if not args.frames:
            res.pop("timeline")
        results.append(res)
        if not args.json:
            print(format_result(res, args.frames), flush=True)
    if args.json:
        doc = {
            "model_dir": str(args.model_dir),
            "model": predictor.meta.get("model"),
            "kind": predictor.kind,
            "labels": predictor.labels,
            # Without the calibrate stage's calibration.json: temperature 1, never 'unknown'.
            "calibrated": predictor.calibration is not None,
            "temperature": predictor.temperature,
            "unknown_below": predictor.threshold,
            "silence_dbfs": predictor.silence_dbfs,
            "results": results,
        }
        print(json.dumps(doc, indent=2))
    return 1 if failed else 0
