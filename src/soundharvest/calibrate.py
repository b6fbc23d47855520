"""Honest probabilities: held-out clips, temperature scaling, the ``unknown`` threshold, ECE.

A predictor (:class:`soundharvest.predict.Predictor`) turns a file into one log-probability per
label for every voiced frame; a file's probabilities are ``softmax(mean_frame_logp / T)``. The
temperature ``T`` and the confidence below which the answer is ``unknown`` are fitted here on
**held-out training clips**: a fixed share of the harvested clips, chosen by a hash of the
video id (:func:`held_out`), that no label-supervised step saw (the weak recogniser's training
and the cluster -> label model's sample both skip them). Their query labels are as noisy as the
training labels: the probabilities are those of the *query label*, which is what a user of
harvested data can check them against.

The held-out clips are split in two by another hash (:func:`split_half`): ``T`` and the
threshold are chosen on the ``fit`` half, and the figures (ECE, accuracy, open-set rates) are
measured on the ``test`` half and on synthetic clips (silence, noise, speech-like) that no model
has met (:func:`synthetic_clips`).
On a few dozen test clips the ECE is mostly sampling noise: ``ece_floor`` (:func:`ece_floor`)
is what a perfectly calibrated predictor would show on the same clips, so an ECE near it says
"as calibrated as this many clips can tell", and a bar below it needs more held-out clips.

An answer is ``unknown`` when its confidence is low *or* when the audio is unlike the training
data: its typicality distance (:mod:`soundharvest.typicality`) is high. The two thresholds share
a budget, ``on_topic_reject`` (default 10 %) of the fit half's on-topic clips
(:func:`choose_thresholds`): those the demo's ``truth.json`` marks on-topic where it exists,
else those whose answer agrees with their query label (the clips a user would call on-topic).
Off-topic clips never choose a threshold, so how many of them are rejected is a test.

An off-topic clip of the ``other_label`` kind holds another label's instrument (and one of the
``silence`` kind music after its long silent intro): naming that instrument is as right as
``unknown``. ``open_set_rejected`` counts only ``unknown``/``silent`` (the strict figure);
``open_set_handled`` also counts an off-topic clip answered with the instrument it holds.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .io import Pathlike, SoundharvestError, read_json, write_json, write_tsv

log = logging.getLogger("soundharvest.calibrate")

CALIBRATION_NAME = "calibration.json"
#: The answers besides a label.
UNKNOWN, SILENT = "unknown", "silent"
#: Columns of the per-clip calibration table.
CLIP_COLUMNS = [
    "set",
    "video_id",
    "label",
    "truth",
    "off_topic_kind",
    "answer",
    "top_label",
    "confidence",
    "distance",
    "p_query",
    "voiced_frames",
    "seconds",
]


def _unit_hash(key: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def held_out(video_ids: Sequence[str], share: float) -> np.ndarray:
    """Whether each video is held out of label-supervised training: a fixed ``share`` of the
    videos, by a hash of the id alone (the same clips whatever else is in the data set)."""
    if not 0.0 <= float(share) < 1.0:
        raise SoundharvestError(f"calibration.holdout = {share!r}: give a share in [0, 1)")
    return np.array([_unit_hash(str(v), "holdout") < share for v in video_ids], dtype=bool)


def split_half(video_ids: Sequence[str]) -> np.ndarray:
    """``True`` for the held-out clips that fit the calibration, ``False`` for those that test
    it (a second hash, independent of :func:`held_out`'s)."""
    return np.array([_unit_hash(str(v), "fit") < 0.5 for v in video_ids], dtype=bool)


# --------------------------------------------------------------------------------------------
# Temperature, threshold, calibration error
# --------------------------------------------------------------------------------------------


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(logits: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``targets`` under ``softmax(logits / T)``."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-np.mean(logp[np.arange(len(z)), np.asarray(targets, dtype=np.int64)]))


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature minimising the NLL of ``targets`` (Guo et al. 2017), searched on a log
    grid from 0.01 to 100 and refined by golden-section search; 1.0 without data."""
    if len(logits) == 0:
        return 1.0
    grid = np.exp(np.linspace(np.log(0.01), np.log(100.0), 81))
    losses = [nll(logits, targets, t) for t in grid]
    i = int(np.argmin(losses))
    lo, hi = np.log(grid[max(i - 1, 0)]), np.log(grid[min(i + 1, len(grid) - 1)])
    g = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    for _ in range(40):
        c, d = b - g * (b - a), a + g * (b - a)
        if nll(logits, targets, np.exp(c)) < nll(logits, targets, np.exp(d)):
            b = d
        else:
            a = c
    return float(np.exp(0.5 * (a + b)))


def _calibration_gaps(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> np.ndarray:
    """ECE of every row of ``correct`` (``(rows, n)`` outcomes of the same ``n`` answers)."""
    c = np.asarray(confidence, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    bins = np.minimum((c * n_bins).astype(np.int64), n_bins - 1)
    err = np.zeros(len(y))
    for b in np.unique(bins):
        sel = bins == b
        err += sel.mean() * np.abs(y[:, sel].mean(axis=1) - c[sel].mean())
    return err


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10
) -> float:
    """ECE: the mean over equal-width confidence bins of ``|accuracy - confidence|``, weighted by
    the share of answers in each bin (Naeini et al. 2015; Guo et al. 2017). NaN without data."""
    if len(confidence) == 0:
        return float("nan")
    return float(_calibration_gaps(confidence, np.asarray(correct)[None, :], n_bins)[0])


def ece_floor(confidence: np.ndarray, n_bins: int = 10, draws: int = 2000, seed: int = 0) -> float:
    """The ECE that a *perfectly calibrated* predictor shows on answers with these confidences:
    the mean of :func:`expected_calibration_error` over ``draws`` simulated outcomes, each
    answer right with probability its confidence (seeded: the same confidences, the same
    floor). On few clips the ECE is mostly sampling noise (about 0.2 on 24 clips of confidence
    ~0.55, 0.05 on ~400): an ECE near its floor cannot be told apart from perfect calibration,
    and a bar below the floor cannot be met on that many clips. NaN without data."""
    c = np.asarray(confidence, dtype=np.float64)
    if len(c) == 0:
        return float("nan")
    right = np.random.default_rng(seed).random((int(draws), len(c))) < c
    return float(_calibration_gaps(c, right, n_bins).mean())


def choose_thresholds(
    confidence: np.ndarray,
    distance: np.ndarray | None,
    reject: float,
    distance_share: float = 0.5,
) -> tuple[float, float]:
    """The confidence and typicality-distance thresholds that together reject about ``reject``
    of the given (on-topic) clips: the distance threshold alone rejects ``distance_share`` of
    that budget (the clips most unlike the training data), the confidence threshold the rest
    among the clips it lets through. Without distances (NaN, or ``None``) or with
    ``distance_share`` 0 the confidence threshold takes the whole budget.

    :return: ``(confidence threshold, distance threshold)`` (``inf``: no distance test).
    """
    if not 0.0 <= float(distance_share) <= 1.0:
        raise SoundharvestError(
            f"calibration.distance_share = {distance_share!r}: give a share in [0, 1]"
        )
    c = np.asarray(confidence, dtype=np.float64)
    d = None if distance is None else np.asarray(distance, dtype=np.float64)
    if d is None or len(d) == 0 or not np.isfinite(d).all() or distance_share == 0:
        return choose_threshold(c, reject), float("inf")
    if len(c) == 0 or reject == 0:
        return 0.0, float("inf")
    d_thr = float(np.quantile(d, 1.0 - float(reject) * float(distance_share), method="higher"))
    passing = d <= d_thr
    left = float(reject) * len(c) - float((~passing).sum())
    q = min(max(left / max(int(passing.sum()), 1), 0.0), 0.999)
    return choose_threshold(c[passing], q), d_thr


def choose_threshold(confidence: np.ndarray, quantile: float) -> float:
    """The confidence below which the answer is ``unknown``: the ``quantile`` of the given
    (on-topic) confidences, so that about that share of them is rejected; 0 without data."""
    if not 0.0 <= float(quantile) < 1.0:
        raise SoundharvestError(
            f"calibration.on_topic_reject = {quantile!r}: give a share in [0, 1)"
        )
    c = np.asarray(confidence, dtype=np.float64)
    if len(c) == 0 or quantile == 0:
        return 0.0
    return float(np.quantile(c, quantile, method="lower"))


# --------------------------------------------------------------------------------------------
# Synthetic off-topic clips
# --------------------------------------------------------------------------------------------


def synthetic_clips(
    n_each: int = 5, seconds: float = 6.0, sample_rate: int = 16000, seed: int = 0
) -> list[tuple[str, np.ndarray]]:
    """Clips no model has met and none of which holds an instrument: digital silence and
    near-silence, white noise, coloured (pink, brown) noise and speech-like babble, ``n_each``
    of each, at levels from -40 to -10 dBFS RMS. ``(name, samples)`` pairs."""
    from . import synth

    rng = np.random.default_rng([int(seed), 21])
    n = int(seconds * sample_rate)
    out: list[tuple[str, np.ndarray]] = []
    for i in range(n_each):
        level = float(rng.uniform(-40.0, -10.0))
        quiet = rng.standard_normal(n) * synth.db_to_gain(-95.0 + 5 * i)
        out.append((f"silence-{i}", np.zeros(n) if i == 0 else quiet))
        out.append((f"white-{i}", synth.scale_to_rms(rng.standard_normal(n), level)))
        color = ("pink", "brown")[i % 2]
        noise = synth.background_noise(rng, n, color, sample_rate)
        out.append((f"{color}-{i}", synth.scale_to_rms(noise, level)))
        speech = synth.speech_like(rng, n, sample_rate)
        out.append((f"speech-{i}", synth.scale_to_rms(speech, level)))
    order = {"silence": 0, "white": 1, "pink": 2, "brown": 2, "speech": 3}
    return sorted(out, key=lambda t: (order[t[0].split("-")[0]], t[0]))


# --------------------------------------------------------------------------------------------
# The calibrate stage
# --------------------------------------------------------------------------------------------


def _truth_of(downloads: Path | None, video_id: str) -> dict[str, Any] | None:
    if downloads is None:
        return None
    path = downloads / video_id / "truth.json"
    return read_json(path) if path.is_file() else None


def _score_clips(
    pred: Any, clips: pd.DataFrame, fit: Sequence[bool], convert_dir: Pathlike, store: Path | None
) -> tuple[pd.DataFrame, list[np.ndarray | None], list[float]]:
    """Score every held-out clip: its table rows (what the catalog and ``truth.json`` say),
    its logits (None: no voiced frame) and its typicality distance (NaN: none)."""
    rows, logits, distances = [], [], []
    for rec, is_fit in zip(clips.to_dict("records"), fit, strict=True):
        vid = str(rec["video_id"])
        wav = Path(convert_dir) / f"{vid}.wav"
        scores = pred.score_file(wav)
        truth = _truth_of(store, vid)
        dominant = (truth or {}).get("dominant") or {}
        kind = (truth or {}).get("off_topic_kind") if truth else ""
        rows.append(
            {
                "set": "fit" if is_fit else "test",
                "video_id": vid,
                "label": rec["label"],
                "truth": (dominant.get("label") or dominant.get("kind") or "") if truth else "",
                "off_topic_kind": kind or ("" if truth is None else "on_topic"),
                "voiced_frames": scores["voiced_frames"],
                "seconds": scores["seconds"],
            }
        )
        logits.append(scores["logits"])
        distances.append(np.nan if scores["distance"] is None else scores["distance"])
    table = pd.DataFrame(rows, columns=[c for c in CLIP_COLUMNS if c not in (
        "answer", "top_label", "confidence", "distance", "p_query")])  # fmt: skip
    return table, logits, distances


def _synthetic_rows(
    pred: Any,
    n_synthetic: int,
    seed: int,
    temperature: float,
    threshold: float,
    d_threshold: float,
) -> list[dict[str, Any]]:
    """The synthetic off-topic clips' table rows (none holds an instrument), answered with the
    chosen temperature and thresholds."""
    synth_rows = []
    for name, samples in synthetic_clips(n_synthetic, sample_rate=pred.sample_rate, seed=seed):
        s = pred.score_samples(samples)
        ds = float("nan") if s["distance"] is None else float(s["distance"])
        if s["logits"] is None:
            answer, top_label, c = SILENT, "", float("nan")
        else:
            ps = softmax(s["logits"][None, :], temperature)[0]
            top_label, c = pred.labels[int(ps.argmax())], float(ps.max())
            answer = UNKNOWN if c < threshold or ds > d_threshold else top_label
        synth_rows.append(
            {
                "set": "synthetic",
                "video_id": name,
                "label": "",
                "truth": name.split("-")[0],
                "off_topic_kind": "synthetic",
                "answer": answer,
                "top_label": top_label,
                "confidence": round(c, 4),
                "distance": round(ds, 3),
                "p_query": float("nan"),
                "voiced_frames": s["voiced_frames"],
                "seconds": s["seconds"],
            }
        )
    return synth_rows


def _figures(
    table: pd.DataFrame,
    z: np.ndarray,
    conf: np.ndarray,
    top: np.ndarray,
    y: np.ndarray,
    atypical: np.ndarray,
    has_truth: bool,
    labels: Sequence[str],
    n_fit: int,
) -> dict[str, Any]:
    """The calibration's figures on the test clips: ECE before and after, accuracy, how often
    on-topic, off-topic and synthetic clips are rejected (the held-out clips are the table's
    first ``len(z)`` rows, the synthetic ones after them)."""
    test = (table["set"] == "test").to_numpy()
    test_voiced = test & (table["voiced_frames"].to_numpy() > 0)
    n_real = len(z)
    tv = test_voiced[:n_real]
    rejected = table["answer"].isin([UNKNOWN, SILENT]).to_numpy()
    figures = {
        "ece": expected_calibration_error(conf[tv], top[tv] == y[tv]),
        "ece_uncalibrated": expected_calibration_error(
            softmax(z[tv], 1.0).max(axis=1), top[tv] == y[tv]
        ),
        # What a perfectly calibrated predictor would measure on as many clips (sampling noise).
        "ece_floor": ece_floor(conf[tv]),
        "accuracy_query": float(np.mean(top[tv] == y[tv])) if tv.any() else float("nan"),
        "n_fit": int(n_fit),
        "n_test": int(tv.sum()),
        "synthetic_rejected": float(rejected[n_real:].mean()) if len(table) > n_real else None,
    }
    kinds = table["off_topic_kind"].to_numpy()
    # An off-topic clip answered with the instrument it really holds (another label's, or the
    # music after a long silent intro) is answered right.
    named_truth = ~np.isin(kinds, ["on_topic", "synthetic", ""]) & (
        table["answer"].to_numpy() == table["truth"].to_numpy()
    )
    figures["rejected_by_distance"] = float(np.mean(atypical[tv])) if tv.any() else float("nan")
    if has_truth:
        on_t = test & (kinds == "on_topic")
        off_t = test & ~np.isin(kinds, ["on_topic", "synthetic", ""])
        open_set = off_t | (kinds == "synthetic")
        figures |= {
            "on_topic_rejected": float(rejected[on_t].mean()) if on_t.any() else float("nan"),
            "off_topic_rejected": float(rejected[off_t].mean()) if off_t.any() else float("nan"),
            # Off-topic test clips and the synthetic ones together: the strict figure ...
            "open_set_rejected": float(rejected[open_set].mean()),
            # ... and with another label's instrument named right counted as handled.
            "open_set_handled": float((rejected | named_truth)[open_set].mean()),
            "n_on_topic_test": int(on_t.sum()),
            "n_off_topic_test": int(off_t.sum()),
        }
        for k in ("speech", "other_label", "silence"):
            sel = test & (kinds == k)
            if sel.any():
                figures[f"rejected_{k}"] = float(rejected[sel].mean())
        truth_lab = table["truth"].to_numpy()
        inst = test & (kinds != "synthetic") & np.isin(truth_lab, labels)
        if inst.any():
            figures["accuracy_truth"] = float(
                np.mean(table["top_label"].to_numpy()[inst] == truth_lab[inst])
            )
    return figures


def _held_out_clips(catalog_csv: Pathlike, labels: Sequence[str], holdout: float) -> pd.DataFrame:
    """The catalog's held-out clips: downloaded, of one of the predictor's labels, one row per
    video (a warning when there are none)."""
    from .acquire.catalog import read_catalog

    catalog = read_catalog(catalog_csv)
    ok = catalog[catalog["status"] == "ok"].drop_duplicates("video_id")
    ok = ok[ok["label"].isin(labels)]
    ids = ok["video_id"].astype(str).tolist()
    keep = held_out(ids, holdout)
    clips = ok[keep].reset_index(drop=True)
    if clips.empty:
        log.warning(
            "%s: no held-out clip among %d (calibration.holdout = %s): temperature 1 and no "
            "'unknown'; raise calibration.holdout or harvest more results",
            catalog_csv,
            len(ok),
            holdout,
        )
    return clips


def _logits_and_targets(
    logits: Sequence[np.ndarray | None], table: pd.DataFrame, labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """The held-out clips' logits as a ``(clips, labels)`` matrix (zeros for a clip without a
    voiced frame) and their query labels' ids."""
    label_id = {n: i for i, n in enumerate(labels)}
    n_labels = len(labels)
    rows = [lg if lg is not None else np.zeros(n_labels) for lg in logits]
    z = np.stack(rows).reshape(-1, n_labels) if rows else np.zeros((0, n_labels))
    y = np.array([label_id[lab] for lab in table["label"]], dtype=np.int64)
    return z, y


def _fit_thresholds(
    table: pd.DataFrame,
    conf: np.ndarray,
    top: np.ndarray,
    y: np.ndarray,
    dist: np.ndarray,
    fit_mask: np.ndarray,
    use_distance: bool,
    on_topic_reject: float,
    distance_share: float,
) -> tuple[bool, float, float]:
    """``(has_truth, confidence threshold, distance threshold)`` chosen on the fit half's
    on-topic clips: those ``truth.json`` marks on-topic, else those answered their label."""
    has_truth = (table["off_topic_kind"] != "").any()
    on_topic = (
        (table["off_topic_kind"] == "on_topic").to_numpy()
        if has_truth
        else top == y  # without truth: the clips whose answer is their query label
    )
    sel = fit_mask & on_topic
    threshold, d_threshold = choose_thresholds(
        conf[sel], dist[sel] if use_distance else None, on_topic_reject, distance_share,
    )  # fmt: skip
    return has_truth, threshold, d_threshold


def _calibration_record(
    temperature: float,
    threshold: float,
    d_threshold: float,
    distance_share: float,
    holdout: float,
    on_topic_reject: float,
    has_truth: bool,
    figures: Mapping[str, Any],
) -> dict[str, Any]:
    """The calibration as written to ``calibration.json``: the fit, its settings, the figures."""
    return {
        "temperature": round(float(temperature), 6),
        "threshold": round(float(threshold), 6),
        "distance_threshold": round(float(d_threshold), 4) if np.isfinite(d_threshold) else None,
        "distance_share": float(distance_share),
        "holdout": float(holdout),
        "on_topic_reject": float(on_topic_reject),
        "threshold_from": "truth.json on-topic clips"
        if has_truth
        else "clips answered their label",
        **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items()},
    }


def calibrate_file(
    predictor_dir: Pathlike,
    catalog_csv: Pathlike,
    convert_dir: Pathlike,
    out_json: Pathlike,
    out_clips_tsv: Pathlike,
    holdout: float = 0.2,
    on_topic_reject: float = 0.1,
    downloads: Pathlike | None = None,
    n_synthetic: int = 5,
    seed: int = 0,
    device: str = "cpu",
    distance_share: float = 0.5,
) -> dict[str, Any]:
    """Rule ``calibrate``: fit a predictor's temperature and ``unknown`` threshold on held-out
    training clips and measure it (see the module doc).

    :param predictor_dir: ``results/predictor/<kind>/<model>`` (written by ``label_clusters``).
    :param catalog_csv: the catalog: every clip's label, video id and status.
    :param convert_dir: the convert stage's folder (``<video_id>.wav``, 16 kHz mono).
    :param out_json: the calibration, ``calibration.json`` inside the predictor directory.
    :param out_clips_tsv: one row per held-out and synthetic clip (:data:`CLIP_COLUMNS`).
    :param holdout: the share of clips held out (the same as the training's).
    :param on_topic_reject: the share of on-topic fit clips the threshold may reject.
    :param downloads: the demo's download store, whose ``<id>/truth.json`` says which clips are
        off-topic (validation only; ``None`` or absent files: no truth).
    :param n_synthetic: synthetic clips of each kind (:func:`synthetic_clips`).
    :param distance_share: the share of the ``on_topic_reject`` budget the typicality distance
        test may spend (:func:`choose_thresholds`; 0: confidence alone).
    :return: the calibration dict written to ``out_json``.
    """
    from .predict import Predictor

    pred = Predictor.load(predictor_dir, device=device, calibrated=False)
    clips = _held_out_clips(catalog_csv, pred.labels, holdout)
    fit = split_half(clips["video_id"].astype(str).tolist())
    store = Path(downloads) if downloads else None
    table, logits, distances = _score_clips(pred, clips, fit, convert_dir, store)
    voiced = table["voiced_frames"].to_numpy(dtype=np.int64) > 0
    z, y = _logits_and_targets(logits, table, pred.labels)
    fit_mask = (table["set"] == "fit").to_numpy() & voiced
    temperature = fit_temperature(z[fit_mask], y[fit_mask])
    p = softmax(z, temperature)
    top = p.argmax(axis=1)
    conf = p.max(axis=1)
    dist = np.asarray(distances, dtype=np.float64)
    has_truth, threshold, d_threshold = _fit_thresholds(
        table, conf, top, y, dist, fit_mask, pred.typicality is not None, on_topic_reject,
        distance_share,
    )  # fmt: skip
    atypical = np.nan_to_num(dist, nan=-np.inf) > d_threshold
    table["top_label"] = [pred.labels[i] for i in top]
    table["confidence"] = np.round(conf, 4)
    table["distance"] = np.round(dist, 3)
    table["p_query"] = np.round(p[np.arange(len(p)), y], 4)
    table["answer"] = np.where(
        ~voiced, SILENT, np.where((conf < threshold) | atypical, UNKNOWN, table["top_label"])
    )

    synth_rows = _synthetic_rows(pred, n_synthetic, seed, temperature, threshold, d_threshold)
    table = pd.concat([table, pd.DataFrame(synth_rows)], ignore_index=True)[CLIP_COLUMNS]
    write_tsv(out_clips_tsv, table)

    figures = _figures(table, z, conf, top, y, atypical, has_truth, pred.labels, fit_mask.sum())
    out = _calibration_record(
        temperature, threshold, d_threshold, distance_share, holdout, on_topic_reject,
        has_truth, figures,
    )  # fmt: skip
    write_json(out_json, out)
    log.info(
        "calibrate %s: T = %.3f, unknown below %.3f or beyond distance %s; test ECE %.3f "
        "(uncalibrated %.3f; a perfectly calibrated predictor: %.3f) on %d clips",
        Path(predictor_dir),
        temperature,
        threshold,
        out["distance_threshold"],
        figures["ece"],
        figures["ece_uncalibrated"],
        figures["ece_floor"],
        figures["n_test"],
    )
    return out


def read_calibration(path: Pathlike) -> Mapping[str, Any] | None:
    """A predictor directory's calibration, or ``None`` when it has none."""
    p = Path(path)
    if not p.is_file():
        return None
    cal = read_json(p)
    if not isinstance(cal, dict) or not {"temperature", "threshold"} <= set(cal):
        raise SoundharvestError(
            f"{p}: fields 'temperature' and 'threshold' missing; re-run calibrate"
        )
    return cal
