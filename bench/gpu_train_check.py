"""One short GPU check of training throughput (meant for an H100; runs in about 3-5 minutes).

Run from the repository root on a machine with CUDA::

    PYTHONPATH=src python bench/gpu_train_check.py [--batch 16384] [--steps 200]

What it measures, for ``ae`` and ``acai`` (thesis architecture, 513 inputs, bf16 autocast):

1. compute-only frames/s (batches already on the GPU) for each step mode: ``eager``,
   ``compile`` (torch.compile of the loss), ``cudagraph`` (the whole step, forward, backward and
   fused Adam, captured as one CUDA graph);
2. full-pipeline frames/s for the fastest mode: float16 shards on disk (page cache) -> memmap
   blocks of 64k rows -> pinned memory -> side-stream copy -> the same steps;
3. that CUDA-graph training follows eager training (same init, same batches, same alphas);
4. an end-to-end ``train()`` run on the GPU (checkpoint, curves, weights).

Bars (from the issue): full pipeline >= 0.9 x compute-only; ACAI >= 3 M frames/s. Reference:
eager ACAI ~1.5 M frames/s at batch 16384 on an H100 (FACTS.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from soundharvest.loader import ShardReader  # noqa: E402
from soundharvest.models import THESIS_ARCH, build_model  # noqa: E402
from soundharvest.train import OBJECTIVES, Stepper, train  # noqa: E402

N_BINS = 513


def write_shards(directory: Path, n_shards: int, rows: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n_shards):
        p = directory / f"shard-{i:02d}.npy"
        mm = np.lib.format.open_memmap(p, mode="w+", dtype=np.float16, shape=(rows, N_BINS))
        for a in range(0, rows, 65536):
            b = min(rows, a + 65536)
            mm[a:b] = rng.random((b - a, N_BINS), dtype=np.float32)
        mm.flush()
        del mm
        paths.append(p)
    return paths


def make_stepper(model_type: str, mode: str, seed: int = 0) -> Stepper:
    model = build_model(model_type, N_BINS, THESIS_ARCH, seed=seed).cuda().train()
    # ACAI at its defaults (lambda 0.5, gamma 0.2: soundharvest.hparams.AcaiHyperparameters).
    obj = OBJECTIVES[model_type](model, lr=1e-4, seed=seed, amp_dtype=torch.bfloat16)
    return Stepper(obj, mode)


def run(stepper: Stepper, batches, warmup: int = 0) -> tuple[float, int, torch.Tensor]:
    """Steps over ``batches``; the first ``warmup`` are not timed. Returns (s, frames, last)."""
    it = iter(batches)
    last = None
    for _ in range(warmup):
        last = stepper.step(next(it))
    torch.cuda.synchronize()
    frames, acc = 0, None
    t0 = time.perf_counter()
    for x in it:
        last = stepper.step(x)
        acc = last if acc is None else acc + last
        frames += x.shape[0]
    if acc is not None:
        acc.tolist()
    torch.cuda.synchronize()
    return time.perf_counter() - t0, frames, last


def cycle(batches: list[torch.Tensor], n: int):
    for i in range(n):
        yield batches[i % len(batches)]


def main() -> int:
    ap = argparse.ArgumentParser(description="GPU training throughput check")
    ap.add_argument("--batch", type=int, default=16384)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--modes", default="eager,compile,cudagraph")
    ap.add_argument("--shard-rows", type=int, default=131072)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--skip-train", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 2
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    bs, steps = args.batch, args.steps
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, batch {bs}, bf16 autocast")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        paths = write_shards(Path(tmp), args.shards, args.shard_rows)
        n_rows = args.shards * args.shard_rows
        print(
            f"shards: {args.shards} x {args.shard_rows} rows float16 in {time.perf_counter() - t:.1f} s"
        )
        reader = ShardReader(paths, bs, device="cuda", prefetch=3)
        in_memory = list(reader.batches(0, 16 * bs))  # 16 distinct batches, on the GPU
        # Loader alone: how fast the pipeline delivers batches with no compute.
        t = time.perf_counter()
        n = sum(x.shape[0] for x in reader.batches(0, min(n_rows, 64 * bs)))
        torch.cuda.synchronize()
        print(f"loader alone: {n / (time.perf_counter() - t) / 1e6:.1f} M frames/s")

        results: dict[tuple[str, str], float] = {}
        for model_type in ("ae", "acai"):
            for mode in args.modes.split(","):
                try:
                    st = make_stepper(model_type, mode)
                    t = time.perf_counter()
                    run(st, cycle(in_memory, 3), warmup=3)  # compile / capture
                    setup = time.perf_counter() - t
                    s, f, _ = run(st, cycle(in_memory, steps + 10), warmup=10)
                    results[(model_type, mode)] = f / s
                    print(
                        f"{model_type:5} {mode:10} compute-only {f / s / 1e6:6.2f} M frames/s"
                        f"  (setup {setup:.1f} s, ran as {st.mode})"
                    )
                except Exception as e:  # report and go on with the other modes
                    print(f"{model_type:5} {mode:10} FAILED: {type(e).__name__}: {e}")
                    ok = False
            cands = {m: v for (mt, m), v in results.items() if mt == model_type}
            if not cands:
                continue
            best = max(cands, key=cands.get)
            st = make_stepper(model_type, best)
            run(st, cycle(in_memory, 3), warmup=3)
            s_c, f_c, _ = run(st, cycle(in_memory, steps), warmup=0)
            s_p, f_p, _ = run(st, reader.batches(0, steps * bs), warmup=0)
            compute, pipe = f_c / s_c, f_p / s_p
            ratio = pipe / compute
            ok &= ratio >= 0.9
            print(
                f"{model_type:5} {best:10} full pipeline {pipe / 1e6:6.2f} M frames/s vs compute-only"
                f" {compute / 1e6:.2f}: ratio {ratio:.3f} {'PASS' if ratio >= 0.9 else 'FAIL'} (>= 0.9)"
            )
            if model_type == "acai":
                passed = cands[best] >= 3e6
                ok &= passed
                print(
                    f"acai  best {cands[best] / 1e6:.2f} M frames/s: {'PASS' if passed else 'FAIL'} (>= 3 M)"
                )

        # CUDA graph vs eager: same init, batches and alphas -> the same training, up to bf16.
        for model_type in ("ae", "acai"):
            curves = {}
            for mode in ("eager", "cudagraph"):
                st = make_stepper(model_type, mode, seed=1)
                losses = [float(st.step(in_memory[i % 16])[1]) for i in range(60)]
                curves[mode] = losses
            a, b = np.mean(curves["eager"][-10:]), np.mean(curves["cudagraph"][-10:])
            same = abs(a - b) <= 0.05 * a
            ok &= same
            print(
                f"{model_type:5} recon after 60 steps: eager {a:.5f}, cudagraph {b:.5f}"
                f" {'PASS' if same else 'FAIL'} (within 5 %)"
            )

        if not args.skip_train:
            out = Path(tmp) / "out"
            t = time.perf_counter()
            summary = train(
                paths,
                out / "w.safetensors",
                out / "c.tsv",
                out / "c.png",
                model_type="acai",
                arch="thesis",
                frames=40 * bs * 8,
                batch_size=bs,
                device="cuda",
                checkpoint_path=out / "ck.pt",
                checkpoint_every=40 * bs * 2,
                log_every=40 * bs,
            )
            print(
                f"train() acai on cuda: {summary['frames_seen']:,} frames, "
                f"{summary['frames_per_s'] / 1e6:.2f} M frames/s overall incl. logging and "
                f"checkpoints, mode {summary['compile']}, {time.perf_counter() - t:.1f} s"
            )
    print("ALL PASS" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
