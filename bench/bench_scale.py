"""The acquisition and feature half at scale (issue 22): what a run costs per video as N grows.

N generated local files (two labels, ``--seconds`` of a tone plus noise each, 16-bit wav) go
through a real ``snakemake --cores 2`` on the ``local`` source up to the shuffle of the STFT
frames (search, download, convert, catalog, spectrogram, concatenate, shuffle). Per N it prints:

- the dry run's wall time before the run (up to the candidates checkpoint) and after it (the
  whole DAG of every per-video job, nothing left to do);
- the run's wall time and CPU (Snakemake and every job it ran: ``os.wait4`` of the process);
- Snakemake's own peak RSS (``VmHWM`` of its main process, sampled while it runs);
- the *work*: the download (a hard link and its decode check), decoding and the STFT of a sample
  of the same files, measured in this process and its ffmpeg children with the same functions
  the batch jobs call per video (:func:`~soundharvest.acquire.download.download_video`,
  :func:`~soundharvest.acquire.convert.convert_file`,
  :func:`~soundharvest.features.spectrogram_file`), per video;
- the *orchestration overhead* per video: the run's CPU minus N times the work, over N.

Bars (issue 22): overhead <= 0.1 s of CPU per video at N = 1,000, and the per-video cost at the
largest N <= 1.2x that at the smallest. ``make bench`` runs the sizes 200 and 1,000; the
issue's 5,000 is ``--sizes 200,1000,5000``.

Run: ``.venv/bin/python bench/bench_scale.py [--sizes 200,1000] [--seconds 2] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
LABELS = ("flute", "organ")
TARGET = "results/shuffle/stft/labels.json"
OVERHEAD_BAR = 0.1  # s of CPU per video at N = 1,000
GROWTH_BAR = 1.2  # per-video cost, largest N / smallest N


def make_library(root: Path, n: int, seconds: float, sample_rate: int = 22050) -> None:
    """``n`` wav files, half per label: a tone (a label's own range) with a little noise."""
    rng = np.random.default_rng(n)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    for i in range(n):
        label = LABELS[i % 2]
        (root / label).mkdir(parents=True, exist_ok=True)
        f0 = rng.uniform(200, 400) * (1 + i % 2)
        x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.standard_normal(t.size)
        sf.write(root / label / f"clip{i:05d}.wav", x.astype(np.float32), sample_rate, "PCM_16")


def write_config(work: Path, root: Path, n: int) -> Path:
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text(encoding="utf-8"))
    config.update(
        source="local",
        labels={label: [label] for label in LABELS},
        downloads="downloads",
        results="results",
    )
    config["search"] = {
        "results_per_query": n,
        "min_duration": 0.0,
        "local": {"root": str(root)},
    }
    config["features"] = {**config.get("features", {}), "kinds": ["stft"]}
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _peak_rss(pid: int, stop: threading.Event, out: list[int]) -> None:
    """Sample the process's VmHWM (its own peak RSS, kB) until it exits or ``stop`` is set."""
    status = Path(f"/proc/{pid}/status")
    while not stop.is_set():
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    out[0] = max(out[0], int(line.split()[1]))
        except OSError:
            return
        stop.wait(0.2)


def run_snakemake(work: Path, config: Path, *args: str) -> dict[str, float]:
    """Run snakemake in ``work``; wall, CPU (itself and all its jobs) and its own peak RSS."""
    cmd = [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "--cores", "2", "--nocolor"]
    cmd += [*args, TARGET, "--configfile", str(config)]
    log_path = work / f"snakemake{''.join(args)}.log"
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:  # a file, not a pipe: its log of thousands of jobs
        proc = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    peak, stop = [0], threading.Event()
    sampler = threading.Thread(target=_peak_rss, args=(proc.pid, stop, peak), daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = log_path.read_text(errors="replace")[-3000:]
        raise SystemExit(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{err}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": peak[0] / 1024}


def work_per_video(work: Path, sample: list[Path], config: dict) -> float:
    """CPU seconds per video of the real work, in this process and its children (ffmpeg):
    the download (a hard link and the decode check), decoding to 16 kHz and the STFT.

    :param sample: downloads' ``status.json`` files of the run (what the convert jobs read).
    """
    from soundharvest.acquire.convert import convert_file
    from soundharvest.acquire.download import download_video
    from soundharvest.features import spectrogram_file
    from soundharvest.io import read_json

    c, f = config["convert"], config["features"]
    out = work / "work_reference"
    out.mkdir()
    options = {**config["download"], "ffmpeg": c["ffmpeg"]}

    def one(i: int, path: Path) -> None:
        record = read_json(path)
        candidate = {"video_id": record["video_id"], "url": record["url"]}
        download_video("local", options, candidate, out / f"dl{i}")
        wav, status = out / f"{i}.wav", out / f"{i}.json"
        convert_file(path, wav, status, sample_rate=c["sample_rate"], max_seconds=c["max_seconds"],
                     min_seconds=c["min_seconds"], silence_dbfs=c["silence_dbfs"])  # fmt: skip
        spectrogram_file(wav, out / f"{i}.npy", out / f"{i}.energy.npy", "stft", f["stft"],
                         dtype=f["dtype"], silence_threshold_db=f["silence_threshold_db"])  # fmt: skip

    def cpu() -> float:
        own, kids = (
            resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    # One warm-up file: imports and first-call costs are a job's start-up, not its work.
    one(-1, sample[0])
    t0 = cpu()
    for i, path in enumerate(sample):
        one(i, path)
    return (cpu() - t0) / len(sample)


def measure(n: int, seconds: float, base: Path) -> dict[str, float]:
    from soundharvest.config import validate_config

    work = base / f"n{n}"
    root = work / "library"
    root.mkdir(parents=True)
    make_library(root, n, seconds)
    config_path = write_config(work, root, n)
    config = validate_config(yaml.safe_load(config_path.read_text()))
    dry = run_snakemake(work, config_path, "-n")  # up to the checkpoint: no video known yet
    run = run_snakemake(work, config_path)
    again = run_snakemake(work, config_path, "-n")  # the whole DAG, every video, nothing to do
    files = sorted((work / "downloads").rglob("*.status.json"))
    sample = files[:: max(1, len(files) // 50)][:50]
    work_cpu = work_per_video(work, sample, config)
    per_video = run["cpu"] / n
    return {
        "n": n,
        "dry_wall": dry["wall"],
        "dry_full_wall": again["wall"],
        "wall": run["wall"],
        "cpu": run["cpu"],
        "cpu_per_video": per_video,
        "wall_per_video": run["wall"] / n,
        "work_per_video": work_cpu,
        "overhead_per_video": per_video - work_cpu,
        "snakemake_rss_mb": run["rss_mb"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="200,1000", help="comma-separated N (default 200,1000)")
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each file (s)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the runs in this folder")
    args = ap.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    base = args.keep or Path(tempfile.mkdtemp(prefix="soundharvest-scale-"))
    base.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for n in sizes:
            r = measure(n, args.seconds, base)
            rows.append(r)
            print(
                f"N = {n:>5}: dry run {r['dry_wall']:.1f} s, of the whole DAG "
                f"{r['dry_full_wall']:.1f} s; run {r['wall']:.0f} s wall, "
                f"{r['cpu']:.0f} s CPU = {r['cpu_per_video']:.3f} s/video "
                f"(work {r['work_per_video']:.4f}, overhead {r['overhead_per_video']:.3f}); "
                f"snakemake peak RSS {r['snakemake_rss_mb']:.0f} MB",
                flush=True,
            )
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    print("\n| N | dry run s (first / whole DAG) | wall s | CPU s | CPU s/video | work s/video "
          "| overhead s/video | snakemake RSS MB |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['n']:,} | {r['dry_wall']:.1f} / {r['dry_full_wall']:.1f} | {r['wall']:.0f} | "
              f"{r['cpu']:.0f} | "
              f"{r['cpu_per_video']:.3f} | {r['work_per_video']:.4f} | "
              f"{r['overhead_per_video']:.3f} | {r['snakemake_rss_mb']:.0f} |")  # fmt: skip
    at = [r for r in rows if r["n"] >= 1000] or rows[-1:]
    over = at[0]["overhead_per_video"]
    verdict = "PASS" if over <= OVERHEAD_BAR else "FAIL"
    print(f"{verdict}: orchestration overhead {over:.3f} s CPU per video at N = {at[0]['n']:,} "
          f"(bar <= {OVERHEAD_BAR})")  # fmt: skip
    if len(rows) > 1:
        growth = rows[-1]["cpu_per_video"] / rows[0]["cpu_per_video"]
        verdict = "PASS" if growth <= GROWTH_BAR else "FAIL"
        print(f"{verdict}: per-video CPU at N = {rows[-1]['n']:,} is {growth:.2f}x that at "
              f"N = {rows[0]['n']:,} (bar <= {GROWTH_BAR})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
