"""The local source: folders of real audio files, safe ids, download by link or copy."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import soundfile as sf

from soundharvest.acquire.base import SAFE_ID, get_source
from soundharvest.acquire.download import download_video
from soundharvest.audio import ffmpeg_exe
from soundharvest.io import SoundharvestError


def tone(seconds: float, sr: int = 22050) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)


@pytest.fixture
def library(tmp_path):
    root = tmp_path / "my audio"
    violin = root / "violin"
    (violin / "sub dir").mkdir(parents=True)
    sf.write(violin / "Flûte à bec (live).wav", tone(1.0), 22050)
    sf.write(violin / "violin'; rm -rf ~ #.flac", tone(0.5), 22050)
    sf.write(violin / "sub dir" / "deep.WAV", tone(0.25), 22050)
    subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "lavfi",
         "-i", "sine=frequency=440:duration=2", "-c:a", "libopus", str(violin / "b.opus")],
        check=True,
    )  # fmt: skip
    sf.write(violin / ".hidden.wav", tone(0.1), 22050)
    (violin / "notes.txt").write_text("not audio")
    return root


def test_search_lists_audio_files_with_safe_stable_ids(library):
    source = get_source("local", {"root": str(library)})
    found = source.search("violin", "violin", 10)
    names = [c.title for c in found]
    assert names == ["Flûte à bec (live).wav", "b.opus", "deep.WAV", "violin'; rm -rf ~ #.flac"]
    assert [c.rank for c in found] == [1, 2, 3, 4]
    assert all(SAFE_ID.match(c.video_id) for c in found)
    assert len({c.video_id for c in found}) == 4
    again = get_source("local", {"root": str(library)}).search("violin", "violin", 10)
    assert [c.video_id for c in again] == [c.video_id for c in found]
    durations = {c.title: c.duration for c in found}
    assert durations["Flûte à bec (live).wav"] == pytest.approx(1.0)
    assert durations["deep.WAV"] == pytest.approx(0.25, abs=1e-3)
    assert durations["b.opus"] == pytest.approx(2.0, abs=0.05)  # via ffmpeg's header parse
    assert (
        get_source("local", {"root": str(library)}).search("violin", "violin", 2)[1].title
        == "b.opus"
    )


def test_ids_do_not_depend_on_where_root_lives(library, tmp_path):
    before = [
        c.video_id for c in get_source("local", {"root": str(library)}).search("v", "violin", 9)
    ]
    moved = tmp_path / "elsewhere"
    library.rename(moved)
    after = [c.video_id for c in get_source("local", {"root": str(moved)}).search("v", "violin", 9)]
    assert before == after


def test_missing_folder_and_root_are_clear_errors(library):
    with pytest.raises(SoundharvestError, match="does not exist"):
        get_source("local", {"root": str(library)}).search("cello", "cello", 5)
    with pytest.raises(SoundharvestError, match="options.root"):
        get_source("local", {}).search("cello", "cello", 5)


def test_download_links_file_and_checks_it(library, tmp_path):
    source = get_source("local", {"root": str(library)})
    cand = source.search("violin", "violin", 10)[0].to_dict()
    out = tmp_path / "dl" / cand["video_id"]
    status = download_video("local", {"root": str(library)}, cand, out)
    assert status["status"] == "ok" and status["audio"] == "audio.wav"
    assert (out / "audio.wav").read_bytes() == (library / "violin" / cand["title"]).read_bytes()
    info = json.loads((out / "info.json").read_text(encoding="utf-8"))
    assert info["source_path"].endswith(cand["title"])


def test_download_of_vanished_or_broken_file_is_recorded(library, tmp_path):
    source = get_source("local", {"root": str(library)})
    cands = {c.title: c.to_dict() for c in source.search("violin", "violin", 10)}
    gone = cands["deep.WAV"]
    (library / "violin" / "sub dir" / "deep.WAV").unlink()
    status = download_video("local", {"root": str(library)}, gone, tmp_path / "gone")
    assert status["status"] == "failed" and status["reason_code"] == "missing"
    broken = cands["b.opus"]
    (library / "violin" / "b.opus").write_bytes(b"\x00garbage" * 100)
    status = download_video("local", {"root": str(library)}, broken, tmp_path / "broken")
    assert status["status"] == "failed" and status["reason_code"] == "corrupt"
    assert (library / "violin" / "b.opus").is_file()  # only the job's link is removed


def test_a_folder_of_more_than_500_files_gives_every_one(tmp_path):
    from soundharvest.acquire.search import run_search

    folder = tmp_path / "library" / "flute"
    folder.mkdir(parents=True)
    for i in range(620):  # 10 ms of silence each: valid audio, cheap to write and probe
        sf.write(folder / f"take {i:04d}.wav", np.zeros(160, dtype=np.float32), 16000)
    out = tmp_path / "search.tsv"
    options = {"root": str(tmp_path / "library")}
    table = run_search("local", options, "flute", "flute", 620, out, min_duration=0.0)
    assert len(table) == 620 and (table["status"] == "ok").all()
    assert table["rank"].astype(int).tolist() == list(range(1, 621))
    assert table["title"].iloc[-1] == "take 0619.wav"
    assert len(run_search("local", options, "flute", "flute", 600, out)) == 600
