"""Benchmark of the passes that run a trained encoder (config ``encode``): frames/s by device.

``label_clusters`` encodes every training frame once (the label-noise votes and the sample that
names clusters), ``score_clips`` and ``score_eval`` every window of every clip and note. This
times :func:`soundharvest.encoder.encode_sequence`, what all of them call, on
``config/recogniser.yaml``'s window encoder (logconv, channels 32-32-32, windows of 8 frames 4
apart; untrained: the time does not depend on the weights) over a sequence of STFT frames, with
1 and 2 CPU threads and, where one is present, on CUDA. Each figure is the best of ``--repeats``
runs; the reference is one CPU thread, what every such job ran on before ``encode`` existed.

Run: ``.venv/bin/python bench/bench_encode.py [--frames 20000]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

# The same window encoder as the label_clusters benchmark (config/recogniser.yaml's).
from bench_label_clusters import ARCH, BINS  # noqa: E402

#: The thesis' training frames (DESIGN.md): what one label_clusters pass encodes at scale.
THESIS_FRAMES = 150e6


def frames_per_second(model, frames: np.ndarray, repeats: int) -> float:
    from soundharvest.encoder import encode_sequence

    encode_sequence(model, frames[:512])  # warm-up (allocations, cuDNN autotuning)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        encode_sequence(model, frames)
        best = min(best, time.perf_counter() - t0)
    return len(frames) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()

    import torch

    from soundharvest.features import bin_frequencies
    from soundharvest.models import build_model

    arch = {**ARCH, "bin_hz": [float(f) for f in bin_frequencies("stft", {}, 16000)]}

    rng = np.random.default_rng(0)
    frames = rng.random((a.frames, BINS), dtype=np.float32).astype(np.float16)
    runs = [("cpu", 1), ("cpu", 2)] + ([("cuda", None)] if torch.cuda.is_available() else [])
    reference = None
    print(f"{a.frames} frames of {BINS} bins, window model (context 8, stride 4)")
    print(f"{'device':>8} {'threads':>7} {'frames/s':>10} {'x 1 thread':>10} {'150 M frames':>12}")
    for device, threads in runs:
        if threads is not None:
            torch.set_num_threads(threads)
        model = build_model("random", BINS, arch, 0).to(device).eval()
        fps = frames_per_second(model, frames, a.repeats)
        reference = reference or fps
        hours = THESIS_FRAMES / fps / 3600
        print(
            f"{device:>8} {threads or '-':>7} {fps:>10.0f} {fps / reference:>10.2f} "
            f"{hours:>10.1f} h"
        )


if __name__ == "__main__":
    main()
