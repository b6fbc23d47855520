"""Training throughput on the CPU: compute-only vs the full pipeline from shards on disk.

For ``ae`` and ``acai`` (the thesis' 513-500-500-2000-10 autoencoder) this measures, in the same
run and interleaved (so that load from other processes hits both alike):

- compute-only: training steps on batches already in memory;
- full pipeline: the same steps fed by :class:`soundharvest.loader.ShardReader` reading float16
  shards from disk (memmap, 64k-row blocks, background prefetch).

It prints frames/s for both and their ratio, and PASS/FAIL against the bar (ratio >= 0.9).

    .venv/bin/python bench/bench_train.py [--threads 2] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from soundharvest.loader import ShardReader
from soundharvest.models import THESIS_ARCH, build_model
from soundharvest.train import OBJECTIVES, Stepper

BAR = 0.9


def write_shards(directory: Path, n_shards: int, rows: int, n_bins: int = 513) -> list[Path]:
    """Float16 shards of uniform random frames (values in [0, 1], like scaled dB spectra)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n_shards):
        p = directory / f"shard-{i:02d}.npy"
        mm = np.lib.format.open_memmap(p, mode="w+", dtype=np.float16, shape=(rows, n_bins))
        for a in range(0, rows, 65536):
            b = min(rows, a + 65536)
            mm[a:b] = rng.random((b - a, n_bins), dtype=np.float32)
        mm.flush()
        del mm
        paths.append(p)
    return paths


def make_stepper(model_type: str, n_bins: int) -> Stepper:
    model = build_model(model_type, n_bins, THESIS_ARCH, seed=0)
    model.train()
    objective = OBJECTIVES[model_type](model, lr=1e-4, seed=0)  # ACAI at its defaults
    return Stepper(objective, "eager")


def time_steps(stepper: Stepper, batches) -> tuple[float, int]:
    """Seconds and frames for running every batch of ``batches`` (an iterable) through a step."""
    frames = 0
    acc = None
    t0 = time.perf_counter()
    for x in batches:
        m = stepper.step(x)
        acc = m if acc is None else acc + m
        frames += x.shape[0]
    if acc is not None:
        acc.tolist()  # the training loop's host sync, once per window
    return time.perf_counter() - t0, frames


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--frames-ae", type=int, default=16384, help="frames per measurement (ae)")
    ap.add_argument("--frames-acai", type=int, default=8192, help="frames per measurement (acai)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved compute/pipeline pairs")
    ap.add_argument("--shard-rows", type=int, default=40000)
    ap.add_argument("--dir", type=Path, default=None, help="where to write the shards (tmp)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    bs = args.batch_size
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        paths = write_shards(Path(tmp), 4, args.shard_rows)
        total = 4 * args.shard_rows
        print(
            f"shards: 4 x {args.shard_rows} x 513 float16 ({total * 513 * 2 / 1e6:.0f} MB) in {tmp}"
        )
        print(f"torch {torch.__version__}, {args.threads} thread(s), batch {bs}, eager, float32")
        results = {}
        for model_type, n_frames in (("ae", args.frames_ae), ("acai", args.frames_acai)):
            n_frames = max(bs, n_frames // bs * bs)
            stepper = make_stepper(model_type, 513)
            reader = ShardReader(paths, bs, seed=0, prefetch=2)
            # Compute-only input: the same kind of batches, read once, held in memory.
            in_memory = list(reader.batches(0, n_frames))
            time_steps(stepper, in_memory[:4])  # warm-up (allocator, oneDNN kernels)
            compute, pipeline, ratios = [], [], []
            pos = 0
            for _ in range(args.rounds):
                s, f = time_steps(stepper, in_memory)
                compute.append(f / s)
                # Full pipeline: a fresh stretch of the stream each round, read from disk.
                s, f = time_steps(stepper, reader.batches(pos, pos + n_frames))
                pos = (pos + n_frames) % total
                pipeline.append(f / s)
                ratios.append(pipeline[-1] / compute[-1])
            # Best of the rounds: other processes on the machine only ever slow a round down,
            # so the fastest round is the cleanest estimate of each (the median is printed too).
            results[model_type] = (max(compute), max(pipeline), max(pipeline) / max(compute))
            print(
                f"{model_type}: compute-only rounds {[round(c) for c in compute]}, full pipeline"
                f" {[round(p) for p in pipeline]}, median ratio {statistics.median(ratios):.3f}"
            )
        print()
        print(f"{'model':6} {'compute-only':>14} {'full pipeline':>14} {'ratio':>7}  bar >= {BAR}")
        ok = True
        for model_type, (c, p, r) in results.items():
            verdict = "PASS" if r >= BAR else "FAIL"
            ok &= r >= BAR
            print(f"{model_type:6} {c:>10,.0f} f/s {p:>10,.0f} f/s {r:>7.3f}  {verdict}")
        print("(frames/s: best of interleaved rounds; ratio: best pipeline / best compute-only)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
