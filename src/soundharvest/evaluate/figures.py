"""Evaluation figures (PNG, written atomically): inertia and elbows, metrics vs k, projections.

Thesis counterparts: figure 4.6 (:func:`plot_inertia`), figures 4.7-4.9
(:func:`plot_elbow_vs_max_k`), figure 4.10 (:func:`plot_metrics_vs_k`), figure 4.3 and
appendix A (:func:`plot_projection`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: cluster nodes and CI have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from soundharvest.io import SoundharvestError, atomic_path  # noqa: E402

METRIC_LABELS = {
    "purity": "Purity",
    "ri": "Rand index",
    "ari": "Adjusted Rand index",
    "nmi": "NMI",
}


def _save(fig: plt.Figure, out_png: str | os.PathLike) -> None:
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_inertia(
    sweep_df: pd.DataFrame,
    elbows_df: pd.DataFrame | None,
    out_png: str | os.PathLike,
    title: str = "k-means inertia",
) -> None:
    """Inertia vs k with the elbow for each max_k marked (and its chord dashed).

    :param sweep_df: sweep table with ``k`` and ``inertia``.
    :param elbows_df: :func:`soundharvest.evaluate.elbow.elbow_table` output, or None.
    :param out_png: output path.
    :param title: figure title.
    """
    df = sweep_df.sort_values("k")
    k = df["k"].to_numpy()
    y = df["inertia"].to_numpy()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(k, y, color="0.2", lw=1.2, label="inertia")
    if elbows_df is not None and len(elbows_df):
        colors = plt.cm.viridis(np.linspace(0.0, 0.9, len(elbows_df)))
        for color, (_, row) in zip(colors, elbows_df.iterrows(), strict=True):
            used = int(row["max_k_used"])
            sel = k <= used
            ax.plot([k[sel][0], k[sel][-1]], [y[sel][0], y[sel][-1]], ls="--", lw=0.8, color=color)
            ax.plot(
                [row["elbow_k"]],
                [row["inertia"]],
                "o",
                ms=8,
                mfc="none",
                mew=2,
                color=color,
                label=f"elbow k = {int(row['elbow_k'])} (max_k = {int(row['max_k'])})",
            )
    ax.set_xlabel("number of clusters k")
    ax.set_ylabel("inertia (sum of squared distances)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, out_png)


def plot_metrics_vs_k(
    sweeps: Mapping[str, pd.DataFrame],
    metric_names: Sequence[str] = ("purity", "ri", "nmi"),
    out_png: str | os.PathLike = "metrics_vs_k.png",
    labeling: str = "family",
    title: str | None = None,
) -> None:
    """Metrics vs k, one panel per metric and one line per model (thesis figure 4.10).

    :param sweeps: model name -> sweep table.
    :param metric_names: metrics to plot (``purity``, ``ri``, ``ari``, ``nmi``).
    :param out_png: output path.
    :param labeling: which labelling's metrics (column prefix), e.g. ``family``.
    :param title: figure title (default names the labelling).
    """
    if not sweeps:
        raise SoundharvestError("plot_metrics_vs_k: no sweep tables given")
    fig, axes = plt.subplots(
        1, len(metric_names), figsize=(4.2 * len(metric_names), 3.8), squeeze=False
    )
    for ax, metric in zip(axes[0], metric_names, strict=True):
        col = f"{labeling}_{metric}"
        for model, df in sweeps.items():
            if col not in df.columns:
                raise SoundharvestError(f"plot_metrics_vs_k: sweep of {model!r} has no {col!r}")
            d = df.sort_values("k")
            ax.plot(d["k"], d[col], lw=1.2, label=model)
        ax.set_xlabel("number of clusters k")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.set_title(METRIC_LABELS.get(metric, metric))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title or f"k-means clusters vs {labeling} labels")
    fig.tight_layout()
    _save(fig, out_png)


def plot_elbow_vs_max_k(
    elbows_df: pd.DataFrame,
    out_png: str | os.PathLike,
    labeling: str = "family",
    metric_names: Sequence[str] = ("purity", "ri", "nmi"),
    title: str = "elbow choice vs max_k",
) -> None:
    """Chosen k and the metrics at it as functions of max_k (thesis figures 4.7-4.9).

    :param elbows_df: :func:`soundharvest.evaluate.elbow.elbow_table` output (several max_k).
    :param out_png: output path.
    :param labeling: labelling whose metrics to show.
    :param metric_names: metrics to show.
    :param title: figure title.
    """
    df = elbows_df.sort_values("max_k")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(df["max_k"], df["elbow_k"], "o-", color="C0")
    ax1.set_xlabel("max_k")
    ax1.set_ylabel("elbow k")
    ax1.set_title("chosen k")
    ax1.grid(alpha=0.3)
    for metric in metric_names:
        col = f"{labeling}_{metric}"
        if col in df.columns:
            ax2.plot(df["max_k"], df[col], "o-", label=METRIC_LABELS.get(metric, metric))
    ax2.set_xlabel("max_k")
    ax2.set_ylabel(f"score at the elbow ({labeling})")
    ax2.set_title("metrics at the chosen k")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, out_png)


def plot_projection(
    xy: np.ndarray,
    labels: Sequence | np.ndarray,
    names: Sequence[str] | None,
    out_png: str | os.PathLike,
    title: str,
) -> None:
    """2-D scatter of codes coloured by class (thesis figure 4.3).

    :param xy: ``(n, 2)`` projected codes.
    :param labels: class per point: integer codes into ``names``, or the names themselves.
    :param names: class names indexed by the integer labels; None when ``labels`` are names.
    :param out_png: output path.
    :param title: figure title (e.g. ``"ACAI, stft: UMAP"``).
    """
    xy = np.asarray(xy)
    lab = np.asarray(labels)
    if xy.ndim != 2 or xy.shape[1] != 2 or lab.shape != (xy.shape[0],):
        raise SoundharvestError(
            f"plot_projection: need xy (n, 2) and n labels, got {xy.shape} and {lab.shape}"
        )
    if names is not None:
        text = np.asarray([str(names[int(i)]) for i in lab])
    else:
        text = lab.astype(str)
    classes = sorted(set(text.tolist()))
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(6, 5.5))
    size = float(np.clip(3000.0 / max(len(xy), 1), 2.0, 30.0))  # smaller dots for more points
    for i, c in enumerate(classes):
        sel = text == c
        ax.scatter(xy[sel, 0], xy[sel, 1], s=size, alpha=0.7, color=cmap(i % cmap.N), label=c)
    ax.set_xlabel("component 1")
    ax.set_ylabel("component 2")
    ax.set_title(title)
    ax.legend(fontsize=8, markerscale=max(1.0, 12.0 / size), loc="best")
    _save(fig, out_png)
