"""The ``eval_frames`` stage: each labelled note -> its highest-energy frame, and its labels.

The frames get exactly the transform and scaling the training frames got
(:func:`soundharvest.features.compute_features` with the same parameters), so that a model sees
evaluation notes the way it saw its training data. The thesis took one frame per note, the one
of highest energy; a note's first frames are its attack and its last its release.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..features import compute_features, n_bins
from ..io import Pathlike, SoundharvestError, load_npy, open_memmap_atomic, save_npy, write_tsv
from .nsynth import load_note, read_nsynth

log = logging.getLogger("soundharvest.eval_frames")

#: Default loudness window of ``loud_frames``: frames within 20 dB of the note's loudest frame
#: (the held part of an NSynth note; its release and the silence after it fall below).
LOUD_DB = 20.0

#: Columns of the notes table written beside the frames.
NOTE_COLUMNS = ["note_str", "family", "instrument", "pitch", "velocity", "frame", "energy"]


def eval_frames(
    nsynth_dir: Pathlike,
    out_frames: Pathlike,
    out_notes: Pathlike,
    kind: str,
    params: dict[str, Any],
    sample_rate: int = 16000,
    families: Sequence[str] | None = None,
    out_loud: Pathlike | None = None,
    out_loud_note: Pathlike | None = None,
    loud_db: float = LOUD_DB,
) -> pd.DataFrame:
    """Write the highest-energy frame of every note (of ``families``) and a table of its labels.

    With ``out_loud`` (and ``out_loud_note``), also every loud frame of every note (within
    ``loud_db`` dB of its loudest, :func:`loud_frames`) and the note index of each: the frames
    whose codes :func:`pool_codes` averages into one code per note.

    :param nsynth_dir: a directory in NSynth's format (validated on reading).
    :param out_frames: ``.npy`` of shape (notes, bins), float32 in [0, 1].
    :param out_notes: TSV with :data:`NOTE_COLUMNS`, one row per frame, in the same order.
    :param kind: ``stft`` or ``mel``; ``params`` its parameters and ``sample_rate`` the rate
        they apply to (as for training; a note at another rate is an error).
    :param families: NSynth family names to keep (``None``: all the directory has).
    :param out_loud: ``.npy`` of the loud frames of all notes, in note order (float32).
    :param out_loud_note: ``.npy`` of the note index (row of the notes table) of each.
    :param loud_db: the loud window in dB below a note's loudest frame.
    :return: the notes table.
    """
    if (out_loud is None) != (out_loud_note is None):
        raise SoundharvestError("eval_frames: give both out_loud and out_loud_note, or neither")
    examples = read_nsynth(nsynth_dir)
    if families:
        missing = sorted(set(families) - set(examples["instrument_family_str"]))
        if missing:
            raise SoundharvestError(
                f"{nsynth_dir}: no notes of famil{'y' if len(missing) == 1 else 'ies'} "
                f"{', '.join(missing)}; set eval_set.families to families the directory has"
            )
        examples = examples[examples["instrument_family_str"].isin(families)]
    examples = examples.sort_values("note_str").reset_index(drop=True)
    bins = n_bins(kind, params)
    rows = []
    loud: list[np.ndarray] = []
    with open_memmap_atomic(out_frames, (len(examples), bins), np.float32) as out:
        for i, ex in enumerate(examples.itertuples(index=False)):
            samples = load_note(nsynth_dir, ex.note_str)
            frames, energy = compute_features(samples, sample_rate, kind, params)
            if len(energy) == 0:
                raise SoundharvestError(f"{nsynth_dir}: note {ex.note_str} has no audio frames")
            best = int(np.argmax(energy))
            out[i] = frames[best]
            if out_loud is not None:
                loud.append(np.asarray(frames[loud_frames(energy, loud_db)], dtype=np.float32))
            rows.append(
                (
                    ex.note_str,
                    ex.instrument_family_str,
                    ex.instrument_str,
                    int(ex.pitch),
                    int(ex.velocity),
                    best,
                    float(energy[best]),
                )
            )
    notes = pd.DataFrame(rows, columns=NOTE_COLUMNS)
    if out_loud is not None:
        note_of = np.concatenate(
            [np.full(len(f), i, dtype=np.int64) for i, f in enumerate(loud)] or [np.empty(0, int)]
        )
        save_npy(out_loud, np.concatenate(loud) if loud else np.empty((0, bins), np.float32))
        save_npy(out_loud_note, note_of)
    write_tsv(out_notes, notes)
    log.info(
        "%d notes of %d families -> %s frames of %d bins",
        len(notes),
        notes["family"].nunique(),
        kind,
        bins,
    )
    return notes


def eval_windows(
    nsynth_dir: Pathlike,
    notes_tsv: Pathlike,
    out_windows: Pathlike,
    kind: str,
    params: dict[str, Any],
    span: int,
    sample_rate: int = 16000,
) -> np.ndarray:
    """Write every note's ``span`` consecutive frames from its highest-energy frame on.

    The datapoints of a model with context (``architecture.context`` T frames, ``stride``
    apart, span ``(T - 1) * stride + 1``): the window that starts where the thesis takes its
    single frame, so the attack peak and what follows it (decay, sustain) are in view. Past the
    end of a note the last frame repeats, as in training windows at the end of a clip.

    :param notes_tsv: :func:`eval_frames`' notes table; its ``frame`` column is the start.
    :param out_windows: ``.npy`` of shape ``(notes, span, bins)``, float32, in the table's
        order.
    :param span: frames per window (>= 1).
    :return: the windows (a read-only memmap).
    """
    from ..models import window_index

    if not isinstance(span, int) or isinstance(span, bool) or span < 1:
        raise SoundharvestError(f"eval_windows: span = {span!r}; give a positive frame count")
    notes = pd.read_csv(notes_tsv, sep="\t", dtype={"note_str": str})
    bins = n_bins(kind, params)
    with open_memmap_atomic(out_windows, (len(notes), span, bins), np.float32) as out:
        for i, (key, start) in enumerate(zip(notes["note_str"], notes["frame"], strict=True)):
            frames, _ = compute_features(load_note(nsynth_dir, key), sample_rate, kind, params)
            if int(start) >= len(frames):
                raise SoundharvestError(
                    f"{notes_tsv}: note {key} starts at frame {start} of {len(frames)}; "
                    "re-run eval_frames with the same features"
                )
            out[i] = frames[window_index(np.array([int(start)]), len(frames), span, 1)[0]]
    log.info("%d notes -> windows of %d %s frames", len(notes), span, kind)
    return load_npy(out_windows)


def loud_frames(energy: np.ndarray, loud_db: float = LOUD_DB) -> np.ndarray:
    """Indices of a note's loud frames: energy within ``loud_db`` dB of its loudest frame.

    :param energy: per-frame energy (linear power) from ``compute_features``.
    :param loud_db: dB below the maximum (sign ignored); the highest-energy frame is always in.
    :return: int64 indices in time order (at least one for a non-empty note).
    """
    e = np.asarray(energy, dtype=np.float64)
    if e.ndim != 1 or len(e) == 0:
        raise SoundharvestError("loud_frames: energy must be a non-empty 1-D array")
    floor = e.max() * 10.0 ** (-abs(float(loud_db)) / 10.0)
    return np.flatnonzero(e >= floor).astype(np.int64)


def pool_codes(codes: np.ndarray, note_of: np.ndarray, n_notes: int) -> np.ndarray:
    """Mean code per note over its frames (e.g. its loud frames).

    :param codes: ``(n_frames, d)`` codes of the frames of all notes.
    :param note_of: ``(n_frames,)`` note index of every frame, in ``0..n_notes-1``.
    :param n_notes: number of notes; every note must have at least one frame.
    :return: float32 ``(n_notes, d)``.
    """
    codes = np.asarray(codes, dtype=np.float64)
    idx = np.asarray(note_of, dtype=np.int64)
    if codes.ndim != 2 or idx.shape != (codes.shape[0],):
        raise SoundharvestError(
            f"pool_codes: {codes.shape} codes for {idx.shape} note indices; give one per frame"
        )
    counts = np.bincount(idx, minlength=n_notes)
    if len(counts) != n_notes or (counts == 0).any():
        raise SoundharvestError(
            f"pool_codes: note indices must cover 0..{n_notes - 1}, each at least once"
        )
    sums = np.zeros((n_notes, codes.shape[1]), dtype=np.float64)
    np.add.at(sums, idx, codes)
    return (sums / counts[:, None]).astype(np.float32)
