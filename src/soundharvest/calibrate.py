"""Honest probabilities: held-out clips, temperature scaling, the ``unknown`` threshold, ECE.

A predictor (:class:`soundharvest.predict.Predictor`) turns a file into one log-probability per
label for every voiced frame. A file's probabilities are ``softmax(mean_frame_logp / T + c)``
(``c``: a bias per label, :func:`fit_label_bias`) with the top label's then mapped by
``sigmoid(a * logit(p) + b)`` (top-label Platt scaling, :func:`fit_confidence_map`; the other
labels share the rest in proportion). ``T``, ``c``, ``(a, b)``
and the confidence below which the answer is ``unknown`` are fitted here on **held-out
training clips**: a fixed share of the harvested clips, chosen by a hash of the video id
(:func:`held_out`), that no label-supervised step saw (the weak recogniser's training and the
cluster -> label model's sample both skip them). Their query labels are as noisy as the
training labels: the probabilities are those of the *query label*, which is what a user of
harvested data can check them against. A temperature alone cannot calibrate against such
labels: it is fitted by the clips whose query label the model doubts, most of them wrong, and
leaves the unsure answers overconfident and the sure ones underconfident; the map's slope mends
that.

The held-out clips are split in two halves by another hash (:func:`split_half`). The figures
(ECE, accuracy, open-set rates) are **cross-fitted**: every clip of half ``a`` is answered by
the calibration fitted on half ``b`` and the other way round, so that all held-out clips
measure a calibration that did not see them; ``soundharvest predict`` gets the calibration
fitted on both halves. Synthetic clips (silence, noise, speech-like) that no model has met
(:func:`synthetic_clips`) are answered by that one.
On a few dozen clips the ECE is mostly sampling noise: ``ece_floor`` (:func:`ece_floor`)
is what a perfectly calibrated predictor would show on the same clips, so an ECE near it says
"as calibrated as this many clips can tell", and a bar below it needs more held-out clips;
``ece_p`` (:func:`ece_p_value`) is how often such a predictor shows at least the measured ECE.

Two rules share the work: ``score_clips`` (:func:`score_clips_file`) runs the uncalibrated
predictor over every held-out and synthetic clip once and keeps each clip's mean frame logits
and typicality distance (``results/calibration/<kind>/<model>.scores.tsv``); ``calibrate``
(:func:`calibrate_file`) fits and measures on that table in seconds, so that a change of the
calibration's settings never runs the encoder again.

An answer is ``unknown`` when its confidence is low *or* when the audio is unlike the training
data: its typicality distance (:mod:`soundharvest.typicality`) is high. The two thresholds share
a budget, ``on_topic_reject`` (default 10 %) of the fitting clips that are on-topic
(:func:`choose_thresholds`): those the demo's ``truth.json`` marks on-topic where it exists,
else those whose answer agrees with their query label (the clips a user would call on-topic).
Set by a few hundred clips, a threshold rejects about its budget of new on-topic clips, give or
take a few points; ``on_topic_reject_level`` makes the budget a bound that holds with that
probability (:func:`rejection_count`), at the cost of rejecting less of the open set.
How the budget is split (``distance_share``) is, with ``auto``, the split that handles most of
the fitting half's off-topic clips (the demo's ``truth.json`` is a free validation set); the
off-topic clips of the other half, and the synthetic ones, stay a test.

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

from .io import (
    Pathlike,
    SoundharvestError,
    read_json,
    read_tsv,
    write_json,
    write_tsv,
)

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


def fit_label_bias(
    logits: np.ndarray, targets: np.ndarray, temperature: float, prior: float | None = None
) -> np.ndarray:
    """A bias per label, ``c``, minimising the NLL of ``targets`` under
    ``softmax(logits / T + c)`` (vector scaling with the temperature's one shared scale, Guo et
    al. 2017), with a ridge of ``prior`` clips' weight pulling ``c`` towards 0 (which also makes
    it sum to 0; ``None``: one clip per label, so that the handful of clips a small run holds
    out cannot set a bias worth a label's share of them). The head learnt the training clips'
    label mix and each label's share of wrong results; on held-out clips some labels come out
    too often and others too rarely, which one scale cannot mend. Zeros without data.

    The NLL is convex in ``c``: Newton steps on the gradient ``sum(p - onehot) + prior * c``."""
    z = np.atleast_2d(np.asarray(logits, dtype=np.float64)) / float(temperature)
    k = z.shape[1] if z.ndim == 2 else 0
    c = np.zeros(k)
    if len(z) == 0 or k < 2:
        return c
    onehot = np.eye(k)[np.asarray(targets, dtype=np.int64)]
    lam = float(k if prior is None else prior)
    for _ in range(50):
        p = softmax(z + c)
        grad = (p - onehot).sum(axis=0) + lam * c
        hess = np.diag(p.sum(axis=0)) - p.T @ p + lam * np.eye(k)
        step = np.linalg.solve(hess + 1e-9 * np.eye(k), grad)
        c = c - step
        if np.abs(step).max() < 1e-10:
            break
    return c


def fit_confidence_map(
    confidence: np.ndarray, correct: np.ndarray, prior: float = 1.0
) -> tuple[float, float]:
    """Top-label Platt scaling (Platt 1999; Gupta & Ramdas 2022): ``(a, b)`` such that
    ``sigmoid(a * logit(confidence) + b)`` is the probability that the top label is right,
    fitted by logistic regression of ``correct`` on ``logit(confidence)``.

    One temperature makes every clip equally less sure; with web-search labels the clips the
    model is unsure of are wrong more often than their confidence says and the sure ones right
    more often, which only a slope (``a``) can mend. ``prior`` is a ridge pulling ``(a, b)``
    towards the identity ``(1, 0)`` with the weight of about that many clips, so that a
    handful of clips cannot fit a steep map; ``a`` is kept >= 0 (a more confident answer is
    never made less probable than a less confident one). ``(1, 0)`` without data.
    """
    x = _logit(np.asarray(confidence, dtype=np.float64))
    y = np.asarray(correct, dtype=np.float64)
    w = np.array([1.0, 0.0])
    if len(x) == 0:
        return 1.0, 0.0
    design = np.stack([x, np.ones_like(x)], axis=1)
    lam = float(prior)
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(design @ w)))
        grad = design.T @ (p - y) + lam * (w - np.array([1.0, 0.0]))
        hess = (design * (p * (1 - p))[:, None]).T @ design + lam * np.eye(2)
        step = np.linalg.solve(hess + 1e-9 * np.eye(2), grad)
        w = w - step
        if np.abs(step).max() < 1e-10:
            break
    return max(float(w[0]), 0.0), float(w[1])


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-6, 1.0 - 1e-6)
    return np.log(q / (1.0 - q))


def calibrated_probabilities(
    logits: np.ndarray,
    temperature: float,
    confidence_map: Sequence[float] | None = None,
    label_bias: Sequence[float] | None = None,
) -> np.ndarray:
    """Every label's calibrated probability, row-wise: ``softmax(logits / T + c)`` (``c``:
    :func:`fit_label_bias`, ``None``: zeros), then the top label's probability mapped by
    :func:`fit_confidence_map`'s ``(a, b)`` and the other labels' rescaled to share the rest in
    the same proportions. The top label stays the top: its probability is never mapped below
    the rescaled runner-up's (``None``: no map)."""
    z = np.atleast_2d(np.asarray(logits, dtype=np.float64)) / float(temperature)
    if label_bias is not None:
        z = z + np.asarray(label_bias, dtype=np.float64)[None, :]
    p = softmax(z)
    if confidence_map is None or tuple(confidence_map) == (1.0, 0.0) or p.shape[1] < 2:
        return p
    a, b = (float(v) for v in confidence_map)
    rows = np.arange(len(p))
    top = p.argmax(axis=1)
    c = p[rows, top]
    rest = 1.0 - c
    runner_up = np.sort(p, axis=1)[:, -2]
    mapped = 1.0 / (1.0 + np.exp(-(a * _logit(c) + b)))
    # The top label's new share c' keeps it on top: c' > runner_up * (1 - c') / rest.
    mapped = np.maximum(mapped, runner_up / np.maximum(rest + runner_up, 1e-12) + 1e-9)
    scale = np.where(rest > 0, (1.0 - mapped) / np.maximum(rest, 1e-12), 0.0)
    out = p * scale[:, None]
    out[rows, top] = mapped
    return out


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


def ece_null(
    confidence: np.ndarray, n_bins: int = 10, draws: int = 2000, seed: int = 0
) -> np.ndarray:
    """The ECEs (``(draws,)``) that a *perfectly calibrated* predictor shows on answers with
    these confidences: :func:`expected_calibration_error` of ``draws`` simulated outcomes, each
    answer right with probability its confidence (seeded: the same confidences, the same
    draws). Empty without data."""
    c = np.asarray(confidence, dtype=np.float64)
    if len(c) == 0:
        return np.zeros(0)
    right = np.random.default_rng(seed).random((int(draws), len(c))) < c
    return _calibration_gaps(c, right, n_bins)


def ece_floor(confidence: np.ndarray, n_bins: int = 10, draws: int = 2000, seed: int = 0) -> float:
    """The ECE that a *perfectly calibrated* predictor shows on answers with these confidences:
    the mean of :func:`ece_null`. On few clips the ECE is mostly sampling noise (about 0.2 on
    24 clips of confidence ~0.55, 0.05 on ~400): an ECE near its floor cannot be told apart
    from perfect calibration, and a bar below the floor cannot be met on that many clips. NaN
    without data."""
    null = ece_null(confidence, n_bins, draws, seed)
    return float(null.mean()) if len(null) else float("nan")


def ece_p_value(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10, draws: int = 2000, seed: int = 0
) -> float:
    """How often a perfectly calibrated predictor with these confidences shows an ECE at least
    as large as the one measured (:func:`ece_null`; consistency resampling, Bröcker & Smith
    2007), ``(1 + count) / (1 + draws)``. Small (e.g. < 0.05): a miscalibration these clips can
    see; large: the measured ECE is within what as many clips show by chance. NaN without
    data."""
    null = ece_null(confidence, n_bins, draws, seed)
    if not len(null):
        return float("nan")
    measured = expected_calibration_error(confidence, correct, n_bins)
    return float((1 + np.count_nonzero(null >= measured - 1e-12)) / (1 + len(null)))


def rejection_count(n: int, budget: float, level: float | None = None) -> int:
    """How many of ``n`` on-topic fitting clips the ``unknown`` thresholds may reject.

    With ``level`` ``None``: ``floor(budget * n)``, the plain quantile, so that *about*
    ``budget`` of new on-topic clips are rejected: on ~140 clips the rate a new set shows
    scatters by about +-0.03 around it. With a ``level`` (e.g. 0.9): the largest ``r`` for
    which the share of new on-topic clips rejected stays at most ``budget`` with probability
    ``level`` (a training-conditional conformal bound, Vovk 2012: rejecting the ``r`` most
    extreme of ``n`` exchangeable clips rejects a share of new ones distributed as
    ``Beta(r + 1, n - r)``). On few clips that may be none (0: only what lies beyond every
    fitting clip), or not even that (-1: no threshold at all).

    :raises SoundharvestError: for a budget outside [0, 1) or a level outside (0, 1).
    """
    if not 0.0 <= float(budget) < 1.0:
        raise SoundharvestError(f"calibration.on_topic_reject = {budget!r}: give a share in [0, 1)")
    if n <= 0 or budget == 0:
        return 0
    if level is None:
        return min(int(np.floor(float(budget) * n + 1e-9)), n - 1)
    if not 0.0 < float(level) < 1.0:
        raise SoundharvestError(
            f"calibration.on_topic_reject_level = {level!r}: give a probability in (0, 1), "
            "or null for the plain quantile"
        )
    from scipy.stats import beta

    r = np.arange(n)  # r = n would reject every fitting clip
    ok = beta.sf(float(budget), r + 1, n - r) <= 1.0 - float(level)
    return int(r[ok].max()) if ok.any() else -1


def too_few_clips(n: int, budget: float, level: float | None = None) -> str | None:
    """What to tell the user when ``n`` on-topic fitting clips are too few for the budget to
    reject any of them (:func:`rejection_count` < 1), so that ``unknown`` comes only from what
    lies beyond every fitting clip; ``None`` when the thresholds rest on enough clips (or no
    budget was asked for)."""
    if n <= 0 or budget == 0 or rejection_count(n, budget, level) >= 1:
        return None
    need = int(np.ceil(1.0 / float(budget) - 1e-9))
    rule = "" if level is None else f" at level {level}"
    return (
        f"only {n} fitting clips: an on-topic budget of {budget}{rule} rejects none of them, so "
        "'unknown' comes only from audio beyond every one of them (no confidence threshold); "
        f"give calibration more clips (at least {need}{' and more' if level else ''}: "
        "search.results_per_query, calibration.holdout)"
    )


def choose_thresholds(
    confidence: np.ndarray,
    distance: np.ndarray | None,
    reject: float,
    distance_share: float = 0.5,
    level: float | None = None,
) -> tuple[float, float]:
    """The confidence and typicality-distance thresholds that together reject
    :func:`rejection_count` of the given (on-topic) clips: the distance threshold alone the
    ``distance_share`` of them that lie farthest from the training data, the confidence
    threshold the rest among the clips it lets through. Without distances (NaN, or ``None``)
    the confidence threshold takes the whole budget (no distance test); with ``distance_share``
    0 it takes the whole budget too, and the distance test still rejects what lies beyond every
    given clip (audio unlike everything the fitting clips hold, e.g. white noise, at a cost of
    about ``1 / (n + 1)`` of new on-topic clips), as it does with any share.

    :return: ``(confidence threshold, distance threshold)`` (``inf``: no distance test).
    """
    if not 0.0 <= float(distance_share) <= 1.0:
        raise SoundharvestError(
            f"calibration.distance_share = {distance_share!r}: give a share in [0, 1]"
        )
    c = np.asarray(confidence, dtype=np.float64)
    d = None if distance is None else np.asarray(distance, dtype=np.float64)
    r = rejection_count(len(c), reject, level)
    if r < 0 or reject == 0:  # no budget, or none these clips can promise
        return 0.0, float("inf")
    if d is None or len(d) == 0 or not np.isfinite(d).all():
        return _lowest(c, r), float("inf")
    if distance_share == 0:
        return _lowest(c, r), float(d.max())
    r_d = int(np.floor(r * float(distance_share) + 1e-9))
    d_thr = float(np.sort(d)[len(d) - 1 - r_d])
    passing = d <= d_thr
    return _lowest(c[passing], max(r - int((~passing).sum()), 0)), d_thr


def _lowest(confidence: np.ndarray, r: int) -> float:
    """The threshold below which exactly the ``r`` lowest confidences lie (ties: fewer); 0
    when ``r`` is 0 (no confidence test)."""
    c = np.sort(np.asarray(confidence, dtype=np.float64))
    return float(c[min(r, len(c) - 1)]) if r > 0 and len(c) else 0.0


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


#: The columns of the clip scores table (``score_clips``) before one ``logit_<label>`` and one
#: ``distance_<label>`` column per label (the mean frame distance to that label's mean code,
#: whose frame-wise minimum gives ``distance``): what the catalog and ``truth.json`` say of a
#: clip, and what the uncalibrated predictor made of it.
SCORE_COLUMNS = [
    "set", "video_id", "label", "truth", "off_topic_kind", "voiced_frames", "seconds", "distance"
]  # fmt: skip
LOGIT_PREFIX, DISTANCE_PREFIX = "logit_", "distance_"


def _score_row(scores: Mapping[str, Any], labels: Sequence[str], **what: Any) -> dict[str, Any]:
    """A clip's row of the scores table: ``what`` it is, then the predictor's ``scores``
    (no voiced frame: NaN logits; no typicality model: NaN distance)."""
    logits = scores["logits"]
    row = dict(what) | {
        "voiced_frames": int(scores["voiced_frames"]),
        "seconds": scores["seconds"],
        "distance": np.nan if scores["distance"] is None else float(scores["distance"]),
    }
    per_label = scores.get("label_distances")
    for prefix, values in ((LOGIT_PREFIX, logits), (DISTANCE_PREFIX, per_label)):
        for i, name in enumerate(labels):
            row[prefix + name] = np.nan if values is None else float(values[i])
    return row


def _score_clips(
    pred: Any,
    clips: pd.DataFrame,
    half_a: Sequence[bool],
    convert_dir: Pathlike,
    store: Path | None,
) -> list[dict[str, Any]]:
    """Score every held-out clip: what the catalog and ``truth.json`` say of it, its mean frame
    logits and its typicality distance (:func:`_score_row`)."""
    from .progress import Progress

    rows = []
    progress = Progress(len(clips), "score_clips: score held-out clips", log)
    for rec, in_a in zip(clips.to_dict("records"), half_a, strict=True):
        vid = str(rec["video_id"])
        scores = pred.score_file(Path(convert_dir) / f"{vid}.wav")
        progress.step()
        truth = _truth_of(store, vid)
        dominant = (truth or {}).get("dominant") or {}
        kind = (truth or {}).get("off_topic_kind") if truth else ""
        rows.append(
            _score_row(
                scores,
                pred.labels,
                set="a" if in_a else "b",
                video_id=vid,
                label=rec["label"],
                truth=(dominant.get("label") or dominant.get("kind") or "") if truth else "",
                off_topic_kind=kind or ("" if truth is None else "on_topic"),
            )
        )
    progress.finish()
    return rows


def _score_synthetic(pred: Any, n_synthetic: int, seed: int) -> list[dict[str, Any]]:
    """The synthetic off-topic clips' rows (none holds an instrument)."""
    return [
        _score_row(
            pred.score_samples(samples),
            pred.labels,
            set="synthetic",
            video_id=name,
            label="",
            truth=name.split("-")[0],
            off_topic_kind="synthetic",
        )
        for name, samples in synthetic_clips(n_synthetic, sample_rate=pred.sample_rate, seed=seed)
    ]


def score_clips_file(
    predictor_dir: Pathlike,
    catalog_csv: Pathlike,
    convert_dir: Pathlike,
    out_tsv: Pathlike,
    holdout: float = 0.2,
    downloads: Pathlike | None = None,
    n_synthetic: int = 5,
    seed: int = 0,
    device: str = "cpu",
) -> pd.DataFrame:
    """Rule ``score_clips``: run the uncalibrated predictor over every held-out clip (decoding
    its converted wav, as ``soundharvest predict`` would) and over the synthetic clips, and
    write what it made of each: :data:`SCORE_COLUMNS`, then one ``logit_<label>`` column per
    label (the mean over the voiced frames of the frame log-probabilities) and one
    ``distance_<label>`` column per label.

    This is the pass that runs the encoder (every window of every held-out clip: hours at the
    thesis' scale); :func:`calibrate_file` fits and measures on its table in seconds, so a
    change of the calibration settings re-runs only that.

    :param predictor_dir: ``results/predictor/<kind>/<model>`` (written by ``label_clusters``).
    :param catalog_csv: the catalog: every clip's label, video id and status.
    :param convert_dir: the convert stage's folder (``<video_id>.wav``, 16 kHz mono).
    :param out_tsv: the scores table, written atomically.
    :param holdout: the share of clips held out (the same as the training's).
    :param downloads: the demo's download store, whose ``<id>/truth.json`` says which clips are
        off-topic (validation only; ``None`` or absent files: no truth).
    :param n_synthetic: synthetic clips of each kind (:func:`synthetic_clips`).
    :param seed: the synthetic clips' seed.
    :param device: where the predictor's encoder runs (``auto``: CUDA if present).
    :return: the table written.
    """
    from .predict import Predictor

    pred = Predictor.load(predictor_dir, device=device, calibrated=False)
    clips = _held_out_clips(catalog_csv, pred.labels, holdout)
    half_a = split_half(clips["video_id"].astype(str).tolist())
    store = Path(downloads) if downloads else None
    rows = _score_clips(pred, clips, half_a, convert_dir, store)
    rows += _score_synthetic(pred, n_synthetic, seed)
    columns = SCORE_COLUMNS + [
        p + name for p in (LOGIT_PREFIX, DISTANCE_PREFIX) for name in pred.labels
    ]
    table = pd.DataFrame(rows, columns=columns)
    write_tsv(out_tsv, table, float_format="%.9g")
    log.info(
        "score_clips %s: %d held-out clips (%d voiced), %d synthetic -> %s",
        Path(predictor_dir),
        len(clips),
        int((table["voiced_frames"].to_numpy()[: len(clips)] > 0).sum()),
        len(table) - len(clips),
        out_tsv,
    )
    return table


def read_clip_scores(path: Pathlike) -> tuple[pd.DataFrame, list[str]]:
    """The scores table :func:`score_clips_file` wrote, and its labels (in the predictor's
    order); a one-line error naming the file when it is not one."""
    fix = "delete it and re-run score_clips"
    table = read_tsv(path, "clip scores table", fix)
    labels = [c[len(LOGIT_PREFIX) :] for c in table.columns if c.startswith(LOGIT_PREFIX)]
    missing = [c for c in SCORE_COLUMNS if c not in table.columns]
    if missing or not labels:
        what = f"columns {missing} missing" if missing else "no logit_<label> column"
        raise SoundharvestError(f"{path}: {what} (not a clip scores table); {fix}")
    for c in ("set", "video_id", "label", "truth", "off_topic_kind"):
        table[c] = table[c].astype(object).fillna("").astype(str)
    table["seconds"] = table["seconds"].astype(np.float64)
    return table, labels


def _answer_rows(
    table: pd.DataFrame,
    z: np.ndarray,
    dist: np.ndarray,
    voiced: np.ndarray,
    cal: Mapping[str, Any],
    labels: Sequence[str],
) -> pd.DataFrame:
    """The synthetic clips' rows of the clips table, answered by ``cal`` (the calibration
    fitted on every held-out clip: the one ``soundharvest predict`` uses)."""
    p, top, conf, answer = answer_clips(z, dist, voiced, cal, labels)
    out = table[[c for c in CLIP_COLUMNS if c in table.columns]].copy()
    out["answer"] = answer
    out["top_label"] = np.where(voiced, np.array(list(labels), dtype=object)[top], "")
    out["confidence"] = np.where(voiced, np.round(conf, 4), np.nan)
    out["distance"] = np.round(dist, 3)
    out["p_query"] = np.nan
    return out[CLIP_COLUMNS]


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
    """The calibration's figures on the held-out clips, each answered by the calibration fitted
    on the other half (cross-fitting): ECE before and after, accuracy, how often on-topic,
    off-topic and synthetic clips are rejected (the held-out clips are the table's first
    ``len(z)`` rows, the synthetic ones after them)."""
    test = (table["set"] != "synthetic").to_numpy()
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
        # How often such a predictor measures at least this ECE: small, a miscalibration.
        "ece_p": ece_p_value(conf[tv], top[tv] == y[tv]),
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


#: The shares of the rejection budget the distance test may take that ``distance_share: auto``
#: tries (:func:`fit_calibration`).
DISTANCE_SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)


def _on_topic(table: pd.DataFrame, top: np.ndarray, y: np.ndarray) -> tuple[bool, np.ndarray]:
    """``(has_truth, on-topic mask)``: the clips ``truth.json`` marks on-topic where the demo
    wrote it, else those answered their query label (the clips a user would call on-topic)."""
    kinds = table["off_topic_kind"].to_numpy()[: len(y)]
    has_truth = bool((kinds != "").any())
    return has_truth, (kinds == "on_topic") if has_truth else (top == y)


def answer_clips(
    z: np.ndarray,
    dist: np.ndarray,
    voiced: np.ndarray,
    cal: Mapping[str, Any],
    labels: Sequence[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(probabilities, top label id, confidence, answer)`` of every clip under a calibration
    (as :meth:`soundharvest.predict.Predictor.answer` gives them)."""
    p = calibrated_probabilities(
        z, cal["temperature"], cal["confidence_map"], cal.get("label_bias")
    )
    top = p.argmax(axis=1)
    conf = p.max(axis=1)
    atypical = np.nan_to_num(dist, nan=-np.inf) > cal["distance_threshold"]
    names = np.array(list(labels), dtype=object)[top]
    answer = np.where(
        ~voiced, SILENT, np.where((conf < cal["threshold"]) | atypical, UNKNOWN, names)
    )
    return p, top, conf, answer


def fit_calibration(
    z: np.ndarray,
    y: np.ndarray,
    dist: np.ndarray,
    table: pd.DataFrame,
    rows: np.ndarray,
    use_distance: bool,
    on_topic_reject: float,
    distance_share: float | str,
    labels: Sequence[str],
    level: float | None = None,
) -> dict[str, Any]:
    """A calibration fitted on the held-out clips ``rows`` selects: the temperature (NLL of the
    query labels), a bias per label (:func:`fit_label_bias`), the top-label map
    (:func:`fit_confidence_map`), then the confidence and
    distance thresholds on the on-topic ones among them (:func:`choose_thresholds`; ``level``:
    see :func:`rejection_count`).

    ``distance_share: auto`` tries each of :data:`DISTANCE_SHARES` and keeps the one that
    handles most of the ``rows``' off-topic clips (answered ``unknown``/``silent`` or with the
    instrument ``truth.json`` says they hold; ties: the share nearest 0.5); without
    ``truth.json`` or off-topic clips among the rows, 0.5."""
    temperature = fit_temperature(z[rows], y[rows])
    bias = fit_label_bias(z[rows], y[rows], temperature)
    p_t = calibrated_probabilities(z, temperature, None, bias)
    top = p_t.argmax(axis=1)
    cmap = fit_confidence_map(p_t.max(axis=1)[rows], (top == y)[rows])
    conf = calibrated_probabilities(z, temperature, cmap, bias).max(axis=1)
    has_truth, on_topic = _on_topic(table, top, y)
    kinds = table["off_topic_kind"].to_numpy()[: len(y)]
    off_topic = rows & has_truth & ~np.isin(kinds, ["on_topic", ""])
    auto = distance_share == "auto"
    shares = DISTANCE_SHARES if auto and use_distance and off_topic.any() else (
        (0.5,) if auto else (float(distance_share),))  # fmt: skip
    sel = rows & on_topic
    voiced = (table["voiced_frames"].to_numpy()[: len(y)] > 0) & rows
    truth = table["truth"].to_numpy()[: len(y)]
    best: tuple[float, float, dict[str, Any]] | None = None
    for share in shares:
        threshold, d_threshold = choose_thresholds(
            conf[sel], dist[sel] if use_distance else None, on_topic_reject, share, level
        )
        cal = {
            "temperature": temperature,
            "label_bias": bias,
            "confidence_map": cmap,
            "threshold": threshold,
            "distance_threshold": d_threshold,
            "distance_share": share,
            "has_truth": has_truth,
        }
        if len(shares) == 1:
            return cal
        answer = answer_clips(z, dist, voiced, cal, labels)[3]
        handled = np.isin(answer, [UNKNOWN, SILENT]) | (answer == truth)
        key = (float(handled[off_topic].mean()), -abs(share - 0.5))
        if best is None or key > best[:2]:
            best = (*key, cal)
    assert best is not None
    return best[2]


def _fitted(cal: Mapping[str, Any]) -> dict[str, Any]:
    """A fitted calibration's numbers as ``calibration.json`` records them."""
    d_threshold = cal["distance_threshold"]
    return {
        "temperature": round(float(cal["temperature"]), 6),
        "confidence_map": [round(float(v), 6) for v in cal["confidence_map"]],
        "label_bias": [round(float(v), 6) for v in cal["label_bias"]],
        "threshold": round(float(cal["threshold"]), 6),
        "distance_threshold": round(float(d_threshold), 4) if np.isfinite(d_threshold) else None,
        "distance_share": float(cal["distance_share"]),
    }


def _calibration_record(
    cal: Mapping[str, Any],
    distance_share: float | str,
    holdout: float,
    on_topic_reject: float,
    on_topic_reject_level: float | None,
    figures: Mapping[str, Any],
) -> dict[str, Any]:
    """The calibration as written to ``calibration.json``: the fit, its settings, the figures."""
    return {
        **_fitted(cal),
        "distance_share_setting": distance_share,
        "holdout": float(holdout),
        "on_topic_reject": float(on_topic_reject),
        "on_topic_reject_level": on_topic_reject_level,
        "threshold_from": "truth.json on-topic clips"
        if cal["has_truth"]
        else "clips answered their label",
        **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items()},
    }


def calibrate_file(
    scores_tsv: Pathlike,
    out_json: Pathlike,
    out_clips_tsv: Pathlike,
    holdout: float = 0.2,
    on_topic_reject: float = 0.1,
    distance_share: float | str = "auto",
    on_topic_reject_level: float | None = None,
) -> dict[str, Any]:
    """Rule ``calibrate``: fit a predictor's temperature, top-label map and ``unknown``
    thresholds on its held-out training clips and measure them (see the module doc), from the
    scores :func:`score_clips_file` wrote (no encoder runs here).

    :param scores_tsv: ``results/calibration/<kind>/<model>.scores.tsv``.
    :param out_json: the calibration, ``calibration.json`` inside the predictor directory.
    :param out_clips_tsv: one row per held-out and synthetic clip (:data:`CLIP_COLUMNS`).
    :param holdout: the share of clips held out (recorded with the calibration).
    :param on_topic_reject: the share of on-topic fit clips the threshold may reject.
    :param distance_share: the share of the ``on_topic_reject`` budget the typicality distance
        test may spend (:func:`choose_thresholds`; 0: confidence alone), or ``auto``: the share
        of :data:`DISTANCE_SHARES` that handles most off-topic fit clips (:func:`fit_calibration`).
    :param on_topic_reject_level: ``None``: the thresholds reject about ``on_topic_reject`` of
        new on-topic clips; a probability: at most that share with this probability
        (:func:`rejection_count`).
    :return: the calibration dict written to ``out_json``.
    """
    if distance_share != "auto" and not 0.0 <= float(distance_share) <= 1.0:
        raise SoundharvestError(
            f"calibration.distance_share = {distance_share!r}: give a share in [0, 1] or auto"
        )
    scores, labels = read_clip_scores(scores_tsv)
    is_synth = (scores["set"] == "synthetic").to_numpy()
    table = scores[~is_synth].reset_index(drop=True)
    synth = scores[is_synth].reset_index(drop=True)
    logit_cols = [LOGIT_PREFIX + name for name in labels]

    def arrays(t: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        voiced = t["voiced_frames"].to_numpy(dtype=np.int64) > 0
        z = np.nan_to_num(t[logit_cols].to_numpy(dtype=np.float64), nan=0.0)
        z[~voiced] = 0.0
        return z, t["distance"].to_numpy(dtype=np.float64), voiced

    z, dist, voiced = arrays(table)
    label_id = {n: i for i, n in enumerate(labels)}
    unknown = sorted(set(table["label"]) - set(label_id))
    if unknown:
        raise SoundharvestError(
            f"{scores_tsv}: labels {unknown} are not the predictor's {labels}; "
            "delete it and re-run score_clips"
        )
    y = np.array([label_id[lab] for lab in table["label"]], dtype=np.int64)
    half_a = (table["set"] == "a").to_numpy()
    # The predictor has a typicality model when its voiced clips (held-out or synthetic) have
    # distances; a clip without a voiced frame has none.
    use_distance = bool(np.isfinite(scores["distance"].to_numpy(dtype=np.float64)).any())

    def fit(rows: np.ndarray) -> dict[str, Any]:
        return fit_calibration(
            z, y, dist, table, rows, use_distance, on_topic_reject, distance_share, labels,
            on_topic_reject_level,
        )  # fmt: skip

    # Cross-fitting: each half is answered by the calibration fitted on the other, so that every
    # held-out clip measures a calibration it did not choose; soundharvest predict gets the one
    # fitted on both halves.
    p = np.zeros_like(z)
    top = np.zeros(len(z), dtype=np.int64)
    conf = np.zeros(len(z))
    answer = np.full(len(z), SILENT, dtype=object)
    atypical = np.zeros(len(z), dtype=bool)
    folds = {}
    for name, half in (("a", half_a), ("b", ~half_a)):
        cal_h = fit(voiced & ~half)
        folds[name] = _fitted(cal_h) | {"n_fit": int((voiced & ~half).sum())}
        p_h, top_h, conf_h, answer_h = answer_clips(z, dist, voiced, cal_h, labels)
        p[half], top[half], conf[half], answer[half] = p_h[half], top_h[half], conf_h[half], (
            answer_h[half])  # fmt: skip
        atypical[half] = (np.nan_to_num(dist, nan=-np.inf) > cal_h["distance_threshold"])[half]
    cal = fit(voiced)
    few = None
    if len(table):
        few = too_few_clips(int(voiced.sum()), on_topic_reject, on_topic_reject_level)
    if few:
        log.warning("calibrate %s: %s", Path(scores_tsv), few)
    table["top_label"] = [labels[i] for i in top]
    table["confidence"] = np.round(conf, 4)
    table["distance"] = np.round(dist, 3)
    table["p_query"] = np.round(p[np.arange(len(p)), y], 4)
    table["answer"] = answer

    synth_rows = _answer_rows(synth, *arrays(synth), cal, labels)
    clips_table = pd.concat([table[CLIP_COLUMNS], synth_rows], ignore_index=True)
    write_tsv(out_clips_tsv, clips_table)

    figures = _figures(
        clips_table, z, conf, top, y, atypical, cal["has_truth"], labels, int(voiced.sum())
    )
    out = _calibration_record(
        cal, distance_share, holdout, on_topic_reject, on_topic_reject_level, figures
    )
    # What answered each half in the figures (fitted on the other half).
    out["folds"] = folds
    # Kept for soundharvest predict, which repeats it to whoever uses this predictor.
    out["warning"] = few
    write_json(out_json, out)
    log.info(
        "calibrate %s: T = %.3f, top-label map %s, unknown below %.3f or beyond distance %s "
        "(distance share %s); cross-fitted ECE %.3f (uncalibrated %.3f; a perfectly calibrated "
        "predictor: %.3f, at least this ECE in a share %.3f of draws) on %d clips",
        Path(scores_tsv),
        cal["temperature"],
        out["confidence_map"],
        cal["threshold"],
        out["distance_threshold"],
        out["distance_share"],
        figures["ece"],
        figures["ece_uncalibrated"],
        figures["ece_floor"],
        figures["ece_p"],
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
