"""Tests of the soundfont renderer, the GM program table and the effect helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from soundharvest import synth
from soundharvest.evaluate.nsynth import load_label_families
from soundharvest.io import SoundharvestError
from soundharvest.synth import Note

ROOT = Path(__file__).resolve().parents[1]
SR = synth.SAMPLE_RATE


def harmonic_profile(program: int, pitch: int) -> tuple[float, float]:
    """(spectral centroid / f0, share of energy within 10 % of f0) of a held note."""
    x = synth.render_notes([Note(0.0, 1.5, pitch, 100, program)], 2.0)
    seg = x[int(0.25 * SR) : int(1.25 * SR)]
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg)))) ** 2
    freqs = np.fft.rfftfreq(len(seg), 1 / SR)
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    centroid = float((spec * freqs).sum() / spec.sum())
    fundamental = float(spec[(freqs > 0.9 * f0) & (freqs < 1.1 * f0)].sum() / spec.sum())
    return centroid / f0, fundamental


def test_soundfont_ships_with_pretty_midi():
    path = synth.soundfont_path()
    assert path.name == "TimGM6mb.sf2" and path.stat().st_size > 1_000_000


def test_soundfont_override_missing_file_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("SOUNDHARVEST_SOUNDFONT", str(tmp_path / "none.sf2"))
    with pytest.raises(SoundharvestError, match="soundfont not found"):
        synth.soundfont_path()


def test_an_explicit_soundfont_wins_over_the_environment(monkeypatch, tmp_path):
    default = synth.soundfont_path()
    monkeypatch.setenv("SOUNDHARVEST_SOUNDFONT", str(tmp_path / "none.sf2"))
    assert synth.soundfont_path(default) == default  # the parameter, not the override
    with pytest.raises(SoundharvestError, match="SOUNDHARVEST_SOUNDFONT"):
        synth.soundfont_path("")  # empty: the override, which is missing
    with pytest.raises(SoundharvestError, match="General MIDI"):
        synth.soundfont_path(tmp_path / "other.sf2")


def test_render_is_deterministic_and_timed():
    notes = [Note(0.5, 1.0, 60, 90, 0), Note(0.5, 1.0, 64, 90, 0), Note(1.0, 1.0, 72, 80, 73)]
    a = synth.render_notes(notes, 3.0)
    b = synth.render_notes(list(notes), 3.0)
    assert a.dtype == np.float64 and a.shape == (3 * SR,)
    assert a.tobytes() == b.tobytes()
    # Nothing sounds before the first onset at 0.5 s; the notes do sound afterwards.
    assert np.max(np.abs(a[: int(0.49 * SR)])) == 0.0
    assert synth.rms(a[int(0.6 * SR) : int(1.4 * SR)]) > 1e-3


def test_render_without_notes_is_silence():
    assert not np.any(synth.render_notes([], 1.0))


@pytest.mark.parametrize("pitch", [60, 72, 79])
def test_flute_is_purer_than_organ(pitch):
    """A flute is nearly sinusoidal; a church organ's pipes sound many harmonics."""
    flute_centroid, flute_fund = harmonic_profile(73, pitch)
    organ_centroid, organ_fund = harmonic_profile(19, pitch)
    assert flute_fund > organ_fund + 0.1
    assert organ_centroid > flute_centroid * 1.3


def test_render_has_no_aliasing_above_nyquist_fold():
    """A high piccolo note rendered at 32 kHz and decimated keeps little energy near 8 kHz."""
    x = synth.render_notes([Note(0.0, 1.0, 100, 110, 72)], 1.0)
    spec = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    assert spec[freqs > 7500].sum() < 0.01 * spec.sum()


def test_eval_programs_are_disjoint_from_training():
    used = synth.training_programs()
    for family in synth.NSYNTH_FAMILIES:
        held_out = synth.eval_programs(family, "disjoint")
        overlap = synth.eval_programs(family, "overlap")
        assert held_out, family
        assert not set(held_out) & used, family
        assert set(held_out) <= set(overlap) == set(synth.family_programs(family))
    for family in ("guitar", "vocal", "organ", "flute"):  # the thesis' evaluation families
        assert len(synth.eval_programs(family, "disjoint")) >= 3
        assert set(synth.eval_programs(family, "overlap")) & used


def test_label_programs_match_label_family_table():
    """The demo plays each label with programs of the family the scoring table maps it to."""
    table = load_label_families(ROOT / "resources" / "label_families.tsv")
    for label, spec in synth.LABEL_PROGRAMS.items():
        assert label in table, label
        for program in spec.programs:
            assert synth.PROGRAMS[program].family == table[label], (label, program)
            assert (
                synth.PROGRAMS[program].low <= spec.high
                and spec.low <= synth.PROGRAMS[program].high
            )


def test_eval_programs_rejects_unknown_mode_and_family():
    with pytest.raises(SoundharvestError, match="disjoint"):
        synth.eval_programs("guitar", "some")
    with pytest.raises(SoundharvestError, match="not an NSynth family"):
        synth.eval_programs("drums")


def test_rng_for_depends_on_keys_only():
    assert synth.rng_for(1, "a").random() == synth.rng_for(1, "a").random()
    assert synth.rng_for(1, "a").random() != synth.rng_for(1, "b").random()
    u = synth.uniform_for("x", 3)
    assert 0.0 <= u < 1.0 and u == synth.uniform_for("x", 3)


@pytest.mark.parametrize("color", synth.NOISE_COLORS)
def test_background_noise_has_unit_rms(color):
    x = synth.background_noise(synth.rng_for(color), SR, color)
    assert abs(synth.rms(x) - 1.0) < 1e-9


def test_hum_peaks_at_mains_frequency():
    x = synth.background_noise(synth.rng_for("hum", 0), 2 * SR, "hum")
    spec = np.abs(np.fft.rfft(x))
    peak = np.fft.rfftfreq(len(x), 1 / SR)[np.argmax(spec)]
    assert peak in (50.0, 60.0)


def test_pink_noise_tilts_down_and_brown_more():
    def low_share(x):
        spec = np.abs(np.fft.rfft(x)) ** 2
        return spec[np.fft.rfftfreq(len(x), 1 / SR) < 500].sum() / spec.sum()

    rng = synth.rng_for("tilt")
    white, pink, brown = (
        synth.background_noise(rng, 4 * SR, c) for c in ("white", "pink", "brown")
    )
    assert low_share(white) < low_share(pink) < low_share(brown)


def test_speech_like_has_pauses_and_syllables():
    x = synth.speech_like(synth.rng_for("speech"), 8 * SR)
    frames = x[: len(x) // 800 * 800].reshape(-1, 800)  # 50 ms frames
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    quiet = np.mean(level < level.max() - 30)
    assert 0.1 < quiet < 0.7  # pauses between syllables and phrases, but mostly talk
    spec = np.abs(np.fft.rfft(x)) ** 2
    assert spec[np.fft.rfftfreq(len(x), 1 / SR) < 4000].sum() > 0.8 * spec.sum()


def test_room_reverb_prolongs_the_tail():
    dry = synth.render_notes([Note(0.0, 0.3, 67, 100, 16)], 2.0)  # organ: stops at release
    wet = synth.room_reverb(dry, synth.rng_for("room"), rt60=1.2, wet_db=-3.0)
    tail = slice(int(0.5 * SR), int(0.8 * SR))
    assert synth.rms_db(wet[tail]) > synth.rms_db(dry[tail]) + 30
    # ... and decays: 60 dB per rt60, so the second half second is far quieter than the first.
    assert synth.rms_db(wet[int(1.0 * SR) : int(1.5 * SR)]) < synth.rms_db(wet[tail]) - 15


def test_gain_curve_and_pcm16():
    g = synth.gain_curve(SR, [(0.0, 0.0), (0.5, -20.0)])
    assert g[0] == 1.0 and abs(g[SR // 2] - 0.1) < 1e-12 and abs(g[-1] - 0.1) < 1e-12
    x = np.array([-2.0, -1.0, -0.5, 0.0, 1 / 32768, 0.999, 1.0, 3.0])
    pcm = synth.to_pcm16(x)
    assert pcm.dtype == np.int16
    assert pcm.tolist() == [-32768, -32768, -16384, 0, 1, 32735, 32767, 32767]


def test_render_removes_dc_offset():
    """The alto sax sample carries a DC offset of half its RMS; the render removes it."""
    x = synth.render_notes([Note(0.0, 2.0, 60, 100, 65)], 2.0)
    assert abs(x.mean()) < 0.01 * synth.rms(x)


def test_eval_programs_exclude_extra_programs():
    assert 26 in synth.eval_programs("guitar")
    assert 26 not in synth.eval_programs("guitar", exclude=[26])
    with pytest.raises(SoundharvestError, match="programs: overlap"):
        synth.eval_programs("vocal", exclude=synth.family_programs("vocal"))
