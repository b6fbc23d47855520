"""Benchmark of ``label_clusters`` on a window model: peak memory against the sample's size.

Writes synthetic training data of the thesis' shape (STFT frames, 513 bins, float16) the way the
workflow does: one ``.npy`` per clip, joined per label by :func:`soundharvest.dataset.concatenate`
and shuffled into shards by :func:`soundharvest.dataset.shuffle`. The model is ``config/best.
yaml``'s window encoder (logconv, channels 32-32-32, windows of 8 frames 4 apart), untrained
(the ``random`` type: memory and time do not depend on training). Each size runs
:func:`soundharvest.predict.label_clusters_file` (elbow of a sweep to max_k 30, 20 % of the clips
held out, as in the default config) in a child process and reports that child's peak RSS
(``os.wait4``'s ``ru_maxrss``) against the reference: the sampled windows themselves in float32
(n x 8 x 513 x 4 bytes), what holding them at once would cost. The training data grows with
the sample (1.5625 x its size), and each run also writes every clip's votes for the label-noise
report: label_clusters encodes every training frame once, into a scratch file, and reads the
sample's codes from it, so the peak may grow with neither.

Bar: peak RSS <= 1.5 GB at 40,000 windows, and the peak may not grow with the sample by more
than a quarter of the windows' size between the smallest and largest size.

Run: ``.venv/bin/python bench/bench_label_clusters.py [--windows 10000,40000]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BINS = 513
CONTEXT, STRIDE = 8, 4
ARCH = {
    "frontend": "logconv",
    "channels": [32, 32, 32],
    "kernel": 9,
    "bins_per_octave": 36,
    "fmin": 60.0,
    "hidden": [128],
    "latent": 10,
    "context": CONTEXT,
    "context_stride": STRIDE,
}
SPEC = {"kind": "stft", "params": {}, "sample_rate": 16000}
BAR_BYTES = 1.5e9
BAR_SIZE = 40_000


def build(root: Path, n_frames: int, labels: int = 10, clip_frames: int = 320) -> dict:
    """Clips of ``clip_frames`` frames (a label's spectral envelope times a level per frame,
    plus noise), concatenated per label and shuffled into 10 shards; a random window model."""
    from soundharvest.dataset import concatenate, shuffle
    from soundharvest.io import save_npy
    from soundharvest.train import train

    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    per_label = -(-n_frames // labels)
    clips_dir = root / "clips"
    clips_dir.mkdir()
    inputs = []
    bins = np.arange(BINS)
    for c in range(labels):
        centre = rng.uniform(0.1, 0.6) * BINS
        envelope = np.exp(-0.5 * ((bins - centre) / (0.1 * BINS)) ** 2)
        items = []
        for j in range(-(-per_label // clip_frames)):
            gain = rng.uniform(0.3, 1.0, (clip_frames, 1))
            x = envelope * gain + rng.normal(0, 0.05, (clip_frames, BINS))
            p = clips_dir / f"l{c}-{j}.npy"
            save_npy(p, np.clip(x, 0, 1).astype(np.float16))
            items.append((f"l{c}-{j}", p))
        out = root / f"label{c}.npy"
        concatenate(items, out, root / f"label{c}.index.tsv")
        inputs.append((f"label{c}", out))
    shards = [root / f"shard-{i:02d}.npy" for i in range(10)]
    stats = shuffle(inputs, shards, seed=0, memory_budget_mb=256)
    weights = root / "weights.safetensors"
    train(shards, weights, root / "c.tsv", root / "c.png", model_type="random", arch=ARCH,
          device="cpu", metadata={"model": "randctx", "features": SPEC})  # fmt: skip
    return {
        "shards": [str(p) for p in shards],
        "labels": str(root / "labels.json"),
        "weights": str(weights),
        "sources": [str(p) for _, p in inputs],
        "n_rows": int(stats["n_rows"]),
    }


def child(job: str) -> None:
    """Run one label_clusters_file (in its own process) and print its result as JSON."""
    from soundharvest.predict import label_clusters_file

    j = json.loads(job)
    t = time.perf_counter()
    meta = label_clusters_file(
        j["shards"], j["labels"], j["weights"], j["out"], k="elbow", max_k=30,
        sample_frames=j["n"], seed=0, sources=j["sources"], holdout=0.2,
        votes_tsv=Path(j["out"]) / "votes.tsv", scratch_dir=j["scratch"],
    )  # fmt: skip
    votes = sum(1 for _ in open(Path(j["out"]) / "votes.tsv")) - 1
    with np.load(Path(j["out"]) / "clusters.npz") as z:
        centroids = z["centroids"]
        counts = z["counts"]
    print(json.dumps({
        "seconds": time.perf_counter() - t,
        "k": meta["k"],
        "sample_frames": meta["sample_frames"],
        "centroid_sum": float(np.abs(centroids).sum()),
        "counts_sha": hashlib.sha1(counts.tobytes()).hexdigest()[:12],
        "votes": votes,
    }))  # fmt: skip


def run_child(job: dict) -> tuple[dict, float]:
    """The child's JSON line and its peak RSS in bytes."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", json.dumps(job)],
        stdout=subprocess.PIPE,
        text=True,
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"label_clusters child failed (exit {proc.returncode}):\n{out}")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss * 1024.0


def import_rss() -> float:
    """Peak RSS of a child that only imports the package and torch (the floor of any run)."""
    code = "import soundharvest.predict, soundharvest.train, torch"
    proc = subprocess.Popen([sys.executable, "-c", code])
    _, _, usage = os.wait4(proc.pid, 0)
    return usage.ru_maxrss * 1024.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", default="10000,40000", help="sample sizes, comma-separated")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return 0
    sizes = sorted(int(s) for s in args.windows.split(","))
    root = Path(tempfile.mkdtemp(prefix="bench_label_clusters."))
    # Per size, enough frames that the sample, after 20 % of the clips are held out, is full:
    # the training data grows with the sample, and label_clusters encodes all of it once.
    print(f"data per size: 1.5625 x the sample of {BINS}-bin float16 frames in 10 shards; "
          f"model: logconv windows of {CONTEXT} frames, stride {STRIDE}, random")  # fmt: skip
    floor = import_rss()
    print(f"peak RSS of a process that only imports soundharvest and torch: {floor / 1e9:.3f} GB")
    peaks = {}
    failed = False
    for n in sizes:
        data = build(root / f"data-{n}", int(n / 0.8 * 1.25))
        res, peak = run_child({**data, "n": n, "out": str(root / f"pred-{n}"),
                               "scratch": str(root)})  # fmt: skip
        ref = n * CONTEXT * BINS * 4
        peaks[n] = (peak, ref)
        print(
            f"{n:>7,} windows: peak RSS {peak / 1e9:.3f} GB; windows in float32 {ref / 1e9:.3f} GB "
            f"(ratio {peak / ref:.2f}); above the import floor {(peak - floor) / 1e9:.3f} GB; "
            f"{res['seconds']:.1f} s for {data['n_rows']:,} training frames encoded once "
            f"({res['votes']} clips' votes); k = {res['k']}, {res['sample_frames']} sampled, "
            f"|centroids| {res['centroid_sum']:.6g}, counts {res['counts_sha']}"
        )
        if n == BAR_SIZE:
            ok = peak <= BAR_BYTES
            failed |= not ok
            print(f"{'PASS' if ok else 'FAIL'}: peak RSS at {n:,} windows "
                  f"{peak / 1e9:.3f} GB <= {BAR_BYTES / 1e9:.1f} GB")  # fmt: skip
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        growth = peaks[hi][0] - peaks[lo][0]
        allowed = 0.25 * (peaks[hi][1] - peaks[lo][1])
        ok = growth <= allowed
        failed |= not ok
        print(f"{'PASS' if ok else 'FAIL'}: peak grows by {growth / 1e9:.3f} GB from {lo:,} to "
              f"{hi:,} windows (<= {allowed / 1e9:.3f} GB, a quarter of the windows' growth)")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
