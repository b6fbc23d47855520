"""Which typicality score behind ``unknown``, judged by the workflow's own ``calibrate`` on the
clip scores a run kept (``score_clips``): each score replaces the table's ``distance`` column
and the same :func:`soundharvest.calibrate.calibrate_file` fits and measures it (cross-fitted,
``distance_share: auto``, the run's budget), so every figure is the one the workflow would
report with that score.

    python experiments/typicality_scores.py results-recogniser-calxl/calibration/stft/weak.scores.tsv [...]

Scores (from the table's columns; no encoder runs):

- ``nearest`` (the workflow's): the mean over voiced frames of each frame's smallest squared
  Mahalanobis distance to a label's mean code;
- ``to_top``: the mean frame distance to the mean code of the clip's top label (the label it
  would be answered), so that a clip near some label but far from the one it is called counts
  as atypical;
- ``nearest_mean``: the smallest over labels of the mean frame distance to that label's mean.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from soundharvest.calibrate import (  # noqa: E402
    DISTANCE_PREFIX,
    LOGIT_PREFIX,
    calibrate_file,
    read_clip_scores,
)
from soundharvest.io import write_tsv  # noqa: E402

SCORES = ("nearest", "to_top", "nearest_mean")
FIGURES = (
    "ece",
    "on_topic_rejected",
    "open_set_rejected",
    "open_set_handled",
    "rejected_speech",
    "rejected_other_label",
    "synthetic_rejected",
    "distance_share",
)


def with_score(path: Path, score: str, out: Path) -> Path:
    table, labels = read_clip_scores(path)
    logits = table[[LOGIT_PREFIX + n for n in labels]].to_numpy(dtype=np.float64)
    per_label = table[[DISTANCE_PREFIX + n for n in labels]].to_numpy(dtype=np.float64)
    voiced = table["voiced_frames"].to_numpy() > 0
    if score == "to_top":
        top = np.nan_to_num(logits, nan=0.0).argmax(axis=1)
        table["distance"] = np.where(voiced, per_label[np.arange(len(table)), top], np.nan)
    elif score == "nearest_mean":
        table["distance"] = np.where(voiced, np.nanmin(per_label, axis=1), np.nan)
    write_tsv(out, table, float_format="%.9g")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scores", nargs="+", type=Path, help="score_clips tables (one per seed)")
    ap.add_argument("--budget", type=float, default=0.1, help="calibration.on_topic_reject")
    ap.add_argument("--share", default="auto", help="calibration.distance_share")
    args = ap.parse_args(argv)
    share = args.share if args.share == "auto" else float(args.share)
    got: dict[str, list[dict]] = {s: [] for s in SCORES}
    with tempfile.TemporaryDirectory() as tmp:
        for i, path in enumerate(args.scores):
            for score in SCORES:
                t = with_score(path, score, Path(tmp) / f"{i}-{score}.tsv")
                got[score].append(
                    calibrate_file(
                        t,
                        Path(tmp) / f"{i}-{score}.json",
                        Path(tmp) / f"{i}-{score}.clips.tsv",
                        on_topic_reject=args.budget,
                        distance_share=share,
                    )  # fmt: skip
                )
    print("score\tfigure\t" + "\t".join(f"run{i}" for i in range(len(args.scores))) + "\tmean\tstd")
    for score in SCORES:
        for fig in FIGURES:
            vals = np.array([np.nan if c.get(fig) is None else float(c[fig]) for c in got[score]])
            std = vals.std(ddof=1) if len(vals) > 1 else 0.0
            cells = "\t".join(f"{v:.3f}" for v in vals)
            print(f"{score}\t{fig}\t{cells}\t{np.nanmean(vals):.3f}\t{std:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
