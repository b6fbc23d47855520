"""Spectrogram features: equal to librosa's on real audio, files, silence filter, errors."""

from __future__ import annotations

import os
import warnings

import librosa
import numpy as np
import pytest
import soundfile as sf

from soundharvest.audio import write_wav
from soundharvest.features import (
    compute_features,
    make_params,
    n_bins,
    n_frames,
    silence_mask,
    spectrogram_file,
)
from soundharvest.io import SoundharvestError

SR = 16000
STFT = {"n_fft": 1024, "hop_length": 512, "window": "hann", "top_db": 80}
MEL = {"n_fft": 2048, "hop_length": 512, "n_mels": 512, "fmin": 0.0, "fmax": None, "top_db": 80}


def rendered_clip(seconds: float = 3.0) -> np.ndarray:
    """A short piece played on the General MIDI soundfont that pretty_midi ships."""
    import pretty_midi
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=SR)
    sfid = synth.sfload(os.path.join(os.path.dirname(pretty_midi.__file__), "TimGM6mb.sf2"))
    synth.program_select(0, sfid, 0, 40)  # violin
    synth.program_select(1, sfid, 0, 0)  # piano
    out = []
    step = int(0.25 * SR)
    for i, key in enumerate([60, 64, 67, 72, 71, 67, 64, 62, 60, 55, 57, 59]):
        synth.noteon(0, key, 100)
        if i % 4 == 0:
            synth.noteon(1, key - 12, 80)
        buf = np.frombuffer(synth.generate(step), dtype=np.float32).reshape(-1, 2)
        out.append(buf.mean(axis=1))
        synth.noteoff(0, key)
    out.append(np.frombuffer(synth.generate(SR // 2), dtype=np.float32).reshape(-1, 2).mean(axis=1))
    y = np.concatenate(out)[: int(seconds * SR)]
    assert np.abs(y).max() > 1e-3, "the soundfont rendered silence"
    return y.astype(np.float32)


def chirp(seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    # 50 Hz -> 7.9 kHz exponential sweep with a level change (the dB reference is the maximum)
    y = 0.5 * np.sin(2 * np.pi * 50 * (158 ** (t / seconds) - 1) * seconds / np.log(158))
    y[: len(y) // 3] *= 0.05
    return y.astype(np.float32)


def librosa_reference(y: np.ndarray, kind: str) -> np.ndarray:
    if kind == "stft":
        s = np.abs(librosa.stft(y, n_fft=1024, hop_length=512, window="hann"))
        db = librosa.amplitude_to_db(s, ref=np.max, top_db=80)
    else:
        with warnings.catch_warnings():  # librosa may warn of empty bands (512 on 1025 bins)
            warnings.simplefilter("ignore", UserWarning)
            m = librosa.feature.melspectrogram(
                y=y, sr=SR, n_fft=2048, hop_length=512, n_mels=512, fmin=0.0, fmax=None
            )
        db = librosa.power_to_db(m, ref=np.max, top_db=80)
    return ((db + 80.0) / 80.0).T


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    return {"rendered": rendered_clip(), "chirp": chirp()}


@pytest.mark.parametrize("kind,params", [("stft", STFT), ("mel", MEL)])
@pytest.mark.parametrize("clip", ["rendered", "chirp"])
def test_compute_features_equals_librosa(clips, clip, kind, params):
    y = clips[clip]
    feats, energy = compute_features(y, SR, kind, params)
    ref = librosa_reference(y, kind)
    assert feats.shape == ref.shape == (1 + len(y) // 512, n_bins(kind, params))
    assert feats.dtype == np.float32 and energy.dtype == np.float32
    assert feats.min() >= 0.0 and feats.max() <= 1.0
    assert np.abs(feats - ref).max() < 1e-3


def test_energy_is_the_stft_power_per_frame(clips):
    y = clips["rendered"]
    for kind, params in (("stft", STFT), ("mel", MEL)):
        _, energy = compute_features(y, SR, kind, params)
        power = np.abs(librosa.stft(y, n_fft=params["n_fft"], hop_length=512)) ** 2
        np.testing.assert_allclose(energy, power.sum(axis=0), rtol=1e-4, atol=1e-6)


def test_odd_lengths_and_short_signals_match_librosa():
    rng = np.random.default_rng(0)
    for n in (1, 511, 512, 1023, 4097):
        y = (0.1 * rng.standard_normal(n)).astype(np.float32)
        feats, _ = compute_features(y, SR, "stft", STFT)
        with warnings.catch_warnings():  # librosa warns that n_fft exceeds short signals
            warnings.simplefilter("ignore", UserWarning)
            ref = librosa_reference(y, "stft")
        assert feats.shape == ref.shape == (n_frames(n, 512, 1024), 513)
        assert np.abs(feats - ref).max() < 1e-3


def test_params_defaults_bins_and_errors():
    assert n_bins("stft", {}) == 513 and n_bins("mel", {}) == 512
    assert n_bins("stft", {"n_fft": 2048}) == 1025
    assert make_params("mel", MEL).n_mels == 512
    with pytest.raises(SoundharvestError, match="unknown kind"):
        n_bins("cqt", {})
    with pytest.raises(SoundharvestError, match="n_mel"):
        make_params("mel", {"n_mel": 128})
    with pytest.raises(SoundharvestError, match="top_db"):
        make_params("stft", {"top_db": 0})


def test_silence_mask():
    e = np.array([1.0, 5e-4, 1e-7, 0.5], dtype=np.float32)
    assert silence_mask(e, None) is None
    assert silence_mask(e, 60).tolist() == [True, True, False, True]
    assert silence_mask(e, -30).tolist() == [True, False, False, True]
    assert not silence_mask(np.zeros(3, np.float32), 60).any()


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_spectrogram_file_writes_frames_and_energy(tmp_path, clips, dtype):
    y = clips["chirp"]
    write_wav(tmp_path / "a.wav", y, SR)
    y16, _ = sf.read(tmp_path / "a.wav", dtype="float32")  # what the file holds (16-bit)
    n = spectrogram_file(
        tmp_path / "a.wav", tmp_path / "a.npy", tmp_path / "a.energy.npy", "mel", MEL, dtype=dtype
    )
    feats, energy = np.load(tmp_path / "a.npy"), np.load(tmp_path / "a.energy.npy")
    assert n == feats.shape[0] == len(energy) == 1 + len(y) // 512
    assert feats.dtype == np.dtype(dtype) and feats.shape[1] == 512
    want, want_e = compute_features(y16, SR, "mel", MEL)
    # float16 keeps 11 significant bits: 2^-11 relative near 1.0
    np.testing.assert_allclose(
        feats.astype(np.float32), want, atol=6e-4 if dtype == "float16" else 0
    )
    np.testing.assert_array_equal(energy, want_e)
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_spectrogram_file_silence_filter_drops_quiet_frames(tmp_path):
    y = np.concatenate([np.zeros(SR, np.float32), chirp(2.0)])
    write_wav(tmp_path / "s.wav", y, SR)
    n_all = spectrogram_file(
        tmp_path / "s.wav", tmp_path / "all.npy", tmp_path / "all.e.npy", "stft"
    )
    n = spectrogram_file(
        tmp_path / "s.wav",
        tmp_path / "f.npy",
        tmp_path / "f.e.npy",
        "stft",
        silence_threshold_db=60,
        out_frames_npy=tmp_path / "f.frames.npy",
    )
    frames = np.load(tmp_path / "f.frames.npy")
    assert n_all == 1 + len(y) // 512 and 0 < n < n_all - 25  # the silent second is ~31 frames
    assert len(frames) == n and np.all(np.diff(frames) > 0)
    # the kept rows are exactly the unfiltered rows at those frame numbers
    np.testing.assert_array_equal(
        np.load(tmp_path / "f.npy"), np.load(tmp_path / "all.npy")[frames]
    )
    e_all = np.load(tmp_path / "all.e.npy")
    assert np.all(np.load(tmp_path / "f.e.npy") >= e_all.max() * 1e-6)


def test_spectrogram_file_empty_wav(tmp_path):
    write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32), SR)
    for kind, bins in (("stft", 513), ("mel", 512)):
        n = spectrogram_file(
            tmp_path / "empty.wav", tmp_path / "e.npy", tmp_path / "e.en.npy", kind
        )
        assert n == 0
        assert np.load(tmp_path / "e.npy").shape == (0, bins)
        assert np.load(tmp_path / "e.en.npy").shape == (0,)


def test_spectrogram_file_bad_input(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"not a wav")
    with pytest.raises(SoundharvestError, match="bad.wav"):
        spectrogram_file(tmp_path / "bad.wav", tmp_path / "o.npy", tmp_path / "o.e.npy", "stft")
    write_wav(tmp_path / "ok.wav", chirp(0.5), SR)
    with pytest.raises(SoundharvestError, match="dtype"):
        spectrogram_file(
            tmp_path / "ok.wav", tmp_path / "o.npy", tmp_path / "o.e.npy", "stft", dtype="int8"
        )
    assert not (tmp_path / "o.npy").exists()
