"""Benchmark: frames/s of our STFT and mel features against plain numpy and librosa.

On ``--minutes`` (default 10) of 16 kHz audio, best of ``--repeat`` runs each:

- ours: ``soundharvest.features.compute_features`` (scaled [0, 1] output and energy);
- numpy reference: stride-tricks framing, Hann window, ``np.fft.rfft``, ``log10`` (and, for
  mel, the same filterbank as a dense matrix product), dB relative to the maximum, scaled;
- librosa: ``librosa.stft`` + ``amplitude_to_db`` / ``librosa.feature.melspectrogram`` +
  ``power_to_db``, scaled.

Bar (the issue's): ours >= 1.0x the numpy reference; the ratio to librosa is reported. Also
checks that all three agree to 1e-3 after scaling. Usage::

    python bench/bench_features.py [--minutes 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

from soundharvest.features import compute_features, mel_filterbank

SR = 16000
PARAMS = {
    "stft": {"n_fft": 1024, "hop_length": 512, "window": "hann", "top_db": 80},
    "mel": {
        "n_fft": 2048,
        "hop_length": 512,
        "n_mels": 512,
        "fmin": 0.0,
        "fmax": None,
        "top_db": 80,
    },
}


def numpy_reference(y: np.ndarray, kind: str) -> np.ndarray:
    """The plain numpy way: frame with stride tricks, window, rfft, log10, scale."""
    p = PARAMS[kind]
    n_fft, hop = p["n_fft"], p["hop_length"]
    padded = np.pad(y, n_fft // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    win = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    spec = np.fft.rfft(frames * win, axis=1)
    if kind == "stft":
        db = 20.0 * np.log10(np.maximum(np.abs(spec), 1e-5))
    else:
        power = np.abs(spec) ** 2
        db = 10.0 * np.log10(np.maximum(power @ mel_filterbank(SR, n_fft, 512, 0.0, None), 1e-10))
    db -= db.max()
    return (np.maximum(db, -80.0) + 80.0) / 80.0


def librosa_way(y: np.ndarray, kind: str) -> np.ndarray:
    import librosa

    if kind == "stft":
        s = np.abs(librosa.stft(y, n_fft=1024, hop_length=512))
        db = librosa.amplitude_to_db(s, ref=np.max, top_db=80)
    else:
        m = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=2048, hop_length=512, n_mels=512)
        db = librosa.power_to_db(m, ref=np.max, top_db=80)
    return ((db + 80.0) / 80.0).T


def best_time(fn, repeat: int) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", UserWarning)

    rng = np.random.default_rng(0)
    n = int(args.minutes * 60 * SR)
    t = np.arange(n) / SR
    # a slow sweep repeated every 10 s, plus noise: content does not change the cost
    y = (
        0.3 * np.sin(2 * np.pi * 4000 * (t % 10) ** 2 / 20) + 0.01 * rng.standard_normal(n)
    ).astype(np.float32)
    for kind in PARAMS:  # warm up: imports, filterbank cache, FFT plans
        compute_features(y[: SR * 5], SR, kind, PARAMS[kind])
        numpy_reference(y[: SR * 5], kind)
        librosa_way(y[: SR * 5], kind)

    print(f"{args.minutes:g} min of {SR} Hz audio, best of {args.repeat}")
    print(f"{'kind':<6}{'ours f/s':>12}{'numpy f/s':>12}{'librosa f/s':>13}{'vs numpy':>10}{'vs librosa':>12}"
          f"{'max |diff|':>12}  result")  # fmt: skip
    ok = True
    for kind in PARAMS:
        t_ours, ours = best_time(
            lambda k=kind: compute_features(y, SR, k, PARAMS[k])[0], args.repeat
        )
        t_np, ref = best_time(lambda k=kind: numpy_reference(y, k), args.repeat)
        t_lr, lr = best_time(lambda k=kind: librosa_way(y, k), args.repeat)
        frames = ours.shape[0]
        diff = max(float(np.abs(ours - lr).max()), float(np.abs(ref - lr).max()))
        r_np, r_lr = t_np / t_ours, t_lr / t_ours
        passed = r_np >= 1.0 and float(np.abs(ours - lr).max()) < 1e-3
        ok &= passed
        print(
            f"{kind:<6}{frames / t_ours:>12,.0f}{frames / t_np:>12,.0f}{frames / t_lr:>13,.0f}"
            f"{r_np:>9.2f}x{r_lr:>11.2f}x{diff:>12.1e}  {'PASS' if passed else 'FAIL'}"
        )
    print("bar: ours >= 1.0x the numpy reference, |ours - librosa| < 1e-3")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
