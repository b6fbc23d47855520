"""Tests of the evaluation pooling options: a note's loud frames and its mean code."""

from __future__ import annotations

import numpy as np
import pytest

from soundharvest.evaluate.frames import loud_frames, pool_codes
from soundharvest.io import SoundharvestError


def test_loud_frames_keeps_frames_within_window() -> None:
    energy = np.array([1e-6, 0.6, 1.0, 0.2, 0.009, 0.0])
    assert loud_frames(energy, 20.0).tolist() == [1, 2, 3]  # 0.009 is 20.5 dB down
    assert loud_frames(energy, -3.0).tolist() == [1, 2]  # sign ignored: 3 dB
    with pytest.raises(SoundharvestError, match="energy"):
        loud_frames(np.array([]))


def test_pool_codes_means_per_note() -> None:
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(7, 3))
    note_of = np.array([0, 0, 1, 2, 2, 2, 1])
    pooled = pool_codes(codes, note_of, 3)
    for n in range(3):
        assert np.allclose(pooled[n], codes[note_of == n].mean(0), atol=1e-6)
    with pytest.raises(SoundharvestError, match="cover"):
        pool_codes(codes, note_of, 4)  # note 3 has no frame


def test_eval_frames_writes_loud_frames_and_embed_pools_them(tmp_path) -> None:
    from soundharvest.evaluate.frames import eval_frames
    from soundharvest.evaluate.nsynth import load_note, render_eval_set
    from soundharvest.evaluate.pipeline import embed_file
    from soundharvest.features import compute_features

    nsynth = tmp_path / "nsynth"
    render_eval_set(nsynth, ["flute", "organ"], 3, seed=0)
    params = {"n_fft": 512, "hop_length": 256}
    paths = {n: tmp_path / f"{n}.npy" for n in ("top", "loud", "note")}
    notes = eval_frames(
        nsynth, paths["top"], tmp_path / "notes.tsv", "stft", params,
        out_loud=paths["loud"], out_loud_note=paths["note"], loud_db=10.0,
    )  # fmt: skip
    top, loud, note_of = (np.load(p) for p in paths.values())
    assert note_of.tolist() == sorted(note_of.tolist())  # notes in order, frames in time order
    for i, key in enumerate(notes["note_str"]):
        frames, energy = compute_features(load_note(nsynth, key), 16000, "stft", params)
        sel = loud_frames(energy, 10.0)
        assert np.array_equal(loud[note_of == i], frames[sel])
        assert any(np.array_equal(top[i], f) for f in loud[note_of == i])  # the top frame is in
    # embed: a note's raw code is the mean of its loud frames; PCA reduces those means
    raw = embed_file(paths["top"], tmp_path / "raw.npy", "raw", loud_npy=paths["loud"],
                     loud_note_npy=paths["note"])  # fmt: skip
    assert raw.shape == top.shape
    for i in range(len(top)):
        assert np.allclose(raw[i], loud[note_of == i].mean(0), atol=1e-6)
    pca = embed_file(paths["top"], tmp_path / "pca.npy", "pca", latent=3,
                     loud_npy=paths["loud"], loud_note_npy=paths["note"])  # fmt: skip
    assert pca.shape == (len(top), 3)
    # without the loud frames: the thesis' top frame, unchanged
    assert np.array_equal(embed_file(paths["top"], tmp_path / "r2.npy", "raw"), top)
    with pytest.raises(SoundharvestError, match="both"):
        eval_frames(
            nsynth, paths["top"], tmp_path / "n.tsv", "stft", params, out_loud=paths["loud"]
        )


def test_eval_windows_start_at_the_top_frame_and_embed_encodes_them(tmp_path) -> None:
    from soundharvest.encoder import encode, save_weights
    from soundharvest.evaluate.frames import eval_frames, eval_windows
    from soundharvest.evaluate.nsynth import load_note, render_eval_set
    from soundharvest.evaluate.pipeline import embed_file
    from soundharvest.features import bin_frequencies, compute_features
    from soundharvest.models import build_model

    nsynth = tmp_path / "nsynth"
    render_eval_set(nsynth, ["flute", "guitar"], 2, seed=0)
    params = {"n_fft": 126, "hop_length": 63}
    notes = eval_frames(nsynth, tmp_path / "top.npy", tmp_path / "notes.tsv", "stft", params)
    win = eval_windows(nsynth, tmp_path / "notes.tsv", tmp_path / "w.npy", "stft", params, 7)
    assert win.shape == (4, 7, 64)
    top = np.load(tmp_path / "top.npy")
    for i, (key, start) in enumerate(zip(notes["note_str"], notes["frame"], strict=True)):
        frames, _ = compute_features(load_note(nsynth, key), 16000, "stft", params)
        assert np.array_equal(win[i, 0], top[i])
        stop = min(start + 7, len(frames))
        assert np.array_equal(win[i, : stop - start], frames[start:stop])
    # A model on windows of 3 frames, 3 apart (span 7): a note's code is its top window's.
    arch = {"frontend": "logconv", "channels": [4], "hidden": [8], "latent": 3, "context": 3,
            "context_stride": 3, "bin_hz": list(bin_frequencies("stft", params, 16000))}  # fmt: skip
    net = build_model("random", 64, arch, seed=0)
    weights = tmp_path / "m.safetensors"
    meta = {"model_type": "random", "arch": arch, "in_dim": 64, "seed": 0}
    save_weights(net, weights, meta)
    codes = embed_file(tmp_path / "top.npy", tmp_path / "c.npy", "m", weights,
                       windows_npy=tmp_path / "w.npy")  # fmt: skip
    assert np.allclose(codes, encode(net, win[:, [0, 3, 6]]), atol=1e-6)
    with pytest.raises(SoundharvestError, match="windows_npy"):
        embed_file(tmp_path / "top.npy", tmp_path / "c.npy", "m", weights)
    short = tmp_path / "short.npy"
    eval_windows(nsynth, tmp_path / "notes.tsv", short, "stft", params, 5)
    with pytest.raises(SoundharvestError, match="re-run eval_windows"):
        embed_file(tmp_path / "top.npy", tmp_path / "c.npy", "m", weights, windows_npy=short)
    with pytest.raises(SoundharvestError, match="span"):
        eval_windows(nsynth, tmp_path / "notes.tsv", short, "stft", params, 0)
