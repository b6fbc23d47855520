"""Tests of soundharvest.loader: block-wise, deterministic batches over shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from soundharvest.dataset import shard_side_paths
from soundharvest.io import SoundharvestError
from soundharvest.loader import ShardReader

N_BINS = 7
# Shards of unequal sizes, neither a multiple of the block nor of the batch size.
SHARD_ROWS = (1000, 777, 1234)


def _write_shards(tmp_path: Path, dtype=np.float32) -> list[Path]:
    """Shards whose first column holds a global row id (exact in float32: ids < 2**24)."""
    paths, start = [], 0
    for i, n in enumerate(SHARD_ROWS):
        ids = np.arange(start, start + n)
        x = np.zeros((n, N_BINS), dtype=np.float32)
        x[:, 0] = ids
        x[:, 1:] = (ids[:, None] % 3) / 2.0  # 0, 0.5, 1: exact in float16 too
        p = tmp_path / f"shard-{i:02d}.npy"
        np.save(p, x.astype(dtype))  # float16 rounds the ids in column 0, not 0 / 0.5 / 1
        np.save(shard_side_paths(p)[0], (ids % 10).astype(np.int16))
        paths.append(p)
        start += n
    return paths


def _ids(batches) -> np.ndarray:
    return np.concatenate([b[:, 0].numpy() for b in batches]).astype(np.int64)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_epoch_visits_every_frame_exactly_once(tmp_path: Path, prefetch: int) -> None:
    paths = _write_shards(tmp_path)
    reader = ShardReader(paths, batch_size=64, block_rows=100, seed=3, prefetch=prefetch)
    total = sum(SHARD_ROWS)
    assert len(reader) == total
    for p in range(3):
        batches = list(reader.epoch(p))
        ids = _ids(batches)
        assert ids.shape == (total,)
        assert np.array_equal(np.sort(ids), np.arange(total))
        sizes = [b.shape[0] for b in batches]
        assert all(s == 64 for s in sizes[:-1]) and 0 < sizes[-1] <= 64
        assert all(b.dtype == torch.float32 and b.shape[1] == N_BINS for b in batches)


def test_order_is_deterministic_and_changes_per_pass(tmp_path: Path) -> None:
    paths = _write_shards(tmp_path)
    a = ShardReader(paths, 50, block_rows=100, seed=1)
    b = ShardReader(paths, 50, block_rows=100, seed=1, prefetch=0)
    c = ShardReader(paths, 50, block_rows=100, seed=2)
    ids_a0, ids_b0, ids_c0 = _ids(a.epoch(0)), _ids(b.epoch(0)), _ids(c.epoch(0))
    assert np.array_equal(ids_a0, ids_b0)
    assert not np.array_equal(ids_a0, ids_c0)
    assert not np.array_equal(ids_a0, _ids(a.epoch(1)))
    # Blocks are read contiguously: within a block the rows keep the shard's (shuffled) order.
    assert (np.diff(ids_a0) == 1).mean() > 0.9


def test_stream_resumes_at_any_frame(tmp_path: Path) -> None:
    """batches(start, stop) equals the tail of batches(0, stop): what a resumed run sees."""
    paths = _write_shards(tmp_path)
    reader = ShardReader(paths, batch_size=64, block_rows=300, seed=0)
    stop = 2 * sum(SHARD_ROWS) + 123  # across two pass boundaries
    full = _ids(reader.batches(0, stop))
    assert full.shape == (stop,)
    for start in (64, 64 * 47, sum(SHARD_ROWS), 64 * 90):
        assert np.array_equal(_ids(reader.batches(start, stop)), full[start:])
    assert list(reader.batches(stop, stop)) == []
    # The stream of passes is the concatenation of the epochs.
    n = sum(SHARD_ROWS)
    assert np.array_equal(full[:n], _ids(reader.epoch(0)))
    assert np.array_equal(full[n : 2 * n], _ids(reader.epoch(1)))


def test_float16_and_labels(tmp_path: Path) -> None:
    paths = _write_shards(tmp_path, dtype=np.float16)
    # float16 cannot hold the ids: rebuild them from the label side arrays instead.
    reader = ShardReader(paths, batch_size=128, block_rows=256, with_labels=True)
    seen = 0
    for x, y in reader.epoch(0):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[0] == y.shape[0]
        assert set(np.unique(x[:, 1:].numpy())) <= {0.0, 0.5, 1.0}
        seen += x.shape[0]
    assert seen == sum(SHARD_ROWS)
    labels = np.concatenate([y.numpy() for _, y in reader.epoch(0)])
    expected = np.concatenate([np.load(shard_side_paths(p)[0]) for p in paths])
    assert np.array_equal(np.bincount(labels), np.bincount(expected))
    # dtype=None delivers the stored float16 (what a GPU run copies), the same values.
    half = ShardReader(paths, batch_size=128, block_rows=256, with_labels=True, dtype=None)
    pairs = zip(half.epoch(0), reader.epoch(0), strict=True)
    for (h, hy), (f, fy) in pairs:
        assert h.dtype == torch.float16 and torch.equal(h.float(), f) and torch.equal(hy, fy)
    with pytest.raises(SoundharvestError, match="dtype"):
        ShardReader(paths, batch_size=128, dtype=torch.int8)


def test_early_stop_does_not_hang(tmp_path: Path) -> None:
    paths = _write_shards(tmp_path)
    reader = ShardReader(paths, batch_size=10, block_rows=50, prefetch=1)
    it = reader.batches(0, None)  # endless
    for _ in range(500):
        next(it)
    it.close()  # stops the prefetch thread


def test_bad_shards_raise_one_line_errors(tmp_path: Path) -> None:
    paths = _write_shards(tmp_path)
    one_d = tmp_path / "shard-09.npy"
    np.save(one_d, np.zeros(5, np.float32))
    with pytest.raises(SoundharvestError, match="shard-09.npy"):
        ShardReader([*paths, one_d], 8)
    wide = tmp_path / "shard-10.npy"
    np.save(wide, np.zeros((5, N_BINS + 1), np.float32))
    with pytest.raises(SoundharvestError, match="bins"):
        ShardReader([*paths, wide], 8)
    ints = tmp_path / "shard-11.npy"
    np.save(ints, np.zeros((5, N_BINS), np.int32))
    with pytest.raises(SoundharvestError, match="dtype"):
        ShardReader([ints], 8)
    with pytest.raises(SoundharvestError, match="not found"):
        ShardReader([tmp_path / "missing.npy"], 8)


def test_a_shard_larger_than_memory_is_read_block_by_block(tmp_path: Path) -> None:
    """Shards larger than RAM are mapped read-only and streamed: a private (copy-on-write) map
    of a file larger than RAM + swap is refused (ENOMEM) where the kernel checks overcommit.
    The shard here is a sparse file twice that size, so it costs no disk."""
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        pytest.skip("needs /proc/meminfo (Linux) to size the shard beyond RAM + swap")
    kb = {ln.split(":")[0]: int(ln.split()[1]) for ln in meminfo.read_text().splitlines()}
    size = 2 * 1024 * (kb["MemTotal"] + kb.get("SwapTotal", 0))
    rows = size // (2 * N_BINS)
    p = tmp_path / "shard-00.npy"
    header = np.lib.format.open_memmap(p, mode="w+", dtype=np.float16, shape=(rows, N_BINS))
    del header  # a sparse file: only the header is on disk
    np.save(shard_side_paths(p)[0], np.zeros(0, np.int16))  # labels unused here
    reader = ShardReader([p], batch_size=1024, block_rows=4096, prefetch=0)
    assert len(reader) == rows
    first = next(iter(reader.batches(0, 4096)))
    assert first.shape == (1024, N_BINS) and first.dtype == torch.float32
    assert float(first.abs().sum()) == 0.0  # the holes read as zeros
