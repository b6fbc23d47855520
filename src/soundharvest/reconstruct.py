"""The reconstruction experiment (thesis section 4.4): what each representation loses of a sound.

For a sample of evaluation notes, every note is turned back into audio from

- its ``stft`` features: dB magnitude -> linear magnitude -> Griffin-Lim;
- its ``mel`` features: dB mel power -> linear power -> ``librosa.feature.inverse.mel_to_stft``
  (non-negative least squares through the mel filterbank) -> Griffin-Lim;
- the same from each autoencoder's reconstruction ``g(f(x))`` of those features;

and the result is compared with the original note by two spectral distances on a common
analysis STFT (n_fft 1024, hop 512):

- **spectral convergence** ``||S - g R||_F / ||S||_F`` (0 = identical magnitudes);
- **log-spectral distance** ``mean_t sqrt(mean_f (20 log10(S / g R))^2)`` in dB, both
  magnitudes floored at ``top_db`` (80 dB) below the original's maximum, the range the
  features keep.

The features are dB *relative to each file's maximum*, clipped to ``top_db`` below it and scaled
to [0, 1]: the absolute level is gone. Inversions are therefore made at a normalised level (0 dB
= the loudest bin as a full-scale sinusoid, see :func:`features_to_magnitude`) and, before measuring, the
reconstruction's level is fitted to the original by least squares (``g = <S, R> / <R, R>``), so
the distances measure spectral shape, not loudness. The wavs are scaled to the original's peak so
that players compare at equal loudness.

File-to-file entry point: :func:`reconstruction_file`.
"""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .io import Pathlike, SoundharvestError, write_text, write_tsv

log = logging.getLogger("soundharvest.reconstruct")

#: The analysis STFT of the metrics (the thesis' stft parameters), whatever the inverted kind.
METRIC_N_FFT = 1024
METRIC_HOP = 512


def features_to_magnitude(
    frames: np.ndarray, kind: str, params: Mapping[str, Any] | None, sample_rate: int
) -> np.ndarray:
    """Linear STFT magnitude ``(n_fft // 2 + 1, n_frames)`` from scaled features.

    The level is normalised: the loudest bin gets the magnitude a full-scale sinusoid
    (amplitude 1) has in its bin, ``sum(window) / 2``, so a pure tone inverts to a peak near 1
    whatever its original level (the features keep no absolute level; for mel, the NNLS
    inversion through the area-normalised filterbank has its own scale, removed the same way).

    :param frames: ``(n_frames, bins)`` in [0, 1], as :func:`soundharvest.features.
        compute_features` makes them (or an autoencoder reconstructs them).
    :param kind: ``stft`` (dB magnitude) or ``mel`` (dB mel power; inverted through
        ``librosa.feature.inverse.mel_to_stft``).
    :param params: the kind's parameters.
    :param sample_rate: Hz.
    """
    import warnings

    import librosa
    import scipy.signal

    from .features import StftParams, make_params, n_bins

    p = make_params(kind, dict(params or {}))
    x = np.asarray(frames, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != n_bins(kind, dict(params or {})):
        raise SoundharvestError(
            f"frames: shape {x.shape}, {kind} features have {n_bins(kind, dict(params or {}))} "
            "bins; invert frames of the kind they were made with"
        )
    # (v * top_db) - top_db undoes the scaling to [0, 1]: dB relative to the file's maximum.
    db = np.clip(x, 0.0, 1.0).T * p.top_db - p.top_db
    full_scale = float(scipy.signal.get_window(p.window, p.n_fft, fftbins=True).sum()) / 2.0
    if isinstance(p, StftParams):
        mag = 10.0 ** (db / 20.0)  # amplitude dB
        return full_scale * mag / max(float(mag.max()), 1e-30)
    power = 10.0 ** (db / 10.0)  # power dB
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # empty low mel bands (see features.py)
        mag = librosa.feature.inverse.mel_to_stft(
            power,
            sr=sample_rate,
            n_fft=p.n_fft,
            power=2.0,
            fmin=p.fmin,
            fmax=p.fmax,
        )
    return full_scale * mag / max(float(mag.max()), 1e-30)


def griffin_lim(
    magnitude: np.ndarray,
    kind: str,
    params: Mapping[str, Any] | None,
    n_iter: int = 64,
    length: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Audio from an STFT magnitude with Griffin-Lim (librosa's fast variant, momentum 0.99).

    :param magnitude: ``(n_fft // 2 + 1, n_frames)`` for the kind's ``n_fft`` and hop.
    :param n_iter: iterations (librosa's default is 32; more converge further).
    :param length: samples of the output (the original's length).
    :param seed: seed of the random initial phase.
    """
    import librosa

    from .features import make_params

    if int(n_iter) < 1:
        raise SoundharvestError(f"reconstruction.griffin_lim_iter = {n_iter!r}: use >= 1")
    p = make_params(kind, dict(params or {}))
    y = librosa.griffinlim(
        np.asarray(magnitude, dtype=np.float32),
        n_iter=int(n_iter),
        hop_length=p.hop_length,
        win_length=p.n_fft,
        n_fft=p.n_fft,
        window=p.window,
        center=p.center,
        length=length,
        random_state=int(seed),
    )
    return y.astype(np.float32)


def invert_features(
    frames: np.ndarray,
    kind: str,
    params: Mapping[str, Any] | None,
    sample_rate: int,
    n_iter: int = 64,
    length: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Audio from scaled features: :func:`features_to_magnitude` then :func:`griffin_lim`."""
    mag = features_to_magnitude(frames, kind, params, sample_rate)
    return griffin_lim(mag, kind, params, n_iter=n_iter, length=length, seed=seed)


def _magnitude(y: np.ndarray) -> np.ndarray:
    import librosa

    return np.abs(librosa.stft(np.asarray(y, dtype=np.float32), n_fft=METRIC_N_FFT,
                               hop_length=METRIC_HOP)).astype(np.float64)  # fmt: skip


def spectral_metrics(
    reference: np.ndarray, estimate: np.ndarray, top_db: float = 80.0
) -> dict[str, float]:
    """Spectral convergence and log-spectral distance (dB) of ``estimate`` against
    ``reference`` after a least-squares level fit (see the module doc); both 0 for equal signals.

    :param reference: the original signal.
    :param estimate: the reconstruction (cut or zero-padded to the reference's length).
    :param top_db: floor of both magnitudes below the reference's maximum, in dB.
    :return: ``{"spectral_convergence", "log_spectral_distance", "gain"}``.
    """
    ref = np.asarray(reference, dtype=np.float64)
    est = np.zeros_like(ref)
    e = np.asarray(estimate, dtype=np.float64)[: len(ref)]
    est[: len(e)] = e
    S, R = _magnitude(ref), _magnitude(est)
    rr = float((R * R).sum())
    gain = float((S * R).sum() / rr) if rr > 0 else 0.0
    R = gain * R
    norm = float(np.linalg.norm(S))
    sc = float(np.linalg.norm(S - R) / norm) if norm > 0 else float("nan")
    floor = max(float(S.max()), 1e-12) * 10.0 ** (-top_db / 20.0)
    diff = 20.0 * np.log10(np.maximum(S, floor) / np.maximum(R, floor))
    lsd = float(np.mean(np.sqrt(np.mean(diff * diff, axis=0))))
    return {"spectral_convergence": sc, "log_spectral_distance": lsd, "gain": gain}


def sample_notes(notes: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` notes spread evenly over the families (round robin, random within a family)."""
    rng = np.random.default_rng(int(seed))
    pools = {
        fam: list(rng.permutation(g["note_str"].to_numpy()))
        for fam, g in sorted(notes.groupby("family"), key=lambda kv: str(kv[0]))
    }
    chosen: list[str] = []
    while len(chosen) < min(int(n), len(notes)):
        for pool in pools.values():
            if pool and len(chosen) < n:
                chosen.append(str(pool.pop(0)))
    return notes.set_index("note_str").loc[chosen].reset_index()


def _reconstruct_frames(model: Any, frames: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        x = torch.from_numpy(np.asarray(frames, dtype=np.float32))
        x = x.to(next(model.parameters()).device)
        _, x_hat = model(x)
        return x_hat.float().cpu().numpy()


def _players_html(
    table: pd.DataFrame, versions: Sequence[str], out_html: Path, embed_from: Path | None = None
) -> None:
    """A table of audio players; with ``embed_from`` (the folder the wav paths are relative to)
    the audio is embedded as data URIs, so the page stands alone (e.g. inside a report)."""
    rows = []
    for note, g in table.groupby("note_str", sort=False):
        fam = html.escape(str(g["family"].iloc[0]))
        cells = [f"<td>{html.escape(str(note))}<br><small>{fam}</small></td>"]
        by = {r["version"]: r for r in g.to_dict("records")}
        for v in versions:
            r = by.get(v)
            if r is None:
                cells.append("<td></td>")
                continue
            metr = (
                ""
                if v == "original"
                else f"<br><small>SC {r['spectral_convergence']:.3f}, "
                f"LSD {r['log_spectral_distance']:.1f} dB</small>"
            )
            if embed_from is not None:
                data = base64.b64encode((embed_from / str(r["wav"])).read_bytes()).decode("ascii")
                src = f"data:audio/wav;base64,{data}"
            else:
                src = html.escape(str(r["wav"]))
            cells.append(f'<td><audio controls preload="none" src="{src}"></audio>{metr}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(f"<th>{html.escape(v)}</th>" for v in ["note", *versions])
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Reconstructions</title>"
        "<style>td,th{padding:4px;border:1px solid #ccc;font-family:sans-serif}"
        "audio{width:180px}</style></head><body>\n<h1>Reconstructed notes</h1>\n"
        "<p>Griffin-Lim from the features (stft, mel) and from each autoencoder's "
        "reconstruction of them. SC: spectral convergence, LSD: log-spectral distance, "
        "against the original.</p>\n"
        f"<table><tr>{head}</tr>\n" + "\n".join(rows) + "\n</table></body></html>\n"
    )
    write_text(out_html, page)


def _load_nets(
    models: Mapping[str, Mapping[str, Pathlike]] | None, features: Mapping[str, Any]
) -> dict[tuple[str, str], Any]:
    """The autoencoders to reconstruct through, by ``(kind, name)``; models that encode windows
    of frames or have no decoder (classifiers) are skipped."""
    nets: dict[tuple[str, str], Any] = {}
    for kind, by_model in (models or {}).items():
        if kind not in features:
            raise SoundharvestError(f"reconstruction: models for kind {kind!r} without features")
        for name, weights in by_model.items():
            from .encoder import load_model
            from .models import context_of

            net, wmeta = load_model(weights)
            if context_of(net)[0] > 1:  # encodes windows; its decoder never learned a frame
                log.info("reconstruction: %s (%s) encodes windows of frames: skipped", name, kind)
                continue
            if wmeta.get("model_type") == "classifier":  # a head, no decoder
                log.info("reconstruction: %s (%s) is a classifier: skipped", name, kind)
                continue
            nets[(kind, name)] = net
    return nets


def _invert_note(
    y: np.ndarray,
    features: Mapping[str, Mapping[str, Any]],
    nets: Mapping[tuple[str, str], Any],
    n_iter: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """A note's audio by version: the original, each kind's features inverted and each
    autoencoder's reconstruction of them inverted."""
    from .features import compute_features

    audio: dict[str, np.ndarray] = {"original": y}
    for kind, spec in features.items():
        sr = int(spec.get("sample_rate", 16000))
        params = dict(spec.get("params") or {})
        frames, _ = compute_features(y, sr, kind, params)
        sources = {kind: frames}
        for (k2, name), net in nets.items():
            if k2 == kind:
                sources[f"{kind}+{name}"] = _reconstruct_frames(net, frames)
        for version, fr in sources.items():
            audio[version] = invert_features(fr, kind, params, sr, n_iter, len(y), seed)
    return audio


def _write_versions(
    out: Path, note: Any, y: np.ndarray, audio: Mapping[str, np.ndarray]
) -> list[dict[str, Any]]:
    """Write a note's versions as ``<note_str>/<version>.wav`` at the original's peak; returns
    their table rows (distances to the original, wav path relative to ``out``)."""
    from .audio import write_wav

    peak = float(np.max(np.abs(y))) or 1.0
    rows = []
    for version, a in audio.items():
        m = (
            {"spectral_convergence": 0.0, "log_spectral_distance": 0.0, "gain": 1.0}
            if version == "original"
            else spectral_metrics(y, a)
        )
        scale = peak / max(float(np.max(np.abs(a))), 1e-12)
        rel = Path(note.note_str) / f"{version}.wav"
        write_wav(out / rel, a * scale, 16000)
        rows.append(
            {
                "note_str": note.note_str,
                "family": note.family,
                "version": version,
                "spectral_convergence": round(m["spectral_convergence"], 5),
                "log_spectral_distance": round(m["log_spectral_distance"], 4),
                "wav": rel.as_posix(),
            }
        )
    return rows


def _summarise(table: pd.DataFrame, n_notes: int) -> pd.DataFrame:
    """Per version (the original aside): mean and standard deviation of both distances."""
    summary = (
        table[table["version"] != "original"]
        .groupby("version", sort=False)[["spectral_convergence", "log_spectral_distance"]]
        .agg(["mean", "std"])
    )
    summary.columns = [f"{a}_{b}" for a, b in summary.columns]
    summary = summary.reset_index().round(4)
    summary.insert(1, "n_notes", n_notes)
    return summary


def reconstruction_file(
    nsynth_dir: Pathlike,
    notes_tsv: Pathlike,
    out_dir: Pathlike,
    out_tsv: Pathlike,
    out_summary_tsv: Pathlike,
    features: Mapping[str, Mapping[str, Any]],
    models: Mapping[str, Mapping[str, Pathlike]] | None = None,
    n_notes: int = 8,
    n_iter: int = 64,
    seed: int = 0,
    out_players_html: Pathlike | None = None,
) -> pd.DataFrame:
    """Rule ``reconstruction``: invert a sample of notes' features (and their autoencoder
    reconstructions), write the wavs, the players page and the distances.

    :param nsynth_dir: the evaluation set (NSynth format).
    :param notes_tsv: an eval_frames notes table (``note_str``, ``family``) to sample from.
    :param out_dir: ``<note_str>/<version>.wav`` for every note and version (``original``,
        ``stft``, ``mel``, ``stft+<model>``, ``mel+<model>``) and ``index.html`` with players.
    :param out_tsv: per note and version: spectral convergence, log-spectral distance, wav path.
    :param out_summary_tsv: per version: mean and standard deviation of both distances.
    :param features: kind -> feature spec ``{params, sample_rate}`` (``kind`` is the key).
    :param models: kind -> model name -> weights file; models with context (windows of
        frames) are skipped.
    :param n_notes: notes in the sample (spread over the families).
    :param n_iter: Griffin-Lim iterations.
    :param seed: seed of the note sample and of Griffin-Lim's initial phase.
    :return: the per-note table.
    """
    from .evaluate.nsynth import load_note

    out = Path(out_dir)
    notes = pd.read_csv(notes_tsv, sep="\t", dtype={"note_str": str, "family": str})
    if not {"note_str", "family"} <= set(notes.columns):
        raise SoundharvestError(f"{notes_tsv}: needs columns note_str and family")
    sample = sample_notes(notes, n_notes, seed)
    nets = _load_nets(models, features)
    versions = ["original", *features]
    versions += [f"{kind}+{name}" for kind, name in nets]
    rows = []
    for note in sample.itertuples(index=False):
        y = load_note(nsynth_dir, note.note_str)
        audio = _invert_note(y, features, nets, n_iter, seed)
        rows += _write_versions(out, note, y, audio)
        log.info("reconstruction: %s done (%d versions)", note.note_str, len(audio))
    table = pd.DataFrame(rows)
    write_tsv(out_tsv, table)
    summary = _summarise(table, len(sample))
    write_tsv(out_summary_tsv, summary)
    _players_html(table, versions, out / "index.html")
    if out_players_html is not None:
        _players_html(table, versions, Path(out_players_html), embed_from=out)
    for r in summary.itertuples(index=False):
        log.info(
            "reconstruction %s: SC %.3f, LSD %.2f dB",
            r.version,
            r.spectral_convergence_mean,
            r.log_spectral_distance_mean,
        )
    return table
