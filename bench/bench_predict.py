"""Benchmark of ``soundharvest predict``: seconds per 30 s file once the model is loaded.

Builds a predictor directory per feature kind with the thesis' architecture (FC 500-500-2000-10,
the untrained ``random`` model: the cost of a forward pass does not depend on training) and
k = 10 named clusters, renders a 30 s demo clip encoded as Opus, then times decode (ffmpeg),
features, encode and cluster assignment, each the median of several runs.

Run: ``.venv/bin/python bench/bench_predict.py [--repeats 7] [--threads N]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from soundharvest.acquire.demo import DemoSource
from soundharvest.audio import decode
from soundharvest.features import n_bins
from soundharvest.io import write_json
from soundharvest.predict import Predictor, label_clusters_file
from soundharvest.train import train


def median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="bench_predict."))
    src = DemoSource({"seed": 0, "min_duration": 30, "max_duration": 30, "off_topic_share": 0.0})
    vid = src.search("flute", "flute solo", 1)[0].video_id
    audio, _ = src.render("flute", vid)
    clip = root / "clip.webm"
    src.encode(audio, clip)
    print(f"clip: {clip.stat().st_size / 1e3:.0f} kB Opus, {len(audio) / 16000:.1f} s")
    print(f"torch threads: {torch.get_num_threads()}")
    rng = np.random.default_rng(0)
    for kind in ("stft", "mel"):
        spec = {"kind": kind, "params": {}, "sample_rate": 16000}
        bins = n_bins(kind)
        d = root / kind
        d.mkdir()
        np.save(d / "shard-00.npy", rng.uniform(0, 1, (4000, bins)).astype(np.float16))
        np.save(d / "shard-00.labels.npy", rng.integers(0, 10, 4000).astype(np.int16))
        write_json(d / "labels.json", [f"label{i}" for i in range(10)])
        train([d / "shard-00.npy"], d / "w.safetensors", d / "c.tsv", d / "c.png",
              model_type="random", arch="thesis", device="cpu",
              metadata={"model": "random", "features": spec})  # fmt: skip
        label_clusters_file([d / "shard-00.npy"], d / "labels.json", d / "w.safetensors",
                            d / "pred", k=10, sample_frames=4000)  # fmt: skip
        t = time.perf_counter()
        pred = Predictor.load(d / "pred")
        load_s = time.perf_counter() - t
        pred.predict_file(clip)  # warm-up (first ffmpeg start, allocator, BLAS threads)
        t_dec, samples = median_time(partial(decode, clip), args.repeats)
        t_feat, frames = median_time(partial(pred.frames_of, samples), args.repeats)
        t_enc, codes = median_time(partial(pred.encode, frames), args.repeats)
        t_asg, _ = median_time(partial(pred.clusters.predict, codes), args.repeats)
        t_all, res = median_time(partial(pred.predict_file, clip), args.repeats)
        print(
            f"{kind}: load {load_s:.3f} s | per 30 s file: decode {t_dec * 1e3:.0f} ms, "
            f"features {t_feat * 1e3:.0f} ms, encode {t_enc * 1e3:.0f} ms "
            f"({len(frames)} frames), assign {t_asg * 1e3:.1f} ms | "
            f"predict_file total {t_all:.3f} s ({30.0 / t_all:.0f}x real time) -> "
            f"{res['label']} {res['share']:.0%}"
        )


if __name__ == "__main__":
    main()
