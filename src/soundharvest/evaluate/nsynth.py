"""NSynth-format evaluation sets: validate, read, write, and render one from the soundfont.

An NSynth directory (``nsynth-test``, ``nsynth-valid``, or one rendered here) holds
``examples.json``, a dict keyed by ``note_str`` whose values have the fields of
:data:`REQUIRED_FIELDS`, and ``audio/<note_str>.wav``: 16 kHz, mono, 16-bit PCM, 4 s
(64,000 samples), the note held for 3 s and then released.

:func:`render_eval_set` renders such a directory from the GM soundfont with NSynth's
conventions (MIDI pitch 21-108, velocities 25/50/75/100/127, several instruments per family),
from programs the ``demo`` training data never used (``programs="disjoint"``) or from all of a
family's programs (``"overlap"``), with the default TimGM6mb or another GM ``.sf2``
(``soundfont``); :data:`PROVENANCE` beside examples.json says which.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

from .. import synth
from ..audio import wav_header_problem, write_wav_file
from ..io import Pathlike, SoundharvestError, plain_mode, read_json, write_json
from ..synth import NSYNTH_FAMILIES, NSYNTH_SOURCES, PROGRAMS, Note

log = logging.getLogger("soundharvest.evaluate")

__all__ = [
    "NSYNTH_FAMILIES",
    "NSYNTH_SOURCES",
    "NSYNTH_PITCHES",
    "NSYNTH_VELOCITIES",
    "NSYNTH_QUALITIES",
    "REQUIRED_FIELDS",
    "validate_nsynth",
    "read_nsynth",
    "load_note",
    "write_nsynth",
    "render_eval_set",
    "soundfont_provenance",
    "PROVENANCE",
    "load_label_families",
]

#: family name -> NSynth's family id
FAMILY_IDS = {name: i for i, name in enumerate(NSYNTH_FAMILIES)}

SAMPLE_RATE = 16000
NOTE_SECONDS = 4.0
HOLD_SECONDS = 3.0
NOTE_SAMPLES = int(SAMPLE_RATE * NOTE_SECONDS)

#: NSynth's pitch range (MIDI 21-108, the piano's) and velocities.
NSYNTH_PITCHES = range(21, 109)
NSYNTH_VELOCITIES = (25, 50, 75, 100, 127)

#: NSynth's note qualities, in the order of the ``qualities`` bit vector.
NSYNTH_QUALITIES = [
    "bright",
    "dark",
    "distortion",
    "fast_decay",
    "long_release",
    "multiphonic",
    "nonlinear_env",
    "percussive",
    "reverb",
    "tempo-synced",
]

#: Fields every note of examples.json has, and their JSON types.
REQUIRED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "note": int,
    "note_str": str,
    "instrument": int,
    "instrument_str": str,
    "instrument_source": int,
    "instrument_source_str": str,
    "instrument_family": int,
    "instrument_family_str": str,
    "pitch": int,
    "velocity": int,
    "sample_rate": int,
    "qualities": list,
    "qualities_str": list,
}

#: Columns of :func:`read_nsynth`'s frame, in order (the fields, then the wav's path).
COLUMNS = list(REQUIRED_FIELDS) + ["path"]

#: The file beside examples.json that says how a rendered set was made (its soundfont).
PROVENANCE = "provenance.json"

#: How many problems :func:`read_nsynth` prints before summarising the rest.
_MAX_SHOWN = 20


def _check_note(key: str, ex: Any) -> list[str]:
    """Problems of one examples.json entry (empty if it is well formed)."""
    where = f"examples.json[{key!r}]"
    if not isinstance(ex, dict):
        return [f"{where}: must be an object with the NSynth fields, not {type(ex).__name__}"]
    problems = []
    for name, kind in REQUIRED_FIELDS.items():
        if name not in ex:
            problems.append(f"{where}: field {name!r} is missing")
        elif not isinstance(ex[name], kind) or (kind is int and isinstance(ex[name], bool)):
            problems.append(
                f"{where}: field {name!r} must be {kind.__name__}, not {type(ex[name]).__name__}"
            )
    if problems:
        return problems
    if ex["note_str"] != key:
        problems.append(f"{where}: note_str {ex['note_str']!r} differs from its key")
    fam, fam_str = ex["instrument_family"], ex["instrument_family_str"]
    if fam_str not in FAMILY_IDS:
        problems.append(
            f"{where}: unknown instrument_family_str {fam_str!r}; NSynth's are "
            f"{', '.join(NSYNTH_FAMILIES)}"
        )
    elif FAMILY_IDS[fam_str] != fam:
        problems.append(
            f"{where}: instrument_family {fam} does not match {fam_str!r} "
            f"(NSynth's id for it is {FAMILY_IDS[fam_str]})"
        )
    src, src_str = ex["instrument_source"], ex["instrument_source_str"]
    if src_str not in NSYNTH_SOURCES or NSYNTH_SOURCES.index(src_str) != src:
        problems.append(
            f"{where}: instrument_source {src}/{src_str!r} is not one of "
            + ", ".join(f"{i}/{s}" for i, s in enumerate(NSYNTH_SOURCES))
        )
    if not 0 <= ex["pitch"] <= 127:
        problems.append(f"{where}: pitch {ex['pitch']} is not a MIDI pitch (0-127)")
    if not 0 <= ex["velocity"] <= 127:
        problems.append(f"{where}: velocity {ex['velocity']} is not a MIDI velocity (0-127)")
    if ex["sample_rate"] != SAMPLE_RATE:
        problems.append(f"{where}: sample_rate {ex['sample_rate']} must be {SAMPLE_RATE}")
    if len(ex["qualities"]) != len(NSYNTH_QUALITIES):
        problems.append(f"{where}: qualities must have {len(NSYNTH_QUALITIES)} entries")
    return problems


def _check_wav(path: Path, name: str) -> list[str]:
    """Problems of one wav file's header (sf.info reads the header only, not the samples)."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        return [f"audio/{name}: not a readable wav file ({' '.join(str(e).split())}); replace it"]
    lie = wav_header_problem(info)
    if lie:
        return [f"audio/{name}: {lie}; replace it"]
    problems = []
    if info.samplerate != SAMPLE_RATE:
        problems.append(f"audio/{name}: sample rate {info.samplerate} Hz, must be {SAMPLE_RATE}")
    if info.channels != 1:
        problems.append(f"audio/{name}: {info.channels} channels, must be mono")
    if info.frames != NOTE_SAMPLES:
        problems.append(
            f"audio/{name}: {info.frames} samples ({info.frames / max(info.samplerate, 1):.3f} s),"
            f" must be {NOTE_SAMPLES} ({NOTE_SECONDS:g} s at {SAMPLE_RATE} Hz)"
        )
    if info.subtype != "PCM_16":
        problems.append(f"audio/{name}: sample format {info.subtype}, must be PCM_16 (int16)")
    return problems


def _load_examples(directory: Path) -> tuple[dict[str, Any] | None, list[str]]:
    path = directory / "examples.json"
    if not directory.is_dir():
        return None, [f"{directory}: not a directory; point the eval set at an NSynth directory"]
    if not path.is_file():
        return None, [f"{path}: missing; an NSynth directory needs examples.json and audio/"]
    try:
        examples = read_json(path)
    except SoundharvestError as e:
        return None, [str(e)]
    if not isinstance(examples, dict):
        return None, [f"{path}: must be a JSON object keyed by note_str"]
    return examples, []


def validate_nsynth(directory: Pathlike, check_audio: bool = True) -> list[str]:
    """Problems that keep ``directory`` from being a valid NSynth directory, one line each.

    Checks examples.json (valid JSON, every field present and typed, family and source names
    and ids that agree, 16 kHz) and that ``audio/`` holds exactly one wav per note: 16 kHz,
    mono, 16-bit, 4 s. Only the wav headers are read.

    :param check_audio: ``False`` skips the wav headers (still checks that each file exists).
    :return: the problems; an empty list means valid.
    """
    directory = Path(directory)
    examples, problems = _load_examples(directory)
    if examples is None:
        return problems
    for key, ex in examples.items():
        problems += _check_note(key, ex)
    audio = directory / "audio"
    if not audio.is_dir():
        return problems + [f"{audio}: missing; it must hold one <note_str>.wav per note"]
    present = {e.name for e in os.scandir(audio) if e.name.endswith(".wav") and e.is_file()}
    wanted = {f"{key}.wav" for key in examples}
    for name in sorted(wanted - present):
        problems.append(f"audio/{name}: missing (listed in examples.json); add it or drop the note")
    for name in sorted(present - wanted):
        problems.append(f"audio/{name}: extra file not in examples.json; remove it or list it")
    if check_audio:
        for name in sorted(wanted & present):
            problems += _check_wav(audio / name, name)
    return problems


def read_nsynth(
    directory: Pathlike, families: Iterable[str] | None = None, check_audio: bool = True
) -> pd.DataFrame:
    """Read an NSynth directory's notes (not their audio) after validating it.

    :param families: keep only notes of these family names (all when ``None``).
    :param check_audio: validate the wav headers too (about 20 µs a file).
    :return: one row per note, sorted by ``note_str``, columns :data:`COLUMNS` (``path`` is the
        wav's path; ``qualities`` and ``qualities_str`` hold lists).
    :raises SoundharvestError: listing every problem found.
    """
    directory = Path(directory)
    problems = validate_nsynth(directory, check_audio=check_audio)
    if len(problems) == 1:  # the common case (one missing or broken file): one line
        raise SoundharvestError(f"{directory}: not a valid NSynth directory: {problems[0]}")
    if problems:
        shown = problems[:_MAX_SHOWN]
        more = (
            f"\n  ... and {len(problems) - _MAX_SHOWN} more" if len(problems) > _MAX_SHOWN else ""
        )
        raise SoundharvestError(
            f"{directory}: not a valid NSynth directory ({len(problems)} problem(s)):\n  "
            + "\n  ".join(shown)
            + more
        )
    examples = read_json(directory / "examples.json")
    rows = [{name: ex[name] for name in REQUIRED_FIELDS} for ex in examples.values()]
    frame = pd.DataFrame(rows, columns=list(REQUIRED_FIELDS))
    frame["path"] = [str(directory / "audio" / f"{k}.wav") for k in frame["note_str"]]
    if families is not None:
        families = [families] if isinstance(families, str) else list(families)
        unknown = [f for f in families if f not in FAMILY_IDS]
        if unknown:
            raise SoundharvestError(
                f"eval families {unknown} unknown; NSynth's are {', '.join(NSYNTH_FAMILIES)}"
            )
        frame = frame[frame["instrument_family_str"].isin(families)]
    return frame.sort_values("note_str", kind="stable").reset_index(drop=True)


def load_note(directory: Pathlike, note_str: str) -> np.ndarray:
    """One note's samples as float32 in [-1, 1) (the int16 values divided by 32768)."""
    path = Path(directory) / "audio" / f"{note_str}.wav"
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError) as e:
        reason = " ".join(str(e).split())
        raise SoundharvestError(f"{path}: not a readable wav file ({reason})") from None
    if sr != SAMPLE_RATE or data.ndim != 1:
        raise SoundharvestError(f"{path}: must be {SAMPLE_RATE} Hz mono, is {sr} Hz {data.shape}")
    return data


def _as_pcm16(audio: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(audio)
    if a.ndim != 1 or a.shape[0] != NOTE_SAMPLES:
        raise SoundharvestError(
            f"write_nsynth: audio of {name!r} has shape {a.shape}, must be ({NOTE_SAMPLES},)"
        )
    if a.dtype == np.int16:
        return a
    if not np.issubdtype(a.dtype, np.floating):
        raise SoundharvestError(f"write_nsynth: audio of {name!r} must be int16 or float")
    return synth.to_pcm16(a)


def write_nsynth(
    directory: Pathlike,
    examples: Sequence[dict[str, Any]],
    audios: Sequence[np.ndarray],
    provenance: dict[str, Any] | None = None,
) -> None:
    """Write an NSynth directory atomically (built under a temporary name, then renamed).

    :param examples: one dict per note with the fields of :data:`REQUIRED_FIELDS` (extra
        fields are kept); keyed in examples.json by their ``note_str``.
    :param audios: one array per note, 64,000 samples: int16, or float in [-1, 1] (stored as
        ``round(x * 32768)``, so floats that are multiples of 1/32768 read back exactly).
    :param provenance: how the set was made (e.g. :func:`render_eval_set`'s soundfont), written
        beside examples.json as :data:`PROVENANCE` (readers of NSynth ignore it); None: none.
    :raises SoundharvestError: if a note is malformed or two notes share a ``note_str``.
    """
    directory = Path(directory)
    if len(examples) != len(audios):
        raise SoundharvestError(
            f"write_nsynth: {len(examples)} examples but {len(audios)} audio arrays"
        )
    table: dict[str, Any] = {}
    for ex in examples:
        key = ex.get("note_str") if isinstance(ex, dict) else None
        if not isinstance(key, str) or not key or "/" in key:
            raise SoundharvestError(f"write_nsynth: note without a usable note_str: {ex!r:.200}")
        if key in table:
            raise SoundharvestError(f"write_nsynth: note_str {key!r} occurs twice")
        table[key] = ex
    problems = [p for key, ex in table.items() for p in _check_note(key, ex)]
    if problems:
        raise SoundharvestError("write_nsynth: " + problems[0])
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
    try:
        os.chmod(tmp, plain_mode(directory=True))  # mkdtemp's 0700 would hide the set from a group
        (tmp / "audio").mkdir()
        for ex, audio in zip(examples, audios, strict=True):
            pcm = _as_pcm16(audio, ex["note_str"])
            write_wav_file(tmp / "audio" / f"{ex['note_str']}.wav", pcm, SAMPLE_RATE)
        write_json(tmp / "examples.json", table)
        if provenance is not None:
            write_json(tmp / PROVENANCE, provenance)
        _replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_dir(new: Path, target: Path) -> None:
    """Rename ``new`` to ``target``; an existing ``target`` is moved aside first, then deleted."""
    old = None
    if target.exists() or target.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.rmdir(old)
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()


# --------------------------------------------------------------------------------------------
# Rendering an evaluation set from the soundfont


def _instrument_str(program: int) -> tuple[str, int, str, int, str]:
    p = PROGRAMS[program]
    source = NSYNTH_SOURCES.index(p.source)
    # The GM program number serves as the instrument's index: unique and traceable.
    return f"{p.family}_{p.source}_{program:03d}", program, p.source, source, p.family


def eval_notes(
    families: Sequence[str],
    notes_per_family: int,
    programs: str = "disjoint",
    seed: int = 0,
    pitches: Iterable[int] | None = None,
    velocities: Iterable[int] = NSYNTH_VELOCITIES,
    exclude: Iterable[int] = (),
) -> list[dict[str, Any]]:
    """The examples (without audio) of a rendered evaluation set; see :func:`render_eval_set`."""
    if notes_per_family < 1:
        raise SoundharvestError(f"eval_set: notes_per_family must be >= 1, not {notes_per_family}")
    velocities = sorted({int(v) for v in velocities})
    if not velocities or any(not 1 <= v <= 127 for v in velocities):
        raise SoundharvestError("eval_set: velocities must be MIDI velocities 1-127")
    allowed = set(NSYNTH_PITCHES) if pitches is None else {int(p) for p in pitches}
    if not allowed or any(p not in NSYNTH_PITCHES for p in allowed):
        raise SoundharvestError("eval_set: pitches must lie in NSynth's range, MIDI 21-108")
    if len(set(families)) != len(families):
        raise SoundharvestError(f"eval_set: families listed twice in {list(families)}")
    examples: list[dict[str, Any]] = []
    for family in families:
        progs = synth.eval_programs(family, programs, exclude)
        rng = synth.rng_for(seed, "eval_set", family, programs)
        # Each instrument's notes: (pitch, velocity) pairs within its range, in random order.
        pools = {}
        for prog in progs:
            p = PROGRAMS[prog]
            pairs = [(k, v) for k in range(p.low, p.high + 1) if k in allowed for v in velocities]
            pools[prog] = [pairs[i] for i in rng.permutation(len(pairs))]
        capacity = sum(len(v) for v in pools.values())
        if capacity < notes_per_family:
            raise SoundharvestError(
                f"eval_set: family {family!r} has only {capacity} distinct notes with "
                f"programs={programs!r} and these pitches/velocities; lower notes_per_family"
            )
        # Round-robin over the instruments so each contributes equally (NSynth-like balance).
        order = [prog for prog in progs if pools[prog]]
        taken: list[tuple[int, int, int]] = []
        i = 0
        while len(taken) < notes_per_family:
            prog = order[i % len(order)]
            if pools[prog]:
                pitch, vel = pools[prog].pop()
                taken.append((prog, pitch, vel))
            i += 1
        for prog, pitch, vel in sorted(taken):
            inst_str, inst, src_str, src, fam = _instrument_str(prog)
            examples.append(
                {
                    "note": 0,  # numbered below
                    "note_str": f"{inst_str}-{pitch:03d}-{vel:03d}",
                    "instrument": inst,
                    "instrument_str": inst_str,
                    "instrument_source": src,
                    "instrument_source_str": src_str,
                    "instrument_family": FAMILY_IDS[fam],
                    "instrument_family_str": fam,
                    "pitch": pitch,
                    "velocity": vel,
                    "sample_rate": SAMPLE_RATE,
                    "qualities": [0] * len(NSYNTH_QUALITIES),
                    "qualities_str": [],
                }
            )
    for i, ex in enumerate(examples):
        ex["note"] = i
    return examples


def render_note(
    program: int, pitch: int, velocity: int, soundfont: Pathlike | None = None
) -> np.ndarray:
    """One NSynth-style note: held :data:`HOLD_SECONDS`, released, 4 s in all, float64.

    Levels follow the soundfont and the velocity (no per-note normalisation, as in NSynth);
    a note that would clip is scaled to a peak of 0.99.

    :param soundfont: the GM ``.sf2`` (None or empty: the default, see
        :func:`soundharvest.synth.soundfont_path`).
    """
    note = Note(0.0, HOLD_SECONDS, pitch, velocity, program)
    x = synth.render_notes([note], NOTE_SECONDS, soundfont=soundfont)
    peak = float(np.max(np.abs(x)))
    return x * (0.99 / peak) if peak > 0.99 else x


def render_eval_set(
    directory: Pathlike,
    families: Sequence[str],
    notes_per_family: int,
    programs: str = "disjoint",
    seed: int = 0,
    pitches: Iterable[int] | None = None,
    velocities: Iterable[int] = NSYNTH_VELOCITIES,
    exclude: Iterable[int] = (),
    soundfont: Pathlike | None = None,
) -> pd.DataFrame:
    """Render an NSynth-format evaluation set from the soundfont into ``directory``.

    :param families: NSynth family names (any of the eleven).
    :param notes_per_family: notes per family, spread evenly over the family's instruments.
    :param programs: ``"disjoint"``: only GM programs never used by the ``demo`` training
        source; ``"overlap"``: every program of the family (see
        :func:`soundharvest.synth.eval_programs`).
    :param seed: picks the notes; the audio depends on (program, pitch, velocity) only.
    :param pitches: allowed MIDI pitches (default NSynth's 21-108), each instrument further
        limited to its real range.
    :param velocities: NSynth's 25, 50, 75, 100, 127 by default.
    :param exclude: more GM programs to keep out of a disjoint set (see
        :func:`soundharvest.synth.eval_programs`).
    :param soundfont: the GM ``.sf2`` to render from (``eval_set.soundfont``); None or empty:
        the default TimGM6mb (or ``$SOUNDHARVEST_SOUNDFONT``). Which one made the notes is
        recorded in ``directory``/:data:`PROVENANCE` (:func:`soundfont_provenance`), with the
        notes that came out silent (a soundfont without a sample for that key).
    :return: the notes, as :func:`read_nsynth` returns them.
    :raises SoundharvestError: one line naming ``eval_set.soundfont`` if that file is missing
        or is not a SoundFont.
    """
    if soundfont:
        _check_soundfont(soundfont)
    exclude = list(exclude)
    examples = eval_notes(families, notes_per_family, programs, seed, pitches, velocities, exclude)
    audios = [
        synth.to_pcm16(render_note(ex["instrument"], ex["pitch"], ex["velocity"], soundfont))
        for ex in examples
    ]
    silent = [ex["note_str"] for ex, a in zip(examples, audios, strict=True) if not np.any(a)]
    if silent:
        log.warning(
            "%d of %d notes are silent (the soundfont has no sample for their key), e.g. %s",
            len(silent),
            len(examples),
            ", ".join(silent[:3]),
        )
    provenance = {**soundfont_provenance(soundfont), "silent_notes": silent}
    write_nsynth(directory, examples, audios, provenance=provenance)
    return read_nsynth(directory)


def _check_soundfont(soundfont: Pathlike) -> None:
    """A one-line error naming ``eval_set.soundfont`` unless ``soundfont`` is a loadable .sf2."""
    where = f"eval_set.soundfont = {str(soundfont)!r}"
    fix = (
        f"set it to a General MIDI .sf2 (e.g. {synth.GMBANK}, from Debian's csound-soundfont) "
        'or to "" for the default TimGM6mb'
    )
    if not Path(soundfont).is_file():
        raise SoundharvestError(f"{where}: no such file; {fix}")
    try:
        synth.load_soundfont(soundfont)
    except SoundharvestError:
        raise SoundharvestError(f"{where}: not a readable SoundFont 2 file; {fix}") from None


def soundfont_provenance(soundfont: Pathlike | None = None) -> dict[str, Any]:
    """What identifies the soundfont a set is rendered from: its file name, path, size and
    SHA-256, and where the choice came from (``eval_set.soundfont``, the
    ``SOUNDHARVEST_SOUNDFONT`` override or the default that ships with pretty_midi)."""
    path = synth.soundfont_path(soundfont)
    if soundfont:
        chosen_by = "eval_set.soundfont"
    elif os.environ.get("SOUNDHARVEST_SOUNDFONT"):
        chosen_by = "SOUNDHARVEST_SOUNDFONT"
    else:
        chosen_by = "default (pretty_midi)"
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {
        "soundfont": path.name,
        "soundfont_path": str(path.resolve()),
        "soundfont_bytes": path.stat().st_size,
        "soundfont_sha256": digest.hexdigest(),
        "soundfont_chosen_by": chosen_by,
    }


# --------------------------------------------------------------------------------------------
# Training labels <-> NSynth families


def load_label_families(path: Pathlike) -> dict[str, str | None]:
    """Read the label -> NSynth family table (TSV: ``label``, ``family``, ``comment``).

    An empty family means the label has no NSynth family: its notes cannot be scored.
    Lines starting with ``#`` are comments.

    :raises SoundharvestError: on a missing column, an unknown family or a repeated label.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            lines = [line for line in fh if line.strip() and not line.lstrip().startswith("#")]
    except FileNotFoundError:
        raise SoundharvestError(f"{path}: label -> family table not found") from None
    reader = csv.DictReader(lines, delimiter="\t")
    missing = {"label", "family"} - set(reader.fieldnames or [])
    if missing:
        raise SoundharvestError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    table: dict[str, str | None] = {}
    for line_no, row in enumerate(reader, start=2):
        label = (row["label"] or "").strip()
        family = (row["family"] or "").strip()
        if not label:
            raise SoundharvestError(f"{path}: row {line_no}: empty label")
        if label in table:
            raise SoundharvestError(f"{path}: label {label!r} listed twice")
        if family and family not in FAMILY_IDS:
            raise SoundharvestError(
                f"{path}: label {label!r}: family {family!r} is not an NSynth family "
                f"({', '.join(NSYNTH_FAMILIES)}); leave it empty for none"
            )
        table[label] = family or None
    return table


def families_of(labels: Iterable[str], table: dict[str, str | None]) -> dict[str, str | None]:
    """Each label's NSynth family; a label missing from ``table`` is an error (not a guess)."""
    out = {}
    for label in labels:
        if label not in table:
            raise SoundharvestError(
                f"label {label!r} is not in the label -> family table; add a row for it "
                "(family empty if it has none)"
            )
        out[label] = table[label]
    return out
