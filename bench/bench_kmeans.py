"""Benchmark: the k-means sweep k = 2..500 on 20,000 x 10 points against scikit-learn.

Usage:  python bench/bench_kmeans.py [--max-k 500] [--n 20000] [--threads N] [--robustness]

Data: gaussian blobs plus noise (40 blobs with standard deviations 0.5-2 in a [-10, 10]^10 box,
plus 10 % of points uniform in [-12, 12]^10), seed 0.

Ours: ``soundharvest.evaluate.kmeans.sweep`` over every k in 2..max_k, with the metrics of two
labellings (the blob id, and blob id mod 4) computed per k as in the workflow.

scikit-learn: ``KMeans(k, n_init="auto", random_state=0)`` (one greedy k-means++ start, Lloyd to
its tolerance) timed at k in {2, 10, 50, 100, 200, 300, 400, 500} (those <= max_k). The time of
the full loop over 2..max_k is interpolated: a least-squares line t(k) = a + b k (the cost of a
Lloyd iteration grows linearly in k; the iteration count is noise around a constant) is summed
over every integer k. The piecewise-linear interpolation through the measured points, summed the
same way, is printed as a cross-check.

Bars (the issue): ours >= 20x faster than the interpolated scikit-learn loop, and our inertia
<= 1.01 x scikit-learn's at k = 2, 10, 50, 100, 200, 500.
``--robustness`` repeats the inertia comparison (no timing bar) on uniform, anisotropic
heavy-tailed and "latent-like" (a random MLP of a 4-class mixture) data, which are not blobs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from soundharvest.evaluate.kmeans import sweep  # noqa: E402

SAMPLE_KS = (2, 10, 50, 100, 200, 300, 400, 500)
CHECK_KS = (2, 10, 50, 100, 200, 500)


def blobs_noise(n: int, d: int = 10, centers: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    nb = int(0.9 * n)
    C = rng.uniform(-10, 10, size=(centers, d))
    std = rng.uniform(0.5, 2.0, size=centers)
    lab = rng.integers(0, centers, size=nb)
    Xb = C[lab] + rng.normal(size=(nb, d)) * std[lab, None]
    Xn = rng.uniform(-12, 12, size=(n - nb, d))
    X = np.concatenate([Xb, Xn]).astype(np.float32)
    y = np.concatenate([lab, np.full(n - nb, centers)])
    p = rng.permutation(n)
    return X[p], y[p]


def uniform(n: int, d: int = 10, seed: int = 1):
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(n, d)).astype(np.float32), np.zeros(n, dtype=int)


def aniso(n: int, d: int = 10, seed: int = 2):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(d, d)) * np.logspace(0, -2, d)[None, :]
    return (rng.standard_t(3, size=(n, d)) @ A.T).astype(np.float32), np.zeros(n, dtype=int)


def latent_like(n: int, d: int = 10, seed: int = 3):
    rng = np.random.default_rng(seed)
    m = 64
    fam = rng.integers(0, 4, size=n)
    proto = rng.uniform(0, 1, size=(4, m))
    gain = rng.uniform(0.2, 1, size=(n, 1))
    Xin = np.clip(proto[fam] + 0.3 * rng.normal(size=(n, m)) * gain, 0, 1)
    W1 = rng.normal(size=(m, 100)) / np.sqrt(m)
    W2 = rng.normal(size=(100, d)) / 10
    h = Xin @ W1
    return (np.where(h > 0, h, 0.01 * h) @ W2).astype(np.float32), fam


def sklearn_at(X: np.ndarray, ks) -> dict[int, tuple[float, float, int]]:
    from sklearn.cluster import KMeans

    out = {}
    for k in ks:
        t = time.perf_counter()
        km = KMeans(k, n_init="auto", random_state=0).fit(X)
        out[k] = (time.perf_counter() - t, float(km.inertia_), int(km.n_iter_))
        print(f"  sklearn k={k:4d}: {out[k][0]:6.2f} s, {out[k][2]:3d} iterations", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-k", type=int, default=500)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--robustness", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"machine: {os.cpu_count()} CPUs, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}"
    )
    X, y = blobs_noise(args.n)
    ks = range(2, args.max_k + 1)
    sample = [k for k in SAMPLE_KS if k <= args.max_k]

    print(f"ours: sweep k = 2..{args.max_k} on {X.shape[0]} x {X.shape[1]} (blobs + noise)")
    t = time.perf_counter()
    df = sweep(X, ks, {"blob": y, "group": y % 4}, seed=0, device=args.device)
    ours_s = time.perf_counter() - t
    ours = df.set_index("k")
    print(f"  {ours_s:.1f} s, {int(df['n_iter'].sum())} Lloyd iterations in all chains")

    print("scikit-learn KMeans(n_init='auto') at sampled k:")
    sk = sklearn_at(X, sample)
    kk = np.array(sample, dtype=float)
    tt = np.array([sk[k][0] for k in sample])
    b, a = np.polyfit(kk, tt, 1)
    allk = np.arange(2, args.max_k + 1, dtype=float)
    sk_fit = float(np.clip(a + b * allk, tt.min(), None).sum())
    sk_pw = float(np.interp(allk, kk, tt).sum())
    ratio = sk_fit / ours_s
    print(
        f"scikit-learn loop k = 2..{args.max_k}, interpolated: {sk_fit:.0f} s (line fit), "
        f"{sk_pw:.0f} s (piecewise linear)"
    )
    print(
        f"ours: {ours_s:.1f} s  ->  speed-up {ratio:.1f}x (line fit), {sk_pw / ours_s:.1f}x "
        "(piecewise)"
    )
    print("thesis: 8 hours (28,800 s) for its sweep to 500")

    ok_speed = ratio >= 20.0
    ratios = {}
    for k in CHECK_KS:
        if k in sk:
            ratios[k] = ours.loc[k, "inertia"] / sk[k][1]
    ok_inertia = all(r <= 1.01 for r in ratios.values())
    print("inertia ours / sklearn: " + ", ".join(f"k={k}: {r:.4f}" for k, r in ratios.items()))
    print(f"speed bar (>= 20x): {'PASS' if ok_speed else 'FAIL'}")
    print(
        f"inertia bar (<= 1.01x at k = {', '.join(map(str, ratios))}): "
        f"{'PASS' if ok_inertia else 'FAIL'}"
    )

    if args.robustness:
        for name, make in (
            ("uniform", uniform),
            ("anisotropic", aniso),
            ("latent-like", latent_like),
        ):
            Xr, yr = make(args.n)
            t = time.perf_counter()
            dr = sweep(Xr, ks, {"y": yr}, seed=0, device=args.device).set_index("k")
            secs = time.perf_counter() - t
            from sklearn.cluster import KMeans

            rr = {
                k: dr.loc[k, "inertia"] / KMeans(k, n_init="auto", random_state=0).fit(Xr).inertia_
                for k in CHECK_KS
                if k <= args.max_k
            }
            print(
                f"robustness {name}: ours {secs:.1f} s; inertia ours / sklearn: "
                + ", ".join(f"k={k}: {r:.4f}" for k, r in rr.items())
                + ("  PASS" if all(r <= 1.01 for r in rr.values()) else "  FAIL")
            )
    return 0 if ok_speed and ok_inertia else 1


if __name__ == "__main__":
    sys.exit(main())
