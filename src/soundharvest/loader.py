"""Batches of frames from the shuffled shards, read in large contiguous blocks.

The shuffle stage has already permuted the rows of every shard, so the reader never shuffles rows:
per pass it permutes the order of fixed-size *blocks* (default 65,536 rows) across all shards,
reads each block with one contiguous memmap slice, converts float16 to float32 in bulk and cuts it
into batches (views, no per-row Python work). The rows of all passes form one deterministic stream
(pass 0, then pass 1, ...), so a training run can restart at any frame count and see exactly the
batches an uninterrupted run would have seen.

Optional: a background thread reads ahead (``prefetch`` blocks); on CUDA it reads into pinned
memory and copies on a side stream, so loading overlaps compute.

Shard contract: ``shard-XX.npy`` of shape ``(n_rows, n_bins)``, float16 or float32 in [0, 1], with
``shard-XX.labels.npy`` (int16 label id per row) beside it.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from .dataset import index_path, read_index, shard_side_paths
from .io import Pathlike, SoundharvestError, load_npy
from .models import context_span, window_index

#: Rows per block: 64k rows of 513 float16 bins is 67 MB, large enough that one read saturates a
#: disk or the page cache and the per-block overhead vanishes, small enough to prefetch two.
BLOCK_ROWS = 65536

_SENTINEL = object()

#: The numpy dtype of each torch dtype a batch can be delivered in (on the CPU).
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float16: np.float16}


class ClipPositives:
    """Partner frames for contrastive training: same clip, at most ``max_offset`` frames away.

    A shard row's global source row (``shard-XX.rows.npy``) is its position in the concatenation
    of the shuffle's inputs, in the order given; each input is a concatenate-stage ``<label>.npy``
    with its ``<label>.index.tsv`` (``video_id``, ``first_row``, ``n_rows``) beside it. So the
    inputs, in the shuffle's order, locate every row's clip, and a partner is drawn uniformly
    from the clip's rows within ``max_offset`` of it (itself only when the clip has one row).

    :param sources: the concatenate-stage ``.npy`` files, in the order the shuffle read them.
    :param max_offset: largest distance in frames (rows) to the partner (hop 512 at 16 kHz:
        8 frames = 0.26 s, about a note or two apart).
    :param scope: ``"clip"`` (the free signal: same clip, near in time) or ``"label"`` (weak
        supervision: any frame of the same input file, i.e. the same query label; then
        ``max_offset`` is ignored). Label scope is no longer unsupervised: report it apart.
    """

    def __init__(
        self, sources: Sequence[Pathlike], max_offset: int = 8, scope: str = "clip"
    ) -> None:
        if scope not in ("clip", "label"):
            raise SoundharvestError(f"positives scope = {scope!r}: use clip or label")
        self.scope = scope
        if not sources:
            raise SoundharvestError("positives: no concatenate files given for clip partners")
        if int(max_offset) < 1:
            raise SoundharvestError(f"context max_offset = {max_offset}: give an integer >= 1")
        self.max_offset = int(max_offset)
        self.arrays: list[np.ndarray] = []
        starts, stops = [], []
        offset = 0
        clip_spans: list[tuple[int, int]] = []  # every clip's global rows, whatever the scope
        clip_ids: list[str] = []  # the video id of each of those clips
        clip_files: list[int] = []  # the input file of each (an empty clip has no row to say)
        for file_index, src in enumerate(sources):
            src = Path(src)
            a = load_npy(src)
            index = index_path(src)
            if not index.is_file():
                raise SoundharvestError(
                    f"{index}: concatenation index not found beside {src.name}; "
                    "re-run the concatenate stage"
                )

            spans = read_index(index)
            clip_spans += [(offset + first, offset + first + n) for _vid, first, n in spans]
            clip_ids += [str(vid) for vid, _first, _n in spans]
            clip_files += [file_index] * len(spans)
            if scope == "label":  # one span: the whole label file
                spans = [("", 0, a.shape[0])] if a.shape[0] else []
            for _vid, first, n in spans:
                if first < 0 or first + n > a.shape[0]:
                    raise SoundharvestError(
                        f"{index}: rows {first}..{first + n} beyond the {a.shape[0]} rows of "
                        f"{src.name}; re-run the concatenate stage"
                    )
                starts.append(offset + first)
                stops.append(offset + first + n)
            self.arrays.append(a)
            offset += a.shape[0]
        self.offsets = np.cumsum([0] + [a.shape[0] for a in self.arrays])
        order = np.argsort(starts, kind="stable")
        self.clip_start = np.asarray(starts, dtype=np.int64)[order]
        self.clip_stop = np.asarray(stops, dtype=np.int64)[order]
        self.n_rows = int(offset)
        by_start = sorted(range(len(clip_spans)), key=lambda i: clip_spans[i])
        self._clip_spans = np.asarray([clip_spans[i] for i in by_start], dtype=np.int64).reshape(
            -1, 2
        )
        self.clip_video_ids = [clip_ids[i] for i in by_start]
        #: The input file (position in ``sources``) of each clip, in :attr:`clip_spans`' order.
        self.clip_files = np.asarray([clip_files[i] for i in by_start], dtype=np.int64)
        self._held_out: dict[float, np.ndarray] = {}

    def held_out(self, rows: np.ndarray, share: float) -> np.ndarray:
        """Whether each global row lies in a clip held out of label-supervised training
        (:func:`soundharvest.calibrate.held_out`: a fixed ``share`` of the clips by video id,
        the clips the predictor is calibrated on)."""
        from .calibrate import held_out

        rows = np.asarray(rows, dtype=np.int64)
        if share <= 0:
            return np.zeros(rows.shape, dtype=bool)
        if share not in self._held_out:
            self._held_out[share] = held_out(self.clip_video_ids, share)
        clip = np.searchsorted(self._clip_spans[:, 0], rows, side="right") - 1
        return self._held_out[share][np.clip(clip, 0, None)]

    def window_rows(self, rows: np.ndarray, frames: int, stride: int = 1) -> np.ndarray:
        """Global rows ``(n, frames)`` of the window of ``frames`` frames, ``stride`` apart,
        that starts at each row, moved back to end at its clip's last row where it would run
        past it (clips shorter than the window repeat their last row). Windows never cross
        from one clip into another, whatever the positives' scope.
        """
        rows = np.asarray(rows, dtype=np.int64)
        clip = np.searchsorted(self._clip_spans[:, 0], rows, side="right") - 1
        if len(rows) and (clip.min() < 0 or np.any(rows >= self._clip_spans[clip, 1])):
            raise SoundharvestError(
                "windows: shard rows outside every clip of the concatenate files; give the "
                "shuffle's inputs in the shuffle's order"
            )
        lo, hi = self._clip_spans[clip, 0], self._clip_spans[clip, 1]
        start = np.maximum(lo, np.minimum(rows, hi - context_span(frames, stride)))
        return window_index(start, hi, frames, stride)

    def partner_rows(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Global rows of one partner per row (same clip, within ``max_offset``)."""
        rows = np.asarray(rows, dtype=np.int64)
        clip = np.searchsorted(self.clip_start, rows, side="right") - 1
        if len(rows) and (rows.min() < 0 or rows.max() >= self.n_rows or clip.min() < 0):
            raise SoundharvestError(
                "positives: shard rows beyond the concatenate files; give the shuffle's inputs "
                "in the shuffle's order"
            )
        reach = self.max_offset if self.scope == "clip" else self.n_rows
        lo = np.maximum(self.clip_start[clip], rows - reach)
        hi = np.minimum(self.clip_stop[clip] - 1, rows + reach)
        # Uniform over [lo, hi] without the row itself (when there is another row).
        width = hi - lo
        draw = lo + (rng.random(len(rows)) * width).astype(np.int64)
        draw = np.where(draw >= rows, draw + 1, draw)
        return np.where(width > 0, np.minimum(draw, hi), rows)

    def groups(self, rows: np.ndarray) -> np.ndarray:
        """The clip (``scope="label"``: the label file) of each global row, as an index."""
        return np.searchsorted(self.clip_start, np.asarray(rows, dtype=np.int64), side="right") - 1

    def labels(self, rows: np.ndarray) -> np.ndarray:
        """The input file (the query label, in the shuffle's order) of each global row."""
        return np.searchsorted(self.offsets, np.asarray(rows, dtype=np.int64), side="right") - 1

    def frames(self, rows: np.ndarray) -> np.ndarray:
        """The frames of global ``rows`` as float32 ``(*rows.shape, bins)`` (rows may be the
        2-D windows of :meth:`window_rows`)."""
        from .sampling import gather_rows

        rows = np.asarray(rows, dtype=np.int64)
        if rows.ndim != 1:
            flat = self.frames(rows.reshape(-1))
            return flat.reshape(*rows.shape, flat.shape[-1])
        return gather_rows(self.arrays, self.offsets, rows)

    @property
    def clip_spans(self) -> np.ndarray:
        """``(n_clips, 2)`` global ``[first, stop)`` rows of every clip, in row order."""
        return self._clip_spans

    def span(self, first: int, stop: int) -> np.ndarray:
        """The stored frames (a memmap slice) of global rows ``[first, stop)``, which lie in
        one input file (one clip's rows, say)."""
        if first == stop and 0 <= first <= self.n_rows:  # a clip without frames
            return self.arrays[0][:0]
        i = int(np.searchsorted(self.offsets, first, side="right") - 1)
        if first < 0 or stop < first or i + 1 >= len(self.offsets) or stop > self.offsets[i + 1]:
            raise SoundharvestError(f"rows {first}..{stop} span two concatenate files")
        return self.arrays[i][first - self.offsets[i] : stop - self.offsets[i]]


class _BufferPool:
    """Block buffers handed out again once nothing refers to them any more.

    A batch is a view of its block's buffer, and the consumer may keep it (a list of batches,
    a tensor still on the autograd tape): a buffer is reused only when no tensor or array made
    from it is alive, which its reference count says (each live torch storage made by
    ``torch.from_numpy`` holds one reference to the array). Otherwise a new one is made, and
    at most ``size`` are kept.
    """

    #: References to a free buffer seen by ``sys.getrefcount`` in :meth:`get`: the pool's list,
    #: the loop variable and the call's argument.
    _FREE_REFS = 3

    def __init__(self, size: int) -> None:
        self.size = max(1, int(size))
        self.buffers: list[np.ndarray] = []

    def get(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        for buf in self.buffers:
            if (
                buf.shape == shape
                and buf.dtype == dtype
                and sys.getrefcount(buf) <= self._FREE_REFS
            ):
                return buf
        buf = np.empty(shape, dtype=dtype)
        self.buffers = [buf, *self.buffers][: self.size]
        return buf


def side_array(path: Pathlike, shard: Pathlike, n_rows: int) -> np.ndarray:
    """A shard's side array (one value per row), checked against the shard's row count."""
    arr = load_npy(path)
    if arr.shape != (n_rows,):
        raise SoundharvestError(
            f"{path}: shape {arr.shape}, expected ({n_rows},) to match {Path(shard).name}; "
            "re-run the shuffle stage"
        )
    return arr


class ShardReader:
    """Deterministic batches over shards, block by block.

    :param paths: shard ``.npy`` files (2-D, float16 or float32), all with the same width.
    :param batch_size: rows per batch; every batch is full except the last one before ``stop``.
    :param block_rows: rows per contiguous read; the unit whose order is shuffled per pass.
        It is part of the order, so keep it fixed when resuming a run.
    :param seed: seed of the block order (pass ``p`` uses ``(seed, p)``).
    :param with_labels: also yield the int64 labels from ``shard-XX.labels.npy``.
    :param with_rows: also yield the int64 global source rows from ``shard-XX.rows.npy``
        (after the labels, if both).
    :param device: where batches are delivered (``"cpu"`` or a CUDA device).
    :param prefetch: blocks read ahead by a background thread; 0 reads in the caller's thread.
    :param dtype: the dtype of the delivered frames (float32, what a model on the CPU takes);
        ``None`` keeps the stored dtype (float16 shards: half the bytes to copy, for a caller
        that converts on the device itself). On CUDA the conversion runs on the GPU either way.
    """

    def __init__(
        self,
        paths: Sequence[Pathlike],
        batch_size: int,
        *,
        block_rows: int = BLOCK_ROWS,
        seed: int = 0,
        with_labels: bool = False,
        device: str | torch.device = "cpu",
        prefetch: int = 2,
        with_rows: bool = False,
        dtype: torch.dtype | None = torch.float32,
    ) -> None:
        if not paths:
            raise SoundharvestError("shards: no shard files given; run the shuffle stage first")
        if batch_size <= 0:
            raise SoundharvestError(f"batch_size = {batch_size}: give a positive integer")
        if block_rows <= 0:
            raise SoundharvestError(f"block_rows = {block_rows}: give a positive integer")
        if dtype is not None and dtype not in _NUMPY_DTYPES:
            raise SoundharvestError(f"dtype = {dtype}: use torch.float32, torch.float16 or None")
        self.paths = [Path(p) for p in paths]
        self.batch_size = int(batch_size)
        self.block_rows = int(block_rows)
        self.seed = int(seed)
        self.with_labels = with_labels
        self.with_rows = with_rows
        self.rows: list[np.ndarray] = []
        self.device = torch.device(device)
        self.prefetch = int(prefetch)
        self.dtype = dtype
        self._buffers = _BufferPool(self.prefetch + 2)
        self._staging = _BufferPool(1)  # float16 blocks on their way to float32, never handed out
        self.arrays: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        n_bins = None
        for p in self.paths:
            a = load_npy(p)
            if a.ndim != 2:
                raise SoundharvestError(
                    f"{p}: shape {a.shape}, expected (n_rows, n_bins); re-run the shuffle stage"
                )
            if a.dtype not in (np.float16, np.float32):
                raise SoundharvestError(
                    f"{p}: dtype {a.dtype}, expected float16 or float32; re-run the shuffle stage"
                )
            if n_bins is None:
                n_bins = a.shape[1]
            elif a.shape[1] != n_bins:
                raise SoundharvestError(
                    f"{p}: {a.shape[1]} bins, but {self.paths[0]} has {n_bins}; "
                    "all shards must come from one feature kind"
                )
            self.arrays.append(a)
            labels_p, rows_p = shard_side_paths(p)
            if with_labels:
                self.labels.append(side_array(labels_p, p, a.shape[0]))
            if with_rows:
                self.rows.append(side_array(rows_p, p, a.shape[0]))
        self.n_bins = int(n_bins)
        self.shard_rows = [int(a.shape[0]) for a in self.arrays]
        self.n_rows = int(sum(self.shard_rows))
        if self.n_rows == 0:
            raise SoundharvestError(f"{self.paths[0].parent}: the shards hold no frames")
        # (shard index, start row, stop row) of every block, shard by shard.
        self.blocks: list[tuple[int, int, int]] = [
            (i, s, min(s + self.block_rows, n))
            for i, n in enumerate(self.shard_rows)
            for s in range(0, n, self.block_rows)
        ]

    def __len__(self) -> int:
        """Rows in one pass."""
        return self.n_rows

    def block_order(self, pass_index: int) -> list[int]:
        """Indices into :attr:`blocks` in the order pass ``pass_index`` reads them."""
        rng = np.random.default_rng([self.seed, int(pass_index)])
        return [int(i) for i in rng.permutation(len(self.blocks))]

    def _segments(self, start: int, stop: int | None) -> Iterator[tuple[int, int, int]]:
        """Contiguous (shard, a, b) slices covering stream rows ``[start, stop)``."""
        pos = start
        p = start // self.n_rows
        while stop is None or pos < stop:
            offset = p * self.n_rows
            for bi in self.block_order(p):
                shard, a, b = self.blocks[bi]
                n = b - a
                if offset + n <= pos:  # entirely before the start
                    offset += n
                    continue
                lo = a + (pos - offset)
                hi = b if stop is None else min(b, a + (stop - offset))
                if hi > lo:
                    yield shard, lo, hi
                    pos += hi - lo
                offset += n
                if stop is not None and pos >= stop:
                    return
            p += 1

    def _read(self, shard: int, a: int, b: int) -> tuple[torch.Tensor, ...]:
        """Read one segment onto :attr:`device` as float32 (plus labels)."""
        src = self.arrays[shard][a:b]
        if self.device.type == "cuda":
            # One copy page cache -> pinned host memory, then an asynchronous host-to-device copy;
            # the float16 -> float32 conversion runs on the GPU (half the bytes over PCIe).
            host = torch.empty(src.shape, dtype=torch.from_numpy(src[:0]).dtype, pin_memory=True)
            host.numpy()[...] = src
            x = host.to(self.device, non_blocking=True)
            x = x if self.dtype is None else x.to(self.dtype)
        else:
            # The copy also forces the block off the memmap, so page faults happen here (in the
            # prefetch thread) and not inside the training step. Into a reused buffer: a fresh
            # 67 MB one per block cost more in first-touch page faults than the copy itself,
            # and torch converts float16 to float32 7x faster than numpy (docs/benchmarks.md).
            # The map is read-only (a copy-on-write map of a shard larger than RAM is refused:
            # ENOMEM), so numpy copies it out and torch converts from that copy.
            want = src.dtype if self.dtype is None else _NUMPY_DTYPES[self.dtype]
            shape = (self.block_rows, src.shape[1])
            buf = self._buffers.get(shape, want)[: len(src)]
            if want == src.dtype:
                np.copyto(buf, src)
            else:
                stage = self._staging.get(shape, src.dtype)[: len(src)]
                np.copyto(stage, src)
                torch.from_numpy(buf).copy_(torch.from_numpy(stage))
                del stage
            x = torch.from_numpy(buf)
        out = [x]
        if self.with_labels:
            y = torch.from_numpy(np.array(self.labels[shard][a:b], dtype=np.int64))
            if self.device.type == "cuda":
                y = y.pin_memory().to(self.device, non_blocking=True)
            out.append(y)
        if self.with_rows:
            # Rows stay on the CPU: they index files, not tensors on the device.
            out.append(torch.from_numpy(np.array(self.rows[shard][a:b], dtype=np.int64)))
        return tuple(out)

    def _blocks(self, start: int, stop: int | None) -> Iterator[tuple[torch.Tensor, ...]]:
        segs = self._segments(start, stop)
        if self.prefetch <= 0:
            for seg in segs:
                yield self._read(*seg)
            return
        yield from self._prefetched(segs)

    def _prefetched(
        self, segs: Iterator[tuple[int, int, int]]
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop_event = threading.Event()
        cuda = self.device.type == "cuda"
        stream = torch.cuda.Stream(self.device) if cuda else None

        def put(item) -> bool:
            while not stop_event.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def work() -> None:
            try:
                for seg in segs:
                    if stop_event.is_set():
                        return
                    if cuda:
                        with torch.cuda.stream(stream):
                            item = self._read(*seg)
                            event = torch.cuda.Event()
                            event.record(stream)
                    else:
                        item, event = self._read(*seg), None
                    if not put((item, event)):
                        return
                put(_SENTINEL)
            except BaseException as e:  # handed to the consumer, re-raised there
                put(e)

        thread = threading.Thread(target=work, name="ShardReader-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                got = q.get()
                if got is _SENTINEL:
                    return
                if isinstance(got, BaseException):
                    raise got
                item, event = got
                if event is not None:
                    current = torch.cuda.current_stream(self.device)
                    current.wait_event(event)
                    for t in item:  # memory allocated on the side stream, used on this one
                        if t.is_cuda:
                            t.record_stream(current)
                yield item
        finally:
            stop_event.set()
            thread.join(timeout=10)

    def batches(self, start: int = 0, stop: int | None = None) -> Iterator:
        """Batches of stream rows ``[start, stop)``; ``stop=None`` streams forever.

        Row ``r`` of the stream is row ``r % n_rows`` of pass ``r // n_rows``. Batches are
        ``batch_size`` rows (a batch may span two blocks or two passes) except the last before
        ``stop``. Yields a float32 tensor ``(b, n_bins)``, or ``(x, labels)`` with labels.
        """
        if start < 0 or (stop is not None and stop < start):
            raise ValueError(f"bad stream range [{start}, {stop})")
        bs = self.batch_size
        pending: list[tuple[torch.Tensor, ...]] = []
        n_pending = 0
        for block in self._blocks(start, stop):
            n = block[0].shape[0]
            i = 0
            if n_pending:
                take = min(bs - n_pending, n)
                pending.append(tuple(t[:take] for t in block))
                n_pending += take
                i = take
                if n_pending == bs:
                    yield self._out(tuple(torch.cat(ts) for ts in zip(*pending, strict=True)))
                    pending, n_pending = [], 0
            while n - i >= bs:
                yield self._out(tuple(t[i : i + bs] for t in block))
                i += bs
            if i < n:
                pending.append(tuple(t[i:] for t in block))
                n_pending += n - i
        if n_pending:
            yield self._out(tuple(torch.cat(ts) for ts in zip(*pending, strict=True)))

    def _out(self, item: tuple[torch.Tensor, ...]):
        return item if (self.with_labels or self.with_rows) else item[0]

    def epoch(self, pass_index: int = 0) -> Iterator:
        """All batches of one pass: every frame of every shard exactly once."""
        return self.batches(pass_index * self.n_rows, (pass_index + 1) * self.n_rows)
