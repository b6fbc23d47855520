"""Frames on disk: per-label concatenation, the out-of-core shuffle into shards, readers.

Everything here streams: inputs are read sequentially in blocks (never row by row at random)
and outputs are written sequentially, so memory stays bounded whatever the data size. Every
output is written under a temporary name and renamed when complete (``soundharvest.io``).

Shard contract (read by the training loader): for each shard path ``<dir>/<name>.npy``

- ``<name>.npy``: ``(n, bins)`` float16 or float32 frames;
- ``<name>.labels.npy``: ``(n,)`` int16 label id = index into the label list;
- ``<name>.rows.npy``: ``(n,)`` int64 global source row = the row's position in the
  concatenation of the shuffle's inputs, in the order given (input offset + row in input);

and one ``labels.json`` (a JSON list of label names, id = position) beside the shards unless
another path is given. See :func:`shard_side_paths` and :func:`read_labels`.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .io import (
    Pathlike,
    SoundharvestError,
    atomic_path,
    disk_full_error,
    is_disk_full,
    log,
    write_json,
    write_text,
)

#: Rows per random draw of the shuffle. Fixed (not derived from the memory budget) so that the
#: random stream, hence the shards, do not depend on the budget or on block sizes.
ASSIGN_CHUNK = 1 << 16

#: Memory the interpreter and numpy need besides our buffers (``import numpy`` alone is ~32 MB
#: of RSS; the rest is headroom for allocator slack and small per-row arrays).
RESERVE_BYTES = 96 << 20

#: Largest I/O block: beyond tens of MB larger reads no longer speed up sequential I/O.
MAX_BLOCK_BYTES = 64 << 20

#: Record kept per row between the passes: random sort key, global source row, label id.
_REC = np.dtype([("key", "<u8"), ("row", "<i8"), ("label", "<i2")])

#: Bytes per row for per-row bookkeeping arrays (records, sort orders, cell ids, masks), an upper
#: bound used to size blocks from the budget.
_PER_ROW_OVERHEAD = 96

#: Open temp files kept at once in pass 1; beyond this, cells are appended by open/close.
_MAX_OPEN = 256


# --------------------------------------------------------------------------------------------
# .npy headers, sequential readers and writers


def npy_info(path: Pathlike) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and byte offset of the data of a ``.npy`` file, from its header alone.

    :param path: a ``.npy`` file (C order).
    :return: ``(shape, dtype, data_offset)``.
    """
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            offset = fh.tell()
            size = os.fstat(fh.fileno()).st_size
    except FileNotFoundError:
        raise SoundharvestError(f"{path}: file not found") from None
    except (ValueError, OSError, EOFError) as e:
        raise SoundharvestError(
            f"{path}: not a readable .npy array ({e}); delete it and re-run the stage that makes it"
        ) from None
    if fortran and len(shape) > 1:
        raise SoundharvestError(f"{path}: Fortran-ordered array; save it in C order")
    if dtype.hasobject:
        raise SoundharvestError(f"{path}: object arrays are not supported")
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size < need:
        raise SoundharvestError(
            f"{path}: truncated ({size} bytes, header says {need}); delete it and re-run"
        )
    return tuple(int(s) for s in shape), dtype, offset


def _frames_info(path: Pathlike) -> tuple[int, int, np.dtype, int]:
    shape, dtype, offset = npy_info(path)
    if len(shape) != 2:
        raise SoundharvestError(f"{path}: expected a 2-D frames x bins array, got shape {shape}")
    return shape[0], shape[1], dtype, offset


def iter_blocks(npy_path: Pathlike, block_rows: int) -> Iterator[np.ndarray]:
    """Read a ``.npy`` array sequentially, ``block_rows`` rows at a time.

    Memory is one block, reused: copy a yielded block if you keep it past the next iteration.

    :param npy_path: a ``.npy`` file (any number of dimensions; blocks split the first).
    :param block_rows: rows per block (the last may be shorter).
    """
    shape, dtype, offset = npy_info(npy_path)
    if not shape:
        raise SoundharvestError(f"{npy_path}: a 0-d array has no rows to read")
    n, row_shape = shape[0], shape[1:]
    block_rows = max(1, int(block_rows))
    buf = np.empty((min(block_rows, max(n, 1)), *row_shape), dtype=dtype)
    with open(npy_path, "rb", buffering=0) as fh:
        with contextlib.suppress(AttributeError, OSError):
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        fh.seek(offset)
        for s in range(0, n, block_rows):
            m = min(block_rows, n - s)
            view = buf[:m]
            _readinto_exact(fh, memoryview(view.reshape(-1).view(np.uint8)), npy_path)
            yield view


def _map_rows(path: Pathlike, offset: int, n: int, bins: int, dtype: np.dtype) -> np.ndarray:
    """Map ``n`` rows of a file read-only, starting ``offset`` bytes in; unmapped when freed.

    On Linux the map is populated up front (``MAP_POPULATE``): the kernel reads the range ahead
    and fills the page tables in one go, which made gathering rows from a fresh map 1.1-3x
    faster than page-faulting them in (or than reading into a buffer) here.
    """
    dtype = np.dtype(dtype)
    if n == 0:
        return np.empty((0, bins), dtype)
    if not hasattr(mmap, "MAP_SHARED"):  # pragma: no cover - not POSIX
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(n, bins))
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    with open(path, "rb") as fh:
        mm = mmap.mmap(
            fh.fileno(), n * bins * dtype.itemsize + offset - start,
            flags=flags, prot=mmap.PROT_READ, offset=start,
        )  # fmt: skip
    return np.frombuffer(mm, dtype=dtype, count=n * bins, offset=offset - start).reshape(n, bins)


def _map_blocks(npy_path: Pathlike, block_rows: int) -> Iterator[np.ndarray]:
    """Like :func:`iter_blocks`, but each block is a read-only map of the file, unmapped when
    the caller moves on. Gathering rows from a map skips the copy into a read buffer; mapping
    one block at a time keeps the mapped (resident) part to one block."""
    n, bins, dtype, offset = _frames_info(npy_path)
    row_bytes = bins * dtype.itemsize
    for s in range(0, n, block_rows):
        m = min(block_rows, n - s)
        blk = _map_rows(npy_path, offset + s * row_bytes, m, bins, dtype)
        yield blk
        del blk  # the last reference: unmaps the block


def _readinto_exact(fh, mv: memoryview, path: Pathlike) -> None:
    got = 0
    while got < len(mv):
        k = fh.readinto(mv[got:])
        if not k:
            raise SoundharvestError(f"{path}: ended early; delete it and re-run its stage")
        got += k


def _write_all(fh, data: np.ndarray) -> None:
    if data.size:
        mv = memoryview(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
        # An unbuffered file's write may be short (a disk filling up): write the rest, so that
        # the next write raises ENOSPC instead of leaving a hole of zeros in the output.
        done = 0
        while done < len(mv):
            done += fh.write(mv[done:])


def _gather_rows(src: np.ndarray, idx: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``src[idx]`` written into ``out[:len(idx)]`` (a reused buffer); returns that view.

    Rows are moved as opaque records (a void view), and into memory that is already mapped:
    a fresh result array per block costs a page fault and a zeroed page per 4 KiB, which
    measured as a third of the shuffle's time here. This is ~1.5x faster than fancy indexing
    even without the faults (0.043 s vs 0.064 s for 200 MB of 1 KiB rows).
    """
    m = len(idx)
    dst = out[:m]
    if src.dtype != out.dtype:  # a dtype conversion: numpy's own gather, then cast
        dst[...] = src[idx]
        return dst
    row = np.dtype((np.void, src.dtype.itemsize * int(np.prod(src.shape[1:], dtype=np.int64))))
    # mode="clip" writes straight into `out` (the default "raise" buffers a copy); the indices
    # are in range by construction.
    np.take(
        src.reshape(len(src), -1).view(row).reshape(-1),
        idx,
        out=dst.reshape(m, -1).view(row).reshape(-1),
        mode="clip",
    )
    return dst


@contextlib.contextmanager
def _npy_writer(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> Iterator[Any]:
    """An open binary file positioned at the data of a new ``.npy`` at a temporary name.

    The header (and the file's full size) is laid out by ``numpy.lib.format.open_memmap``; the
    data is then written sequentially with plain writes rather than through the map, so that
    written pages do not pile up in this process' resident memory. Renamed on success.
    """
    with atomic_path(path) as tmp:
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        del mm
        _, _, offset = npy_info(tmp)
        with open(tmp, "r+b", buffering=0) as fh:
            fh.seek(offset)
            yield fh
            expected = offset + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            if fh.tell() != expected:
                raise RuntimeError(f"{path}: wrote {fh.tell()} bytes, expected {expected}")


def _start_writeback(fh) -> None:
    """Ask the kernel to start writing a file's dirty pages to disk, without waiting."""
    fh.flush()
    with contextlib.suppress(AttributeError, OSError):
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def _remove_stale(path: Path) -> None:
    """Remove temporary files that an interrupted run (``kill -9``) left beside ``path``."""
    for stale in path.parent.glob(f".{path.stem}.*.tmp{path.suffix}"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def _copy_range(src_fd: int, src_off: int, dst_fd: int, dst_off: int, nbytes: int) -> None:
    """Copy bytes between files in the kernel (``copy_file_range``), else by blocks."""
    try:
        while nbytes > 0:
            k = os.copy_file_range(src_fd, dst_fd, min(nbytes, 1 << 30), src_off, dst_off)
            if k == 0:
                raise OSError("copy_file_range copied nothing")
            src_off, dst_off, nbytes = src_off + k, dst_off + k, nbytes - k
    except (AttributeError, OSError):
        while nbytes > 0:
            chunk = os.pread(src_fd, min(nbytes, 16 << 20), src_off)
            if not chunk:
                raise SoundharvestError("source file ended early during copy") from None
            done = 0
            while done < len(chunk):  # a short write (disk filling up) is not an error yet
                done += os.pwrite(dst_fd, memoryview(chunk)[done:], dst_off + done)
            src_off, dst_off, nbytes = (
                src_off + len(chunk),
                dst_off + len(chunk),
                nbytes - len(chunk),
            )


# --------------------------------------------------------------------------------------------
# concatenate


def concatenate(
    items: Sequence[tuple[str, Pathlike]],
    out_npy: Pathlike,
    out_index_tsv: Pathlike,
    dtype: str | np.dtype | None = None,
    n_bins: int | None = None,
) -> int:
    """Concatenate one label's per-file frames into one ``.npy``, with an index, streamed.

    Rows keep the order of ``items`` and, within a file, their order. The index TSV has one line
    per item: ``video_id``, ``first_row`` (row of its first frame in ``out_npy``), ``n_rows``.
    With the silence filter off, row ``first_row + t`` is that video's frame ``t``, centred at
    ``t * hop_length / sample_rate`` seconds. Memory does not grow with the data: bytes are
    copied file to file (in the kernel when the dtype is unchanged).

    :param items: ``(video_id, per-file frames .npy)`` in the order wanted.
    :param out_npy: the label's ``(total, bins)`` array (created with ``open_memmap``).
    :param out_index_tsv: the index.
    :param dtype: output dtype; ``None`` keeps the inputs' (which must then agree).
    :param n_bins: bins per frame, needed only when ``items`` is empty (else taken from them).
    :return: the number of rows written.
    """
    out_npy, out_index_tsv = Path(out_npy), Path(out_index_tsv)
    infos = []
    bins = n_bins
    in_dtype = None
    for video_id, path in items:
        if "\t" in video_id or "\n" in video_id:
            raise SoundharvestError(f"{path}: video id {video_id!r} contains a tab or newline")
        n, b, dt, off = _frames_info(path)
        if n > 0:
            if bins is None:
                bins = b
            elif b != bins:
                raise SoundharvestError(
                    f"{path}: {b} bins per frame, others have {bins}; re-run its spectrogram job"
                )
            if dtype is None and in_dtype is not None and dt != in_dtype:
                raise SoundharvestError(
                    f"{path}: dtype {dt}, others are {in_dtype}; pass dtype= to convert"
                )
            in_dtype = in_dtype or dt
        infos.append((video_id, Path(path), n, dt, off))
    out_dtype = np.dtype(dtype) if dtype is not None else (in_dtype or np.dtype("float16"))
    bins = int(bins or 0)
    total = sum(i[2] for i in infos)
    _remove_stale(out_npy)
    _remove_stale(out_index_tsv)

    lines = ["video_id\tfirst_row\tn_rows"]
    row = 0
    with _npy_writer(out_npy, (total, bins), out_dtype) as out:
        for video_id, path, n, dt, off in infos:
            lines.append(f"{video_id}\t{row}\t{n}")
            if n == 0:
                continue
            if dt == out_dtype:
                with open(path, "rb") as src:
                    _copy_range(src.fileno(), off, out.fileno(), out.tell(), n * bins * dt.itemsize)
                out.seek(n * bins * dt.itemsize, os.SEEK_CUR)
            else:
                block = max(1, MAX_BLOCK_BYTES // max(1, bins * dt.itemsize))
                for blk in iter_blocks(path, block):
                    _write_all(out, blk.astype(out_dtype))
            row += n
    write_text(out_index_tsv, "\n".join(lines) + "\n")
    return total


def concatenate_batches(
    items: Sequence[tuple[str, Pathlike]],
    manifests: Sequence[Pathlike],
    out_npy: Pathlike,
    out_index_tsv: Pathlike,
    dtype: str | np.dtype | None = None,
    n_bins: int | None = None,
) -> int:
    """:func:`concatenate` of per-video frames written by batch jobs (:mod:`soundharvest.batch`).

    Each file is first checked against the stamp its batch wrote beside it: a file that is
    missing, truncated or replaced since is a one-line error naming it and the batch manifest to
    delete (re-running that batch redoes only the damaged videos).
    """
    from .batch import manifest_of, read_stamp, stamp_path

    where = manifest_of([vid for vid, _ in items], manifests)
    for vid, path in items:
        path = Path(path)
        stamp = read_stamp(stamp_path(path.parent, vid))
        wrote = ((stamp or {}).get("bytes") or {}).get(path.name)
        size = path.stat().st_size if path.is_file() else None
        if size is not None and size == wrote:
            continue
        if size is None:
            problem = "missing"
        elif wrote is None:
            problem = "has no stamp from the batch that should have written it"
        else:
            problem = f"truncated or replaced ({size} bytes; its batch wrote {wrote})"
        raise SoundharvestError(
            f"{path}: {problem}; delete {where[vid]} and re-run: that batch redoes only the "
            "videos whose files are damaged"
        )
    return concatenate(items, out_npy, out_index_tsv, dtype=dtype, n_bins=n_bins)


def npy_stem(npy: Pathlike) -> str:
    """A ``.npy`` file's name without the suffix: a concatenate-stage file's label
    (``<label>.npy``), a shard's name (``shard-00.npy``)."""
    p = Path(npy)
    return p.name[: -len(".npy")] if p.name.endswith(".npy") else p.stem


def index_path(npy: Pathlike) -> Path:
    """The concatenation index beside a concatenate-stage file: ``<label>.npy`` ->
    ``<label>.index.tsv`` (``video_id``, ``first_row``, ``n_rows`` of each clip)."""
    return Path(npy).with_name(f"{npy_stem(npy)}.index.tsv")


def read_index(index_tsv: Pathlike) -> list[tuple[str, int, int]]:
    """Read a concatenation index: ``[(video_id, first_row, n_rows), ...]``."""
    rows = []
    with open(index_tsv, encoding="utf-8") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        if header != ["video_id", "first_row", "n_rows"]:
            raise SoundharvestError(f"{index_tsv}: not a concatenation index (header {header})")
        for line in fh:
            vid, first, n = line.rstrip("\n").split("\t")
            rows.append((vid, int(first), int(n)))
    return rows


# --------------------------------------------------------------------------------------------
# shuffle


def shard_side_paths(shard_path: Pathlike) -> tuple[Path, Path]:
    """The side arrays of a shard: ``(<name>.labels.npy, <name>.rows.npy)``.

    :param shard_path: the shard's frames, ``<dir>/<name>.npy``.
    """
    p, stem = Path(shard_path), npy_stem(shard_path)
    return p.with_name(f"{stem}.labels.npy"), p.with_name(f"{stem}.rows.npy")


def read_labels(path: Pathlike) -> list[str]:
    """Label names written by :func:`shuffle` (id = position in the list)."""
    from .io import read_json

    names = read_json(path)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise SoundharvestError(f"{path}: expected a JSON list of label names")
    return names


class _ShardStream:
    """Exact-size random shard assignment and sort keys, drawn in fixed chunks.

    Each chunk of ``ASSIGN_CHUNK`` rows draws how many of its rows go to each shard from a
    multivariate hypergeometric distribution over the shards' remaining capacities, then
    shuffles those ids: sequentially this is exactly a uniformly random assignment of rows to
    shards of the given sizes. Each row also gets a uniform 64-bit key; a shard's rows are
    finally ordered by key, i.e. uniformly permuted. Chunks are fixed in size, so the stream
    (and the result) does not depend on how callers block their reads.
    """

    def __init__(self, rng: np.random.Generator, sizes: np.ndarray):
        self.rng = rng
        self.remaining = sizes.astype(np.int64).copy()
        self.ids = np.empty(0, np.int16)
        self.keys = np.empty(0, np.uint64)

    def _draw(self) -> None:
        c = int(min(ASSIGN_CHUNK, self.remaining.sum()))
        counts = self.rng.multivariate_hypergeometric(self.remaining, c)
        self.remaining -= counts
        ids = np.repeat(np.arange(len(counts), dtype=np.int16), counts)
        self.rng.shuffle(ids)
        keys = self.rng.integers(0, np.iinfo(np.uint64).max, size=c, dtype=np.uint64, endpoint=True)
        self.ids = np.concatenate([self.ids, ids])
        self.keys = np.concatenate([self.keys, keys])

    def take(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        while len(self.ids) < m:
            self._draw()
        ids, keys = self.ids[:m], self.keys[:m]
        self.ids, self.keys = self.ids[m:], self.keys[m:]
        return ids, keys


class _KeepStream:
    """Exact-size uniform random subset (``keep`` of ``total`` rows), drawn in fixed chunks."""

    def __init__(self, rng: np.random.Generator, keep: int, total: int):
        self.rng = rng
        self.left = np.array([keep, total - keep], dtype=np.int64)
        self.mask = np.empty(0, bool)

    def take(self, m: int) -> np.ndarray:
        while len(self.mask) < m:
            c = int(min(ASSIGN_CHUNK, self.left.sum()))
            k, d = self.rng.multivariate_hypergeometric(self.left, c)
            self.left -= (k, d)
            chunk = np.zeros(c, bool)
            chunk[:k] = True
            self.rng.shuffle(chunk)
            self.mask = np.concatenate([self.mask, chunk])
        out, self.mask = self.mask[:m], self.mask[m:]
        return out


class _CellFiles:
    """Append-only temporary files, one data and one record file per (shard, bucket) cell."""

    def __init__(self, directory: Path, bins: int, dtype: np.dtype):
        self.dir, self.bins, self.dtype = directory, bins, dtype
        self.handles: dict[str, Any] = {}

    def append_block(self, data: np.ndarray, rec: np.ndarray, counts: np.ndarray) -> None:
        """Append a block's rows, already grouped by cell (``counts`` rows per cell, in order)."""
        ends = np.cumsum(counts)
        for c in np.flatnonzero(counts):
            a, b = ends[c] - counts[c], ends[c]
            self.append(int(c), "dat", data[a:b])
            self.append(int(c), "rec", rec[a:b])

    def path(self, cell: int, ext: str) -> Path:
        return self.dir / f"cell{cell:06d}.{ext}"

    def append(self, cell: int, ext: str, data: np.ndarray) -> None:
        name = f"{cell}.{ext}"
        fh = self.handles.get(name)
        if fh is None:
            fh = open(self.path(cell, ext), "ab", buffering=0)  # noqa: SIM115 (closed in close())
            if len(self.handles) < _MAX_OPEN:
                self.handles[name] = fh
            else:
                with fh:
                    _write_all(fh, data)
                return
        _write_all(fh, data)

    def close(self) -> None:
        for fh in self.handles.values():
            fh.close()
        self.handles.clear()


def _scatter_to_cells(
    blocks: Iterator, tmp_dir: Path, k: int, n_buckets: int, bins: int, dtype: np.dtype
) -> None:
    """Pass 1: append every row (and its record) to its cell's files."""
    shift = np.uint64(64 - (n_buckets.bit_length() - 1))
    cells = _CellFiles(tmp_dir, bins, dtype)
    # Writes run on a second thread while the next block is gathered (numpy and file writes
    # release the GIL): on 2 cores this overlaps the two memory-bound halves.
    writer = _Writer()
    # Two gather buffers, reused: the writer thread writes one while the next block is
    # gathered into the other (``_Writer`` keeps at most one batch in flight).
    bufs: list[np.ndarray] = []
    try:
        for i, (lid, blk, sel, rows, shard, key) in enumerate(blocks):
            cell = shard.astype(np.int64) * n_buckets
            if n_buckets > 1:
                cell += (key >> shift).astype(np.int64)
            order = np.argsort(cell, kind="stable")
            src = order if sel is None else sel[order]
            if len(bufs) < 2:
                bufs.append(np.empty((len(blk), bins), dtype))
            buf = bufs[i % 2]
            if len(buf) < len(src):  # blocks never grow, but stay safe
                buf = bufs[i % 2] = np.empty((len(src), bins), dtype)
            out = _gather_rows(blk, src, buf)
            rec = np.empty(len(src), _REC)
            rec["key"], rec["row"], rec["label"] = key[order], rows[order], lid
            counts = np.bincount(cell, minlength=k * n_buckets)
            writer.submit(cells.append_block, out, rec, counts)
            del out, rec, blk
        writer.wait()
    finally:
        writer.close()
        cells.close()
        del bufs


def _cell_parts(
    cells: _CellFiles, j: int, n_buckets: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pass 2: shard ``j``'s cells in bucket order as (mapped rows, records)."""
    for bkt in range(n_buckets):
        c = j * n_buckets + bkt
        dat_p, rec_p = cells.path(c, "dat"), cells.path(c, "rec")
        if not rec_p.exists():
            continue
        rec = np.fromfile(rec_p, dtype=_REC)
        # Mapped, not read: gathering straight from the page cache saves a copy (3x faster
        # than fromfile + gather, measured); the map is budgeted as one bucket.
        yield _map_rows(dat_p, 0, len(rec), cells.bins, cells.dtype), rec
        # Unlinking drops the cell's pages; dirty ones are then never written to disk.
        dat_p.unlink()
        rec_p.unlink()


def _open_shard(
    shard_path: Path, n_rows: int, bins: int, dtype: np.dtype, outputs: contextlib.ExitStack
) -> tuple[Any, Any, Any]:
    """Open a shard's three outputs at temporary names; ``outputs`` renames them when it closes."""
    lab_path, row_path = shard_side_paths(shard_path)
    return (
        outputs.enter_context(_npy_writer(shard_path, (n_rows, bins), dtype)),
        outputs.enter_context(_npy_writer(lab_path, (n_rows,), np.dtype("<i2"))),
        outputs.enter_context(_npy_writer(row_path, (n_rows,), np.dtype("<i8"))),
    )


class _Writer:
    """A background thread that runs writes in order, at most one batch in flight."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="soundharvest-writer")
        self.pending = None

    def submit(self, fn, *args) -> None:
        self.wait()
        self.pending = self.pool.submit(fn, *args)

    def wait(self) -> None:
        if self.pending is not None:
            fut, self.pending = self.pending, None
            fut.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.pool.shutdown(wait=True)


def _plan(budget_bytes: int, row_bytes: int, max_shard_rows: int) -> tuple[int, int, int]:
    """Block rows (pass 1), buckets per shard (power of 2) and gather-chunk rows (pass 2)."""
    work = budget_bytes - RESERVE_BYTES if budget_bytes > 2 * RESERVE_BYTES else budget_bytes // 2
    work = max(work, 1 << 16)
    # Pass 1 holds up to two mapped blocks and two gathered copies (the previous iteration's are
    # released when the next replaces them), plus per-row arrays.
    block_rows = max(
        1, min(work // (4 * row_bytes + _PER_ROW_OVERHEAD), MAX_BLOCK_BYTES // row_bytes)
    )
    # Pass 2 holds one bucket (rows + records + sort order) and a gather chunk. Buckets are
    # binomially sized around their mean: aim the mean at 70 % of the room to leave margin.
    chunk_rows = max(1, min(work // 8, 16 << 20) // row_bytes)
    room = work - chunk_rows * row_bytes
    bucket_rows = max(1, int(0.7 * room / (row_bytes + _PER_ROW_OVERHEAD)))
    n_buckets = 1
    while max_shard_rows / n_buckets > bucket_rows:
        n_buckets *= 2
    return int(block_rows), n_buckets, int(chunk_rows)


def _tmp_dir_for(out_paths: Sequence[Path]) -> Path:
    first = out_paths[0]
    return first.parent / f".{first.stem}.shuffle.tmp"


def _shuffle_inputs(
    inputs: Sequence[tuple[str, Pathlike]], dtype: str | np.dtype | None
) -> tuple[list[str], list[tuple], int, np.dtype]:
    """The shuffle's labels (in order of first appearance), per-input specs ``(label_id, path,
    n, dtype, offset, global offset)``, bins per frame and output dtype, validated."""
    labels: list[str] = []
    specs = []
    bins = None
    in_dtype = None
    offset = 0
    for label, path in inputs:
        n, b, dt, off = _frames_info(path)
        if label not in labels:
            labels.append(label)
        if n > 0:
            if bins is not None and b != bins:
                raise SoundharvestError(
                    f"{path}: {b} bins per frame, other inputs have {bins}; re-run its features"
                )
            bins = b
            if dtype is None and in_dtype is not None and dt != in_dtype:
                raise SoundharvestError(f"{path}: dtype {dt}, others are {in_dtype}; pass dtype=")
            in_dtype = in_dtype or dt
        specs.append((labels.index(label), Path(path), n, dt, off, offset))
        offset += n
    if len(labels) > np.iinfo(np.int16).max:
        raise SoundharvestError("shuffle: more than 32767 labels do not fit the int16 label ids")
    out_dtype = np.dtype(dtype) if dtype is not None else (in_dtype or np.dtype("float16"))
    return labels, specs, int(bins or 0), out_dtype


def _balance_plan(
    specs: Sequence[tuple], n_labels: int, balance: str, cap_per_label: int | None, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows per label in the inputs, rows kept per label by ``balance`` and rows per shard
    (``k`` shards, sizes equal to within one row)."""
    label_rows = np.zeros(n_labels, np.int64)
    for lid, _, n, *_ in specs:
        label_rows[lid] += n
    if balance == "cap":
        nonzero = label_rows[label_rows > 0]
        smallest = int(nonzero.min()) if len(nonzero) else 0
        cap = int(cap_per_label) if cap_per_label is not None else smallest
        if cap < 0:
            raise SoundharvestError("shuffle.cap_per_label: must be >= 0")
        kept = np.minimum(label_rows, cap)
    else:
        kept = label_rows.copy()
    n_total = int(kept.sum())
    if n_total >= 10**9:
        raise SoundharvestError(f"shuffle: {n_total} frames; at most 10^9 are supported")
    sizes = np.full(k, n_total // k, np.int64)
    sizes[: n_total % k] += 1
    return label_rows, kept, sizes


def _assigned_blocks(
    seed: int,
    specs: Sequence[tuple],
    label_rows: np.ndarray,
    kept: np.ndarray,
    sizes: np.ndarray,
    block_rows: int,
) -> Iterator[tuple]:
    """Every kept row's shard and key, block by block: the same stream on every call.

    Yields ``(label_id, block, selected rows of the block or None, global rows, shard, key)``.
    """
    n_labels = len(label_rows)
    root = np.random.SeedSequence(int(seed))
    shard_rng, keep_root = (np.random.default_rng(s) for s in root.spawn(2))
    keep_rngs = [np.random.default_rng(s) for s in keep_root.spawn(n_labels)]
    stream = _ShardStream(shard_rng, sizes)
    keepers = [
        _KeepStream(keep_rngs[i], int(kept[i]), int(label_rows[i]))
        if kept[i] < label_rows[i]
        else None
        for i in range(n_labels)
    ]
    for lid, path, n, _dt, _off, goff in specs:
        start = 0
        for blk in _map_blocks(path, block_rows) if n else ():
            m = len(blk)
            rows = np.arange(goff + start, goff + start + m, dtype=np.int64)
            start += m
            sel = None
            if keepers[lid] is not None:
                sel = np.flatnonzero(keepers[lid].take(m))
                rows = rows[sel]
            if len(rows) == 0:
                continue
            shard, key = stream.take(len(rows))
            yield lid, blk, sel, rows, shard, key


@contextlib.contextmanager
def _workspace(tmp_dir: Path, out_paths: Sequence[Path], labels_path: Path) -> Iterator[None]:
    """The shuffle's temporary cell folder, for the two passes; removed when they end.

    Starts clean: an interrupted run leaves only hidden temporary names, removed here. A full
    disk is reported as one line naming the folder of the temporary cells.
    """
    shutil.rmtree(tmp_dir, ignore_errors=True)
    for p in out_paths:
        for q in (p, *shard_side_paths(p)):
            _remove_stale(q)
    _remove_stale(labels_path)
    try:
        tmp_dir.mkdir(parents=True)
        yield
    except OSError as e:
        if is_disk_full(e):  # the temporary cells: one line naming where they were
            raise disk_full_error(tmp_dir, e) from None
        raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _write_shards(
    out_paths: Sequence[Path],
    sizes: np.ndarray,
    tmp_dir: Path,
    n_buckets: int,
    bins: int,
    dtype: np.dtype,
    chunk_rows: int,
) -> None:
    """Pass 2: each shard = its cells in bucket order, each ordered by key.

    Every output is renamed (after its fsync) only once all are written, so the disk writes
    shard j while shard j + 1 is computed, and the outputs appear together.
    """
    with contextlib.ExitStack() as outputs:
        writer = _Writer()
        # Two reused gather buffers, alternating (one is being written meanwhile).
        chunk_bufs = [np.empty((0, bins), dtype)] * 2
        n_chunks = 0
        try:
            for j, shard_path in enumerate(out_paths):
                files = _open_shard(shard_path, int(sizes[j]), bins, dtype, outputs)
                parts = _cell_parts(_CellFiles(tmp_dir, bins, dtype), j, n_buckets)
                written = 0
                for data, rec in parts:
                    # Ties in the 64-bit key (practically never) are broken by the source row.
                    order = np.lexsort((rec["row"], rec["key"]))
                    for s in range(0, len(order), chunk_rows):
                        idx = order[s : s + chunk_rows]
                        b = n_chunks % 2
                        if len(chunk_bufs[b]) < len(idx):
                            chunk_bufs[b] = np.empty((chunk_rows, bins), dtype)
                        # The writer finished with this buffer: submit() waited for the
                        # write before the last one.
                        rows_out = _gather_rows(data, idx, chunk_bufs[b])
                        writer.submit(_write_all, files[0], rows_out)
                        n_chunks += 1
                    writer.submit(_write_all, files[1], rec["label"][order])
                    writer.submit(_write_all, files[2], rec["row"][order])
                    written += len(rec)
                    del data, rec, order
                # Start writing this shard to disk now (on the writer thread): the disk
                # works while the next shard is computed, and the final fsync waits less.
                for fh in files:
                    writer.submit(_start_writeback, fh)
                if written != sizes[j]:
                    raise RuntimeError(f"{shard_path}: {written} rows, expected {sizes[j]}")
            writer.wait()
        finally:
            writer.close()


def shuffle(
    inputs: Sequence[tuple[str, Pathlike]],
    out_paths: Sequence[Pathlike],
    seed: int,
    memory_budget_mb: float = 1024,
    balance: str = "none",
    cap_per_label: int | None = None,
    labels_path: Pathlike | None = None,
    dtype: str | np.dtype | None = None,
) -> dict[str, Any]:
    """Shuffle every frame of every label into equal shards, out of core, deterministically.

    Each kept row gets a shard from an exact-size uniform random assignment (see
    ``_ShardStream``) and a uniform 64-bit key; a shard is its rows ordered by key. So each
    shard is a uniform random sample of all rows, in uniformly random order, and the result
    depends only on the inputs and ``seed``: not on the budget or the block sizes.

    Two passes, each reading and writing everything once. Pass 1 reads each input sequentially
    in blocks and appends every row to a temporary *cell* file: its shard's, or, when a shard
    is larger than the budget allows in memory, a bucket of it chosen by the top bits of the
    key. Pass 2 loads one cell at a time, orders it by key and appends it to its shard. Writes
    run on a second thread, overlapping the gathers. All outputs are renamed into place at the
    end; an interrupted run leaves only hidden temporary names, which the next run removes.

    :param inputs: ``(label, frames .npy)`` pairs; a label may appear more than once. Label ids
        are positions in the list of distinct labels in order of first appearance.
    :param out_paths: one ``.npy`` per shard (N shards, sizes equal to within one row). Side
        arrays go to :func:`shard_side_paths` of each.
    :param seed: the random seed.
    :param memory_budget_mb: bound on the process' peak memory, in MB (2**20 bytes). Budgets
        under ~200 MB shrink the buffers but cannot bound RSS (the interpreter alone is ~35 MB).
    :param balance: ``"none"`` keeps every frame (the thesis); ``"cap"`` keeps a uniform random
        subset of at most ``cap_per_label`` frames per label.
    :param cap_per_label: the cap; ``None`` with ``balance="cap"`` caps at the smallest label.
    :param labels_path: where to write the label names (JSON list); default
        ``labels.json`` beside the first shard.
    :param dtype: output dtype; ``None`` keeps the inputs'.
    :return: stats: ``labels``, ``label_rows`` (input), ``kept_rows``, ``shard_rows``,
        ``n_rows``, ``bins``, ``dtype``, ``n_buckets``, ``block_rows``,
        ``labels_path``, ``seconds``.
    """
    t0 = time.perf_counter()
    out_paths = [Path(p) for p in out_paths]
    if not out_paths:
        raise SoundharvestError("shuffle: no output shards given; set dataset.n_shards >= 1")
    if balance not in ("none", "cap"):
        raise SoundharvestError(f"dataset.balance: {balance!r} is not allowed; use none or cap")
    labels_path = Path(labels_path) if labels_path else out_paths[0].parent / "labels.json"
    labels, specs, bins, out_dtype = _shuffle_inputs(inputs, dtype)
    k = len(out_paths)
    label_rows, kept, sizes = _balance_plan(specs, len(labels), balance, cap_per_label, k)
    n_total = int(kept.sum())

    row_bytes = max(1, bins * out_dtype.itemsize)
    budget = int(memory_budget_mb * (1 << 20))
    block_rows, n_buckets, chunk_rows = _plan(budget, row_bytes, int(sizes.max(initial=0)))
    log.info(
        "shuffle: %d frames x %d bins (%s) from %d inputs, %d labels -> %d shards; "
        "%d bucket(s) per shard, blocks of %d rows",
        n_total, bins, out_dtype, len(specs), len(labels), k, n_buckets, block_rows,
    )  # fmt: skip

    tmp_dir = _tmp_dir_for(out_paths)
    with _workspace(tmp_dir, out_paths, labels_path):
        # --- pass 1: scatter rows to cells
        blocks = _assigned_blocks(seed, specs, label_rows, kept, sizes, block_rows)
        _scatter_to_cells(blocks, tmp_dir, k, n_buckets, bins, out_dtype)
        t1 = time.perf_counter()
        # --- pass 2: each shard = its cells in bucket order, each ordered by key
        _write_shards(out_paths, sizes, tmp_dir, n_buckets, bins, out_dtype, chunk_rows)
        write_json(labels_path, labels)
    t2 = time.perf_counter()
    return {
        "labels": labels,
        "label_rows": [int(x) for x in label_rows],
        "kept_rows": [int(x) for x in kept],
        "shard_rows": [int(x) for x in sizes],
        "n_rows": n_total,
        "bins": bins,
        "dtype": str(out_dtype),
        "n_buckets": n_buckets,
        "block_rows": block_rows,
        "labels_path": str(labels_path),
        "seconds": {"pass1": t1 - t0, "pass2": t2 - t1, "total": t2 - t0},
    }
