"""Tests of the offline ``demo`` source: search results, rendered downloads and their truth."""

from __future__ import annotations

import json
import subprocess
import sys

import librosa
import numpy as np
import pytest

from soundharvest import synth
from soundharvest.acquire import get_source
from soundharvest.acquire.base import SAFE_ID
from soundharvest.acquire.demo import DemoSource
from soundharvest.audio import decode
from soundharvest.io import SoundharvestError

SR = synth.SAMPLE_RATE
#: Short clips keep the tests fast.
SHORT = {"min_duration": 3, "max_duration": 3}
#: No weak-label effects: the clip is the label's instrument alone (and faint hiss).
CLEAN = {
    **SHORT,
    "off_topic_share": 0.0,
    "accompaniment_prob": 0.0,
    "reverb_prob": 0.0,
    "level_change_prob": 0.0,
    "silence_intro_prob": 0.0,
    "noise_db": [-60, -60],
    "unavailable_share": 0.0,
}


def candidate(source: DemoSource, label: str, rank: int = 1, query: str | None = None) -> dict:
    """A candidate as the download stage sees it: a row read back from the search TSV."""
    row = source.search(label, query or f"{label} music", rank)[rank - 1].to_dict()
    return {k: (str(v) if k in ("video_id", "title") else v) for k, v in row.items()}


def test_registered_under_its_name():
    assert isinstance(get_source("demo", {"seed": 3}), DemoSource)


def test_search_is_ranked_deterministic_and_safe():
    src = DemoSource({"seed": 1})
    a = src.search("flute", "flute music", 12)
    assert [c.to_dict() for c in a] == [
        c.to_dict() for c in DemoSource({"seed": 1}).search("flute", "flute music", 12)
    ]
    assert [c.rank for c in a] == list(range(1, 13))
    assert len({c.video_id for c in a}) == 12
    for c in a:
        assert SAFE_ID.match(c.video_id) and c.video_id.startswith("demo-")
        assert 8 <= c.duration <= 40 and c.duration == int(c.duration)
        assert c.title and "\t" not in c.title and "\n" not in c.title and c.channel
        assert c.label == "flute" and c.query == "flute music"
    other_seed = {c.video_id for c in DemoSource({"seed": 2}).search("flute", "flute music", 12)}
    assert not other_seed & {c.video_id for c in a}


def test_queries_of_a_label_share_popular_results():
    def ids(overlap, query):
        src = DemoSource({"query_overlap": overlap})
        return {c.video_id for c in src.search("organ", query, 20)}

    assert ids(1.0, "organ music") == ids(1.0, "church organ")
    assert not ids(0.0, "organ music") & ids(0.0, "church organ")
    shared = ids(0.3, "organ music") & ids(0.3, "church organ")
    assert 0 < len(shared) < 20


def test_durations_follow_the_configured_range():
    src = DemoSource({"min_duration": 20, "max_duration": 200, "query_overlap": 0.0})
    durations = [c.duration for c in src.search("piano", "piano", 300)]
    assert min(durations) >= 20 and max(durations) <= 200
    # Log-uniform: the geometric middle (~63 s) splits them about in half.
    assert 0.4 < np.mean(np.array(durations) < 63) < 0.6


@pytest.mark.parametrize("share", [0.0, 0.2, 0.5])
def test_off_topic_share_matches_its_knob(share):
    src = DemoSource({"off_topic_share": share, "query_overlap": 0.0})
    recipes = [
        src.recipe(label, c.video_id)
        for label in ("flute", "guitar", "voice", "cello")
        for c in src.search(label, label, 100)
    ]
    measured = np.mean([r["off_topic"] for r in recipes])
    # 400 draws: 3 binomial standard deviations
    assert abs(measured - share) <= 3 * np.sqrt(share * (1 - share) / 400) + 1e-9
    kinds = {r["off_topic_kind"] for r in recipes if r["off_topic"]}
    assert kinds == (set() if share == 0 else {"other_label", "speech", "silence"})
    for r in recipes:
        if r["off_topic_kind"] == "other_label":
            assert r["dominant"]["label"] != r["label"]
        elif r["off_topic_kind"] == "speech":
            assert r["dominant"]["program"] is None
        else:
            assert r["dominant"]["label"] == r["label"]
            assert r["dominant"]["program"] in src.label_spec(r["label"]).programs


def test_raising_the_share_only_adds_off_topic_clips():
    ids = [c.video_id for c in DemoSource().search("violin", "violin", 200)]
    low = {v for v in ids if DemoSource({"off_topic_share": 0.1}).recipe("violin", v)["off_topic"]}
    high = {v for v in ids if DemoSource({"off_topic_share": 0.4}).recipe("violin", v)["off_topic"]}
    assert low < high


def test_unknown_label_and_option_are_clear_errors():
    with pytest.raises(SoundharvestError, match="label_programs.banjo"):
        DemoSource().search("banjo", "banjo", 3)
    with pytest.raises(SoundharvestError, match="unknown key"):
        DemoSource({"off_topic": 0.1})
    with pytest.raises(SoundharvestError, match="off_topic_share"):
        DemoSource({"off_topic_share": 1.5})
    with pytest.raises(SoundharvestError, match="codec"):
        DemoSource({"codec": "flac"})


def test_label_programs_option_adds_a_label():
    src = DemoSource({**CLEAN, "label_programs": {"banjo": [105]}})
    rec = src.recipe("banjo", src.search("banjo", "banjo", 1)[0].video_id)
    assert rec["dominant"]["program"] == 105


@pytest.mark.parametrize(("codec", "magic"), [("opus", b"\x1a\x45\xdf\xa3"), ("aac", b"ftyp")])
def test_download_writes_compressed_audio_info_and_truth(tmp_path, codec, magic):
    src = DemoSource({**SHORT, "codec": codec, "unavailable_share": 0.0})
    cand = candidate(src, "guitar")
    result = src.download(cand, tmp_path)
    assert result.status == "ok"
    assert result.audio == tmp_path / f"audio.{'webm' if codec == 'opus' else 'm4a'}"
    head = result.audio.read_bytes()[:12]
    assert head.startswith(magic) or head[4:8] == magic
    audio = decode(result.audio)
    assert abs(len(audio) / SR - cand["duration"]) < 0.1
    assert synth.rms(audio) > 0.01
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["id"] == cand["video_id"] and info["duration"] == cand["duration"]
    assert info["title"] == cand["title"] and info["ext"] == result.audio.suffix[1:]
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["label"] == "guitar" and truth["video_id"] == cand["video_id"]
    assert {
        "off_topic",
        "off_topic_kind",
        "dominant",
        "accompaniment",
        "noise",
        "pcm_sha256",
    } <= set(truth)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [result.audio.name, "info.json", "truth.json"]
    )


def test_download_bytes_are_deterministic_across_processes(tmp_path):
    opts = {
        **SHORT,
        "seed": 5,
        "unavailable_share": 0.0,
        "accompaniment_prob": 1.0,
        "reverb_prob": 1.0,
    }
    src = DemoSource(opts)
    cand = candidate(src, "voice")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = src.download(cand, tmp_path / "a").audio.read_bytes()
    # A fresh interpreter (other hash seed, fresh soundfont state) must give the same bytes.
    code = (
        "import sys, json; from pathlib import Path; from soundharvest.acquire.demo import DemoSource;"
        f"DemoSource({opts!r}).download(json.loads(sys.argv[1]), Path(sys.argv[2]))"
    )
    subprocess.run([sys.executable, "-c", code, json.dumps(cand), str(tmp_path / "b")], check=True,
                   env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert (tmp_path / "b" / "audio.webm").read_bytes() == first
    assert (tmp_path / "a" / "truth.json").read_bytes() == (
        tmp_path / "b" / "truth.json"
    ).read_bytes()


def test_unavailable_results_fail_with_a_reason(tmp_path):
    src = DemoSource({**SHORT, "unavailable_share": 1.0})
    result = src.download(candidate(src, "piano"), tmp_path)
    assert result.status == "failed" and "demo" in result.reason and result.audio is None
    assert not list(tmp_path.iterdir())


def test_accompaniment_is_quieter_than_the_lead():
    src = DemoSource({**CLEAN, "accompaniment_prob": 1.0, "max_accompaniment": 2})
    for label in ("flute", "violin", "voice"):
        vid = src.search(label, label, 1)[0].video_id
        _, rec = src.render(label, vid, stems=True)
        lead = rec["stems"]["lead"]
        assert rec["accompaniment"] and len(rec["stems"]["accompaniment"]) == len(
            rec["accompaniment"]
        )
        for acc, spec in zip(rec["stems"]["accompaniment"], rec["accompaniment"], strict=True):
            assert -12 <= spec["level_db"] <= -6
            measured = synth.rms_db(acc) - synth.rms_db(lead)
            assert abs(measured - spec["level_db"]) < 0.01
            assert spec["program"] not in src.label_spec(label).programs


def median_pitch(audio: np.ndarray) -> float:
    """Median MIDI pitch of the loud frames (YIN)."""
    f0 = librosa.yin(audio.astype(np.float32), fmin=50, fmax=2000, sr=SR, frame_length=1024)
    rms = librosa.feature.rms(y=audio.astype(np.float32), frame_length=1024, hop_length=256)[0]
    n = min(len(f0), len(rms))
    loud = rms[:n] > 0.3 * rms.max()
    return float(np.median(librosa.hz_to_midi(f0[:n][loud])))


@pytest.mark.parametrize("label", ["cello", "flute", "trumpet", "voice"])
def test_clips_play_in_their_instruments_range(label):
    src = DemoSource({**CLEAN, "min_duration": 6, "max_duration": 6, "seed": 11})
    spec = src.label_spec(label)
    vid = src.search(label, label, 1)[0].video_id
    audio, rec = src.render(label, vid)
    assert rec["dominant"]["program"] in spec.programs and not rec["off_topic"]
    assert spec.low - 2 <= median_pitch(audio) <= spec.high + 2


def strongest_partial_share(audio: np.ndarray) -> float:
    """Median over loud frames of the energy share of the strongest spectral peak (+-3 bins)."""
    power = np.abs(librosa.stft(audio.astype(np.float32), n_fft=2048, hop_length=512)) ** 2
    energy = power.sum(axis=0)
    power = power[:, energy > 0.1 * energy.max()]
    peak = power.argmax(axis=0)
    top = [power[max(k - 3, 0) : k + 4, j].sum() for j, k in enumerate(peak)]
    return float(np.median(np.array(top) / power.sum(axis=0)))


def test_flute_clips_are_purer_than_organ_and_trumpet_clips():
    """A flute's energy sits in one partial; organ chords and brass spread it over many."""
    src = DemoSource({**CLEAN, "min_duration": 5, "max_duration": 5})

    def purity(label):
        clips = [src.render(label, c.video_id)[0] for c in src.search(label, label, 3)]
        return [strongest_partial_share(a) for a in clips]

    flute = purity("flute")
    assert min(flute) > 0.6
    assert max(purity("organ")) < min(flute) - 0.2
    assert max(purity("trumpet")) < min(flute) - 0.2


def test_off_topic_kinds_sound_like_what_they_claim():
    src = DemoSource({**SHORT, "min_duration": 6, "max_duration": 6, "off_topic_share": 1.0,
                      "noise_db": [-60, -60], "accompaniment_prob": 0.0, "reverb_prob": 0.0,
                      "level_change_prob": 0.0})  # fmt: skip
    seen = set()
    for c in src.search("flute", "flute", 12):
        rec = src.recipe("flute", c.video_id)
        kind = rec["off_topic_kind"]
        if kind in seen:
            continue
        seen.add(kind)
        audio, _ = src.render("flute", c.video_id)
        if kind == "silence":
            cut = int(rec["intro_s"] * SR)
            assert rec["intro_s"] >= 0.6 * 6
            assert synth.rms_db(audio[: cut - SR // 10]) < synth.rms_db(audio[cut:]) - 40
        elif kind == "speech":
            # Speech pitch (90-260 Hz) sits far below a flute's range (MIDI 60+ = 262 Hz).
            assert median_pitch(audio) < 62
        else:
            other = src.label_spec(rec["dominant"]["label"])
            assert rec["dominant"]["program"] in other.programs
    assert seen == {"other_label", "speech", "silence"}


def test_label_programs_of_a_built_in_label_keep_its_register():
    """Adding the piccolo's neighbours to flute must not squeeze the label into the range all
    of them share (74-91): compose() keeps each program to its own range instead."""
    src = DemoSource({"programs_per_label": 5, "label_programs": {"flute": [73, 72, 74, 75]}})
    spec = src.label_spec("flute")
    assert spec.programs == (73, 72, 74, 75)
    assert (spec.low, spec.high) == (synth.LABEL_PROGRAMS["flute"].low, 93)
    capped = DemoSource({"label_programs": {"flute": [73, 72, 74, 75]}}).label_spec("flute")
    assert capped.programs == (73, 72, 74)  # programs_per_label (3) caps an override too


def test_programs_used_are_held_out_of_disjoint_eval_sets():
    assert DemoSource().programs_used() <= synth.training_programs()
    src = DemoSource({"label_programs": {"guitar": [26, 24]}})
    assert 26 in src.programs_used()
    assert 26 not in synth.eval_programs("guitar", exclude=src.programs_used())
    with pytest.raises(SoundharvestError, match="label_programs"):
        DemoSource({"label_programs": [1, 2]})


def test_library_defaults_are_the_schemas():
    """DemoSource used from Python (tests, notebooks) renders what the workflow renders: its
    DEFAULTS match the config schema's defaults for every demo option the schema knows."""
    from soundharvest.acquire.demo import DEFAULTS
    from soundharvest.config import load_schema

    schema = load_schema()["properties"]["search"]["properties"]["demo"]["properties"]
    assert set(schema) <= set(DEFAULTS), set(schema) - set(DEFAULTS)
    differ = {
        k: (DEFAULTS[k], s["default"]) for k, s in schema.items() if DEFAULTS[k] != s["default"]
    }
    assert not differ, differ
