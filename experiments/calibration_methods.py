"""Which calibration map, on the clip scores a run kept (``score_clips``): cross-fitted as the
rule ``calibrate`` does (each half answered by the map fitted on the other half's voiced clips),
measured against the query labels as ``calibrate`` measures (ECE, 10 bins; its floor), with the
negative log-likelihood of the query label and the top label's Brier score beside it, which
sampling noise moves less.

    python experiments/calibration_methods.py results-recogniser-calxl/calibration/stft/weak.scores.tsv [...]

Maps (each after the temperature, fitted by NLL on the fitting half):

- ``temperature``: the temperature alone (Guo et al. 2017);
- ``top_platt``: the workflow's, the top label's probability mapped by ``sigmoid(a logit p + b)``;
- ``top_isotonic``: the top label's probability mapped by isotonic regression of "the top label
  is the query label" on it (Zadrozny & Elkan 2002), clipped to [0.01, 0.99];
- ``top_binning``: the same by histogram binning, 10 bins of equal mass (Gupta & Ramdas 2021);
- ``bias_platt``: a bias per label fitted by NLL after the temperature (vector scaling with one
  shared scale, Guo et al. 2017; :func:`soundharvest.calibrate.fit_label_bias`), then
  ``top_platt``. The bias can change the top label: ``accuracy`` (top label = query label)
  says what that costs.

Only the top label's probability is judged here: the other labels keep their shares, as in
``calibrated_probabilities``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from soundharvest.calibrate import (  # noqa: E402
    LOGIT_PREFIX,
    calibrated_probabilities,
    ece_floor,
    expected_calibration_error,
    fit_confidence_map,
    fit_label_bias,
    fit_temperature,
    read_clip_scores,
    softmax,
)

METHODS = ("temperature", "top_platt", "top_isotonic", "top_binning", "bias_platt")


def _top_map(kind: str, conf_fit: np.ndarray, right_fit: np.ndarray):
    """A function mapping top-label confidences, fitted on the fitting half."""
    if kind == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.01, y_max=0.99, out_of_bounds="clip")
        iso.fit(conf_fit, right_fit.astype(float))
        return iso.predict
    # Histogram binning: equal-mass bins, each mapped to its accuracy (shrunk by one clip
    # towards the bin's mean confidence).
    edges = np.quantile(conf_fit, np.linspace(0, 1, 11))
    edges[0], edges[-1] = -np.inf, np.inf
    idx = np.clip(np.searchsorted(edges, conf_fit, side="right") - 1, 0, 9)
    value = np.array(
        [
            (right_fit[idx == b].sum() + conf_fit[idx == b].mean()) / ((idx == b).sum() + 1)
            if (idx == b).any()
            else np.nan
            for b in range(10)
        ]
    )
    value = np.where(np.isnan(value), np.nanmean(value), value)

    def apply(c: np.ndarray) -> np.ndarray:
        return value[np.clip(np.searchsorted(edges, c, side="right") - 1, 0, 9)]

    return apply


def answer(method: str, z: np.ndarray, y: np.ndarray, fit: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(top label, its confidence, the query label's probability)`` of every clip under a map
    fitted on the clips ``fit`` selects."""
    if method == "bias_platt":
        t = fit_temperature(z[fit], y[fit])
        zz, t_used = z / t + fit_label_bias(z[fit], y[fit], t), 1.0
    else:
        zz, t_used = z, fit_temperature(z[fit], y[fit])
    p_t = softmax(zz, t_used)
    top = p_t.argmax(axis=1)
    conf_t = p_t.max(axis=1)
    right = top == y
    if method == "temperature":
        p = p_t
    elif method in ("top_platt", "bias_platt"):
        p = calibrated_probabilities(zz, t_used, fit_confidence_map(conf_t[fit], right[fit]))
    else:
        mapped = _top_map(method.split("_")[1], conf_t[fit], right[fit])(conf_t)
        rest = np.maximum(1.0 - conf_t, 1e-12)
        p = p_t * ((1.0 - mapped) / rest)[:, None]
        p[np.arange(len(p)), top] = mapped
    rows = np.arange(len(p))
    return top, p[rows, top], p[rows, y]


def evaluate(path: Path) -> dict[str, dict[str, float]]:
    table, labels = read_clip_scores(path)
    table = table[table["set"].isin(["a", "b"])].reset_index(drop=True)
    voiced = table["voiced_frames"].to_numpy() > 0
    z = table[[LOGIT_PREFIX + n for n in labels]].to_numpy(dtype=np.float64)[voiced]
    lab = {n: i for i, n in enumerate(labels)}
    y = np.array([lab[v] for v in table["label"][voiced]])
    half_a = (table["set"] == "a").to_numpy()[voiced]
    out = {}
    for method in METHODS:
        top, conf, p_query = np.zeros(len(z), int), np.zeros(len(z)), np.zeros(len(z))
        for half in (half_a, ~half_a):
            t_h, c_h, q_h = answer(method, z, y, ~half)
            top[half], conf[half], p_query[half] = t_h[half], c_h[half], q_h[half]
        right = top == y
        out[method] = {
            "ece": expected_calibration_error(conf, right),
            "floor": ece_floor(conf),
            "nll": float(-np.mean(np.log(np.clip(p_query, 1e-6, 1.0)))),
            "brier_top": float(np.mean((conf - right) ** 2)),
            "accuracy": float(np.mean(right)),
            "n": len(z),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scores", nargs="+", type=Path, help="score_clips tables (one per seed)")
    args = ap.parse_args(argv)
    results = {str(p): evaluate(p) for p in args.scores}
    print("method\tfigure\t" + "\t".join(str(p) for p in args.scores) + "\tmean\tstd")
    for method in METHODS:
        for fig in ("ece", "floor", "nll", "brier_top", "accuracy"):
            vals = np.array([results[str(p)][method][fig] for p in args.scores])
            cells = "\t".join(f"{v:.4f}" for v in vals)
            print(
                f"{method}\t{fig}\t{cells}\t{vals.mean():.4f}\t{vals.std(ddof=1) if len(vals) > 1 else 0:.4f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
