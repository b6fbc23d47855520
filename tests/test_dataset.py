"""Concatenation and the out-of-core shuffle: completeness, order, permutation, determinism,
bounded memory, and recovery from ``kill -9``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from soundharvest.dataset import (
    concatenate,
    iter_blocks,
    npy_info,
    read_index,
    read_labels,
    shard_side_paths,
    shuffle,
)
from soundharvest.io import SoundharvestError


def make_inputs(root: Path, sizes, bins=16, dtype=np.float16, seed=0, labels=None):
    """Per-input arrays whose rows are all distinct (row i of input k encodes k and i)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for k, n in enumerate(sizes):
        a = rng.random((n, bins)).astype(dtype)
        if n:
            a[:, 0] = k  # input number
            a[:, 1] = np.arange(n) % 2048  # exact in float16
            a[:, 2] = np.arange(n) // 2048
        p = root / f"in{k}.npy"
        np.save(p, a)
        out.append(((labels[k] if labels else f"lab{k}"), p))
    return out


def read_shards(paths):
    data, labs, rows = [], [], []
    for p in paths:
        lp, rp = shard_side_paths(p)
        data.append(np.load(p))
        labs.append(np.load(lp))
        rows.append(np.load(rp))
    return data, labs, rows


def row_multiset(data, labels, rows):
    """Sorted list of (row bytes, label, source row): a multiset that order cannot change."""
    return sorted(zip((r.tobytes() for r in data), labels.tolist(), rows.tolist(), strict=True))


# ------------------------------------------------------------------------------ concatenate


def test_concatenate_keeps_every_frame_in_order_with_index(tmp_path):
    inputs = make_inputs(tmp_path / "in", [5, 0, 130, 1, 64])
    items = [(f"vid{k}", p) for k, (_, p) in enumerate(inputs)]
    n = concatenate(items, tmp_path / "cat.npy", tmp_path / "cat.index.tsv")
    arrays = [np.load(p) for _, p in items]
    got = np.load(tmp_path / "cat.npy")
    assert n == sum(len(a) for a in arrays) == got.shape[0]
    np.testing.assert_array_equal(got, np.concatenate(arrays))
    index = read_index(tmp_path / "cat.index.tsv")
    assert [v for v, _, _ in index] == [v for v, _ in items]
    for (_vid, first, k), a in zip(index, arrays, strict=True):
        assert k == len(a)
        np.testing.assert_array_equal(got[first : first + k], a)
    assert not list(tmp_path.glob(".*"))


def test_concatenate_converts_dtype_and_checks_inputs(tmp_path):
    inputs = make_inputs(tmp_path / "in", [7, 9], dtype=np.float32)
    items = [(f"v{k}", p) for k, (_, p) in enumerate(inputs)]
    concatenate(items, tmp_path / "c16.npy", tmp_path / "c16.tsv", dtype="float16")
    got = np.load(tmp_path / "c16.npy")
    assert got.dtype == np.float16
    np.testing.assert_array_equal(
        got, np.concatenate([np.load(p) for _, p in items]).astype(np.float16)
    )

    np.save(tmp_path / "other.npy", np.zeros((3, 17), np.float32))
    with pytest.raises(SoundharvestError, match="other.npy.*17 bins"):
        concatenate(
            items + [("x", tmp_path / "other.npy")], tmp_path / "bad.npy", tmp_path / "bad.tsv"
        )
    assert not (tmp_path / "bad.npy").exists()

    raw = (tmp_path / "in" / "in1.npy").read_bytes()
    (tmp_path / "trunc.npy").write_bytes(raw[:-10])
    with pytest.raises(SoundharvestError, match="trunc.npy.*truncated"):
        concatenate([("t", tmp_path / "trunc.npy")], tmp_path / "t.npy", tmp_path / "t.tsv")


def test_concatenate_empty_label(tmp_path):
    assert concatenate([], tmp_path / "e.npy", tmp_path / "e.tsv", n_bins=513) == 0
    assert np.load(tmp_path / "e.npy").shape == (0, 513)
    assert read_index(tmp_path / "e.tsv") == []


def test_iter_blocks_reads_everything_in_order(tmp_path):
    a = np.arange(1000 * 3, dtype=np.int64).reshape(1000, 3)
    np.save(tmp_path / "a.npy", a)
    blocks = [b.copy() for b in iter_blocks(tmp_path / "a.npy", 77)]
    assert [len(b) for b in blocks[:-1]] == [77] * 12 and len(blocks[-1]) == 1000 - 12 * 77
    np.testing.assert_array_equal(np.concatenate(blocks), a)
    assert npy_info(tmp_path / "a.npy")[:2] == ((1000, 3), np.dtype(np.int64))


# ---------------------------------------------------------------------------------- shuffle

SIZES = [3000, 700, 5200, 0, 1900]
LABELS = ["cello", "flute", "organ", "piano", "flute"]  # flute twice: two inputs, one label


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory):
    root = tmp_path_factory.mktemp("shuffle")
    inputs = make_inputs(root / "in", SIZES, labels=LABELS)
    outs = [root / "big" / f"shard-{j:02d}.npy" for j in range(4)]
    stats = shuffle(inputs, outs, seed=7, memory_budget_mb=1024)
    return root, inputs, outs, stats


def test_shuffle_is_a_permutation_of_all_frames(shuffled):
    _root, inputs, outs, stats = shuffled
    arrays = [np.load(p) for _, p in inputs]
    names = read_labels(outs[0].parent / "labels.json")
    assert names == ["cello", "flute", "organ", "piano"] == stats["labels"]
    src = np.concatenate(arrays)
    src_lab = np.concatenate(
        [
            np.full(len(a), names.index(lab), np.int16)
            for (lab, _), a in zip(inputs, arrays, strict=True)
        ]
    )
    data, labs, rows = read_shards(outs)
    assert all(lb.dtype == np.int16 for lb in labs) and all(r.dtype == np.int64 for r in rows)
    got = row_multiset(np.concatenate(data), np.concatenate(labs), np.concatenate(rows))
    want = row_multiset(src, src_lab, np.arange(len(src)))
    assert got == want
    # the global source row points at the frame itself
    for d, r in zip(data, rows, strict=True):
        np.testing.assert_array_equal(d, src[r])


def test_shuffle_shards_are_equal_and_random_samples(shuffled):
    _root, _inputs, outs, stats = shuffled
    _data, labs, rows = read_shards(outs)
    sizes = [len(lb) for lb in labs]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == sum(SIZES) == stats["n_rows"]
    all_labs = np.concatenate(labs)
    n_all = len(all_labs)
    p = np.bincount(all_labs, minlength=4) / n_all
    for lb in labs:
        n = len(lb)
        counts = np.bincount(lb, minlength=4)
        # hypergeometric sd of a label's count in a shard drawn without replacement
        sd = np.sqrt(n * p * (1 - p) * (n_all - n) / (n_all - 1))
        assert np.all(np.abs(counts - n * p) <= 5 * sd + 1e-9)
    for r in rows:  # order within a shard is random, not the input order
        assert not np.all(np.diff(r) > 0)


def test_shuffle_tiny_budget_gives_the_same_shards(shuffled, tmp_path):
    _root, inputs, outs, stats = shuffled
    tiny = [tmp_path / f"shard-{j:02d}.npy" for j in range(4)]
    st = shuffle(inputs, tiny, seed=7, memory_budget_mb=0.05)
    assert st["n_buckets"] > 1 and st["block_rows"] < min(s for s in SIZES if s)
    assert stats["n_buckets"] == 1
    for a, b in zip(outs, tiny, strict=True):
        for pa, pb in zip((a, *shard_side_paths(a)), (b, *shard_side_paths(b)), strict=True):
            assert pa.read_bytes() == pb.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [p.name for q in tiny for p in (q, *shard_side_paths(q))] + ["labels.json"]
    )


def test_shuffle_seed_changes_order(shuffled, tmp_path):
    _root, inputs, outs, _ = shuffled
    other = [tmp_path / f"s{j}.npy" for j in range(4)]
    shuffle(inputs, other, seed=8)
    assert not np.array_equal(np.load(other[0]), np.load(outs[0]))


def test_shuffle_cap_balance(tmp_path):
    inputs = make_inputs(tmp_path / "in", SIZES, labels=LABELS)
    outs = [tmp_path / "o" / f"shard-{j}.npy" for j in range(3)]
    st = shuffle(inputs, outs, seed=1, balance="cap", cap_per_label=1000)
    _, labs, rows = read_shards(outs)
    counts = np.bincount(np.concatenate(labs), minlength=4)
    assert counts.tolist() == [1000, 1000, 1000, 0] == st["kept_rows"]
    allrows = np.concatenate(rows)
    assert len(np.unique(allrows)) == len(allrows) == 3000
    # a capped label's kept rows come from all of its inputs (flute: inputs 1 and 4)
    offsets = np.cumsum([0, *SIZES])
    flute = allrows[np.concatenate(labs) == 1]
    assert np.any(flute < offsets[2]) and np.any(flute >= offsets[4])
    # default cap: the smallest non-empty label
    st = shuffle(inputs, outs, seed=1, balance="cap")
    assert st["kept_rows"] == [700 + 1900] * 3 + [0]


def test_shuffle_rejects_bad_arguments(tmp_path):
    inputs = make_inputs(tmp_path / "in", [10, 10])
    with pytest.raises(SoundharvestError, match="balance"):
        shuffle(inputs, [tmp_path / "a.npy"], seed=0, balance="equal")
    np.save(tmp_path / "wide.npy", np.zeros((4, 99), np.float16))
    with pytest.raises(SoundharvestError, match="wide.npy"):
        shuffle(inputs + [("x", tmp_path / "wide.npy")], [tmp_path / "a.npy"], seed=0)
    assert not (tmp_path / "a.npy").exists()


def test_shuffle_more_shards_than_frames(tmp_path):
    inputs = make_inputs(tmp_path / "in", [2, 1])
    outs = [tmp_path / f"s{j}.npy" for j in range(5)]
    shuffle(inputs, outs, seed=0)
    assert [np.load(p).shape[0] for p in outs] == [1, 1, 1, 0, 0]


# ------------------------------------------------------------------------------ kill -9

_CHILD = """
import json, sys
from pathlib import Path
from soundharvest.dataset import concatenate, shuffle
a = json.loads(sys.argv[1])
if a["op"] == "shuffle":
    shuffle([(l, Path(p)) for l, p in a["inputs"]], [Path(p) for p in a["outs"]], seed=3,
            memory_budget_mb=a["budget"])
else:
    concatenate([(v, Path(p)) for v, p in a["inputs"]], Path(a["outs"][0]), Path(a["outs"][1]),
                dtype="float16")
"""


def _run_and_kill(args: dict, ready) -> int:
    """Start the operation in a child, ``kill -9`` it once ``ready()`` is true; return its code."""
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(args)])
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    return proc.wait()


def _outputs(paths):
    return [q for p in paths for q in (p, *shard_side_paths(p))]


@pytest.mark.parametrize("when", ["pass1", "pass2"])
def test_shuffle_survives_kill_9(tmp_path, when):
    inputs = make_inputs(tmp_path / "in", [30000, 20000, 25000], bins=513, seed=2)
    ref = [tmp_path / "ref" / f"shard-{j}.npy" for j in range(3)]
    shuffle(inputs, ref, seed=3, memory_budget_mb=256)  # one bucket per shard
    outs = [tmp_path / "out" / f"shard-{j}.npy" for j in range(3)]
    out_dir = outs[0].parent
    args = {
        "op": "shuffle",
        "inputs": [(lab, str(p)) for lab, p in inputs],
        "outs": [str(p) for p in outs],
        "budget": 4,  # several buckets per shard
    }

    def ready() -> bool:
        if when == "pass1":
            cells = list(out_dir.glob(".*.shuffle.tmp/cell*.dat"))
            return any(c.stat().st_size > 0 for c in cells if c.exists())
        return any(out_dir.glob(".shard-2.*.tmp.npy"))  # the last shard under way

    assert _run_and_kill(args, ready) == -signal.SIGKILL
    # whatever exists under a final name is complete and correct
    for got, want in zip(_outputs(outs), _outputs(ref), strict=True):
        if got.exists():
            assert got.read_bytes() == want.read_bytes()
    assert any(p.name.startswith(".") for p in out_dir.iterdir())  # the debris a kill leaves

    shuffle(inputs, outs, seed=3, memory_budget_mb=4)  # the re-run
    for got, want in zip(_outputs(outs), _outputs(ref), strict=True):
        assert got.read_bytes() == want.read_bytes()
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]


def test_concatenate_survives_kill_9(tmp_path):
    inputs = make_inputs(tmp_path / "in", [1500] * 80, bins=129, dtype=np.float32, seed=4)
    items = [(f"v{k}", str(p)) for k, (_, p) in enumerate(inputs)]
    out, index = tmp_path / "out" / "lab.npy", tmp_path / "out" / "lab.index.tsv"
    args = {"op": "concatenate", "inputs": items, "outs": [str(out), str(index)]}
    code = _run_and_kill(args, lambda: any(out.parent.glob(".lab.*.tmp.npy")))
    assert code == -signal.SIGKILL
    assert not out.exists() and not index.exists()
    concatenate([(v, Path(p)) for v, p in items], out, index, dtype="float16")
    want = np.concatenate([np.load(p) for _, p in items]).astype(np.float16)
    np.testing.assert_array_equal(np.load(out), want)
    assert [n for _, _, n in read_index(index)] == [1500] * 80
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_shuffle_peak_memory_stays_within_budget(tmp_path):
    # 100 MB of frames, 128 MB budget: the interpreter plus working buffers must stay under it
    # even though every shard is larger than the room left for a bucket.
    inputs = make_inputs(tmp_path / "in", [50000, 48000], bins=513, seed=5)
    code = (
        "import json, re, sys\n"
        "from pathlib import Path\n"
        "from soundharvest.dataset import shuffle\n"
        "a = json.loads(sys.argv[1])\n"
        "st = shuffle([(l, Path(p)) for l, p in a['inputs']], [Path(p) for p in a['outs']],\n"
        "             seed=0, memory_budget_mb=128)\n"
        # VmHWM, not ru_maxrss: Linux carries the forking parent's peak across exec.
        "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]\n"
        "print(json.dumps({'rss_kb': int(hwm), 'buckets': st['n_buckets']}))\n"
    )
    args = {
        "inputs": [(lab, str(p)) for lab, p in inputs],
        "outs": [str(tmp_path / "o" / f"s{j}.npy") for j in range(2)],
    }
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, check=True
    )
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["buckets"] > 1
    assert got["rss_kb"] / 1024 <= 128
