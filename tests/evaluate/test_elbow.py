"""The thesis' elbow (max distance to the first-last chord) and its dependence on max_k."""

import numpy as np
import pandas as pd
import pytest

from soundharvest.evaluate.elbow import chord_distances, elbow_k, elbow_table
from soundharvest.io import SoundharvestError


def _knee_curve(ks, knee):
    """Piecewise linear: steep down to `knee`, then flat-ish; the knee is the elbow."""
    ks = np.asarray(ks, dtype=float)
    return np.where(ks <= knee, 1000 - 90 * (ks - 2), 1000 - 90 * (knee - 2) - 1 * (ks - knee))


def test_elbow_finds_known_knee():
    ks = np.arange(2, 101)
    assert elbow_k(ks, _knee_curve(ks, 9)) == 9
    assert elbow_k(ks, _knee_curve(ks, 30)) == 30


def test_elbow_is_invariant_to_axis_scaling():
    ks = np.arange(2, 201)
    y = 1.0 / ks + 0.001 * np.sqrt(ks)
    k1 = elbow_k(ks, y)
    assert elbow_k(ks, 1e6 * y) == k1
    assert elbow_k(ks, y - 5.0) == k1
    # normalising both axes to [0, 1] (the other common recipe) gives the same k
    yn = (y - y.min()) / (y.max() - y.min())
    xn = (ks - ks[0]) / (ks[-1] - ks[0])
    assert int(ks[np.argmax(chord_distances(xn, yn))]) == k1


def test_elbow_moves_right_with_max_k():
    # A smooth convex curve (inertia ~ k^-2/d shape): a longer chord tilts and picks a larger k.
    ks = np.arange(2, 501)
    y = ks ** (-0.6)
    chosen = [elbow_k(ks[ks <= m], y[ks <= m]) for m in (50, 100, 200, 500)]
    assert chosen == sorted(chosen)
    assert chosen[0] < chosen[-1]


def _sweep_table():
    ks = np.arange(2, 101)
    return pd.DataFrame(
        {
            "k": ks,
            "inertia": _knee_curve(ks, 12),
            "family_ri": ks / 100,
            "family_ari": ks / 200,
            "family_nmi": ks / 300,
            "family_purity": ks / 400,
        }
    )


def test_elbow_table_metrics_and_clipping():
    tab = elbow_table(_sweep_table(), [50, 100, 500])
    assert list(tab["max_k"]) == [50, 100, 500]
    assert list(tab["clipped"]) == [False, False, True]
    assert list(tab["max_k_used"]) == [50, 100, 100]
    row = tab.iloc[1]
    assert row["elbow_k"] == 12
    assert row["family_ri"] == pytest.approx(12 / 100)
    assert row["family_purity"] == pytest.approx(12 / 400)
    # the clipped row equals the row for the largest available max_k
    assert tab.iloc[2]["elbow_k"] == tab.iloc[1]["elbow_k"]


def test_elbow_table_errors():
    with pytest.raises(SoundharvestError, match="below the smallest"):
        elbow_table(_sweep_table(), [1])
    with pytest.raises(SoundharvestError, match="lacks column"):
        elbow_table(_sweep_table(), [50], labelings=["instrument"])


def test_short_curves():
    assert elbow_k([2], [5.0]) == 2
    assert elbow_k([2, 3], [5.0, 4.0]) == 2
    with pytest.raises(SoundharvestError):
        elbow_k([3, 2, 4], [1.0, 2.0, 3.0])
