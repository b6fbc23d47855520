"""Batches of per-video work (soundharvest.batch): each video stays its own unit inside a job.

The stage functions are the real ones (convert_batch runs ffmpeg, spectrogram_batch the STFT);
what is checked is what a job per video gave: a re-run batch redoes only the videos whose
inputs, parameters or outputs changed, an interrupted batch keeps what it finished, a bad video
is recorded and the batch goes on, and a damaged output is named with the manifest to delete.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from soundharvest.acquire.convert import convert_batch
from soundharvest.batch import assign_batches, fingerprint, is_current, run_batch, stamp_path
from soundharvest.dataset import concatenate_batches
from soundharvest.features import spectrogram_batch
from soundharvest.io import SoundharvestError, save_npy


def test_batches_are_cut_per_label_in_id_order_and_a_shared_video_is_one_unit():
    ids = {"organ": ["o3", "o1", "shared", "o2"], "flute": ["f2", "shared", "f1"]}
    got = assign_batches(ids, 2)
    assert all(re.fullmatch(r"[a-z]+-\d{3}-[0-9a-f]{8}", b) for b in got), got
    assert {b.rsplit("-", 1)[0]: v for b, v in got.items()} == {
        "flute-000": ["f1", "f2"],
        "flute-001": ["shared"],
        "organ-000": ["o1", "o2"],
        "organ-001": ["o3"],
    }
    assert assign_batches(ids, 2) == got  # the same videos, the same names
    # A video added to one label changes that label's batches only, and a batch whose members
    # changed has a new name (so Snakemake sees a missing output and runs it).
    more = assign_batches({**ids, "flute": ids["flute"] + ["f0"]}, 2)
    assert {b: v for b, v in more.items() if b.startswith("organ")} == {
        b: v for b, v in got.items() if b.startswith("organ")
    }
    flute_before = {b for b in got if b.startswith("flute")}
    flute_after = {b for b in more if b.startswith("flute")}
    assert not flute_before & flute_after
    with pytest.raises(SoundharvestError, match="batch.videos"):
        assign_batches(ids, 0)


def _counting_stage(tmp_path, fail_on=None, salt="a"):
    """A stage writing one file per video, counting the videos it really works on."""
    done = []

    def step(vid):
        out = tmp_path / f"{vid}.txt"

        def work():
            if vid == fail_on:
                raise OSError("the disk went away")
            out.write_text(f"{vid} {salt}\n")
            done.append(vid)
            return {"status": "ok", "n": len(vid)}

        return fingerprint("count", salt, vid), [out], work

    return step, done


def test_a_rerun_batch_redoes_only_what_changed(tmp_path):
    vids = ["a", "bb", "ccc"]
    step, done = _counting_stage(tmp_path)
    first = run_batch(vids, step, tmp_path / "m.tsv", "count")
    assert done == vids and list(first["reused"]) == [False] * 3
    assert list(first["n"]) == [1, 2, 3]

    step, done = _counting_stage(tmp_path)
    again = run_batch(vids, step, tmp_path / "m.tsv", "count")
    assert done == [] and list(again["reused"]) == [True] * 3
    assert list(again["n"]) == [1, 2, 3]  # a re-used video's row is its stamp's
    assert pd.read_csv(tmp_path / "m.tsv", sep="\t")["video_id"].tolist() == vids

    (tmp_path / "bb.txt").unlink()  # deleted
    (tmp_path / "ccc.txt").write_text("x")  # truncated / replaced
    step, done = _counting_stage(tmp_path)
    run_batch(vids, step, tmp_path / "m.tsv", "count")
    assert done == ["bb", "ccc"]

    step, done = _counting_stage(tmp_path, salt="b")  # a changed parameter: every fingerprint
    run_batch(vids, step, tmp_path / "m.tsv", "count")
    assert done == vids


def test_an_interrupted_batch_keeps_what_it_finished_and_writes_no_manifest(tmp_path):
    vids = ["a", "bb", "ccc"]
    step, done = _counting_stage(tmp_path, fail_on="bb")
    with pytest.raises(OSError):
        run_batch(vids, step, tmp_path / "m.tsv", "count")
    assert done == ["a"] and not (tmp_path / "m.tsv").exists()
    assert is_current(
        stamp_path(tmp_path, "a"), fingerprint("count", "a", "a"), [tmp_path / "a.txt"]
    )
    step, done = _counting_stage(tmp_path)
    run_batch(vids, step, tmp_path / "m.tsv", "count")
    assert done == ["bb", "ccc"]  # the finished video is not redone


def _download(root, vid, seconds=2.0, freq=440.0, raw=None):
    """A download store entry as the download stage leaves it: audio and its status record."""
    folder = root / vid
    folder.mkdir(parents=True, exist_ok=True)
    audio = folder / "audio.wav"
    if raw is not None:
        audio.write_bytes(raw)
    else:
        t = np.arange(int(seconds * 22050)) / 22050
        sf.write(audio, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 22050, "PCM_16")
    record = {"video_id": vid, "status": "ok", "audio": f"{vid}/audio.wav", "cached": False,
              "elapsed_s": 0.1, "bytes": audio.stat().st_size}  # fmt: skip
    (root / f"{vid}.status.json").write_text(json.dumps(record))


def _inodes(folder, pattern):
    """When each file was last written (an inode number is re-used at once by a new file)."""
    return {p.name: p.stat().st_mtime_ns for p in folder.glob(pattern)}


def test_convert_batch_reuses_unchanged_videos_and_records_a_bad_one(tmp_path):
    downloads, out = tmp_path / "downloads", tmp_path / "convert"
    _download(downloads, "v1")
    _download(downloads, "v2", freq=660.0)
    _download(downloads, "bad", raw=b"<html>not audio</html>\n" * 50)
    vids = ["bad", "v1", "v2"]
    params = {"sample_rate": 16000, "min_seconds": 1.0}
    m = convert_batch(vids, downloads, out, tmp_path / "c.tsv", **params)
    assert dict(zip(m["video_id"], m["status"], strict=True)) == {
        "bad": "skipped", "v1": "ok", "v2": "ok"
    }  # fmt: skip
    assert m.set_index("video_id").loc["bad", "reason"].startswith("undecodable")
    assert sf.info(str(out / "v1.wav")).samplerate == 16000
    before = _inodes(out, "*.wav")

    # The download ran again and re-used its store ("cached", elapsed change): nothing redone.
    for vid in vids:
        p = downloads / f"{vid}.status.json"
        rec = json.loads(p.read_text())
        p.write_text(json.dumps({**rec, "cached": True, "elapsed_s": 0.0}))
    again = convert_batch(vids, downloads, out, tmp_path / "c.tsv", **params)
    assert again["reused"].all() and _inodes(out, "*.wav") == before
    assert list(again["status"]) == list(m["status"])

    # v2 fetched anew with other audio: only v2 is converted again.
    _download(downloads, "v2", seconds=3.0)
    third = convert_batch(vids, downloads, out, tmp_path / "c.tsv", **params)
    assert list(third["reused"]) == [True, True, False]
    assert _inodes(out, "v1.wav") == {"v1.wav": before["v1.wav"]}
    assert sf.info(str(out / "v2.wav")).duration == pytest.approx(3.0, abs=0.01)

    # A changed conversion parameter converts every video again.
    fourth = convert_batch(vids, downloads, out, tmp_path / "c.tsv", min_seconds=2.5)
    assert not fourth["reused"].any()
    assert fourth.set_index("video_id").loc["v1", "status"] == "skipped"  # 2 s < 2.5 s


def test_spectrogram_batch_follows_its_wavs_and_parameters(tmp_path):
    downloads, wavs, feats = tmp_path / "downloads", tmp_path / "convert", tmp_path / "mel"
    for i, vid in enumerate(["v1", "v2"]):
        _download(downloads, vid, freq=300.0 + 200 * i)
    convert_batch(["v1", "v2"], downloads, wavs, tmp_path / "c.tsv")
    mel = {"n_fft": 512, "hop_length": 256, "n_mels": 32}
    m = spectrogram_batch(["v1", "v2"], wavs, feats, tmp_path / "s.tsv", "mel", mel)
    assert list(m["frames"]) == [np.load(feats / f"{v}.npy").shape[0] for v in ("v1", "v2")]
    assert np.load(feats / "v1.npy").shape[1] == 32
    before = _inodes(feats, "*.npy")
    again = spectrogram_batch(["v1", "v2"], wavs, feats, tmp_path / "s.tsv", "mel", mel)
    assert again["reused"].all() and _inodes(feats, "*.npy") == before

    _download(downloads, "v1", seconds=3.0)  # v1's audio changed: its wav, then its frames
    convert_batch(["v1", "v2"], downloads, wavs, tmp_path / "c.tsv")
    third = spectrogram_batch(["v1", "v2"], wavs, feats, tmp_path / "s.tsv", "mel", mel)
    assert list(third["reused"]) == [False, True]
    fourth = spectrogram_batch(
        ["v1", "v2"], wavs, feats, tmp_path / "s.tsv", "mel", {**mel, "n_mels": 16}
    )
    assert not fourth["reused"].any() and np.load(feats / "v2.npy").shape[1] == 16


def test_a_damaged_per_video_file_names_the_manifest_to_delete(tmp_path):
    step_dir = tmp_path / "frames"
    step_dir.mkdir()

    def step(vid):
        out = step_dir / f"{vid}.npy"
        return fingerprint(vid), [out], lambda: (save_npy(out, np.ones((5, 3), np.float16)), {})[1]

    manifest = tmp_path / "batches" / "flute-000.tsv"
    run_batch(["v1", "v2"], step, manifest, "frames")
    items = [(v, step_dir / f"{v}.npy") for v in ("v1", "v2")]
    assert concatenate_batches(items, [manifest], tmp_path / "c.npy", tmp_path / "c.tsv") == 10

    data = (step_dir / "v2.npy").read_bytes()
    (step_dir / "v2.npy").write_bytes(data[:-12])
    with pytest.raises(SoundharvestError) as err:
        concatenate_batches(items, [manifest], tmp_path / "d.npy", tmp_path / "d.tsv")
    message = str(err.value)
    assert "\n" not in message and str(step_dir / "v2.npy") in message
    assert "truncated" in message and f"delete {manifest}" in message
    assert not (tmp_path / "d.npy").exists()
    # the fix it names works: the batch, run again, redoes only that video
    manifest.unlink()
    again = run_batch(["v1", "v2"], step, manifest, "frames")
    assert list(again["reused"]) == [True, False]
    assert concatenate_batches(items, [manifest], tmp_path / "d.npy", tmp_path / "d.tsv") == 10


def test_a_batch_size_below_one_is_a_one_line_config_error():
    from pathlib import Path

    import yaml

    from soundharvest.config import validate_config

    tiny = Path(__file__).parent / "configs" / "tiny.yaml"
    config = yaml.safe_load(tiny.read_text(encoding="utf-8"))
    assert validate_config(config)["batch"] == {"videos": 50}  # the default
    with pytest.raises(SoundharvestError) as err:
        validate_config({**config, "batch": {"videos": 0}})
    assert str(err.value) == "config: batch.videos = 0: 0 is less than the minimum of 1"
