"""convert_file with the real ffmpeg on real compressed audio made here."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import soundfile as sf

from soundharvest.acquire.convert import convert_file
from soundharvest.audio import ffmpeg_exe
from soundharvest.io import SoundharvestError


def encode(path, source: str, codec: str, channels: int = 2) -> None:
    """Encode an ffmpeg lavfi ``source`` (e.g. a sine) to ``path`` with ``codec``."""
    subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source,
         "-ac", str(channels), "-c:a", codec, str(path)],
        check=True,
    )  # fmt: skip


def download_dir(tmp_path, name, audio_bytes=None, status="ok", reason=""):
    """A download's directory as download_video leaves it: audio file and status.json."""
    d = tmp_path / name
    d.mkdir()
    record = {"video_id": name, "status": status, "reason": reason, "audio": None}
    if audio_bytes is not None:
        (d / "audio.m4a").write_bytes(audio_bytes)
        record["audio"] = "audio.m4a"
    (d / "status.json").write_text(json.dumps(record))
    return d


def peak_hz(samples: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1.0 / sr)[np.argmax(spectrum)])


def test_aac_stereo_to_16k_mono(tmp_path):
    d = tmp_path / "vid1"
    d.mkdir()
    encode(d / "audio.m4a", "sine=frequency=440:duration=3:sample_rate=44100", "aac")
    (d / "status.json").write_text(
        json.dumps({"video_id": "vid1", "status": "ok", "audio": "audio.m4a"})
    )
    out_wav, out_json = tmp_path / "wav" / "vid1.wav", tmp_path / "wav" / "vid1.json"
    status = convert_file(d / "status.json", out_wav, out_json)
    assert status == json.loads(out_json.read_text())
    assert status["status"] == "ok" and status["reason"] == ""
    info = sf.info(str(out_wav))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert abs(info.duration - 3.0) < 0.05
    assert status["seconds"] == pytest.approx(info.duration, abs=1e-3)
    samples, sr = sf.read(str(out_wav), dtype="float32")
    assert abs(peak_hz(samples, sr) - 440.0) < 2.0
    # the levels reported are those of the wav written (a sine: peak/RMS = sqrt(2), 3 dB; AAC onset adds a little)
    rms = 20 * np.log10(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    assert status["rms_dbfs"] == pytest.approx(rms, abs=0.02)
    assert status["peak_dbfs"] == pytest.approx(20 * np.log10(np.abs(samples).max()), abs=0.02)
    assert status["peak_dbfs"] - status["rms_dbfs"] == pytest.approx(3.01, abs=0.6)
    assert sorted(p.name for p in out_wav.parent.iterdir()) == ["vid1.json", "vid1.wav"]


def test_opus_trimmed_to_max_seconds(tmp_path):
    d = tmp_path / "vid2"
    d.mkdir()
    encode(d / "audio.webm", "sine=frequency=1000:duration=4:sample_rate=48000", "libopus")
    (d / "status.json").write_text(
        json.dumps({"video_id": "vid2", "status": "ok", "audio": "audio.webm"})
    )
    status = convert_file(
        d / "status.json", tmp_path / "o.wav", tmp_path / "o.json", max_seconds=1.5
    )
    assert status["status"] == "ok" and status["trimmed"] is True
    samples, sr = sf.read(str(tmp_path / "o.wav"), dtype="float32")
    assert sr == 16000 and len(samples) == 24000
    assert abs(peak_hz(samples, sr) - 1000.0) < 2.0


def test_too_short_gives_empty_wav(tmp_path):
    d = tmp_path / "short"
    d.mkdir()
    encode(d / "audio.m4a", "sine=frequency=440:duration=0.4", "aac", channels=1)
    (d / "status.json").write_text(
        json.dumps({"video_id": "short", "status": "ok", "audio": "audio.m4a"})
    )
    status = convert_file(
        d / "status.json", tmp_path / "s.wav", tmp_path / "s.json", min_seconds=1.0
    )
    assert status["status"] == "skipped" and status["reason"].startswith("too short (0.")
    info = sf.info(str(tmp_path / "s.wav"))
    assert info.frames == 0 and info.samplerate == 16000


def test_silent_is_skipped(tmp_path):
    d = tmp_path / "quiet"
    d.mkdir()
    encode(d / "audio.m4a", "anullsrc=r=44100:cl=stereo:d=2", "aac")
    (d / "status.json").write_text(
        json.dumps({"video_id": "quiet", "status": "ok", "audio": "audio.m4a"})
    )
    status = convert_file(d / "status.json", tmp_path / "q.wav", tmp_path / "q.json")
    assert status["status"] == "skipped" and status["reason"].startswith("silent")
    assert sf.info(str(tmp_path / "q.wav")).frames == 0


def test_quiet_but_audible_is_kept(tmp_path):
    d = tmp_path / "soft"
    d.mkdir()
    # lavfi's sine (amplitude 1/8, about -21 dBFS RMS) at volume 0.05 (-26 dB): about -47 dBFS
    encode(d / "audio.m4a", "sine=frequency=440:duration=2,volume=0.05", "aac", channels=1)
    (d / "status.json").write_text(
        json.dumps({"video_id": "soft", "status": "ok", "audio": "audio.m4a"})
    )
    kept = convert_file(d / "status.json", tmp_path / "k.wav", tmp_path / "k.json")
    assert kept["status"] == "ok" and -50 < kept["rms_dbfs"] < -40
    strict = convert_file(
        d / "status.json", tmp_path / "k2.wav", tmp_path / "k2.json", silence_dbfs=-30
    )
    assert strict["status"] == "skipped"


def test_undecodable_is_skipped_with_ffmpeg_reason(tmp_path):
    d = download_dir(tmp_path, "junk", audio_bytes=b"<html>not audio</html>" * 50)
    status = convert_file(d / "status.json", tmp_path / "j.wav", tmp_path / "j.json")
    assert status["status"] == "skipped"
    assert status["reason"].startswith("undecodable (") and "\n" not in status["reason"]
    assert str(d) not in status["reason"]  # the file's name only, not the full path
    assert sf.info(str(tmp_path / "j.wav")).frames == 0


def test_failed_download_gives_failed_status(tmp_path):
    d = download_dir(
        tmp_path, "gone", status="failed", reason="http_404: HTTP Error 404: Not Found"
    )
    status = convert_file(d / "status.json", tmp_path / "g.wav", tmp_path / "g.json")
    assert status["status"] == "failed"
    assert status["reason"] == "download: http_404: HTTP Error 404: Not Found"
    info = sf.info(str(tmp_path / "g.wav"))
    assert info.frames == 0 and info.samplerate == 16000 and info.subtype == "PCM_16"


def test_missing_download_status_is_an_error(tmp_path):
    with pytest.raises(SoundharvestError, match="download status not found"):
        convert_file(tmp_path / "nope" / "status.json", tmp_path / "x.wav", tmp_path / "x.json")
    assert not (tmp_path / "x.wav").exists()


def test_truncated_file_is_skipped_naming_the_cause(tmp_path):
    d = tmp_path / "cut"
    d.mkdir()
    encode(d / "full.m4a", "sine=frequency=440:duration=3", "aac")
    data = (d / "full.m4a").read_bytes()
    (d / "audio.m4a").write_bytes(data[: len(data) // 2])  # the index (moov) is at the end
    (d / "status.json").write_text(
        json.dumps({"video_id": "cut", "status": "ok", "audio": "audio.m4a"})
    )
    status = convert_file(d / "status.json", tmp_path / "c.wav", tmp_path / "c.json")
    assert status["status"] == "skipped"
    assert status["reason"].startswith("undecodable (moov atom not found")


def test_video_without_audio_is_skipped(tmp_path):
    d = tmp_path / "mute"
    d.mkdir()
    subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "lavfi",
         "-i", "testsrc=duration=1:size=32x32", "-c:v", "mpeg4", str(d / "audio.mp4")],
        check=True,
    )  # fmt: skip
    (d / "status.json").write_text(
        json.dumps({"video_id": "mute", "status": "ok", "audio": "audio.mp4"})
    )
    status = convert_file(d / "status.json", tmp_path / "m.wav", tmp_path / "m.json")
    assert status["status"] == "skipped" and status["reason"].startswith(
        "undecodable (no audio stream"
    )
