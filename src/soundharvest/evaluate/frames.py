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
from ..io import Pathlike, SoundharvestError, open_memmap_atomic, write_tsv
from .nsynth import load_note, read_nsynth

log = logging.getLogger("soundharvest.eval_frames")

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
) -> pd.DataFrame:
    """Write the highest-energy frame of every note (of ``families``) and a table of its labels.

    :param nsynth_dir: a directory in NSynth's format (validated on reading).
    :param out_frames: ``.npy`` of shape (notes, bins), float32 in [0, 1].
    :param out_notes: TSV with :data:`NOTE_COLUMNS`, one row per frame, in the same order.
    :param kind: ``stft`` or ``mel``; ``params`` its parameters and ``sample_rate`` the rate
        they apply to (as for training; a note at another rate is an error).
    :param families: NSynth family names to keep (``None``: all the directory has).
    :return: the notes table.
    """
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
    with open_memmap_atomic(out_frames, (len(examples), bins), np.float32) as out:
        for i, ex in enumerate(examples.itertuples(index=False)):
            samples = load_note(nsynth_dir, ex.note_str)
            frames, energy = compute_features(samples, sample_rate, kind, params)
            if len(energy) == 0:
                raise SoundharvestError(f"{nsynth_dir}: note {ex.note_str} has no audio frames")
            best = int(np.argmax(energy))
            out[i] = frames[best]
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
    write_tsv(out_notes, notes)
    log.info(
        "%d notes of %d families -> %s frames of %d bins",
        len(notes),
        notes["family"].nunique(),
        kind,
        bins,
    )
    return notes
