"""The thesis' elbow method and how its choice moves with the largest k tried (max_k).

The thesis (section 4.3.2, "Elbow Method Implementation") draws a line from the first to the
last point of the inertia curve and picks the k whose point lies furthest from it. We use the
perpendicular distance, as the thesis does, without rescaling the axes first: the argmax of the
distance to a fixed chord does not depend on how either axis is scaled (scaling one axis by s
multiplies every point's cross product with the chord by s, and the chord's length is the same
for every point), so normalising both axes to [0, 1] picks the same k. It also equals the k of
the largest vertical gap between chord and curve (Kneedle's difference curve).

Because the chord ends at max_k, a larger max_k tilts the chord and moves the elbow to larger k
(thesis figure 4.6: k = 7 at max_k = 100, k = 25 at max_k = 500); :func:`elbow_table` records
that dependence.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from soundharvest.evaluate.metrics import METRIC_NAMES
from soundharvest.io import SoundharvestError, read_tsv


def chord_distances(
    ks: Sequence[int] | np.ndarray, inertia: Sequence[float] | np.ndarray
) -> np.ndarray:
    """Perpendicular distance of every point (k, inertia) to the chord from first to last point.

    :param ks: increasing k values.
    :param inertia: inertia at each k.
    :return: float64 array of distances, in the units of the axes (0 at both ends).
    """
    x = np.asarray(ks, dtype=np.float64)
    y = np.asarray(inertia, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise SoundharvestError(
            f"elbow: ks and inertia must be 1-D of equal length, got {x.shape} and {y.shape}"
        )
    if x.size == 0:
        raise SoundharvestError("elbow: empty inertia curve; run the k-means sweep first")
    if not np.all(np.isfinite(y)):
        raise SoundharvestError("elbow: inertia contains NaN or inf; re-run the k-means sweep")
    if x.size > 1 and np.any(np.diff(x) <= 0):
        raise SoundharvestError("elbow: ks must be strictly increasing (sort the sweep by k)")
    if x.size < 3:
        return np.zeros_like(x)
    dx, dy = x[-1] - x[0], y[-1] - y[0]
    length = np.hypot(dx, dy)
    if length == 0:
        return np.zeros_like(x)
    return np.abs(dx * (y - y[0]) - dy * (x - x[0])) / length


def elbow_k(ks: Sequence[int] | np.ndarray, inertia: Sequence[float] | np.ndarray) -> int:
    """The k furthest from the straight line joining the first and last inertia points.

    :param ks: increasing k values (e.g. 2..max_k).
    :param inertia: inertia at each k.
    :return: the elbow k (the smallest such k on ties; the first k if the curve has < 3 points).
    """
    d = chord_distances(ks, inertia)
    return int(np.asarray(ks)[int(np.argmax(d))])


def _labeling_names(df: pd.DataFrame) -> list[str]:
    return [c[: -len("_ri")] for c in df.columns if c.endswith("_ri") and not c.endswith("_ari")]


def elbow_table(
    sweep_df: pd.DataFrame,
    max_ks: Sequence[int],
    labelings: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The elbow k and the metrics at it for each max_k (the curve cut at k <= max_k).

    :param sweep_df: table from :func:`soundharvest.evaluate.kmeans.sweep` (or merged chunks):
        columns ``k``, ``inertia`` and ``<labelling>_<metric>``.
    :param max_ks: largest k of each curve, e.g. ``[100, 500]`` or ``range(20, 501, 10)``.
    :param labelings: labelling names whose metrics to report (default: all in the table).
    :return: one row per max_k: ``max_k``, ``max_k_used`` (the largest swept k <= max_k),
        ``clipped`` (True where max_k exceeds the largest swept k), ``elbow_k``, ``inertia`` and
        ``<labelling>_<metric>`` at the elbow.
    """
    if "k" not in sweep_df.columns or "inertia" not in sweep_df.columns:
        raise SoundharvestError("elbow_table: the sweep table needs columns 'k' and 'inertia'")
    df = sweep_df.sort_values("k").reset_index(drop=True)
    if df["k"].duplicated().any():
        raise SoundharvestError(
            "elbow_table: a k appears twice in the sweep table; merge chunks once"
        )
    names = _labeling_names(df) if labelings is None else list(labelings)
    metric_cols = [f"{n}_{m}" for n in names for m in METRIC_NAMES]
    missing = [c for c in metric_cols if c not in df.columns]
    if missing:
        raise SoundharvestError(f"elbow_table: sweep table lacks column(s) {missing}")
    k_all = df["k"].to_numpy()
    rows = []
    for max_k in max_ks:
        max_k = int(max_k)
        sel = df[k_all <= max_k]
        if sel.empty:
            raise SoundharvestError(
                f"elbow_table: max_k = {max_k} is below the smallest swept k ({int(k_all[0])})"
            )
        used = int(sel["k"].iloc[-1])
        kk = elbow_k(sel["k"].to_numpy(), sel["inertia"].to_numpy())
        at = sel[sel["k"] == kk].iloc[0]
        row = {
            "max_k": max_k,
            "max_k_used": used,
            "clipped": bool(max_k > int(k_all[-1])),
            "elbow_k": kk,
            "inertia": float(at["inertia"]),
        }
        for c in metric_cols:
            row[c] = float(at[c])
        rows.append(row)
    return pd.DataFrame(rows)


def merge_chunks(tsvs: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Join chunk tables of :func:`sweep` (TSV files) into one table sorted by k.

    :param tsvs: paths of the chunk TSVs.
    :return: the concatenated table; raises if columns differ or a k appears twice.
    """
    if not tsvs:
        raise SoundharvestError("merge_chunks: no chunk files given")
    frames = []
    cols: list[str] | None = None
    for p in tsvs:
        df = read_tsv(p, "sweep table", "re-run its chunk")
        if "k" not in df.columns or "inertia" not in df.columns:
            raise SoundharvestError(f"{p}: missing column 'k' or 'inertia'; re-run its chunk")
        if cols is None:
            cols = list(df.columns)
        elif list(df.columns) != cols:
            raise SoundharvestError(
                f"{p}: columns differ from {tsvs[0]}; re-run all chunks with the same labellings"
            )
        frames.append(df)
    out = pd.concat(frames, ignore_index=True).sort_values("k", kind="stable")
    dup = out["k"][out["k"].duplicated()]
    if len(dup):
        raise SoundharvestError(
            f"merge_chunks: k = {int(dup.iloc[0])} appears in more than one chunk; "
            "chunks must not overlap"
        )
    return out.reset_index(drop=True)
