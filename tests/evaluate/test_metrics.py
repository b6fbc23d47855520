"""Clustering metrics against scikit-learn and a hand-computed purity."""

import numpy as np
import pytest
from sklearn.metrics import (
    adjusted_rand_score,
    normalized_mutual_info_score,
    rand_score,
)

from soundharvest.evaluate.metrics import (
    cluster_metrics,
    contingency,
    contingency_codes,
    metrics_from_contingency,
    purity,
)
from soundharvest.io import SoundharvestError

CASES = [
    ([0, 0, 1, 1], [0, 0, 1, 1]),
    ([0, 0, 1, 1], [1, 1, 0, 0]),
    ([0, 0, 1, 2], [0, 0, 1, 1]),
    ([0, 0, 0, 0], [0, 1, 2, 3]),
    ([0, 1, 2, 3], [0, 0, 0, 0]),
    ([0, 0, 0, 0], [5, 5, 5, 5]),
    (["a", "b", "a", "c", "b", "a"], [0, 1, 0, 1, 2, 2]),
    ([1], [1]),
]


def _random_case(seed: int, n: int, kt: int, kp: int):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, kt, n)
    # correlated prediction: keep the class for half the points
    p = np.where(rng.random(n) < 0.5, t % kp, rng.integers(0, kp, n))
    return t, p


@pytest.mark.parametrize("t,p", CASES + [_random_case(s, 500, 4, 37) for s in range(3)])
def test_metrics_match_sklearn(t, p):
    m = cluster_metrics(t, p)
    assert m["ri"] == pytest.approx(rand_score(t, p), abs=1e-12)
    assert m["ari"] == pytest.approx(adjusted_rand_score(t, p), abs=1e-12)
    assert m["nmi"] == pytest.approx(normalized_mutual_info_score(t, p), abs=1e-12)


def test_metrics_large_n_no_overflow():
    t, p = _random_case(7, 60_000, 10, 500)
    m = cluster_metrics(t, p)
    assert m["ri"] == pytest.approx(rand_score(t, p), abs=1e-12)
    assert m["ari"] == pytest.approx(adjusted_rand_score(t, p), abs=1e-12)
    assert m["nmi"] == pytest.approx(normalized_mutual_info_score(t, p), abs=1e-10)


def test_purity_by_hand():
    # clusters: 0 -> {a, a, b}, 1 -> {b, b, c, a}, 2 -> {c}
    t = ["a", "a", "b", "b", "b", "c", "a", "c"]
    p = [0, 0, 0, 1, 1, 1, 1, 2]
    # majority counts: 2 (a) + 2 (b) + 1 (c) = 5 of 8
    assert purity(t, p) == pytest.approx(5 / 8)
    assert purity(t, t) == 1.0
    assert purity(t, np.arange(len(t))) == 1.0  # singletons are pure
    assert purity(t, np.zeros(len(t))) == pytest.approx(3 / 8)  # share of the largest class


def test_contingency_fast_path_equals_generic():
    t, p = _random_case(3, 300, 4, 9)
    c = contingency(t, p)
    assert c.sum() == 300
    fast = contingency_codes(t, 4, p, 9)
    # generic drops labels that never occur; here all occur
    assert np.array_equal(c, fast)
    assert metrics_from_contingency(fast) == cluster_metrics(t, p)


def test_empty_cluster_columns_do_not_change_metrics():
    t, p = _random_case(4, 200, 3, 5)
    c = contingency_codes(t, 3, p, 8)  # three empty clusters
    assert metrics_from_contingency(c) == pytest.approx(cluster_metrics(t, p))


def test_length_mismatch_is_a_user_error():
    with pytest.raises(SoundharvestError, match="labels_pred"):
        cluster_metrics([0, 1, 1], [0, 1])
