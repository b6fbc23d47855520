"""Spectrogram features: the thesis' two kinds, scaled to [0, 1], one row per frame.

Two kinds, with the thesis' parameters as defaults:

- ``stft``: n_fft 1024, hop 512, periodic Hann window, magnitude in dB -> 513 bins per frame.
- ``mel``: n_fft 2048, hop 512, 512 mel bands (Slaney scale and area norm, librosa's default),
  power in dB -> 512 bins per frame.

Both follow librosa 0.11's conventions exactly: frames are centred (the signal is zero-padded by
``n_fft // 2`` on both sides, librosa's ``pad_mode="constant"``), so frame ``t`` is centred on
sample ``t * hop_length``; dB values are taken relative to the file's maximum
(``amplitude_to_db(ref=np.max)`` / ``power_to_db(ref=np.max)`` with librosa's ``amin``), clipped
to ``[-top_db, 0]`` and mapped linearly to ``[0, 1]`` by ``(db + top_db) / top_db``.

The per-frame *energy* stored beside the features is the frame's power summed over the
one-sided spectrum of that kind's STFT: ``sum_k |X[k, t]|^2`` over the ``n_fft // 2 + 1`` bins,
windowed, before dB and before the mel filterbank (linear units, float32). It orders frames by
loudness (the evaluation's "highest-energy frame") and drives the optional silence filter.

The computation is block-wise in float32 with ``scipy.fft.rfft`` on all cores; a file's dB
reference (its maximum) needs every frame, so the log-power of all frames is computed first and
the scaling applied in place afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from .io import Pathlike, SoundharvestError, save_npy

KINDS = ("stft", "mel")

#: Frames per block: 2048 frames x 1024 samples x 4 bytes = 8 MiB of windowed frames (16 MiB for
#: mel's n_fft 2048), large enough to amortise the FFT call, small enough to stay near the cache.
BLOCK_FRAMES = 2048


@dataclass(frozen=True)
class StftParams:
    """Parameters of the ``stft`` kind (the thesis' defaults).

    :param n_fft: FFT length in samples; the frame has ``n_fft // 2 + 1`` bins.
    :param hop_length: samples between frame centres.
    :param window: a ``scipy.signal.get_window`` name (periodic, as librosa uses it).
    :param center: pad ``n_fft // 2`` zeros on both sides so frame ``t`` is centred on
        ``t * hop_length`` (librosa's default).
    :param top_db: dB range kept below the file's maximum, mapped to [0, 1].
    """

    n_fft: int = 1024
    hop_length: int = 512
    window: str = "hann"
    center: bool = True
    top_db: float = 80.0


@dataclass(frozen=True)
class MelParams:
    """Parameters of the ``mel`` kind (the thesis' defaults).

    :param n_fft: FFT length in samples.
    :param hop_length: samples between frame centres.
    :param n_mels: number of mel bands (bins per frame).
    :param fmin: lowest band edge in Hz.
    :param fmax: highest band edge in Hz; ``None`` means ``sample_rate / 2``.
    :param window: window name, as for ``StftParams``.
    :param center: centred frames, as for ``StftParams``.
    :param top_db: dB range kept below the file's maximum, mapped to [0, 1].
    """

    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 512
    fmin: float = 0.0
    fmax: float | None = None
    window: str = "hann"
    center: bool = True
    top_db: float = 80.0


_PARAM_TYPES: dict[str, type] = {"stft": StftParams, "mel": MelParams}


def make_params(kind: str, params: dict[str, Any] | None = None) -> StftParams | MelParams:
    """Build the parameter dataclass of ``kind`` from a config dict (missing keys: defaults).

    :param kind: ``"stft"`` or ``"mel"``.
    :param params: the config section of that kind, e.g. ``{"n_fft": 1024, "hop_length": 512}``.
    :return: a ``StftParams`` or ``MelParams``.
    """
    if kind not in _PARAM_TYPES:
        raise SoundharvestError(
            f"features: unknown kind {kind!r}; use one of {', '.join(KINDS)} in features.kinds"
        )
    cls = _PARAM_TYPES[kind]
    params = dict(params or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise SoundharvestError(
            f"features.{kind}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}"
        )
    p = cls(**params)
    if p.n_fft < 2 or p.hop_length < 1:
        raise SoundharvestError(f"features.{kind}: n_fft must be >= 2 and hop_length >= 1")
    if p.top_db <= 0:
        raise SoundharvestError(f"features.{kind}.top_db: must be > 0 (the thesis uses 80)")
    if isinstance(p, MelParams) and p.n_mels < 1:
        raise SoundharvestError(f"features.{kind}.n_mels: must be >= 1")
    return p


def n_bins(kind: str, params: dict[str, Any] | None = None) -> int:
    """Number of bins per frame of ``kind`` (513 for the default stft, 512 for mel).

    :param kind: ``"stft"`` or ``"mel"``.
    :param params: the config section of that kind.
    """
    p = make_params(kind, params)
    return p.n_fft // 2 + 1 if isinstance(p, StftParams) else p.n_mels


def bin_frequencies(kind: str, params: dict[str, Any] | None, sample_rate: int) -> np.ndarray:
    """Centre frequency in Hz of every bin of ``kind``'s frames (what a log-frequency front end
    of a model resamples from): ``i * sr / n_fft`` for ``stft``; the mel bands' centres (on the
    Slaney scale librosa uses) for ``mel``.
    """
    p = make_params(kind, params)
    if isinstance(p, StftParams):
        return np.arange(p.n_fft // 2 + 1, dtype=np.float64) * sample_rate / p.n_fft
    import librosa

    fmax = p.fmax if p.fmax is not None else sample_rate / 2.0
    return librosa.mel_frequencies(p.n_mels + 2, fmin=p.fmin, fmax=fmax)[1:-1].astype(np.float64)


def n_frames(n_samples: int, hop_length: int, n_fft: int, center: bool = True) -> int:
    """Number of frames librosa makes of ``n_samples`` samples (0 for an empty signal)."""
    if n_samples == 0:
        return 0
    if center:
        return 1 + n_samples // hop_length
    return 0 if n_samples < n_fft else 1 + (n_samples - n_fft) // hop_length


@functools.lru_cache(maxsize=16)
def _window(name: str, n_fft: int) -> np.ndarray:
    # Imported here: scipy.signal costs a spectrogram job's start-up about a second of imports
    # (scipy.stats and more) for one window function.
    import scipy.signal

    # Periodic ("fftbins=True") window, as librosa.stft uses it.
    return scipy.signal.get_window(name, n_fft, fftbins=True).astype(np.float32)


@functools.lru_cache(maxsize=16)
def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None
) -> np.ndarray:
    """librosa's mel filterbank (Slaney scale, area norm), transposed: ``(n_fft//2+1, n_mels)``.

    Cached: built once per parameter set and process.
    """
    import warnings

    import librosa

    with warnings.catch_warnings():
        # 512 bands on a 2048-point FFT at 16 kHz leave the lowest bands without an FFT bin;
        # librosa warns ("Empty filters detected"). Those bands are 0 power -> 0 after scaling,
        # exactly as librosa.feature.melspectrogram gives them.
        warnings.simplefilter("ignore", UserWarning)
        fb = librosa.filters.mel(
            sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, dtype=np.float32
        )
    return np.ascontiguousarray(fb.T)


#: Mel bands per dense sub-product. The filterbank is banded (a band covers at most a few dozen
#: FFT bins), so multiplying each run of 16 bands by only the bins it covers does ~1/20 of the
#: work of the full dense product (measured: 2 ms instead of 20 ms per 2048 frames on one core).
MEL_CHUNK = 16


@functools.lru_cache(maxsize=16)
def _mel_plan(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None
) -> tuple[tuple[int, int, int, int, np.ndarray], ...]:
    """``(first band, end band, first bin, end bin, weights)`` per run of ``MEL_CHUNK`` bands."""
    fb = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
    plan = []
    for s in range(0, n_mels, MEL_CHUNK):
        e = min(s + MEL_CHUNK, n_mels)
        rows = np.flatnonzero(fb[:, s:e].any(axis=1))
        lo, hi = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (0, 0)
        plan.append((s, e, lo, hi, np.ascontiguousarray(fb[lo:hi, s:e])))
    return tuple(plan)


def _one_blas_thread():
    """Context: BLAS on one thread. The mel sub-products are small; a multi-threaded BLAS spends
    more time synchronising its threads than multiplying (10x slower on a loaded 2-core box)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _frames_view(padded: np.ndarray, n_fft: int, hop: int, n: int) -> np.ndarray:
    return np.lib.stride_tricks.as_strided(
        padded,
        shape=(n, n_fft),
        strides=(hop * padded.strides[0], padded.strides[0]),
        writeable=False,
    )


def frame_rms_db(
    samples: np.ndarray, kind: str, params: dict[str, Any] | None = None, floor_db: float = -200.0
) -> np.ndarray:
    """Level of every frame :func:`compute_features` makes of ``samples``, in dBFS RMS (the
    same ``n_fft`` samples around each frame centre, zero-padded as the features are), so that
    a frame's loudness is known even though the features are scaled to the file's loudest."""
    p = make_params(kind, params)
    y = np.asarray(samples, dtype=np.float32)
    n = n_frames(len(y), p.hop_length, p.n_fft, p.center)
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    pad = p.n_fft // 2 if p.center else 0
    padded = np.zeros(len(y) + 2 * pad, dtype=np.float32)
    padded[pad : pad + len(y)] = y
    frames = _frames_view(padded, p.n_fft, p.hop_length, n)
    ms = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / p.n_fft
    return np.maximum(10.0 * np.log10(np.maximum(ms, 1e-30)), floor_db).astype(np.float32)


def compute_features(
    samples: np.ndarray, sample_rate: int, kind: str, params: dict[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Spectrogram of ``samples`` as frames x bins in [0, 1], and the per-frame energy.

    Equal to librosa's (``librosa.stft`` + ``amplitude_to_db(ref=np.max, top_db)`` for ``stft``;
    ``librosa.feature.melspectrogram`` + ``power_to_db(ref=np.max, top_db)`` for ``mel``), then
    ``(db + top_db) / top_db``, to float32 rounding.

    :param samples: mono signal, 1-D, any float dtype (computed in float32).
    :param sample_rate: Hz (used by the mel filterbank).
    :param kind: ``"stft"`` or ``"mel"``.
    :param params: that kind's config section (see ``StftParams`` / ``MelParams``).
    :return: ``(features, energy)``: ``(n_frames, n_bins)`` float32 in [0, 1] and ``(n_frames,)``
        float32, the frame's power summed over the one-sided STFT spectrum (linear, before dB).
        An empty signal gives ``(0, n_bins)`` and ``(0,)``.
    """
    import scipy.fft  # here, not at the top: the Snakefile reads n_bins on every parse

    p = make_params(kind, params)
    bins = n_bins(kind, asdict(p))
    y = np.asarray(samples, dtype=np.float32)
    if y.ndim != 1:
        raise SoundharvestError(
            f"compute_features: samples must be 1-D (mono), got shape {y.shape}"
        )
    n_fft, hop = p.n_fft, p.hop_length
    n = n_frames(len(y), hop, n_fft, p.center)
    out = np.empty((n, bins), dtype=np.float32)
    energy = np.empty(n, dtype=np.float32)
    if n == 0:
        return out, energy

    pad = n_fft // 2 if p.center else 0
    padded = np.zeros(len(y) + 2 * pad, dtype=np.float32)
    padded[pad : pad + len(y)] = y
    frames = _frames_view(padded, n_fft, hop, n)
    win = _window(p.window, n_fft)
    plan = _mel_plan(sample_rate, n_fft, p.n_mels, p.fmin, p.fmax) if kind == "mel" else None
    workers = os.cpu_count() or 1
    # librosa's amin: 1e-5 on amplitude (= 1e-10 on power) for amplitude_to_db, 1e-10 on power
    # for power_to_db: the same floor on power either way.
    amin = np.float32(1e-10)

    buf = np.empty((min(BLOCK_FRAMES, n), n_fft), dtype=np.float32)
    with _one_blas_thread() if plan else contextlib.nullcontext():
        for s in range(0, n, BLOCK_FRAMES):
            e = min(s + BLOCK_FRAMES, n)
            b = buf[: e - s]
            np.multiply(frames[s:e], win, out=b)
            spec = scipy.fft.rfft(b, axis=1, workers=workers, overwrite_x=True)  # complex64
            power = spec.real * spec.real
            power += spec.imag * spec.imag  # |X|^2 without the sqrt
            np.sum(power, axis=1, out=energy[s:e])
            target = out[s:e]
            if plan is not None:
                for b0, b1, lo, hi, w in plan:
                    target[:, b0:b1] = power[:, lo:hi] @ w if hi > lo else 0.0
            else:
                target[...] = power
            np.maximum(target, amin, out=target)
            np.log10(target, out=target)

    # dB = 10 log10(P) - 10 log10(max P); keep [-top_db, 0]; scale (dB + top_db) / top_db.
    # Folded into one multiply-add and one clip on log10(P): out = a * log10(P) + c.
    ref = np.float32(out.max())  # log10 of max(P) (already floored at amin, as librosa's ref)
    a = np.float32(10.0 / p.top_db)
    c = np.float32(1.0) - a * ref
    out *= a
    out += c
    np.clip(out, 0.0, 1.0, out=out)  # > 1 is impossible; clip guards float rounding only
    return out, energy


def silence_mask(energy: np.ndarray, threshold_db: float | None) -> np.ndarray | None:
    """Frames to keep: energy no more than ``threshold_db`` dB below the file's loudest frame.

    :param energy: per-frame energy (linear power) from ``compute_features``.
    :param threshold_db: dB below the maximum (the sign is ignored: 60 and -60 both mean 60 dB
        below); ``None`` keeps every frame (the thesis' setting).
    :return: a boolean mask, or ``None`` when nothing is filtered.
    """
    if threshold_db is None or len(energy) == 0:
        return None
    ref = float(energy.max())
    if ref <= 0.0:  # an all-zero signal: every frame is silent
        return np.zeros(len(energy), dtype=bool)
    floor = ref * 10.0 ** (-abs(float(threshold_db)) / 10.0)
    return energy >= floor


def spectrogram_file(
    wav_path: Pathlike,
    out_npy: Pathlike,
    out_energy_npy: Pathlike,
    kind: str,
    params: dict[str, Any] | None = None,
    dtype: str = "float16",
    silence_threshold_db: float | None = None,
    out_frames_npy: Pathlike | None = None,
) -> int:
    """Compute one file's spectrogram and write it (and its energy) as ``.npy``, atomically.

    :param wav_path: mono wav (any rate; a 0-sample wav, e.g. a skipped video, is allowed).
    :param out_npy: frames x bins, ``dtype``, values in [0, 1].
    :param out_energy_npy: ``(n_frames,)`` float32 per-frame energy (see ``compute_features``).
    :param kind: ``"stft"`` or ``"mel"``.
    :param params: that kind's config section.
    :param dtype: ``"float16"`` (default: half the disk of float32; its 11-bit mantissa
        resolves 80 dB / 2048 = 0.04 dB near 1.0) or ``"float32"``.
    :param silence_threshold_db: drop frames whose energy is more than this many dB below the
        file's loudest frame; ``None`` (default, as in the thesis) keeps all.
    :param out_frames_npy: optional ``(n_kept,)`` int64 original frame number of each written
        row; with the filter off it is ``arange(n_frames)``. Frame ``t`` is centred at
        ``t * hop_length / sample_rate`` seconds.
    :return: the number of frames written.
    """
    from .audio import read_wav

    if dtype not in ("float16", "float32"):
        raise SoundharvestError(
            f"features.dtype: {dtype!r} is not allowed; use float16 (default) or float32"
        )
    samples, sr = read_wav(wav_path)
    if not np.isfinite(samples).all():
        # convert never writes such a wav (its samples are 16-bit); a float wav put in its place
        # would give NaN frames that poison a label's memmap and every shard.
        bad = int((~np.isfinite(samples)).sum())
        raise SoundharvestError(
            f"{wav_path}: {bad} of {len(samples)} samples are NaN or infinite; re-run its "
            "convert job (it writes 16-bit samples)"
        )
    feats, energy = compute_features(samples, sr, kind, params)
    keep = silence_mask(energy, silence_threshold_db)
    index = np.arange(len(energy), dtype=np.int64)
    if keep is not None:
        feats, energy, index = feats[keep], energy[keep], index[keep]
    save_npy(out_npy, feats.astype(dtype, copy=False))
    save_npy(out_energy_npy, energy.astype(np.float32, copy=False))
    if out_frames_npy is not None:
        save_npy(out_frames_npy, index)
    return int(feats.shape[0])


#: Bump when spectrogram_file's output for the same wav and parameters changes (every stamp's
#: fingerprint changes with it, so the next run computes every video's features again).
FEATURES_VERSION = 1


def spectrogram_batch(
    video_ids: list[str],
    wav_dir: Pathlike,
    out_dir: Pathlike,
    manifest: Pathlike,
    kind: str,
    params: dict[str, Any] | None = None,
    dtype: str = "float16",
    silence_threshold_db: float | None = None,
):
    """The features of a batch of converted videos (:func:`spectrogram_file` each), and the
    batch's manifest (``frames`` per video).

    ``<wav_dir>/<video_id>.wav`` -> ``<out_dir>/<video_id>.npy`` and ``.energy.npy``. A video
    whose stamp matches its wav (the conversion's own stamp) and these parameters is re-used
    (:mod:`soundharvest.batch`).
    """
    from pathlib import Path

    from .batch import fingerprint, read_stamp, run_batch, stamp_path

    wav_dir, out_dir = Path(wav_dir), Path(out_dir)
    settings = {"kind": kind, "params": params, "dtype": dtype, "silence": silence_threshold_db}

    def step(vid: str):
        wav = wav_dir / f"{vid}.wav"
        if not wav.is_file():
            raise SoundharvestError(
                f"{wav}: the converted audio of {vid} is missing; delete the manifest of its "
                "convert batch (batches/convert/<label>-NNN-<hash>.tsv in the results) and re-run"
            )
        made_by = (read_stamp(stamp_path(wav_dir, vid)) or {}).get("fingerprint")
        fp = fingerprint("spectrogram", FEATURES_VERSION, settings, made_by, wav.stat().st_size)
        frames, energy = out_dir / f"{vid}.npy", out_dir / f"{vid}.energy.npy"

        def work() -> dict[str, Any]:
            n = spectrogram_file(
                wav, frames, energy, kind, params, dtype=dtype,
                silence_threshold_db=silence_threshold_db,
            )  # fmt: skip
            return {"frames": n}

        return fp, [frames, energy], work

    return run_batch(video_ids, step, manifest, f"spectrogram {kind}")
