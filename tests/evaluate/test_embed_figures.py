"""PCA baseline, 2-D projections and the evaluation figures."""

import numpy as np
import pandas as pd
import pytest

from soundharvest.evaluate.elbow import elbow_table
from soundharvest.evaluate.embed import pca_codes, project_2d
from soundharvest.evaluate.figures import (
    plot_elbow_vs_max_k,
    plot_inertia,
    plot_metrics_vs_k,
    plot_projection,
)
from soundharvest.io import SoundharvestError


def _two_groups(n=80, d=12, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.normal(size=(n, d)) + 8.0 * y[:, None] * (np.arange(d) < 3)
    return X.astype(np.float32), y


def test_pca_codes_shape_fit_on_and_variance_order():
    X, _ = _two_groups()
    Z = pca_codes(X, 4, seed=0)
    assert Z.shape == (80, 4) and Z.dtype == np.float32
    var = Z.var(axis=0)
    assert np.all(np.diff(var) <= 1e-6)  # components in decreasing variance
    # fitted on other frames: same axes applied to X
    Z2 = pca_codes(X[:10], 4, seed=0, fit_on=X)
    assert np.allclose(np.abs(Z2), np.abs(Z[:10]), atol=1e-4)
    with pytest.raises(SoundharvestError, match="n_components"):
        pca_codes(X, 50)
    with pytest.raises(SoundharvestError, match="features"):
        pca_codes(X, 2, fit_on=X[:, :5])


@pytest.mark.parametrize("method", ["pca", "tsne", "umap"])
def test_projection_deterministic_and_separates(method):
    X, y = _two_groups()
    a = project_2d(X, method, seed=1)
    b = project_2d(X, method, seed=1)
    assert a.shape == (80, 2)
    assert np.allclose(a, b)
    # the two well-separated groups stay apart: nearest neighbour in 2-D has the same label
    d = ((a[:, None] - a[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (y[d.argmin(1)] == y).mean() > 0.95


def test_projection_edge_cases():
    assert project_2d(np.ones((2, 3)), "umap").shape == (2, 2)
    assert project_2d(np.arange(5.0)[:, None], "tsne").shape == (5, 2)
    with pytest.raises(SoundharvestError, match="unknown projection"):
        project_2d(np.ones((5, 3)), "mds")


def _sweep(offset=0.0):
    ks = np.arange(2, 121)
    return pd.DataFrame(
        {
            "k": ks,
            "inertia": 1000.0 / ks,
            "family_ri": 0.5 + offset + ks / 1000,
            "family_ari": ks / 1000,
            "family_nmi": 0.2 + ks / 2000,
            "family_purity": 0.4 + offset + ks / 800,
        }
    )


def _is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_figures_write_pngs_atomically(tmp_path):
    sw = _sweep()
    el = elbow_table(sw, [50, 100, 120])
    plot_inertia(sw, el, tmp_path / "inertia.png", "ACAI, stft")
    plot_metrics_vs_k(
        {"acai": sw, "ae": _sweep(0.05)},
        ["purity", "ri", "nmi"],
        tmp_path / "m.png",
        labeling="family",
    )
    plot_elbow_vs_max_k(el, tmp_path / "e.png")
    xy = np.random.default_rng(0).normal(size=(60, 2))
    plot_projection(
        xy, np.arange(60) % 4, ["guitar", "vocal", "organ", "flute"], tmp_path / "p.png", "AE: PCA"
    )
    plot_projection(xy, np.array(["a", "b"] * 30), None, tmp_path / "q.png", "strings")
    for name in ("inertia.png", "m.png", "e.png", "p.png", "q.png"):
        assert _is_png(tmp_path / name)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
    with pytest.raises(SoundharvestError, match="family_purity"):
        plot_metrics_vs_k({"x": sw.drop(columns="family_purity")}, ["purity"], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
