"""Tests of soundharvest.reconstruct: Griffin-Lim inversions of the features and the distances."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from soundharvest.features import compute_features
from soundharvest.io import SoundharvestError
from soundharvest.reconstruct import (
    invert_features,
    reconstruction_file,
    sample_notes,
    spectral_metrics,
)
from soundharvest.train import train

SR = 16000
MEL = {"n_fft": 2048, "hop_length": 512, "n_mels": 128}


def tone(freq: float, seconds: float = 1.0, harmonics: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    y = sum(np.sin(2 * np.pi * freq * h * t) / h for h in range(1, harmonics + 1))
    return (0.5 * y / np.max(np.abs(y))).astype(np.float32)


def peak_hz(y: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.argmax(spec) * SR / len(y))


@pytest.mark.parametrize(("kind", "params", "tol_hz"), [("stft", {}, 3.0), ("mel", MEL, 15.0)])
def test_griffin_lim_round_trip_recovers_a_pure_tone(kind, params, tol_hz) -> None:
    for freq in (440.0, 1234.0):
        y = tone(freq)
        frames, _ = compute_features(y, SR, kind, params)
        back = invert_features(frames, kind, params, SR, n_iter=32, length=len(y))
        assert back.shape == y.shape
        assert abs(peak_hz(back) - freq) < tol_hz
        # A normalised level: the loudest bin as a full-scale sinusoid (mel spreads a tone over
        # a few bins of similar level, hence the wider upper bound).
        assert 0.5 < np.max(np.abs(back)) < 5.0


def test_metrics_are_zero_for_identical_inputs_and_ignore_level() -> None:
    y = tone(330.0, harmonics=5)
    for est in (y, 0.1 * y):
        m = spectral_metrics(y, est)
        assert m["spectral_convergence"] == pytest.approx(0.0, abs=1e-6)
        assert m["log_spectral_distance"] == pytest.approx(0.0, abs=1e-3)
    other = spectral_metrics(y, tone(500.0, harmonics=5))
    assert other["spectral_convergence"] > 0.5 and other["log_spectral_distance"] > 5.0
    # A worse estimate scores worse: added noise grows both distances.
    rng = np.random.default_rng(0)
    small = spectral_metrics(y, y + 0.01 * rng.standard_normal(len(y)).astype(np.float32))
    large = spectral_metrics(y, y + 0.1 * rng.standard_normal(len(y)).astype(np.float32))
    assert 0 < small["spectral_convergence"] < large["spectral_convergence"]
    assert 0 < small["log_spectral_distance"] < large["log_spectral_distance"]


def test_mel_loses_timbre_the_stft_keeps() -> None:
    # A rich harmonic tone: 128 mel bands blur the high harmonics that 513 STFT bins resolve.
    y = tone(220.0, seconds=0.75, harmonics=30)
    out = {}
    for kind, params in (("stft", {}), ("mel", MEL)):
        frames, _ = compute_features(y, SR, kind, params)
        out[kind] = spectral_metrics(y, invert_features(frames, kind, params, SR, 32, len(y)))
    assert out["stft"]["spectral_convergence"] < out["mel"]["spectral_convergence"]
    assert out["stft"]["log_spectral_distance"] < out["mel"]["log_spectral_distance"]


def test_sample_notes_spreads_over_families() -> None:
    notes = pd.DataFrame(
        {"note_str": [f"n{i}" for i in range(12)], "family": ["a"] * 9 + ["b"] * 3}
    )
    s = sample_notes(notes, 4, seed=1)
    assert list(s["family"]) == ["a", "b", "a", "b"] and s["note_str"].is_unique
    assert len(sample_notes(notes, 50)) == 12


def test_reconstruction_file_writes_wavs_table_and_players(tmp_path) -> None:
    nsynth = tmp_path / "nsynth"
    (nsynth / "audio").mkdir(parents=True)
    rows = []
    for i, (fam, f0) in enumerate([("flute", 523.0), ("organ", 196.0)]):
        name = f"{fam}_synthetic_000-0{60 + i}-100"
        sf.write(nsynth / "audio" / f"{name}.wav", tone(f0, 0.75, harmonics=8), SR, "PCM_16")
        rows.append({"note_str": name, "family": fam})
    pd.DataFrame(rows).to_csv(tmp_path / "notes.tsv", sep="\t", index=False)
    # A tiny autoencoder of stft frames (trained briefly on the notes' own frames).
    frames = np.concatenate(
        [compute_features(tone(f, 0.75, 8), SR, "stft", {})[0] for f in (523.0, 196.0)]
    )
    (tmp_path / "sh").mkdir()
    np.save(tmp_path / "sh" / "shard-00.npy", np.tile(frames, (20, 1)).astype(np.float16))
    np.save(tmp_path / "sh" / "shard-00.labels.npy", np.zeros(len(frames) * 20, np.int16))
    train([tmp_path / "sh" / "shard-00.npy"], tmp_path / "w.safetensors", tmp_path / "c.tsv",
          tmp_path / "c.png", model_type="ae", arch={"hidden": [32], "latent": 4},
          frames=2000, batch_size=64, lr=3e-3, threads=1, device="cpu")  # fmt: skip
    features = {"stft": {"params": {}, "sample_rate": SR}, "mel": {"params": MEL}}
    table = reconstruction_file(
        nsynth, tmp_path / "notes.tsv", tmp_path / "out", tmp_path / "rec.tsv",
        tmp_path / "summary.tsv", features, {"stft": {"tiny": tmp_path / "w.safetensors"}},
        n_notes=2, n_iter=16,
    )  # fmt: skip
    versions = ["original", "stft", "mel", "stft+tiny"]
    assert sorted(table["version"]) == sorted(versions * 2)
    for r in table.itertuples(index=False):
        wav, sr = sf.read(tmp_path / "out" / r.wav)
        assert sr == SR and len(wav) == int(0.75 * SR)
    orig = table[table["version"] == "original"]
    assert (orig["spectral_convergence"] == 0).all()
    rec = table.set_index(["note_str", "version"])["spectral_convergence"]
    for name in table["note_str"].unique():
        # A 4-d bottleneck trained for seconds loses more than the stft features alone.
        assert 0 < rec[(name, "stft")] < rec[(name, "stft+tiny")]
    summary = pd.read_csv(tmp_path / "summary.tsv", sep="\t")
    assert list(summary["version"]) == ["stft", "stft+tiny", "mel"]
    page = (tmp_path / "out" / "index.html").read_text()
    assert page.count("<audio") == 8 and "stft+tiny/" not in page
    with pytest.raises(SoundharvestError, match="without features"):
        reconstruction_file(nsynth, tmp_path / "notes.tsv", tmp_path / "o2", tmp_path / "r2.tsv",
                            tmp_path / "s2.tsv", {"stft": {}}, {"mel": {}})  # fmt: skip
