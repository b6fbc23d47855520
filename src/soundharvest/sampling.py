"""Uniform samples of the training data from the shuffle's shards, as frames or as codes.

The cluster -> label model, the typicality model and the label-noise estimate all learn from a
sample of training datapoints; :func:`sample_codes` gathers and encodes it block by block, so its
memory does not grow with the sample (see ``docs/benchmarks.md``, label_clusters' peak RSS).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from .io import Pathlike, SoundharvestError, load_npy

log = logging.getLogger("soundharvest.sampling")

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


def gather_rows(arrays: Sequence[np.ndarray], offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Float32 rows ``rows`` of the concatenation of ``arrays`` (``offsets``: the first global
    row of each, then the total), read in sorted order (kind to the page cache)."""
    rows = np.asarray(rows, dtype=np.int64)
    src = np.searchsorted(offsets, rows, side="right") - 1
    out = np.empty((len(rows), arrays[0].shape[1]), dtype=np.float32)
    for i in np.unique(src):
        sel = np.flatnonzero(src == i)
        local = rows[sel] - offsets[i]
        order = np.argsort(local, kind="stable")
        out[sel[order]] = arrays[i][local[order]]
    return out


def encode_sources(encoder: Any, clips: Any, out: np.ndarray) -> np.ndarray:
    """The code of every frame of the concatenate files, clip by clip, into ``out``.

    One pass of the training data that the cluster -> label model's sample and the label-noise
    report both read (each clip's codes as the predictor would give them on that clip's audio:
    :meth:`~soundharvest.encoder.Encoder.encode_sequence`, windows never crossing into the next
    clip). Memory holds one batch of windows; the codes go to ``out``, a memmap on disk.

    :param encoder: an :class:`~soundharvest.encoder.Encoder` with weights.
    :param clips: the concatenate files (:class:`~soundharvest.loader.ClipPositives`).
    :param out: ``(clips.n_rows, latent)`` float32, by global row; rows of no clip stay as
        they are.
    :return: ``out``.
    """
    if out.shape[0] != clips.n_rows:
        raise SoundharvestError(
            f"codes: {out.shape[0]} rows for the {clips.n_rows} rows of the concatenate files"
        )
    from .progress import Progress

    spans = [(a, b) for a, b in clips.clip_spans if b > a]  # a clip without frames: no codes
    progress = Progress(sum(b - a for a, b in spans), "encode every training frame", log)
    for a, b in spans:
        out[a:b] = encoder.encode_sequence(clips.span(a, b))
        progress.step(b - a)
    progress.finish()
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
    codes: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Codes of a uniform sample of ``n`` training datapoints, gathered and encoded in blocks.

    The sample is :func:`sample_shards`' (a little larger when clips are held out, whose
    frames are then dropped, the first ``n`` of the rest kept). Each block of at most
    :data:`SAMPLE_BLOCK_BYTES` of frames (for a model with context: the window of its clip
    that starts at each sampled frame, :meth:`~soundharvest.loader.ClipPositives.window_rows`)
    is encoded before the next is read, so memory holds the codes (n x latent) and one block,
    whatever ``n``. Without a model (the raw baseline) the codes are the frames. Given the codes
    of every training frame (``codes``, from :func:`encode_sources`), the sample's are read
    from them and nothing is encoded.

    :param shard_paths: the shuffle stage's ``shard-XX.npy``.
    :param n: datapoints wanted.
    :param model: the encoder (:class:`~soundharvest.encoder.Encoder`, or a model from
        :func:`~soundharvest.encoder.load_model`), or None for the identity.
    :param sources: the concatenate files, in the shuffle's order: needed for windows and for
        ``holdout``.
    :param holdout: the share of clips held out (:func:`soundharvest.calibrate.held_out`).
    :param bins: the bins per frame the caller expects (checked against the shards).
    :param where: what errors name first (the weights, say).
    :param codes: the codes of every frame of ``sources``, by global row (one code per frame:
        :func:`encode_sources`); needs ``sources``.
    :return: ``(codes (m, d) float32, label ids (m,) int64, global source rows or None)``.
    """
    from .encoder import Encoder

    encoder = model if isinstance(model, Encoder) else Encoder(model)
    context, stride = encoder.context, encoder.stride
    need_rows = context > 1 or holdout > 0 or codes is not None
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
    if codes is not None:
        if len(codes) != clips.n_rows:
            raise SoundharvestError(
                f"{where}: {len(codes)} codes for the {clips.n_rows} rows of the concatenate "
                "files; encode the same files the shuffle read"
            )
        return gather_rows([codes], np.array([0, len(codes)]), rows), ids, rows
    if encoder.identity:
        return _gather(arrays, shard, local), ids, rows
    block = max(1, SAMPLE_BLOCK_BYTES // (4 * context * int(width)))
    codes = np.empty((len(ids), encoder.dim(width)), dtype=np.float32)
    for a in range(0, len(ids), block):
        b = min(a + block, len(ids))
        if context > 1:
            frames = clips.frames(clips.window_rows(rows[a:b], context, stride))
        else:
            frames = _gather(arrays, shard[a:b], local[a:b])
        codes[a:b] = encoder.encode(frames)
    return codes, ids, rows
