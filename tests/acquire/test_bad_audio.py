"""Bad audio inside the pipeline: a file of NaN samples, of infinite samples, a 50 ms file, a
wav whose header lies about its length and a 6-hour file, each taken from a `local` folder
through the real stages' library functions (search, download, real ffmpeg convert, spectrogram,
concatenate, shuffle, catalog). Each gets a catalog reason or is trimmed, and no NaN frame
reaches a label's memmap or a shard."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import soundfile as sf

from soundharvest.acquire.catalog import build_catalog
from soundharvest.acquire.convert import convert_file
from soundharvest.acquire.download import download_video
from soundharvest.acquire.search import merge_candidates, run_search
from soundharvest.audio import ffmpeg_exe
from soundharvest.dataset import concatenate, shuffle
from soundharvest.features import spectrogram_file
from soundharvest.io import SoundharvestError

SR = 16000
SIX_HOURS = 6 * 3600


def tone(seconds: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def lying_wav(path, seconds_claimed: float) -> None:
    """A 1 s 16-bit wav whose RIFF and data sizes claim ``seconds_claimed``."""
    sf.write(path, tone(1.0), SR, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    claimed = int(seconds_claimed * SR * 2)
    i = data.find(b"data")
    data[i + 4 : i + 8] = claimed.to_bytes(4, "little")
    data[4:8] = (claimed + i).to_bytes(4, "little")
    path.write_bytes(bytes(data))


def six_hour_wav(path) -> None:
    """A real 6-hour file, cheap: 8-bit samples at 1 kHz (21.6 MB, made by ffmpeg's lavfi)."""
    subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "lavfi",
         "-i", f"sine=frequency=110:sample_rate=1000:duration={SIX_HOURS}",
         "-c:a", "pcm_u8", "-y", str(path)],
        check=True, timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_audio")
    d = root / "flute"
    d.mkdir()
    sf.write(d / "a_good.wav", tone(2.0), SR, subtype="PCM_16")
    sf.write(d / "b_nan.wav", np.full(2 * SR, np.nan, np.float32), SR, subtype="FLOAT")
    sf.write(d / "c_inf.wav", np.full(2 * SR, np.inf, np.float32), SR, subtype="FLOAT")
    spiky = tone(2.0)
    spiky[::400] = np.nan  # one bad sample in 400 inside good audio
    sf.write(d / "d_spiky_nan.wav", spiky, SR, subtype="FLOAT")
    sf.write(d / "e_50ms.wav", tone(0.05), SR, subtype="PCM_16")
    lying_wav(d / "f_lying.wav", SIX_HOURS)
    six_hour_wav(d / "g_six_hours.wav")
    return root


def run_pieces(folder, tmp, max_duration):
    """search -> download -> convert -> spectrogram -> concatenate -> shuffle -> catalog."""
    options = {"root": str(folder)}
    table = run_search(
        "local", options, "flute", "flute", 10, tmp / "search.tsv", 0.0, max_duration
    )
    statuses, frames = {}, []
    for row in table[table["status"] == "ok"].to_dict("records"):
        vid = row["video_id"]
        download_video("local", options, row, tmp / "downloads" / vid)
        wav, status = tmp / "convert" / f"{vid}.wav", tmp / "convert" / f"{vid}.json"
        dl = tmp / "downloads" / vid / "status.json"
        convert_file(dl, wav, status, max_seconds=20.0, min_seconds=1.0)
        statuses[vid] = status
        npy = tmp / "spectrogram" / f"{vid}.npy"
        spectrogram_file(wav, npy, tmp / "spectrogram" / f"{vid}.energy.npy", "stft")
        frames.append((vid, npy))
    concatenate(frames, tmp / "flute.npy", tmp / "flute.index.tsv")
    shards = [tmp / "shuffle" / f"shard-{i:02d}.npy" for i in range(2)]
    shuffle([("flute", tmp / "flute.npy")], shards, seed=0)
    catalog = build_catalog(merge_candidates({"flute": [tmp / "search.tsv"]}), statuses)
    catalog["name"] = catalog["title"].str.rsplit(".", n=1).str[0]
    return catalog.set_index("name"), [tmp / "flute.npy", *shards]


def test_bad_audio_gets_a_catalog_reason_and_no_nan_reaches_the_arrays(folder, tmp_path):
    catalog, arrays = run_pieces(folder, tmp_path, max_duration=SIX_HOURS + 60)
    status = catalog["status"].to_dict()
    reason = catalog["reason"].to_dict()
    assert status["a_good"] == "ok"
    for name in ("b_nan", "c_inf", "d_spiky_nan"):
        assert status[name] == "skipped" and reason[name].startswith("non-finite samples"), name
    assert "1 %" in reason["d_spiky_nan"] or "0.25 %" in reason["d_spiky_nan"]
    assert status["e_50ms"] == "skipped" and reason["e_50ms"] == "too short (0.05 s < 1 s)"
    assert status["f_lying"] == "skipped" and reason["f_lying"].startswith("corrupt (its header")
    # the 6-hour file is trimmed to max_seconds (20 s here), and so is its catalog entry
    assert status["g_six_hours"] == "ok" and float(catalog.loc["g_six_hours", "seconds"]) == 20.0
    for path in arrays:
        data = np.load(path, mmap_mode="r")
        assert np.isfinite(data).all(), path
    n_rows = np.load(arrays[0], mmap_mode="r").shape[0]
    assert n_rows == 63 + 626  # 2 s and 20 s at hop 512 (the only files that are ok)


def test_a_six_hour_file_is_skipped_by_the_search_duration_limit(folder, tmp_path):
    table = run_search(
        "local", {"root": str(folder)}, "flute", "flute", 10, tmp_path / "s.tsv", 0.0, 900.0
    )
    row = table.set_index("title").loc["g_six_hours.wav"]
    assert row["status"] == "skipped" and row["reason"] == "too long (21600 s > 900 s)"


def test_a_float_wav_with_nan_given_to_spectrogram_is_one_line(tmp_path):
    """Defence in depth: a NaN wav put where convert's output belongs never becomes frames."""
    wav = tmp_path / "vid.wav"
    sf.write(wav, np.where(np.arange(SR) % 7, 0.1, np.nan).astype(np.float32), SR, "FLOAT")
    with pytest.raises(SoundharvestError) as info:
        spectrogram_file(wav, tmp_path / "f.npy", tmp_path / "e.npy", "stft")
    message = str(info.value)
    assert str(wav) in message and "NaN or infinite" in message and "\n" not in message
    assert not list(tmp_path.glob("*.npy"))
