"""Tests of the NSynth-format reader, writer and the rendered evaluation set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundharvest import synth
from soundharvest.evaluate import nsynth
from soundharvest.evaluate.nsynth import (
    NOTE_SAMPLES,
    NSYNTH_FAMILIES,
    eval_notes,
    load_label_families,
    load_note,
    read_nsynth,
    render_eval_set,
    render_note,
    validate_nsynth,
    write_nsynth,
)
from soundharvest.io import SoundharvestError

ROOT = Path(__file__).resolve().parents[2]


def small_set(
    n_per_family: int = 2, families=("guitar", "vocal")
) -> tuple[list[dict], list[np.ndarray]]:
    """Examples with random int16 audio (no rendering: fast)."""
    examples = nsynth.eval_notes(list(families), n_per_family, seed=1)
    rng = np.random.default_rng(0)
    audios = [rng.integers(-32768, 32768, NOTE_SAMPLES).astype(np.int16) for _ in examples]
    return examples, audios


@pytest.fixture
def valid_dir(tmp_path) -> Path:
    examples, audios = small_set()
    write_nsynth(tmp_path / "set", examples, audios)
    return tmp_path / "set"


def test_nsynth_family_ids():
    assert NSYNTH_FAMILIES.index("bass") == 0 and NSYNTH_FAMILIES.index("vocal") == 10
    assert nsynth.FAMILY_IDS["guitar"] == 3 and nsynth.FAMILY_IDS["organ"] == 6
    assert nsynth.FAMILY_IDS["flute"] == 2 and len(NSYNTH_FAMILIES) == 11


def test_writer_reader_round_trip_is_exact(tmp_path):
    examples, audios = small_set()
    # One float note whose samples are multiples of 1/32768 must come back exactly too.
    audios[0] = audios[0].astype(np.float64) / 32768.0
    write_nsynth(tmp_path / "set", examples, audios)
    assert validate_nsynth(tmp_path / "set") == []
    frame = read_nsynth(tmp_path / "set")
    assert len(frame) == len(examples)
    by_key = {ex["note_str"]: ex for ex in examples}
    for row in frame.to_dict("records"):
        ex = by_key[row["note_str"]]
        assert {k: row[k] for k in ex} == ex
        assert Path(row["path"]) == tmp_path / "set" / "audio" / f"{row['note_str']}.wav"
    for ex, audio in zip(examples, audios, strict=True):
        loaded = load_note(tmp_path / "set", ex["note_str"])
        assert loaded.dtype == np.float32 and loaded.shape == (NOTE_SAMPLES,)
        expected = audio if audio.dtype != np.int16 else audio.astype(np.float64) / 32768.0
        assert np.array_equal(loaded.astype(np.float64), expected)
    written = json.loads((tmp_path / "set" / "examples.json").read_text())
    assert set(written) == set(by_key) and all(k == v["note_str"] for k, v in written.items())


def test_reader_filters_families(valid_dir):
    frame = read_nsynth(valid_dir, families=["vocal"])
    assert set(frame["instrument_family_str"]) == {"vocal"} and len(frame) == 2
    with pytest.raises(SoundharvestError, match="unknown"):
        read_nsynth(valid_dir, families=["drums"])


def _edit_examples(directory: Path, edit) -> None:
    path = directory / "examples.json"
    examples = json.loads(path.read_text())
    edit(examples)
    path.write_text(json.dumps(examples))


def _first(directory: Path) -> str:
    return sorted(json.loads((directory / "examples.json").read_text()))[0]


def _rewrite_wav(directory: Path, data, rate=16000, subtype="PCM_16"):
    sf.write(str(directory / "audio" / f"{_first(directory)}.wav"), data, rate, subtype=subtype)


BREAKAGES = {
    "missing wav": (lambda d: (d / "audio" / f"{_first(d)}.wav").unlink(), "missing (listed in examples.json)"),
    "extra wav": (lambda d: shutil.copy(d / "audio" / f"{_first(d)}.wav", d / "audio" / "stray.wav"), "audio/stray.wav: extra file"),
    "wrong rate": (lambda d: _rewrite_wav(d, np.zeros(NOTE_SAMPLES, np.int16), rate=22050), "sample rate 22050 Hz"),
    "wrong length": (lambda d: _rewrite_wav(d, np.zeros(NOTE_SAMPLES - 1, np.int16)), "63999 samples"),
    "stereo": (lambda d: _rewrite_wav(d, np.zeros((NOTE_SAMPLES, 2), np.int16)), "2 channels, must be mono"),
    "float wav": (lambda d: _rewrite_wav(d, np.zeros(NOTE_SAMPLES, np.float32), subtype="FLOAT"), "must be PCM_16"),
    "not a wav": (lambda d: (d / "audio" / f"{_first(d)}.wav").write_bytes(b"nonsense"), "not a readable wav"),
    "bad json": (lambda d: (d / "examples.json").write_text('{"a": '), "not valid JSON"),
    "json not an object": (lambda d: (d / "examples.json").write_text("[]"), "JSON object keyed by note_str"),
    "unknown family": (lambda d: _edit_examples(d, lambda e: e[_first(d)].update(instrument_family_str="drums")), "unknown instrument_family_str 'drums'"),
    "family id mismatch": (lambda d: _edit_examples(d, lambda e: e[_first(d)].update(instrument_family=5)), "instrument_family 5 does not match"),
    "missing field": (lambda d: _edit_examples(d, lambda e: e[_first(d)].pop("pitch")), "field 'pitch' is missing"),
    "wrong type": (lambda d: _edit_examples(d, lambda e: e[_first(d)].update(velocity="75")), "field 'velocity' must be int"),
    "key mismatch": (lambda d: _edit_examples(d, lambda e: e[_first(d)].update(note_str="x")), "differs from its key"),
    "wrong sample_rate field": (lambda d: _edit_examples(d, lambda e: e[_first(d)].update(sample_rate=44100)), "sample_rate 44100 must be 16000"),
    "no examples.json": (lambda d: (d / "examples.json").unlink(), "examples.json: missing"),
    "no audio dir": (lambda d: shutil.rmtree(d / "audio"), "audio: missing"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BREAKAGES))
def test_reader_rejects_each_breakage_with_its_own_line(valid_dir, name):
    breakage, message = BREAKAGES[name]
    breakage(valid_dir)
    problems = validate_nsynth(valid_dir)
    assert len(problems) == 1, problems
    assert message in problems[0] and "\n" not in problems[0]
    with pytest.raises(SoundharvestError, match="not a valid NSynth directory") as err:
        read_nsynth(valid_dir)
    assert message in str(err.value)


def test_messages_are_distinct():
    assert len({msg for _, msg in BREAKAGES.values()}) == len(BREAKAGES)


def test_reader_reports_every_problem(valid_dir):
    BREAKAGES["extra wav"][0](valid_dir)
    BREAKAGES["unknown family"][0](valid_dir)
    assert len(validate_nsynth(valid_dir)) == 2
    assert validate_nsynth(valid_dir / "nowhere")[0].endswith(
        "point the eval set at an NSynth directory"
    )


def test_writer_rejects_bad_input_and_keeps_the_old_directory(valid_dir):
    before = sorted(p.name for p in (valid_dir / "audio").iterdir())
    examples, audios = small_set()
    with pytest.raises(SoundharvestError, match="shape"):
        write_nsynth(valid_dir, examples, [a[:100] for a in audios])
    with pytest.raises(SoundharvestError, match="occurs twice"):
        write_nsynth(valid_dir, examples + examples[:1], audios + audios[:1])
    bad = [dict(examples[0], instrument_family=1)] + examples[1:]
    with pytest.raises(SoundharvestError, match="does not match"):
        write_nsynth(valid_dir, bad, audios)
    assert sorted(p.name for p in (valid_dir / "audio").iterdir()) == before
    assert [p.name for p in valid_dir.parent.iterdir()] == ["set"]  # no temporary leftovers


def test_writer_replaces_an_existing_directory(valid_dir):
    examples, audios = small_set(1, families=("organ",))
    write_nsynth(valid_dir, examples, audios)
    assert set(read_nsynth(valid_dir)["instrument_family_str"]) == {"organ"}
    assert [p.name for p in valid_dir.parent.iterdir()] == ["set"]


def test_eval_notes_follow_nsynth_conventions():
    examples = nsynth.eval_notes(["guitar", "vocal", "organ", "flute"], 40, seed=3)
    assert len(examples) == 160 and len({e["note_str"] for e in examples}) == 160
    assert [e["note"] for e in examples] == list(range(160))
    used = synth.training_programs()
    for family in ("guitar", "vocal", "organ", "flute"):
        notes = [e for e in examples if e["instrument_family_str"] == family]
        assert len(notes) == 40
        programs = {e["instrument"] for e in notes}
        assert len(programs) >= 3 and not programs & used  # several unseen instruments
        counts = [sum(e["instrument"] == p for e in notes) for p in programs]
        assert max(counts) - min(counts) <= 1  # balanced over the instruments
    for e in examples:
        program = synth.PROGRAMS[e["instrument"]]
        assert 21 <= e["pitch"] <= 108 and program.low <= e["pitch"] <= program.high
        assert e["velocity"] in (25, 50, 75, 100, 127)
        assert e["note_str"] == f"{e['instrument_str']}-{e['pitch']:03d}-{e['velocity']:03d}"
    again = nsynth.eval_notes(["guitar", "vocal", "organ", "flute"], 40, seed=3)
    assert again == examples
    assert nsynth.eval_notes(["guitar"], 40, seed=4) != [
        e for e in examples if e["instrument_family_str"] == "guitar"
    ]


def test_overlap_uses_training_programs_too():
    examples = nsynth.eval_notes(["guitar"], 80, programs="overlap")
    assert {e["instrument"] for e in examples} & synth.training_programs()


def test_eval_notes_rejects_impossible_requests():
    with pytest.raises(SoundharvestError, match="notes_per_family"):
        nsynth.eval_notes(["vocal"], 10_000)
    with pytest.raises(SoundharvestError, match="21-108"):
        nsynth.eval_notes(["vocal"], 2, pitches=[10])
    with pytest.raises(SoundharvestError, match="not an NSynth family"):
        nsynth.eval_notes(["drums"], 2)


def test_render_eval_set_all_families(tmp_path):
    frame = render_eval_set(tmp_path / "es", NSYNTH_FAMILIES, 2, seed=0)
    assert validate_nsynth(tmp_path / "es") == []
    assert sorted(set(frame["instrument_family_str"])) == sorted(NSYNTH_FAMILIES)
    for row in frame.itertuples():
        x = load_note(tmp_path / "es", row.note_str)
        held, released = x[int(0.2 * 16000) : int(2.8 * 16000)], x[int(3.6 * 16000) :]
        assert synth.rms_db(held) > -60, row.note_str  # the note sounds ...
        assert synth.rms_db(released) < synth.rms_db(held), row.note_str  # ... and is released


def test_render_eval_set_is_deterministic(tmp_path):
    render_eval_set(tmp_path / "a", ["organ", "flute"], 3, seed=7)
    render_eval_set(tmp_path / "b", ["organ", "flute"], 3, seed=7)
    files = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    assert len(files) == 8  # six notes, examples.json and provenance.json
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


NO_GMBANK = pytest.mark.skipif(
    not synth.GMBANK.is_file(),
    reason=f"{synth.GMBANK} is not installed (Debian's csound-soundfont: `apt-get install "
    "--no-install-recommends csound-soundfont` as root; `make test` does it when it can)",
)


@NO_GMBANK
def test_a_note_from_sf_gmbank_differs_from_the_default():
    # Pan Flute (75): one of the programs whose samples the two banks do not share.
    default = nsynth.render_note(75, 72, 100)
    gmbank = nsynth.render_note(75, 72, 100, soundfont=synth.GMBANK)
    assert synth.rms_db(default) > -40 and synth.rms_db(gmbank) > -40  # both sound
    assert np.corrcoef(default, gmbank)[0, 1] < 0.9
    assert np.array_equal(nsynth.render_note(75, 72, 100), default)  # no state carried over


@NO_GMBANK
def test_the_rendered_set_records_its_soundfont(tmp_path):
    render_eval_set(tmp_path / "gm", ["flute"], 2, seed=0, soundfont=str(synth.GMBANK))
    render_eval_set(tmp_path / "tim", ["flute"], 2, seed=0)
    gm = json.loads((tmp_path / "gm" / nsynth.PROVENANCE).read_text())
    tim = json.loads((tmp_path / "tim" / nsynth.PROVENANCE).read_text())
    assert gm["soundfont"] == "sf_GMbank.sf2" and gm["soundfont_chosen_by"] == "eval_set.soundfont"
    assert tim["soundfont"] == "TimGM6mb.sf2" and tim["soundfont_chosen_by"].startswith("default")
    assert gm["soundfont_sha256"] != tim["soundfont_sha256"]
    assert len(tim["soundfont_sha256"]) == 64
    # the same notes, other audio
    assert (tmp_path / "gm/examples.json").read_bytes() == (
        tmp_path / "tim/examples.json"
    ).read_bytes()
    assert any(
        (tmp_path / "gm/audio" / p.name).read_bytes() != p.read_bytes()
        for p in (tmp_path / "tim/audio").iterdir()
    )


def test_silent_notes_are_listed_in_the_provenance(tmp_path):
    # TimGM6mb's Alto Sax (65) has no sample for MIDI 64 at velocity 25: that note is silence.
    frame = render_eval_set(
        tmp_path / "es", ["reed"], 8, programs="overlap", pitches=[64], velocities=[25]
    )
    assert 65 in set(frame["instrument"])
    provenance = json.loads((tmp_path / "es" / nsynth.PROVENANCE).read_text())
    assert provenance["silent_notes"] == ["reed_acoustic_065-064-025"]
    assert not load_note(tmp_path / "es", "reed_acoustic_065-064-025").any()


def test_the_default_evaluation_notes_all_sound():
    # Instrument ranges follow what the soundfont really plays: the Whistle (78) has no sample
    # above MIDI 78, and 18 of the default set's 120 flute notes used to be digital silence.
    examples = eval_notes(["guitar", "vocal", "organ", "flute"], 120, "disjoint", seed=0)
    silent = [
        e["note_str"]
        for e in examples
        if not np.abs(render_note(e["instrument"], e["pitch"], e["velocity"])).max()
    ]
    assert len(examples) == 480 and silent == []


@pytest.mark.parametrize("kind", ["missing", "not_a_soundfont"])
def test_a_bad_soundfont_is_one_line_naming_the_key(tmp_path, kind):
    path = tmp_path / "bank.sf2"
    if kind == "not_a_soundfont":
        path.write_bytes(b"RIFF\0\0\0\0sfbk" * 8)
    with pytest.raises(SoundharvestError) as err:
        render_eval_set(tmp_path / "es", ["flute"], 2, soundfont=path)
    message = str(err.value)
    assert message.startswith(f"eval_set.soundfont = '{path}': ") and "\n" not in message
    assert ("no such file" if kind == "missing" else "not a readable SoundFont") in message
    assert "sf_GMbank.sf2" in message  # the fix names the soundfont to use
    assert not (tmp_path / "es").exists()


def test_label_family_table():
    table = load_label_families(ROOT / "resources" / "label_families.tsv")
    defaults = [
        "cello",
        "clarinet",
        "flute",
        "guitar",
        "organ",
        "piano",
        "saxophone",
        "trumpet",
        "violin",
        "voice",
    ]
    assert set(defaults) <= set(table)
    assert table["voice"] == "vocal" and table["cello"] == table["violin"] == "string"
    assert all(table[label] in NSYNTH_FAMILIES for label in defaults)
    assert None in table.values()  # a label without a family is written explicitly
    with pytest.raises(SoundharvestError, match="not in the label -> family table"):
        nsynth.families_of(["kazoo"], table)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("label\tfamily\nflute\tflute\nflute\tflute\n", "listed twice"),
        ("label\tfamily\nflute\twoodwind\n", "not an NSynth family"),
        ("label\tfam\nflute\tflute\n", "missing column"),
    ],
)
def test_label_family_table_errors(tmp_path, text, message):
    (tmp_path / "t.tsv").write_text(text)
    with pytest.raises(SoundharvestError, match=message):
        load_label_families(tmp_path / "t.tsv")


def test_written_set_is_readable_by_others_under_the_umask(tmp_path):
    import os
    import stat

    from soundharvest.evaluate.nsynth import render_eval_set

    old = os.umask(0o022)
    os.umask(old)
    render_eval_set(tmp_path / "set", ["flute"], 1, seed=0)
    assert stat.S_IMODE((tmp_path / "set").stat().st_mode) == 0o777 & ~old
    assert stat.S_IMODE((tmp_path / "set" / "examples.json").stat().st_mode) == 0o666 & ~old
