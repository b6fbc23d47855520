"""The workflow's acquisition half on the `local` source: a user's own folder of audio files."""

from __future__ import annotations

import re
import shutil
import subprocess

import pandas as pd
import pytest
import soundfile as sf
from wfutil import changed, snakemake, snapshot, tiny_config, write_config

from soundharvest.audio import ffmpeg_exe

pytestmark = pytest.mark.workflow


def _tone(path, freq, seconds, codec_args):
    cmd = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "lavfi"]
    cmd += ["-i", f"sine=frequency={freq}:duration={seconds}:sample_rate=44100"]
    subprocess.run([*cmd, *codec_args, str(path)], check=True)


@pytest.fixture
def local_root(tmp_path):
    root = tmp_path / "library"
    (root / "flute").mkdir(parents=True)
    (root / "organ").mkdir(parents=True)
    _tone(root / "flute" / "a tune.m4a", 880, 3, ["-c:a", "aac", "-b:a", "64k"])
    _tone(root / "flute" / "second; rm -rf ~.mp3", 660, 2.5, ["-c:a", "libmp3lame"])
    _tone(root / "organ" / "hymn.ogg", 220, 3, ["-c:a", "libopus", "-b:a", "48k"])
    _tone(root / "organ" / "too short.wav", 220, 0.3, [])
    (root / "organ" / "broken.mp3").write_bytes(b"<html>not audio</html>")
    return root


def test_local_source_runs_to_catalog(tmp_path, local_root):
    work = tmp_path / "work"
    work.mkdir()
    config = tiny_config(source="local", labels={"flute": ["flute"], "organ": ["organ"]})
    config["search"] = {
        "results_per_query": 10,
        "min_duration": 0.0,
        "local": {"root": str(local_root)},
    }
    write_config(work, config)
    dry = snakemake(work, "results/catalog.csv", "-n", "--quiet", "rules")
    assert "search" in dry.stdout
    snakemake(work, "results/catalog.csv")
    catalog = pd.read_csv(work / "results" / "catalog.csv", dtype=str, keep_default_na=False)
    assert len(catalog) == 5
    ok = catalog[catalog["status"] == "ok"]
    assert len(ok) == 3, catalog[["title", "status", "reason"]]
    reasons = " ".join(catalog.loc[catalog["status"] != "ok", "reason"])
    assert "too short" in reasons
    assert re.search(r"corrupt|undecodable", reasons)
    for vid in ok["video_id"]:
        info = sf.info(str(work / "results" / "convert" / f"{vid}.wav"))
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
    # nothing left to do once it ran
    assert "Nothing to be done" in snakemake(work, "results/catalog.csv", "-n").stdout
    # the download store survives deleting results/: nothing is fetched again
    store_before = {p: t for p, t in snapshot(work).items() if p.startswith("downloads/")}
    shutil.rmtree(work / "results")
    snakemake(work, "results/catalog.csv")
    after = snapshot(work)
    audio_touched = [p for p in changed(store_before, after) if "/audio." in p]
    assert audio_touched == []
