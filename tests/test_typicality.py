"""The typicality test behind ``unknown`` (:mod:`soundharvest.typicality`) and the thresholds
that share one rejection budget (:func:`soundharvest.calibrate.choose_thresholds`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from soundharvest.calibrate import (
    answer_clips,
    choose_thresholds,
    fit_calibration,
    rejection_count,
    too_few_clips,
)
from soundharvest.io import SoundharvestError
from soundharvest.typicality import CodeDensity


def _blobs(n: int = 600, d: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.eye(3, d) * 6.0
    ids = rng.integers(0, 3, n)
    scale = np.linspace(0.5, 2.0, d)  # anisotropic: Mahalanobis is not Euclidean here
    return centres[ids] + rng.standard_normal((n, d)) * scale, ids


def test_distance_is_the_squared_mahalanobis_distance_to_the_nearest_label_mean() -> None:
    x, y = _blobs()
    dens = CodeDensity.fit(x, y, ["a", "b", "c"])
    q = np.random.default_rng(1).standard_normal((50, 5)) * 4.0
    direct = np.min(
        [np.einsum("nd,de,ne->n", q - m, dens.precision, q - m) for m in dens.means], axis=0
    )
    assert np.allclose(dens.distance(q), direct, rtol=1e-9, atol=1e-9)
    each = [np.einsum("nd,de,ne->n", q - m, dens.precision, q - m) for m in dens.means]
    assert np.allclose(dens.label_distances(q), np.stack(each, axis=1), rtol=1e-9, atol=1e-9)
    # The shared covariance is the within-label spread, not the spread of the whole set.
    cov = np.linalg.inv(dens.precision)
    assert np.allclose(np.sqrt(np.diag(cov)), np.linspace(0.5, 2.0, 5), rtol=0.15)
    # Training-like codes are near; far codes are far (chi-square with 5 dof: median ~4.4).
    assert np.median(dens.distance(x)) == pytest.approx(4.35, rel=0.2)
    assert dens.distance(np.full((1, 5), 30.0))[0] > 100 * np.median(dens.distance(x))


def test_a_label_without_codes_is_never_nearest_and_the_model_round_trips(tmp_path: Path) -> None:
    x, y = _blobs()
    y = np.where(y == 2, 0, y)  # label "c" has no codes
    dens = CodeDensity.fit(x, y, ["a", "b", "c"])
    assert list(dens.counts) == [int((y == 0).sum()), int((y == 1).sum()), 0]
    assert np.isfinite(dens.distance(x)).all()
    # Every label has a column of distances, NaN for "c"; the nearest is the smallest of the rest.
    per_label = dens.label_distances(x[:20])
    assert per_label.shape == (20, 3) and np.isnan(per_label[:, 2]).all()
    assert np.allclose(per_label[:, :2].min(axis=1), dens.distance(x[:20]))
    dens.save(tmp_path / "t.npz")
    back = CodeDensity.load(tmp_path / "t.npz")
    assert np.allclose(back.distance(x), dens.distance(x)) and back.labels == ["a", "b", "c"]
    np.save(tmp_path / "bad.npy", np.zeros(3))
    (tmp_path / "bad.npz").write_bytes((tmp_path / "bad.npy").read_bytes())
    with pytest.raises(SoundharvestError, match="bad.npz: not a typicality file"):
        CodeDensity.load(tmp_path / "bad.npz")
    with pytest.raises(SoundharvestError, match="expects"):
        dens.distance(np.zeros((2, 4)))


def test_the_raw_frames_many_nearly_constant_bins_still_give_finite_distances() -> None:
    rng = np.random.default_rng(0)
    x = np.zeros((400, 513))
    x[:, :40] = rng.random((400, 40))  # 473 bins that never move
    dens = CodeDensity.fit(x, rng.integers(0, 2, 400), ["a", "b"])
    d = dens.distance(np.vstack([x[:10], np.ones((1, 513))]))
    assert np.isfinite(d).all() and d[-1] > 10 * d[:10].max()


def test_fit_refuses_too_few_or_non_finite_codes() -> None:
    with pytest.raises(SoundharvestError, match="at least two codes"):
        CodeDensity.fit(np.zeros((1, 3)), np.zeros(1, int), ["a"])
    bad = np.zeros((5, 3))
    bad[2, 1] = np.nan
    with pytest.raises(SoundharvestError, match="NaN"):
        CodeDensity.fit(bad, np.zeros(5, int), ["a"])


def test_the_two_thresholds_share_one_rejection_budget() -> None:
    rng = np.random.default_rng(0)
    conf, dist = rng.random(1000), rng.random(1000) * 10
    c_thr, d_thr = choose_thresholds(conf, dist, 0.1, distance_share=0.5)
    by_dist = dist > d_thr
    rejected = by_dist | (conf < c_thr)
    assert rejected.mean() == pytest.approx(0.1, abs=0.005)
    assert by_dist.mean() == pytest.approx(0.05, abs=0.003)
    # All to the confidence: the distance test still turns away what lies beyond every clip.
    c_all, d_max = choose_thresholds(conf, dist, 0.1, 0.0)
    assert d_max == dist.max() and np.mean(conf < c_all) == pytest.approx(0.1, abs=0.002)
    # No usable distances: no distance test.
    assert choose_thresholds(conf, np.full(1000, np.nan), 0.1)[1] == float("inf")
    c_only, _ = choose_thresholds(conf, None, 0.1)
    assert np.mean(conf < c_only) == pytest.approx(0.1, abs=0.002)
    # All to the distance.
    c_thr, d_thr = choose_thresholds(conf, dist, 0.1, 1.0)
    assert c_thr <= conf.min() + 1e-9 and np.mean(dist > d_thr) == pytest.approx(0.1, abs=0.002)
    with pytest.raises(SoundharvestError, match="calibration.distance_share"):
        choose_thresholds(conf, dist, 0.1, 1.5)


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_a_rejection_level_makes_the_on_topic_budget_a_bound_that_holds_on_new_clips(
    share: float,
) -> None:
    # Thresholds set on 137 on-topic clips, measured on 20,000 new ones, 300 times over.
    rng = np.random.default_rng(1)
    new_c, new_d = rng.random(20000), rng.gamma(3.0, size=20000)
    rates: dict[float | None, list[float]] = {None: [], 0.9: []}
    for _ in range(300):
        c, d = rng.random(137), rng.gamma(3.0, size=137)
        for level in rates:
            c_thr, d_thr = choose_thresholds(c, d, 0.1, share, level)
            rates[level].append(float(np.mean((new_d > d_thr) | (new_c < c_thr))))
    plain, bound = np.array(rates[None]), np.array(rates[0.9])
    # The plain quantile rejects about the budget on average, so more than it a third of the time;
    assert plain.mean() == pytest.approx(0.1, abs=0.015) and (plain > 0.1).mean() > 0.3
    # with a level of 0.9 the budget holds nine times in ten, and the thresholds reject less.
    assert (bound > 0.1).mean() <= 0.13 and bound.mean() < plain.mean() - 0.02


def test_a_rejection_level_rejects_nothing_where_too_few_clips_can_promise_it() -> None:
    assert rejection_count(20, 0.1) == 2 and rejection_count(1000, 0.1, 0.9) in range(80, 100)
    # 22 clips: what lies beyond all of them is new with probability ~1/23, more than a 10 %
    # share with probability 0.9^22 < 0.1; on 20 clips (0.9^20 > 0.1) not even that.
    assert rejection_count(22, 0.1, 0.9) == 0 and rejection_count(20, 0.1, 0.9) == -1
    conf, dist = np.linspace(0.1, 1.0, 22), np.linspace(1.0, 5.0, 22)
    assert choose_thresholds(conf, dist, 0.1, 0.5, 0.9) == (0.0, dist.max())
    assert choose_thresholds(conf[:20], dist[:20], 0.1, 0.5, 0.9) == (0.0, float("inf"))
    # No budget: no threshold, whatever the clips.
    assert choose_thresholds(conf, dist, 0.0, 0.5) == (0.0, float("inf"))
    with pytest.raises(SoundharvestError, match="on_topic_reject_level"):
        rejection_count(50, 0.1, 1.5)


def _clips_table(kinds: list[str], truth: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {"off_topic_kind": kinds, "truth": truth, "voiced_frames": np.full(len(kinds), 50)}
    )


@pytest.mark.parametrize("tell", ["distance", "confidence"])
def test_auto_distance_share_gives_the_budget_to_the_test_that_rejects_off_topic_clips(
    tell: str,
) -> None:
    """``distance_share: auto`` on fitting clips whose off-topic ones are told apart by one
    test only: the off-topic clips are rejected, which giving the whole budget to the other test
    would not do; a fixed share is kept as given."""
    rng = np.random.default_rng(1)
    n_on, n_off, n_labels = 300, 60, 4
    labels = [f"l{i}" for i in range(n_labels)]
    y = rng.integers(0, n_labels, n_on + n_off)
    z = rng.normal(0, 0.3, (n_on + n_off, n_labels))
    sure = np.r_[rng.uniform(1.0, 3.0, n_on), np.full(n_off, 2.0 if tell == "distance" else 0.0)]
    z[np.arange(len(y)), y] += sure  # off-topic: as sure as on-topic, or not at all
    # Off-topic: farther than most on-topic clips, about half no farther than the farthest one
    # (beyond which a distance test with no share of the budget still rejects).
    dist = np.r_[rng.uniform(0, 10, n_on), rng.uniform(8.5, 12, n_off) if tell == "distance"
                 else rng.uniform(0, 10, n_off)]  # fmt: skip
    table = _clips_table(["on_topic"] * n_on + ["speech"] * n_off, [""] * (n_on + n_off))
    rows = np.ones(len(y), dtype=bool)

    def rejected(share: float | str) -> tuple[float, float, float]:
        cal = fit_calibration(z, y, dist, table, rows, True, 0.2, share, labels)
        unknown = answer_clips(z, dist, rows, cal, labels)[3] == "unknown"
        return cal["distance_share"], unknown[n_on:].mean(), unknown[:n_on].mean()

    share, off, on = rejected("auto")
    assert off > 0.9 and on <= 0.2 + 0.02  # within the on-topic budget
    # The budget went to the test that tells: the other test alone rejects few off-topic clips.
    wrong_test = 0.0 if tell == "distance" else 1.0
    assert rejected(wrong_test)[1] < off and share != wrong_test
    assert rejected(0.25)[0] == 0.25  # a fixed share is kept as given
    # Without truth.json there is nothing to choose by: half the budget to each test.
    blind = _clips_table([""] * len(y), [""] * len(y))
    assert (
        fit_calibration(z, y, dist, blind, rows, True, 0.2, "auto", labels)["distance_share"] == 0.5
    )


def test_too_few_clips_for_the_budget_are_named_with_how_many_it_needs() -> None:
    """6 clips and a 10 % budget reject none (the default run's calibration): the warning says
    so and asks for 10; 20 clips reject 2 and need no warning; a level asks for more."""
    msg = too_few_clips(6, 0.1)
    assert msg is not None and "only 6 fitting clips" in msg and "at least 10" in msg
    assert too_few_clips(20, 0.1) is None and too_few_clips(10, 0.1) is None
    assert too_few_clips(9, 0.1) is not None
    assert too_few_clips(0, 0.1) is None and too_few_clips(6, 0.0) is None
    assert too_few_clips(20, 0.1, 0.9) is not None  # the level promises nothing on 20 clips
    assert too_few_clips(22, 0.1, 0.9) is not None  # r = 0: only beyond every clip
    assert too_few_clips(1000, 0.1, 0.9) is None
