"""Predictor directories: everything a prediction needs, and the :class:`Predictor` that reads it.

A **predictor directory** (``results/predictor/<kind>/<model>/``) holds all a prediction needs,
readable without Snakemake or this package's workflow:

``model.safetensors``
    a copy of the trained weights (absent for the ``raw`` baseline, whose encoder is the
    identity: clusters live in the feature space itself);
``clusters.npz`` or ``head.npz``
    the label model (:mod:`soundharvest.labelmodel`): for ``clusters.npz``, ``centroids`` (k, d)
    float32, ``counts`` (k, n_labels) int64 label histogram per cluster, ``names`` (k,) majority
    label per cluster, ``shares`` (k,) float64 majority share, ``labels`` (n_labels,) the label
    names; for the weak recogniser's ``head.npz``, ``weight``, ``bias``, ``labels`` (all plain
    arrays: ``np.load(allow_pickle=False)``);
``typicality.npz``
    the training codes' density behind ``unknown`` (:mod:`soundharvest.typicality`);
``calibration.json``
    written by the ``calibrate`` stage (:mod:`soundharvest.calibrate`): temperature, thresholds;
``meta.json``
    format, model name, encoder (``weights`` or ``identity``), the feature spec (kind, params,
    sample rate) needed to compute features of new audio, k and how it was chosen, the sample.
    Written last: its presence marks a complete directory.

Rule ``label_clusters`` (:func:`label_clusters_file`) writes one; ``soundharvest predict``
(:mod:`soundharvest.cli`) reads it through :class:`Predictor`. Scoring on labelled notes is
:mod:`soundharvest.evaluate.scoring`.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .io import (
    Pathlike,
    SoundharvestError,
    atomic_path,
    disk_full_error,
    is_disk_full,
    read_json,
    reserve_blocks,
    write_json,
    write_tsv,
)
from .labelmodel import ClusterLabelModel, HeadLabelModel, fit_clusters
from .sampling import sample_codes

log = logging.getLogger("soundharvest.predict")

PREDICTOR_FORMAT = "soundharvest-predictor"
PREDICTOR_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CLUSTERS_NAME = "clusters.npz"
HEAD_NAME = "head.npz"
META_NAME = "meta.json"


# --------------------------------------------------------------------------------------------
# Predictor directories
# --------------------------------------------------------------------------------------------


def _check_features(features: Mapping[str, Any], where: str) -> dict[str, Any]:
    from .features import KINDS, make_params

    if not isinstance(features, Mapping) or features.get("kind") not in KINDS:
        raise SoundharvestError(
            f"{where}: field 'features' must hold kind ({' or '.join(KINDS)}), params and "
            "sample_rate"
        )
    make_params(features["kind"], features.get("params"))  # validates the params
    return {
        "kind": str(features["kind"]),
        "params": dict(features.get("params") or {}),
        "sample_rate": int(features.get("sample_rate") or 16000),
    }


def load_label_model(directory: Pathlike, meta: Mapping[str, Any]) -> Any:
    """The label model of a predictor directory: the weak recogniser's head (``head.npz``) or
    the named clusters (``clusters.npz``), as ``meta.json``'s ``label_model`` says."""
    d = Path(directory)
    if meta.get("label_model", "clusters") == "head":
        return HeadLabelModel.load(d / HEAD_NAME)
    return ClusterLabelModel.load(d / CLUSTERS_NAME)


#: The predictor's default silence threshold (the convert stage's default), dBFS RMS per frame.
SILENCE_DBFS = -60.0

#: Above this ``ece_floor`` (the ECE a perfectly calibrated predictor shows on as many held-out
#: clips) ``soundharvest predict`` warns that the probabilities are rough: below ~100 clips at
#: the weak recogniser's confidences (0.13-0.14 on 52, 0.053 on 317, 0.029 on 965: experiments.md).
ROUGH_ECE_FLOOR = 0.1


class Predictor:
    """An encoder (trained weights, or the identity for the raw baseline), a label model (named
    clusters, or the weak recogniser's head), the feature spec and, once the ``calibrate``
    stage has run, its calibration (temperature, top-label map, ``unknown`` thresholds):
    everything needed to label new audio honestly. Load with :meth:`load`.

    A file's answer: frames quieter than the silence threshold do not vote (no frame above it:
    ``silent``); every other frame gives one log-probability per label (the head's log-softmax,
    or the Laplace-smoothed label histogram of its nearest cluster); the file's probabilities
    are ``softmax(mean log-probability / T)``, the top label's then mapped by the top-label map
    (:func:`soundharvest.calibrate.calibrated_probabilities`); below the confidence threshold,
    or beyond the typicality distance threshold, the answer is ``unknown``.
    """

    def __init__(
        self,
        label_model: Any,
        features: Mapping[str, Any],
        model: Any = None,
        meta: Mapping[str, Any] | None = None,
        calibration: Mapping[str, Any] | None = None,
        typicality: Any = None,
    ) -> None:
        self.label_model = label_model
        self.typicality = typicality
        self.features = dict(features)
        from .encoder import Encoder  # imported on use: torch only where something encodes

        self.model = model
        self.encoder = Encoder(model)
        self.meta = dict(meta or {})
        self.calibration = dict(calibration) if calibration else None
        self.silence_dbfs = float(self.meta.get("silence_dbfs", SILENCE_DBFS))

    @property
    def clusters(self) -> Any:
        """The label model (kept under its first name: named clusters or the head)."""
        return self.label_model

    @property
    def kind(self) -> str:
        """The feature kind (``stft`` or ``mel``)."""
        return str(self.features["kind"])

    @property
    def labels(self) -> list[str]:
        """The label names."""
        return self.label_model.labels

    @property
    def sample_rate(self) -> int:
        return int(self.features["sample_rate"])

    @property
    def temperature(self) -> float:
        return float(self.calibration["temperature"]) if self.calibration else 1.0

    @property
    def threshold(self) -> float:
        return float(self.calibration["threshold"]) if self.calibration else 0.0

    @property
    def confidence_map(self) -> tuple[float, float]:
        """The top-label map ``(a, b)`` (:func:`soundharvest.calibrate.fit_confidence_map`;
        ``(1, 0)``, the identity, without one)."""
        m = (self.calibration or {}).get("confidence_map") or (1.0, 0.0)
        return float(m[0]), float(m[1])

    @property
    def label_bias(self) -> np.ndarray | None:
        """Each label's bias after the temperature (:func:`soundharvest.calibrate.fit_label_bias`;
        ``None`` without one, as in calibrations written before it existed)."""
        b = (self.calibration or {}).get("label_bias")
        return None if b is None else np.asarray(b, dtype=np.float64)

    @property
    def distance_threshold(self) -> float:
        """The typicality distance above which the answer is ``unknown`` (inf: no such test)."""
        t = (self.calibration or {}).get("distance_threshold")
        return float(t) if t is not None and self.typicality is not None else float("inf")

    @property
    def calibration_warning(self) -> str | None:
        """What a user of this predictor should know about its calibration, or ``None``: the
        calibrate stage's warning (too few clips for a confidence threshold), and an
        ``ece_floor`` above :data:`ROUGH_ECE_FLOOR` (too few held-out clips to tell its
        probabilities apart from ones off by that much). ``None`` when uncalibrated: every
        answer says so."""
        cal = self.calibration
        if not cal:
            return None
        notes = [str(cal["warning"])] if cal.get("warning") else []
        floor = cal.get("ece_floor")
        if floor is not None and np.isfinite(floor) and floor > ROUGH_ECE_FLOOR:
            notes.append(
                f"calibrated on {cal.get('n_test', '?')} held-out clips, where even a perfectly "
                f"calibrated predictor measures an ECE of {floor:.2f}: read its probabilities "
                "as rough (more clips: search.results_per_query, calibration.holdout)"
            )
        return "; ".join(notes) or None

    @property
    def hop_seconds(self) -> float:
        """Seconds between frame centres."""
        from .features import make_params

        p = make_params(self.kind, self.features.get("params"))
        return p.hop_length / float(self.features["sample_rate"])

    @property
    def min_samples(self) -> int:
        """The shortest signal that holds one datapoint: a frame's ``n_fft`` samples, and for a
        model with context the whole window (``(span - 1) * hop + n_fft``)."""
        from .features import make_params

        p = make_params(self.kind, self.features.get("params"))
        return int(p.n_fft + (self.encoder.span - 1) * p.hop_length)

    @classmethod
    def load(
        cls,
        directory: Pathlike,
        device: str = "cpu",
        expect_kind: str | None = None,
        calibrated: bool = True,
    ) -> Predictor:
        """Load a predictor directory (see the module doc), checking that its parts agree.

        :param directory: e.g. ``results/predictor/stft/acai``.
        :param device: torch device of the encoder.
        :param expect_kind: if given, the feature kind the caller expects; another is an error.
        :param calibrated: read ``calibration.json`` when present (``False``: temperature 1 and
            no ``unknown``, what the calibrate stage itself starts from).
        """
        from .calibrate import CALIBRATION_NAME, read_calibration
        from .features import n_bins

        d = Path(directory)
        meta_p = d / META_NAME
        if not d.is_dir():
            raise SoundharvestError(f"{d}: not a directory; give a predictor directory")
        if not meta_p.is_file():
            raise SoundharvestError(
                f"{d}: not a predictor directory (no {META_NAME}); give one made by the "
                "label_clusters stage, e.g. results/predictor/<kind>/<model>"
            )
        meta = read_json(meta_p)
        if not isinstance(meta, dict) or meta.get("format") != PREDICTOR_FORMAT:
            raise SoundharvestError(
                f"{meta_p}: field 'format' is not {PREDICTOR_FORMAT!r}; not a predictor directory"
            )
        features = _check_features(meta.get("features"), str(meta_p))
        if expect_kind is not None and features["kind"] != expect_kind:
            raise SoundharvestError(
                f"{d}: feature kind mismatch: the model uses {features['kind']} features, "
                f"{expect_kind} was asked for; use a {expect_kind} model directory or drop --kind"
            )
        label_model = load_label_model(d, meta)
        bins = n_bins(features["kind"], features["params"])
        from .encoder import Encoder

        identity = meta.get("encoder", "weights") == "identity"
        encoder = Encoder.load(None if identity else d / WEIGHTS_NAME, device=device)
        if not identity and int(encoder.meta["in_dim"]) != bins:
            raise SoundharvestError(
                f"{meta_p}: feature kind mismatch: {features['kind']} features have {bins} "
                f"bins, the weights expect {encoder.meta['in_dim']}; rebuild the directory"
            )
        dim = encoder.dim(bins)
        if label_model.dim != dim:
            raise SoundharvestError(
                f"{d}: the label model reads {label_model.dim} dimensions, the encoder "
                f"gives {dim}; re-run the label_clusters stage"
            )
        typicality = None
        if meta.get("typicality"):
            from .typicality import CodeDensity

            typicality = CodeDensity.load(d / str(meta["typicality"]))
            if typicality.labels != list(label_model.labels):
                raise SoundharvestError(
                    f"{d}: the typicality model's labels {typicality.labels} are not the label "
                    f"model's {list(label_model.labels)}; re-run the label_clusters stage"
                )
            if typicality.dim != dim:
                raise SoundharvestError(
                    f"{d}: the typicality model reads {typicality.dim} dimensions, the encoder "
                    f"gives {dim}; re-run the label_clusters stage"
                )
        calibration = read_calibration(d / CALIBRATION_NAME) if calibrated else None
        bias = (calibration or {}).get("label_bias")
        if bias is not None and len(bias) != len(label_model.labels):
            raise SoundharvestError(
                f"{d / CALIBRATION_NAME}: field 'label_bias' has {len(bias)} values for "
                f"{len(label_model.labels)} labels; re-run calibrate"
            )
        return cls(label_model, features, encoder.model, meta, calibration, typicality)

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """Codes of a sequence of feature frames, one per frame (the frames themselves for the
        identity encoder; for a model with context, the window that starts at each frame)."""
        return self.encoder.encode_sequence(frames)

    def frames_of(self, samples: np.ndarray) -> np.ndarray:
        """Feature frames of a mono signal at the predictor's sample rate."""
        from .features import compute_features

        frames, _ = compute_features(
            samples, self.features["sample_rate"], self.kind, self.features["params"]
        )
        return frames

    def frame_log_probs(
        self, samples: np.ndarray, name: str = "audio", per_label: bool = False
    ) -> tuple[np.ndarray, ...]:
        """``(log-probabilities (n, n_labels) of the voiced frames, voiced mask (n_frames,),
        typicality distances (n,) of the voiced frames)`` (distances NaN without a typicality
        model, :mod:`soundharvest.typicality`; ``per_label``: ``(n, n_labels)``, each frame's
        distance to every label's mean, whose row minimum is its typicality distance).

        :raises SoundharvestError: for NaN or infinite samples, and for a signal shorter than
            one datapoint of the model.
        """
        from .features import frame_rms_db

        x = np.asarray(samples, dtype=np.float32)
        bad = int(np.count_nonzero(~np.isfinite(x)))
        if bad:
            raise SoundharvestError(
                f"{name}: {bad} of {x.size} samples are NaN or infinite; the file is corrupt: "
                "re-encode it or give another"
            )
        if x.size < self.min_samples:
            raise SoundharvestError(
                f"{name}: {x.size / self.sample_rate:.3f} s of audio is shorter than one "
                f"datapoint of this model ({self.min_samples / self.sample_rate:.3f} s); "
                "give a longer recording"
            )
        voiced = frame_rms_db(x, self.kind, self.features["params"]) >= self.silence_dbfs
        shape = (len(self.labels),) if per_label else ()
        if not voiced.any():
            return np.zeros((0, len(self.labels))), voiced, np.zeros((0, *shape))
        codes = self.encode(self.frames_of(x))[voiced]
        if self.typicality is None:
            distances = np.full((len(codes), *shape), np.nan)
        elif per_label:
            distances = self.typicality.label_distances(codes)
        else:
            distances = self.typicality.distance(codes)
        return self.label_model.log_probs(codes), voiced, distances

    def score_samples(self, samples: np.ndarray, name: str = "audio") -> dict[str, Any]:
        """A signal's mean frame log-probabilities (``logits``, ``None`` when silent) and mean
        typicality ``distance``, with the voiced frames' count and the duration: what
        :meth:`answer` and calibration start from; ``label_distances``, the mean frame distance
        to each label's mean (``None`` when silent), is kept for studies of other scores."""
        logp, voiced, dist = self.frame_log_probs(samples, name, per_label=True)
        return {
            "logits": logp.mean(axis=0) if len(logp) else None,
            # The nearest label per frame; fmin skips a label without training codes (NaN).
            "distance": float(np.fmin.reduce(dist, axis=1).mean()) if len(dist) else None,
            "label_distances": dist.mean(axis=0) if len(dist) else None,
            "voiced_frames": int(voiced.sum()),
            "n_frames": int(len(voiced)),
            "seconds": round(np.asarray(samples).size / self.sample_rate, 3),
        }

    def decode(self, path: Pathlike, ffmpeg: str | None = None) -> np.ndarray:
        """Decode any file ffmpeg reads at the predictor's rate (float, so that NaN and
        infinite samples stay visible)."""
        from .audio import decode

        p = Path(path)
        if not p.is_file():
            raise SoundharvestError(f"{p}: file not found")
        samples = decode(p, self.sample_rate, ffmpeg=ffmpeg, sample_format="f32")
        if samples.size == 0:
            raise SoundharvestError(f"{p}: no audio samples decoded (empty or not audio)")
        return samples

    def score_file(self, path: Pathlike, ffmpeg: str | None = None) -> dict[str, Any]:
        """:meth:`score_samples` of a decoded file."""
        return self.score_samples(self.decode(path, ffmpeg), str(path))

    def answer(self, logits: np.ndarray | None, distance: float | None = None) -> dict[str, Any]:
        """The verdict on mean frame log-probabilities and the mean typicality distance:
        ``answer`` (a label, ``unknown`` or ``silent``), ``label`` (the most probable one),
        ``confidence``, ``distance`` and every label's calibrated ``probabilities`` (most
        probable first). ``unknown`` (``unknown_because``): audio unlike the training data
        (``atypical``: distance above its threshold), or a confidence below the threshold
        (``unsure``)."""
        from .calibrate import SILENT, UNKNOWN, calibrated_probabilities

        if logits is None:
            return {
                "answer": SILENT,
                "label": None,
                "confidence": None,
                "distance": None,
                "unknown_because": None,
                "probabilities": {},
            }
        p = calibrated_probabilities(
            np.asarray(logits)[None, :], self.temperature, self.confidence_map, self.label_bias
        )[0]
        order = np.lexsort((np.arange(len(p)), -p))
        top = int(order[0])
        conf = float(p[top])
        dist = None if distance is None or not np.isfinite(distance) else float(distance)
        atypical = dist is not None and dist > self.distance_threshold
        unsure = conf < self.threshold
        return {
            "answer": UNKNOWN if unsure or atypical else self.labels[top],
            # Why an answer is unknown: audio unlike the training data, or a low confidence.
            "unknown_because": "atypical" if atypical else ("unsure" if unsure else None),
            "label": self.labels[top],
            "confidence": round(conf, 4),
            "distance": None if dist is None else round(dist, 3),
            "probabilities": {self.labels[i]: round(float(p[i]), 4) for i in order},
        }

    def predict_samples(self, samples: np.ndarray, name: str = "audio") -> dict[str, Any]:
        """The verdict on a signal, with a per-second ``timeline`` of the same verdict."""
        logp, voiced, dist = self.frame_log_probs(samples, name)
        out = self.answer(
            logp.mean(axis=0) if len(logp) else None, float(dist.mean()) if len(dist) else None
        )
        out |= {
            "n_frames": int(len(voiced)),
            "voiced_frames": int(voiced.sum()),
            "calibrated": self.calibration is not None,
        }
        sec = np.floor(np.arange(len(voiced)) * self.hop_seconds + 1e-9).astype(np.int64)
        seconds = np.asarray(samples).size / self.sample_rate
        if len(sec):
            sec = np.minimum(sec, max(int(np.ceil(seconds - 1e-9)) - 1, 0))
        voiced_sec = sec[voiced]
        timeline = []
        for s in range(int(sec[-1]) + 1 if len(sec) else 0):
            sel = voiced_sec == s
            verdict = (
                self.answer(logp[sel].mean(axis=0), float(dist[sel].mean()))
                if sel.any()
                else self.answer(None)
            )
            timeline.append({"start": s, "end": s + 1, **verdict})
        out["timeline"] = timeline
        return out

    def predict_file(self, path: Pathlike, ffmpeg: str | None = None) -> dict[str, Any]:
        """Decode any file ffmpeg reads and label it (see :meth:`predict_samples`)."""
        samples = self.decode(path, ffmpeg)
        out = self.predict_samples(samples, str(path))
        return {"file": str(path), "seconds": round(samples.size / self.sample_rate, 3)} | out


def write_predictor_dir(
    out_dir: Pathlike,
    clusters: ClusterLabelModel | HeadLabelModel,
    features: Mapping[str, Any],
    weights: Pathlike | None,
    info: Mapping[str, Any],
    typicality: Any = None,
) -> dict[str, Any]:
    """Write a predictor directory: weights copy, ``clusters.npz`` (or the weak recogniser's
    ``head.npz``), ``typicality.npz``, then ``meta.json`` (last). An older ``calibration.json``
    is removed.

    :param weights: the trained weights to copy, or ``None`` for the identity encoder.
    :param info: extra fields for ``meta.json`` (model name, k, k_choice, sample size, ...).
    :param typicality: the training codes' density
        (:class:`~soundharvest.typicality.CodeDensity`), or ``None`` for none.
    :return: the ``meta.json`` content.
    """
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / META_NAME).unlink(missing_ok=True)  # the directory is incomplete until meta.json is back
    from .calibrate import CALIBRATION_NAME

    # A calibration belongs to the label model it was fitted on: the calibrate stage re-makes it.
    (d / CALIBRATION_NAME).unlink(missing_ok=True)
    if weights is not None:
        with atomic_path(d / WEIGHTS_NAME) as tmp:
            shutil.copyfile(weights, tmp)
    else:
        (d / WEIGHTS_NAME).unlink(missing_ok=True)
    head = isinstance(clusters, HeadLabelModel)
    (d / (CLUSTERS_NAME if head else HEAD_NAME)).unlink(missing_ok=True)
    clusters.save(d / (HEAD_NAME if head else CLUSTERS_NAME))
    from .typicality import TYPICALITY_NAME

    (d / TYPICALITY_NAME).unlink(missing_ok=True)
    if typicality is not None:
        typicality.save(d / TYPICALITY_NAME)
    meta = {
        "format": PREDICTOR_FORMAT,
        "version": PREDICTOR_VERSION,
        "encoder": "weights" if weights is not None else "identity",
        "label_model": "head" if head else "clusters",
        "features": dict(features),
        "labels": clusters.labels,
        "cluster_names": clusters.cluster_names,
        **({"typicality": TYPICALITY_NAME} if typicality is not None else {}),
        **({} if head else {"cluster_shares": [round(float(s), 4) for s in clusters.shares]}),
        **dict(info),
    }
    write_json(d / META_NAME, meta)
    return meta


def _head_model(
    model: Any, wmeta: Mapping[str, Any], names: Sequence[str], weights: Pathlike | None
) -> tuple[HeadLabelModel, dict[str, Any]]:
    """The weak recogniser's label model: its own head (checked against the shuffle's labels)."""
    if list(model.classes) != list(names):
        raise SoundharvestError(
            f"{weights}: the head's labels {list(model.classes)} are not the shuffle's "
            f"{list(names)}; retrain the classifier on these shards"
        )
    head = HeadLabelModel(
        model.head.weight.detach().cpu().numpy(), model.head.bias.detach().cpu().numpy(), names
    )
    info = {"model": (wmeta.get("extra") or {}).get("model", ""), "model_type": "classifier"}
    return head, {**info, "k": head.k, "k_choice": "head"}


def _cluster_model(
    codes: np.ndarray,
    ids: np.ndarray,
    names: Sequence[str],
    model_name: str,
    model_type: str,
    out_sweep_tsv: Pathlike | None,
    **fit: Any,
) -> tuple[ClusterLabelModel, dict[str, Any]]:
    """Named clusters of the sampled codes (:func:`~soundharvest.labelmodel.fit_clusters`)."""
    clusters, info, table = fit_clusters(codes, ids, names, **fit)
    if out_sweep_tsv is not None:
        write_tsv(out_sweep_tsv, table if table is not None else pd.DataFrame(columns=["k"]))
    counts = np.bincount(ids, minlength=len(names))
    return clusters, {
        "model": model_name,
        "model_type": model_type,
        **info,
        "sample_frames": int(len(codes)),
        "seed": int(fit["seed"]),
        "label_frames": {n: int(c) for n, c in zip(names, counts, strict=True)},
    }


def _fit_label_model(
    encoder: Any,
    codes: np.ndarray,
    ids: np.ndarray,
    names: Sequence[str],
    weights: Pathlike | None,
    model_name: str | None,
    out_sweep_tsv: Pathlike | None,
    **fit: Any,
) -> tuple[ClusterLabelModel | HeadLabelModel, dict[str, Any]]:
    """The weak recogniser's head, or named clusters of the sampled codes for every other
    model; and what ``meta.json`` records of it."""
    wmeta = encoder.meta
    if wmeta.get("model_type") == "classifier":
        return _head_model(encoder.model, wmeta, names, weights)
    name = model_name or (wmeta.get("extra") or {}).get("model")
    return _cluster_model(
        codes, ids, names, name or ("raw" if encoder.identity else ""),
        wmeta.get("model_type", "identity"), out_sweep_tsv, **fit,
    )  # fmt: skip


def _log_label_model(
    info: Mapping[str, Any], label_model: Any, n_codes: int, seconds: float
) -> None:
    named = label_model.cluster_names
    shares = getattr(label_model, "shares", [1.0] * len(named))
    log.info(
        "label_clusters %s: k = %d (%s) on %d frames in %.1f s; clusters: %s",
        info["model"],
        label_model.k,
        info["k_choice"],
        n_codes,
        seconds,
        ", ".join(f"{n} {s:.0%}" for n, s in zip(named, shares, strict=True)),
    )


@contextlib.contextmanager
def _training_codes(
    encoder: Any, sources: Sequence[Pathlike] | None, scratch_dir: Pathlike | None
) -> Iterator[tuple[Any, np.ndarray | None]]:
    """The one pass over the training frames: ``(the concatenate files as ClipPositives, the
    code of every frame in a scratch memmap)``; ``(None, None)`` without ``sources``, no codes
    for the identity encoder (its codes are the frames). The scratch file is removed after."""
    if not sources:
        yield None, None
        return
    from .loader import ClipPositives
    from .sampling import encode_sources

    clips = ClipPositives(sources)
    if encoder.identity:
        yield clips, None
        return
    width = clips.arrays[0].shape[1]
    with tempfile.TemporaryDirectory(prefix="soundharvest-codes-", dir=scratch_dir) as tmp:
        path = Path(tmp) / "codes.npy"
        shape = (clips.n_rows, encoder.dim(width))
        codes = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
        try:
            # The blocks up front: a scratch disk too small is one line here, not a SIGBUS
            # when a store into the sparse map finds no block mid-pass.
            reserve_blocks(path)
        except OSError as e:
            del codes
            if is_disk_full(e):
                raise disk_full_error(path, e) from None
            raise
        try:
            yield clips, encode_sources(encoder, clips, codes)
        finally:
            del codes


def _feature_spec(
    features: Mapping[str, Any] | None, wmeta: Mapping[str, Any], weights: Pathlike | None
) -> dict[str, Any]:
    """The feature spec a predictor records: the one given, else the one the weights carry."""
    spec = features if features is not None else (wmeta.get("extra") or {}).get("features")
    if spec is None:
        raise SoundharvestError(
            f"{weights or 'raw baseline'}: no feature spec; pass features={{kind, params, "
            "sample_rate}} (the train stage stores it in the weights' metadata)"
        )
    return _check_features(spec, str(weights or "features"))


def label_clusters_file(
    shard_paths: Sequence[Pathlike],
    labels_json: Pathlike,
    weights: Pathlike | None,
    out_dir: Pathlike,
    k: int | str = "elbow",
    sample_frames: int = 50_000,
    seed: int = 0,
    max_k: int = 50,
    features: Mapping[str, Any] | None = None,
    model_name: str | None = None,
    out_sweep_tsv: Pathlike | None = None,
    n_init: int = 3,
    device: str = "cpu",
    sources: Sequence[Pathlike] | None = None,
    holdout: float = 0.0,
    silence_dbfs: float = SILENCE_DBFS,
    votes_tsv: Pathlike | None = None,
    scratch_dir: Pathlike | None = None,
) -> dict[str, Any]:
    """Rule ``label_clusters``: shards + weights -> a predictor directory (and the clips' votes).

    For the weak recogniser (model type ``classifier``) the label model is its own head, copied
    as ``head.npz``; every other model gets named clusters, fitted on a sample of training
    frames that skips the clips held out for calibration. Every model gets the typicality model
    of the same sample (:mod:`soundharvest.typicality`), behind the predictor's distance test.

    :param shard_paths: the shuffle stage's ``shard-XX.npy`` of one feature kind.
    :param labels_json: the shuffle's ``labels.json`` (label names, id = position).
    :param weights: the model's ``weights.safetensors``; ``None`` for the raw-feature baseline
        (identity encoder: k-means on the frames themselves).
    :param out_dir: the predictor directory, e.g. ``results/predictor/<kind>/<model>``.
    :param k: ``"elbow"`` (default) or a fixed number of clusters.
    :param sample_frames: training frames sampled for k-means, gathered and encoded block by
        block (:func:`~soundharvest.sampling.sample_codes`).
    :param seed: k-means seed.
    :param max_k: largest k of the elbow sweep.
    :param features: the feature spec ``{kind, params, sample_rate}``; default: the one the
        weights carry (``extra.features``, written by the train stage); required for ``raw``.
    :param model_name: name recorded in ``meta.json`` (default: the weights' or ``raw``).
    :param out_sweep_tsv: optional table of the elbow sweep (k, inertia, label purity/NMI...).
    :param n_init: k-means++ restarts.
    :param device: torch device of the encoder and k-means.
    :param sources: for a model with context T > 1: the concatenate-stage ``.npy`` files the
        shuffle read, in its order; each sampled frame's datapoint is the window of its clip
        that starts there (as in training, :meth:`~soundharvest.loader.ClipPositives.
        window_rows`).
    :param holdout: the share of clips held out for calibration
        (:func:`soundharvest.calibrate.held_out`); their frames are left out of the sample
        (needs ``sources`` to find each frame's clip).
    :param silence_dbfs: frames quieter than this (dBFS RMS) do not vote in a prediction.
    :param votes_tsv: also write how every training clip's frames vote
        (:func:`soundharvest.noise.clip_votes`, the label-noise report's input). Needs
        ``sources``; the training frames are then encoded once, into a scratch file, and the
        sample is read from those codes: one pass serves both.
    :param scratch_dir: where that scratch file goes (default: the system's temporary
        directory; it holds 4 x latent bytes per training frame).
    :return: the ``meta.json`` content.
    """
    from .dataset import read_labels
    from .encoder import Encoder
    from .features import n_bins
    from .noise import clip_votes
    from .typicality import CodeDensity

    t0 = time.perf_counter()
    names = read_labels(labels_json)
    encoder = Encoder.load(weights, device=device)
    wmeta = encoder.meta
    spec = _feature_spec(features, wmeta, weights)
    where = str(weights or "raw baseline")
    if votes_tsv is not None and not sources:
        raise SoundharvestError(
            f"{where}: the label-noise votes need the concatenate files (sources)"
        )
    with _training_codes(encoder, sources if votes_tsv else None, scratch_dir) as (clips, every):
        # The sample: read from the codes of every frame when they were made, else gathered
        # and encoded block by block (memory holds the codes, not the windows).
        bins = n_bins(spec["kind"], spec["params"])
        codes, ids, _ = sample_codes(
            shard_paths, sample_frames, encoder, sources, holdout, bins, where, codes=every
        )
        if len(ids) and ids.max() >= len(names):
            raise SoundharvestError(
                f"{labels_json}: {len(names)} labels, shards use id {ids.max()}"
            )
        label_model, info = _fit_label_model(
            encoder, codes, ids, names, weights, model_name, out_sweep_tsv,
            k=k, max_k=max_k, seed=seed, n_init=n_init, device=device,
        )  # fmt: skip
        info = {**info, "silence_dbfs": float(silence_dbfs), "holdout": float(holdout)}
        typicality = CodeDensity.fit(codes, ids, names)
        meta = write_predictor_dir(out_dir, label_model, spec, weights, info, typicality)
        if votes_tsv is not None:
            write_tsv(votes_tsv, clip_votes(label_model, sources, clips, every))
    _log_label_model(info, label_model, len(codes), time.perf_counter() - t0)
    return meta
