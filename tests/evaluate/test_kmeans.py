"""Fast k-means and the k sweep: exactness, quality against scikit-learn, chunks, metrics."""

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans

from soundharvest.evaluate.elbow import merge_chunks
from soundharvest.evaluate.kmeans import kmeans, sweep
from soundharvest.evaluate.metrics import cluster_metrics
from soundharvest.io import SoundharvestError, write_tsv


def _blobs_noise(n=3000, d=6, centers=12, seed=0):
    rng = np.random.default_rng(seed)
    nb = int(0.9 * n)
    C = rng.uniform(-10, 10, size=(centers, d))
    lab = rng.integers(0, centers, nb)
    Xb = C[lab] + rng.normal(size=(nb, d)) * rng.uniform(0.5, 2.0, centers)[lab, None]
    Xn = rng.uniform(-12, 12, size=(n - nb, d))
    return np.concatenate([Xb, Xn]).astype(np.float32)


def _aniso(n=3000, d=6, seed=1):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(d, d)) * np.logspace(0, -2, d)[None, :]
    return (rng.standard_t(3, size=(n, d)) @ A.T).astype(np.float32)


def _inertia(X, C, a):
    X = np.asarray(X, dtype=np.float64)
    return float(((X - C[a]) ** 2).sum())


def _lloyd_reference(X, C0, iters=500):
    X = np.asarray(X, dtype=np.float64)
    C = C0.astype(np.float64).copy()
    a = None
    for _ in range(iters):
        d = ((X[:, None, :] - C[None]) ** 2).sum(2)
        a_new = d.argmin(1)
        if a is not None and np.array_equal(a, a_new):
            break
        a = a_new
        for j in range(len(C)):
            if (a == j).any():
                C[j] = X[a == j].mean(0)
    return C, a


def test_lloyd_matches_full_reference():
    X = _aniso(n=1500, d=4)
    rng = np.random.default_rng(5)
    C0 = X[rng.choice(len(X), 15, replace=False)].astype(np.float64)
    C, a, inertia = kmeans(X, 15, init=C0, tol=0.0, device="cpu")
    Cr, ar = _lloyd_reference(X, C0)
    assert np.array_equal(a, ar)
    assert np.allclose(C, Cr, atol=1e-6)
    assert inertia == pytest.approx(_inertia(X, Cr, ar), rel=1e-9)


def test_converged_solution_is_a_lloyd_fixed_point():
    X = _blobs_noise(n=2000)
    C, a, inertia = kmeans(X, 25, seed=3, tol=0.0, device="cpu")
    d = ((X[:, None, :].astype(np.float64) - C[None]) ** 2).sum(2)
    # every point at (one of) its nearest centroids, up to float32 rounding of the search
    assert np.all(d[np.arange(len(X)), a] <= d.min(1) * (1 + 1e-5) + 1e-6)
    for j in range(25):
        assert np.allclose(C[j], X[a == j].mean(0), atol=1e-5)
    assert inertia == pytest.approx(_inertia(X, C, a), rel=1e-9)


@pytest.mark.parametrize("make", [_blobs_noise, _aniso])
def test_kmeans_inertia_within_one_percent_of_sklearn(make):
    X = make()
    for k in (2, 10, 40):
        ours = kmeans(X, k, seed=0, device="cpu")[2]
        ref = KMeans(k, n_init="auto", random_state=0).fit(X).inertia_
        assert ours <= 1.01 * ref, (k, ours / ref)


@pytest.mark.parametrize("make", [_blobs_noise, _aniso])
def test_sweep_inertia_within_one_percent_of_sklearn(make):
    X = make()
    df = sweep(X, range(2, 81), {}, seed=0, device="cpu").set_index("k")
    for k in (2, 10, 40, 80):
        ref = KMeans(k, n_init="auto", random_state=0).fit(X).inertia_
        assert df.loc[k, "inertia"] <= 1.01 * ref, (k, df.loc[k, "inertia"] / ref)
    # more clusters never fit worse by much (a warm start keeps the previous solution's quality)
    assert (np.diff(df["inertia"].to_numpy()) < 0.02 * df["inertia"].to_numpy()[1:]).all()


def test_sweep_finds_true_clusters_on_separated_blobs():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(5, 8)) * 20
    y = rng.integers(0, 5, 1500)
    X = (centers[y] + rng.normal(size=(1500, 8))).astype(np.float32)
    names = np.array(["cello", "flute", "organ", "guitar", "vocal"])[y]
    df = sweep(X, range(2, 11), {"family": names, "coarse": y % 2}, device="cpu")
    row = df.set_index("k").loc[5]
    assert row["family_purity"] > 0.999
    assert row["family_ari"] > 0.999
    assert row["family_nmi"] > 0.999
    expected_cols = {"k", "inertia", "n_iter", "start", "chain", "seconds"} | {
        f"{lab}_{m}" for lab in ("family", "coarse") for m in ("ri", "ari", "nmi", "purity")
    }
    assert set(df.columns) == expected_cols
    assert df.set_index("k").loc[2, "family_purity"] < 0.7  # 2 clusters cannot hold 5 families


def test_sweep_rows_match_callback_and_metrics():
    X = _aniso(n=800, d=5)
    y = (X[:, 0] > 0).astype(int)
    seen = {}

    def keep(k, C, a):
        seen[k] = (C, a)

    df = sweep(X, range(3, 9), {"sign": y}, device="cpu", on_result=keep)
    assert sorted(seen) == list(range(3, 9))
    for _, row in df.iterrows():
        C, a = seen[int(row["k"])]
        assert C.shape == (row["k"], 5)
        assert row["inertia"] == pytest.approx(_inertia(X, C, a), rel=1e-9)
        assert row["sign_purity"] == pytest.approx(cluster_metrics(y, a)["purity"])
        assert row["sign_ri"] == pytest.approx(cluster_metrics(y, a)["ri"])


def test_chunks_are_deterministic_and_merge(tmp_path):
    X = _blobs_noise(n=1000, d=4)
    y = np.arange(1000) % 3
    a1 = sweep(X, range(2, 8), {"f": y}, seed=4, device="cpu")
    a2 = sweep(X, range(8, 13), {"f": y}, seed=4, device="cpu")
    again = sweep(X, range(8, 13), {"f": y}, seed=4, device="cpu")
    cols = [c for c in a2.columns if c != "seconds"]
    pd.testing.assert_frame_equal(a2[cols], again[cols])
    assert a2["start"].iloc[0] == "fresh"
    write_tsv(tmp_path / "b.tsv", a2)
    write_tsv(tmp_path / "a.tsv", a1)
    merged = merge_chunks([tmp_path / "b.tsv", tmp_path / "a.tsv"])
    assert list(merged["k"]) == list(range(2, 13))
    assert merged.set_index("k").loc[9, "inertia"] == pytest.approx(
        a2.set_index("k").loc[9, "inertia"]
    )
    write_tsv(tmp_path / "c.tsv", a2.iloc[:2])
    with pytest.raises(SoundharvestError, match="more than one chunk"):
        merge_chunks([tmp_path / "a.tsv", tmp_path / "b.tsv", tmp_path / "c.tsv"])


def test_bad_input_is_a_user_error():
    X = _aniso(n=50, d=3)
    with pytest.raises(SoundharvestError, match="ks"):
        sweep(X, range(2, 60), {}, device="cpu")
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(SoundharvestError, match="NaN"):
        kmeans(bad, 3, device="cpu")
    with pytest.raises(SoundharvestError, match="one label per point"):
        sweep(X, [2, 3], {"family": np.zeros(49)}, device="cpu")


def test_duplicate_points_and_k_equal_n():
    X = np.repeat(np.arange(6, dtype=np.float32)[:, None], 3, axis=0)  # 18 points, 6 distinct
    C, a, inertia = kmeans(X, 6, device="cpu")
    assert inertia == pytest.approx(0.0, abs=1e-9)
    C, a, inertia = kmeans(np.arange(6, dtype=np.float32)[:, None], 6, device="cpu")
    assert inertia == pytest.approx(0.0, abs=1e-9)
    assert len(set(a.tolist())) == 6


def test_chains_merge_once_they_agree():
    """Past the data's structure the chains agree; then one chain goes on, nearly as good."""
    X = _blobs_noise(n=20000, d=10, centers=40)  # the benchmark's shape: 40 blobs plus noise
    full = sweep(X, range(2, 121), {}, seed=0, device="cpu", merge_tol=0).set_index("k")
    merged = sweep(X, range(2, 121), {}, seed=0, device="cpu").set_index("k")
    alone = merged.index[merged["n_iter"] < 0.6 * full["n_iter"]]
    assert len(alone), "the chains never merged"
    first = int(alone.min())
    assert 40 < first < 110  # not before the 40 blobs are found
    # after the merge one chain (the winner at the merge) produces every row ...
    assert merged.loc[first:, "chain"].nunique() == 1
    # ... for well under the work of three ...
    assert merged.loc[first:, "n_iter"].sum() < 0.6 * full.loc[first:, "n_iter"].sum()
    # ... with the same rows before the merge and nearly the same inertia after it
    before = merged.index[merged.index < first - 10]
    pd.testing.assert_series_equal(merged.loc[before, "inertia"], full.loc[before, "inertia"])
    assert (merged["inertia"] <= 1.01 * full["inertia"]).all()

    never = sweep(X[:3000], range(2, 60), {}, seed=0, device="cpu", merge_patience=10**6)
    assert never["chain"].nunique() > 1  # patience never reached: the chains all run
