"""Benchmark: concatenate and the out-of-core shuffle against `cp` of the same bytes.

Makes ``--size-gb`` of float16 frames (513 bins) as per-video ``.npy`` files spread over
``--labels`` labels, then times, each until the data is on disk (``sync``):

1. ``cp -r`` of the per-video files           vs  ``concatenate`` of them, one job per label;
2. ``cp -r`` of the per-label concatenations  vs  ``shuffle`` of them into ``--shards`` shards.

Each of our steps runs in a child process whose peak RSS comes from ``os.wait4``. Bars (the
issue's): shuffle <= 2.5x cp with peak RSS <= the budget and shard sizes equal to within one
row; concatenate >= 0.5x cp throughput. Usage::

    python bench/bench_dataset.py [--size-gb 4] [--dir bench/out] [--budget-mb 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


#: Appended to Python children: their own peak RSS. ``ru_maxrss`` from ``wait4`` is not enough:
#: Linux carries the peak of the process that forked the child across ``exec``.
HWM_TRAILER = (
    "\nimport re as _re\n"
    "print('VMHWM_KB', _re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1])\n"
)


#: Seconds to wait after the ``sync`` before each timed run (``--settle``).
SETTLE_S = 5.0


def run_timed(cmd: list[str]) -> tuple[float, float, str]:
    """Run ``cmd`` then ``sync``; return (seconds, peak RSS in MB of the child, stdout).

    Before the clock starts: ``sync``, then ``SETTLE_S`` seconds of rest. On a virtual disk the
    write speed right after a multi-GB write (the previous run, the removal of its output) was
    measured at half the rested speed, and that penalised whichever step came second.
    For ``python -c CODE`` the peak is the child's own ``VmHWM``; otherwise ``ru_maxrss``.
    """
    if len(cmd) == 3 and cmd[1] == "-c":
        cmd = [cmd[0], "-c", cmd[2] + HWM_TRAILER]
    subprocess.run(["sync"], check=True)
    time.sleep(SETTLE_S)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    subprocess.run(["sync"], check=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed with status {proc.returncode}")
    hwm = [int(ln.split()[1]) for ln in out.splitlines() if ln.startswith("VMHWM_KB ")]
    return dt, (hwm[-1] if hwm else usage.ru_maxrss) / 1024.0, out  # both in KiB


def make_inputs(root: Path, size_bytes: int, n_labels: int, bins: int, seed: int) -> dict:
    """Per-video float16 files of 1-5 minutes of frames (~31 frames/s), labels of unequal size."""
    rng = np.random.default_rng(seed)
    row_bytes = bins * 2
    total_rows = size_bytes // row_bytes
    weights = rng.uniform(0.5, 1.5, n_labels)
    label_rows = (weights / weights.sum() * total_rows).astype(np.int64)
    items: dict[str, list] = {}
    for li, n in enumerate(label_rows):
        label = f"label{li:02d}"
        d = root / label
        d.mkdir(parents=True, exist_ok=True)
        items[label] = []
        left, v = int(n), 0
        while left > 0:
            m = min(left, int(rng.integers(1900, 9400)))  # 1-5 min at 16 kHz / hop 512
            # Values in [0, 1): random float16 bit patterns below 0x3C00 (= 1.0).
            a = rng.integers(0, 0x3C00, size=(m, bins), dtype=np.uint16).view(np.float16)
            p = d / f"vid{v:05d}.npy"
            np.save(p, a)
            items[label].append((f"vid{li:02d}_{v:05d}", str(p)))
            left -= m
            v += 1
    return items


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gb", type=float, default=4.0, help="bytes of frames (GB = 1e9)")
    ap.add_argument("--dir", type=Path, default=ROOT / "bench" / "out" / "dataset")
    ap.add_argument("--budget-mb", type=float, default=1024)
    ap.add_argument("--shards", type=int, default=10)
    ap.add_argument("--labels", type=int, default=10)
    ap.add_argument("--bins", type=int, default=513)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="interleaved runs; best of each")
    ap.add_argument("--settle", type=float, default=SETTLE_S, help="seconds of rest per run")
    args = ap.parse_args(argv)
    globals()["SETTLE_S"] = args.settle

    size = int(args.size_gb * 1e9)
    work = args.dir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    free = shutil.disk_usage(work).free
    if free < 3.3 * size:
        raise SystemExit(f"{work}: {free / 1e9:.1f} GB free, need {3.3 * size / 1e9:.1f} GB")
    py = sys.executable
    try:
        t = time.perf_counter()
        items = make_inputs(work / "videos", size, args.labels, args.bins, args.seed)
        n_files = sum(len(v) for v in items.values())
        print(
            f"made {size / 1e9:.2f} GB in {n_files} per-video files in {time.perf_counter() - t:.0f} s"
        )
        (work / "items.json").write_text(json.dumps(items))

        # -- concatenate vs cp of the per-video files (interleaved repeats, best of each)
        code = (
            "import json,sys; from pathlib import Path; from soundharvest.dataset import concatenate\n"
            f"items=json.load(open({str(work / 'items.json')!r}))\n"
            f"out=Path({str(work / 'labels')!r})\n"
            "for lab, its in items.items():\n"
            "    concatenate([(v, Path(p)) for v, p in its], out/f'{lab}.npy', out/f'{lab}.index.tsv')\n"
        )
        cp_cat, cat_s, cat_rss = [], [], []
        for r in range(args.repeat):
            cp_cat.append(run_timed(["cp", "-r", str(work / "videos"), str(work / "cp_videos")])[0])
            shutil.rmtree(work / "cp_videos")
            if r:
                shutil.rmtree(work / "labels")
            dt, rss, _ = run_timed([py, "-c", code])
            cat_s.append(dt)
            cat_rss.append(rss)
        shutil.rmtree(work / "videos")

        # -- shuffle vs cp of the per-label arrays, each mode (interleaved repeats)
        labels_dir = work / "labels"
        modes = ["two-pass"]
        cp_shuf: list[float] = []
        res: dict[str, dict] = {m: {"s": [], "rss": []} for m in modes}
        for _ in range(args.repeat):
            for mode in modes:
                cp_shuf.append(run_timed(["cp", "-r", str(labels_dir), str(work / "cp_labels")])[0])
                shutil.rmtree(work / "cp_labels")
                shutil.rmtree(work / "shards", ignore_errors=True)
                code = (
                    "import json; from pathlib import Path; from soundharvest.dataset import shuffle\n"
                    f"d=Path({str(labels_dir)!r}); o=Path({str(work / 'shards')!r})\n"
                    "inputs=[(p.stem, p) for p in sorted(d.glob('*.npy'))]\n"
                    f"outs=[o/f'shard-{{j:02d}}.npy' for j in range({args.shards})]\n"
                    f"st=shuffle(inputs, outs, seed={args.seed}, memory_budget_mb={args.budget_mb},"
                    ")\n"
                    "print(json.dumps(st))\n"
                )
                dt, rss, out = run_timed([py, "-c", code])
                res[mode]["s"].append(dt)
                res[mode]["rss"].append(rss)
                res[mode]["stats"] = json.loads(out.strip().splitlines()[-2])
                shards = sorted((work / "shards").glob("shard-??.npy"))
                res[mode]["rows"] = [int(np.load(p, mmap_mode="r").shape[0]) for p in shards]
        print("times (s), in run order:")
        print("  cp videos   ", " ".join(f"{t:6.2f}" for t in cp_cat))
        print("  concatenate ", " ".join(f"{t:6.2f}" for t in cat_s))
        print("  cp labels   ", " ".join(f"{t:6.2f}" for t in cp_shuf))
        for mode in modes:
            print(f"  shuffle {mode:<9}", " ".join(f"{t:6.2f}" for t in res[mode]["s"]))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    cp_cat_b, cat_b, cp_shuf_b = min(cp_cat), min(cat_s), min(cp_shuf)
    ratio_cat = cp_cat_b / cat_b  # throughput ratio = inverse time ratio
    rows = [
        ("concatenate", f"{cat_b:.2f} s", f"cp {cp_cat_b:.2f} s", f"{ratio_cat:.2f}x cp throughput",
         ">= 0.5x", ratio_cat >= 0.5, f"{max(cat_rss):.0f} MB"),
    ]  # fmt: skip
    n_rows = 0
    for mode in modes:
        best, rss = min(res[mode]["s"]), max(res[mode]["rss"])
        st, shard_rows = res[mode]["stats"], res[mode]["rows"]
        n_rows = st["n_rows"]
        spread = max(shard_rows) - min(shard_rows)
        ratio = best / cp_shuf_b
        rows += [
            (f"shuffle {mode}", f"{best:.2f} s", f"cp {cp_shuf_b:.2f} s", f"{ratio:.2f}x cp time",
             "<= 2.5x", ratio <= 2.5, f"{rss:.0f} MB"),
            ("  peak RSS", f"{rss:.0f} MB", f"budget {args.budget_mb:.0f} MB", "", "<= budget",
             rss <= args.budget_mb, ""),
            ("  shard rows", f"{min(shard_rows)}..{max(shard_rows)}", f"{len(shard_rows)} shards",
             f"spread {spread}", "<= 1 row", spread <= 1, ""),
        ]  # fmt: skip
    print(
        f"\n{size / 1e9:.2f} GB float16, {args.bins} bins, {n_rows} frames, {args.labels} labels, "
        f"{args.shards} shards, budget {args.budget_mb:.0f} MB; best of {args.repeat}"
    )
    for mode in modes:
        st = res[mode]["stats"]
        print(
            f"shuffle ({mode}), last run in-process: pass 1 {st['seconds']['pass1']:.2f} s, "
            f"pass 2 {st['seconds']['pass2']:.2f} s; {st['n_buckets']} bucket(s) per shard"
        )
    print(
        f"{'step':<18}{'ours':>14}{'baseline':>16}{'ratio':>24}{'bar':>11}{'peak RSS':>10}  result"
    )
    ok = True
    for name, ours, base, ratio, bar, passed, rss in rows:
        ok &= passed
        verdict = "PASS" if passed else "FAIL"
        print(f"{name:<18}{ours:>14}{base:>16}{ratio:>24}{bar:>11}{rss:>10}  {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
