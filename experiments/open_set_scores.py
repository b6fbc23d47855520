"""Issue 21: which typicality score tells the open set from on-topic clips best?

The ``unknown`` answer's distance test (:mod:`soundharvest.typicality`) is a clip's mean, over
its voiced frames, of the smallest squared Mahalanobis distance from a frame's code to a label's
mean training code. This script scores a calibrated run's held-out clips (the ones ``calibrate``
uses) and the synthetic clips with other ways to summarise the same codes, and reports for each:

- AUROC of on-topic clips against each off-topic kind and the synthetic clips;
- cross-fitted, as ``calibrate`` does (each half's threshold set on the other half's on-topic
  clips, the distance test taking the whole 10 % budget): on-topic rejected, speech rejected,
  synthetic rejected, open set handled (``other_label`` clips count as handled when the
  recogniser names the instrument they hold).

Scores:

- ``mean``: the mean frame distance (what the workflow uses);
- ``median``, ``q90``: the median and 90th percentile of the frame distances;
- ``log``: the mean of log(1 + frame distance);
- ``relative``: the relative Mahalanobis distance (Ren et al. 2021): the frame's distance to its
  nearest label minus its distance to one Gaussian over all training codes (whose covariance is
  the shared one plus the spread of the label means), mean over frames;
- ``clip_mean``: the distance of the clip's mean code;
- ``to_top``: the mean frame distance to the mean of the clip's top label (not the nearest).

Run: ``.venv/bin/python experiments/open_set_scores.py results-recogniser-cal stft weak
downloads/demo/<store>`` (the frames are cached in ``/tmp/open_set_<run>_<kind>_<model>.npz``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from soundharvest.calibrate import _held_out_clips, _truth_of, split_half, synthetic_clips
from soundharvest.features import frame_rms_db
from soundharvest.predict import Predictor


def frames(pred: Predictor, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, log-probabilities) of a signal's voiced frames."""
    voiced = frame_rms_db(x, pred.kind, pred.features["params"]) >= pred.silence_dbfs
    if not voiced.any():
        return np.zeros((0, pred.typicality.dim)), np.zeros((0, len(pred.labels)))
    codes = pred.encode(pred.frames_of(x))[voiced]
    return codes, pred.label_model.log_probs(codes)


def collect(run: Path, kind: str, model: str, store: Path, cache: Path, holdout: float) -> dict:
    if cache.exists():
        return dict(np.load(cache, allow_pickle=True))
    pred = Predictor.load(run / "predictor" / kind / model, calibrated=False)
    clips = _held_out_clips(run / "catalog.csv", pred.labels, holdout)
    rows, codes, logp = [], [], []
    for rec in clips.to_dict("records"):
        vid = str(rec["video_id"])
        x = pred.decode(run / "convert" / f"{vid}.wav")
        c, lp = frames(pred, x)
        truth = _truth_of(store, vid) or {}
        dom = truth.get("dominant") or {}
        rows.append((vid, rec["label"], truth.get("off_topic_kind") or "on_topic",
                     dom.get("label") or dom.get("kind") or ""))  # fmt: skip
        codes.append(c)
        logp.append(lp)
    for name, x in synthetic_clips(5, sample_rate=pred.sample_rate, seed=0):
        c, lp = frames(pred, x)
        rows.append((name, "", "synthetic", name.split("-")[0]))
        codes.append(c)
        logp.append(lp)
    out = {
        "rows": np.array(rows, dtype=object),
        "codes": np.array(codes, dtype=object),
        "logp": np.array(logp, dtype=object),
        "means": pred.typicality.means,
        "precision": pred.typicality.precision,
        "counts": pred.typicality.counts,
        "labels": np.array(pred.labels, dtype=object),
    }
    np.savez(cache, **out)
    return out


def scorers(means: np.ndarray, precision: np.ndarray, counts: np.ndarray) -> dict:
    present = np.isfinite(means).all(axis=1)
    m, w = means[present], counts[present] / counts[present].sum()
    mu0 = w @ m
    between = (m - mu0).T @ np.diag(w) @ (m - mu0)
    p0 = np.linalg.pinv(np.linalg.pinv(precision) + between)

    def md_all(c: np.ndarray) -> np.ndarray:
        d = c[:, None, :] - means[None]  # every label (a label without codes: NaN, never met)
        return np.einsum("nkd,de,nke->nk", d, precision, d)

    def md(c: np.ndarray) -> np.ndarray:
        d = c[:, None, :] - m[None]
        return np.einsum("nkd,de,nke->nk", d, precision, d).min(axis=1)

    def md0(c: np.ndarray) -> np.ndarray:
        d = c - mu0
        return np.einsum("nd,de,ne->n", d, p0, d)

    return {
        "mean": lambda c, lp: md(c).mean(),
        "median": lambda c, lp: np.median(md(c)),
        "q90": lambda c, lp: np.quantile(md(c), 0.9),
        "log": lambda c, lp: np.log1p(md(c)).mean(),
        "relative": lambda c, lp: (md(c) - md0(c)).mean(),
        "clip_mean": lambda c, lp: md(c.mean(axis=0, keepdims=True))[0],
        "to_top": lambda c, lp: md_all(c)[:, int(lp.mean(axis=0).argmax())].mean(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("kind")
    ap.add_argument("model")
    ap.add_argument("store", type=Path)
    ap.add_argument("--budget", type=float, default=0.1, help="on-topic rejection budget")
    ap.add_argument("--holdout", type=float, default=0.5, help="the run's calibration.holdout")
    a = ap.parse_args()
    cache = Path(f"/tmp/open_set_{a.run.name}_{a.kind}_{a.model}.npz")
    data = collect(a.run, a.kind, a.model, a.store, cache, a.holdout)
    rows = pd.DataFrame(list(data["rows"]), columns=["video_id", "label", "kind", "truth"])
    voiced = np.array([len(c) > 0 for c in data["codes"]])
    labels = list(data["labels"])
    top = np.array(
        [labels[int(lp.mean(axis=0).argmax())] if len(lp) else "" for lp in data["logp"]]
    )
    half = np.array(split_half(rows["video_id"].astype(str).tolist()))
    kinds = rows["kind"].to_numpy()
    on = kinds == "on_topic"
    synth = kinds == "synthetic"
    named = top == rows["truth"].to_numpy()
    print(f"{voiced.sum()} voiced clips: " + ", ".join(
        f"{k} {int(((kinds == k) & voiced).sum())}" for k in pd.unique(kinds)))  # fmt: skip
    out = []
    for name, f in scorers(data["means"], data["precision"], data["counts"]).items():
        s = np.array(
            [
                f(np.asarray(c, dtype=np.float64), lp) if len(c) else np.nan
                for c, lp in zip(data["codes"], data["logp"], strict=True)
            ]
        )
        rec = {"score": name}
        for k in ("speech", "other_label", "silence", "synthetic"):
            sel = voiced & (on | (kinds == k))
            if (kinds[sel] == k).any():
                rec[f"auc_{k}"] = round(roc_auc_score(kinds[sel] == k, s[sel]), 3)
        rejected = np.zeros(len(s), dtype=bool)
        for h in (True, False):  # threshold from the other half's on-topic clips
            fit = voiced & on & ~synth & (half != h)
            thr = np.quantile(s[fit], 1 - a.budget, method="higher")
            test = (half == h) | synth if h else (half == h) & ~synth
            rejected[test] = (s > thr)[test]
        test_on = voiced & on & ~synth
        open_ = voiced & ~on & (kinds != "")
        rec["on_topic_rej"] = round(rejected[test_on].mean(), 3)
        rec["speech_rej"] = round(rejected[voiced & (kinds == "speech")].mean(), 3)
        rec["synthetic_rej"] = round(rejected[voiced & synth].mean(), 3)
        rec["open_strict"] = round(rejected[open_].mean(), 3)
        rec["open_handled"] = round((rejected | named)[open_].mean(), 3)
        out.append(rec)
    print(pd.DataFrame(out).to_string(index=False))


if __name__ == "__main__":
    main()
