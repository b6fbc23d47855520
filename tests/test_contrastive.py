"""Tests of the issue-10 options: input normalisation, clip partners, the contrastive model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from soundharvest.dataset import shuffle
from soundharvest.encoder import encode, load_model
from soundharvest.io import SoundharvestError, save_npy
from soundharvest.loader import ClipPositives, ShardReader
from soundharvest.models import Normalizer, build_model
from soundharvest.train import (
    EQ_TERMS,
    ContrastiveObjective,
    eq_basis,
    pitch_shift,
    supervision,
    train,
)

SMALL = {"hidden": [64, 64], "latent": 8}


def make_clips(
    directory: Path, n_classes: int = 3, clips: int = 16, length: int = 40, d: int = 64, seed=0
) -> tuple[list[Path], list[Path], np.ndarray]:
    """Clips whose frames share a timbre (spectral envelope) but change pitch and level.

    A frame is ``envelope(class) x harmonic comb(pitch) x gain``: within a clip the envelope
    stays and pitch and gain change every few frames, so most of a frame's variance is pitch
    and level, not class. Written as concatenate-stage files per class, shuffled into shards.

    :return: shard paths, the concatenate files (the shuffle's inputs, in order), and the
        class of every global source row.
    """
    rng = np.random.default_rng(seed)
    bins = np.arange(d)
    directory.mkdir(parents=True, exist_ok=True)
    inputs, classes = [], []
    for c in range(n_classes):
        centre = rng.uniform(0.2, 0.8) * d
        envelope = np.exp(-0.5 * ((bins - centre) / (0.12 * d)) ** 2)
        frames, lines, row = [], ["video_id\tfirst_row\tn_rows"], 0
        for j in range(clips):
            seg = []
            for _ in range(length // 4):
                f0 = rng.uniform(3.0, 9.0)
                comb = np.exp(-0.5 * ((bins[None, :] % f0 - f0 / 2) / 0.6) ** 2).sum(axis=0)
                frame = envelope * (0.3 + comb) * rng.uniform(0.3, 1.0)
                seg += [frame] * 4
            x = np.clip(np.array(seg) / 1.3 + rng.normal(0, 0.01, (length, d)), 0, 1)
            frames.append(x.astype(np.float16))
            lines.append(f"c{c}-{j}\t{row}\t{length}")
            row += length
        save_npy(directory / f"class{c}.npy", np.concatenate(frames))
        (directory / f"class{c}.index.tsv").write_text("\n".join(lines) + "\n")
        inputs.append((f"class{c}", directory / f"class{c}.npy"))
        classes.append(np.full(row, c))
    shards = [directory / f"shard-{i}.npy" for i in range(2)]
    shuffle(inputs, shards, seed=seed, memory_budget_mb=64)
    return shards, [p for _, p in inputs], np.concatenate(classes)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return make_clips(tmp_path_factory.mktemp("clips"))


def test_frame_normalisation_removes_level_and_bin_stats_fit() -> None:
    x = torch.rand(50, 16)
    norm = Normalizer("frame", 16)
    # A level change in the scaled dB domain is an added constant; frame standardisation
    # removes it (and a positive scale of the spread).
    assert torch.allclose(norm(x), norm(0.5 * x + 0.2), atol=1e-4)
    binn = Normalizer("bin", 16)
    binn.fit(x * 3 + 1)
    y = binn(x * 3 + 1)
    assert torch.allclose(y.mean(0), torch.zeros(16), atol=1e-4)
    assert torch.allclose(y.std(0), torch.ones(16), atol=1e-3)
    with pytest.raises(SoundharvestError, match="normalize"):
        Normalizer("global", 16)


def test_clip_partners_stay_in_clip_and_window(clips) -> None:
    shards, sources, _ = clips
    pos = ClipPositives(sources, max_offset=3)
    rows = np.arange(pos.n_rows)
    partner = pos.partner_rows(rows, np.random.default_rng(0))
    clip_len = 40
    assert np.all(partner // clip_len == rows // clip_len)  # same clip (clips are 40 rows)
    assert np.all(np.abs(partner - rows) <= 3)
    assert np.all(partner != rows)
    # The shards' source rows point at the frames the shards hold.
    reader = ShardReader(shards, 64, with_rows=True, prefetch=0)
    x, r = next(iter(reader.batches(0, 64)))
    assert np.array_equal(pos.frames(r.numpy()), x.numpy())


def test_contrastive_loss_lower_for_true_pairs(clips) -> None:
    shards, sources, _ = clips
    pos = ClipPositives(sources, max_offset=2)
    reader = ShardReader(shards, 128, with_rows=True, prefetch=0)
    model = build_model("contrastive", 64, SMALL, seed=0, normalize="frame")
    obj = ContrastiveObjective(model, lr=3e-3, temperature=0.1)
    rng = np.random.default_rng(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread beats contended many
    for x, r in reader.batches(0, 10_000):
        xp = torch.from_numpy(pos.frames(pos.partner_rows(r.numpy(), rng)))
        obj.step_on(torch.stack([x, xp], 1), obj.draw(len(x)))
    torch.set_num_threads(threads)
    x, r = next(iter(reader.batches(0, 256)))
    xp = torch.from_numpy(pos.frames(pos.partner_rows(r.numpy(), rng)))
    with torch.no_grad():
        true_loss, _ = obj.losses(torch.stack([x, xp], 1), obj.draw(len(x)))
        shuffled = xp[torch.randperm(len(xp), generator=torch.Generator().manual_seed(0))]
        false_loss, _ = obj.losses(torch.stack([x, shuffled], 1), obj.draw(len(x)))
    assert float(true_loss) < float(false_loss) - 1.0


def _purity(codes: np.ndarray, classes: np.ndarray, k: int) -> float:
    from soundharvest.evaluate.kmeans import kmeans

    _, assign, _ = kmeans(codes, k, seed=0, n_init=3, device="cpu")
    return sum(np.bincount(classes[assign == c]).max() for c in np.unique(assign)) / len(classes)


def test_contrastive_codes_cluster_by_clip_class_better_than_ae(clips, tmp_path: Path) -> None:
    shards, sources, classes = clips
    all_frames = np.concatenate([np.load(p) for p in sources]).astype(np.float32)
    common = dict(arch=SMALL, frames=30_000, batch_size=128, lr=3e-3, seed=0, threads=1)
    purity = {}
    for name, kw in {
        "ae": dict(model_type="ae"),
        "contrastive": dict(
            model_type="contrastive", normalize="bin", positives=sources, max_offset=3
        ),
    }.items():
        w = tmp_path / f"{name}.safetensors"
        train(shards, w, tmp_path / f"{name}.tsv", tmp_path / f"{name}.png", **common, **kw)
        net, meta = load_model(w)
        purity[name] = _purity(encode(net, all_frames), classes, 3)
    assert meta["normalize"] == "bin"
    assert purity["contrastive"] > purity["ae"] + 0.1, purity
    assert purity["contrastive"] > 0.8, purity


def test_bin_statistics_round_trip_through_weights(clips, tmp_path: Path) -> None:
    shards, _, _ = clips
    w = tmp_path / "r.safetensors"
    train(
        shards,
        w,
        tmp_path / "r.tsv",
        tmp_path / "r.png",
        model_type="random",
        arch=SMALL,
        normalize="bin",
        threads=1,
    )
    net, meta = load_model(w)
    assert meta["normalize"] == "bin"
    frames = np.concatenate([np.load(p) for p in shards]).astype(np.float32)
    stats = net.normalizer
    assert np.allclose(stats.mean.numpy(), frames.mean(0), atol=1e-3)
    # The same seed without normalisation gives the same weights but other codes.
    plain = build_model("random", 64, SMALL, seed=0)
    assert torch.equal(plain.encoder.layers[0].weight, net.encoder.layers[0].weight)
    assert not np.allclose(encode(plain, frames[:10]), encode(net, frames[:10]))


def test_contrastive_needs_positives(clips, tmp_path: Path) -> None:
    shards, _, _ = clips
    with pytest.raises(SoundharvestError, match="positives"):
        train(
            shards,
            tmp_path / "c.safetensors",
            tmp_path / "c.tsv",
            tmp_path / "c.png",
            model_type="contrastive",
            arch=SMALL,
            frames=256,
            threads=1,
        )


# ---------------------------------------------------------------- the logconv front end

STFT_HZ = np.arange(513) * 16000 / 1024  # bin frequencies of the default stft kind
LOGCONV = {"frontend": "logconv", "channels": [16, 16, 16], "hidden": [32], "latent": 8}


def _harmonic_frame(f0: float, odd_only: bool = False, rolloff: float = 1.0) -> np.ndarray:
    """A [0, 1]-scaled dB-like frame: partials of f0 with a 1/n^rolloff amplitude."""
    frame = np.zeros(513)
    for n in range(1, 40):
        if odd_only and n % 2 == 0:
            continue
        f = n * f0
        if f >= 7900:
            break
        frame += n**-rolloff * np.exp(-0.5 * ((STFT_HZ - f) / 12.0) ** 2)
    return np.clip(1.0 + 20 * np.log10(frame + 1e-4) / 80.0, 0, 1).astype(np.float32)


def test_logconv_codes_follow_timbre_across_pitch() -> None:
    """Two semitones apart, one timbre stays closer than another timbre at the same pitch; the
    thesis' MLP sees the pitch change as the bigger one. (Untrained encoders: the prior alone.
    Measured: the invariance fades with the interval, ratio 0.15 at 2 semitones, 0.9 at a
    fifth, 2 at an octave, where the occupied frequency range itself moves.)"""
    arch = {**LOGCONV, "bin_hz": STFT_HZ.tolist()}
    f1 = 220.0 * 2 ** (2 / 12)
    low, high = _harmonic_frame(220.0), _harmonic_frame(f1)
    other = _harmonic_frame(f1, odd_only=True, rolloff=2.0)
    frames = np.stack([low, high, other])
    ratios = {}
    for name, a in {"logconv": arch, "mlp": {"hidden": [64, 64], "latent": 8}}.items():
        ds = []
        for seed in range(5):
            z = encode(build_model("random", 513, a, seed=seed), frames)
            d_octave = np.linalg.norm(z[0] - z[1])
            d_timbre = np.linalg.norm(z[1] - z[2])
            ds.append(d_octave / d_timbre)
        ratios[name] = float(np.median(ds))
    assert ratios["logconv"] < 0.5, ratios
    assert ratios["mlp"] > 1.0, ratios


def test_log_resampler_interpolates_between_bins() -> None:
    from soundharvest.models import log_resampler

    mat = log_resampler(STFT_HZ, 60.0, None, 12).numpy()
    assert mat.shape[0] == 513
    assert np.allclose(mat.sum(0), 1.0)  # every grid point a convex mix of two bins
    grid = 60.0 * 2 ** (np.arange(mat.shape[1]) / 12)
    assert np.allclose(STFT_HZ @ mat, grid, rtol=1e-6)  # linear in frequency: exact
    assert grid[-1] <= STFT_HZ[-1] < grid[-1] * 2 ** (1 / 12)
    with pytest.raises(SoundharvestError, match="increasing"):
        log_resampler(STFT_HZ[::-1], 60.0, None, 12)


def test_logconv_trains_from_the_feature_spec_and_reloads(clips, tmp_path: Path) -> None:
    shards, sources, _ = clips
    spec = {"kind": "stft", "params": {"n_fft": 126, "hop_length": 63}, "sample_rate": 16000}
    w = tmp_path / "c.safetensors"
    common = dict(model_type="contrastive", arch={**LOGCONV, "channels": [8, 8]}, frames=2048)
    train(shards, w, tmp_path / "c.tsv", tmp_path / "c.png", **common, batch_size=64,
          lr=1e-3, threads=1, positives=sources, gain_jitter=0.1,
          metadata={"features": spec})  # fmt: skip
    net, meta = load_model(w)
    assert meta["arch"]["frontend"] == "logconv"
    assert len(meta["arch"]["bin_hz"]) == 64  # 126 // 2 + 1 bins at 16 kHz
    assert meta["arch"]["bin_hz"][1] == pytest.approx(16000 / 126, rel=1e-4)
    x = np.load(shards[0])[:5].astype(np.float32)
    again = build_model("contrastive", 64, meta["arch"], seed=0)
    again.load_state_dict(net.state_dict())
    assert np.allclose(encode(net, x), encode(again, x), atol=1e-6)
    with pytest.raises(SoundharvestError, match="bin"):
        train(
            shards,
            tmp_path / "d.safetensors",
            tmp_path / "d.tsv",
            tmp_path / "d.png",
            **common,
            threads=1,
            positives=sources,
        )  # fmt: skip  (no feature spec)


def test_same_clip_partners_in_a_batch_are_positives() -> None:
    """With clip ids, frames of one clip are not each other's negatives."""
    torch.manual_seed(0)
    model = build_model("contrastive", 16, {"hidden": [16], "latent": 4}, seed=0)
    obj = ContrastiveObjective(model, temperature=0.1)
    a = torch.rand(6, 16)
    x = torch.stack([a, a], dim=1)  # every partner identical to its anchor
    x[1, 1] = x[0, 0]  # and anchors 0 and 1 both match partner 0's content
    groups_apart = torch.arange(6, dtype=torch.float32)
    groups_shared = torch.tensor([0, 0, 1, 2, 3, 4], dtype=torch.float32)
    noise = obj.draw(6)
    with torch.no_grad():
        _, m_apart = obj.losses(x, torch.cat([noise, groups_apart[:, None]], 1))
        _, m_shared = obj.losses(x, torch.cat([noise, groups_shared[:, None]], 1))
        plain, m_plain = obj.losses(x, noise)
        apart, _ = obj.losses(x, torch.cat([noise, groups_apart[:, None]], 1))
    assert float(plain) == pytest.approx(float(apart), rel=1e-6)  # distinct clips: plain InfoNCE
    # top-1 (last metric): a same-clip partner counts as a hit only when the ids say so
    assert float(m_shared[-1]) >= float(m_apart[-1])


def test_positives_know_the_label_of_every_row(clips) -> None:
    _, sources, classes = clips
    pos = ClipPositives(sources, max_offset=3)
    assert np.array_equal(pos.labels(np.arange(pos.n_rows)), classes)
    assert np.array_equal(pos.labels(np.array([pos.n_rows - 1, 0])), classes[[-1, 0]])


def test_label_weight_adds_the_loss_with_label_positives() -> None:
    """The label term is the clip loss with the labels as the groups, added with its weight."""
    torch.manual_seed(0)
    model = build_model("contrastive", 16, {"hidden": [16], "latent": 4}, seed=0)
    plain = ContrastiveObjective(model, temperature=0.1)
    mixed = ContrastiveObjective(model, temperature=0.1, label_weight=0.5)
    x = torch.rand(8, 2, 16)
    noise = plain.draw(8)
    clip_ids = torch.arange(8.0)[:, None]
    label_ids = torch.tensor([0.0, 0, 0, 1, 1, 2, 2, 2])[:, None]
    with torch.no_grad():
        clip_loss, _ = plain.losses(x, torch.cat([noise, clip_ids], 1))
        label_loss, _ = plain.losses(x, torch.cat([noise, label_ids], 1))
        total, metrics = mixed.losses(x, torch.cat([noise, clip_ids, label_ids], 1))
        _, distinct = mixed.losses(x, torch.cat([noise, clip_ids, clip_ids], 1))
    assert float(label_loss) != pytest.approx(float(clip_loss), rel=1e-3)  # the labels matter
    assert float(metrics[0]) == pytest.approx(float(clip_loss), rel=1e-6)
    assert float(metrics[2]) == pytest.approx(float(label_loss), rel=1e-6)  # logged apart
    assert float(total) == pytest.approx(float(clip_loss) + 0.5 * float(label_loss), rel=1e-6)
    # one label per clip: the label term is the clip loss itself
    assert float(distinct[2]) == pytest.approx(float(clip_loss), rel=1e-6)
    with pytest.raises(SoundharvestError, match="label ids"):
        mixed.losses(x, torch.cat([noise, clip_ids], 1))


def test_supervision_says_which_settings_use_the_query_labels() -> None:
    clip = {"type": "contrastive", "positive_scope": "clip"}
    assert supervision(clip) == "none"
    assert supervision({**clip, "label_weight": 0.0}) == "none"
    assert supervision({**clip, "label_weight": 0.5}) == "weak"
    assert supervision({"type": "contrastive", "positive_scope": "label"}) == "weak"
    assert supervision({"type": "acai", "positive_scope": "label"}) == "none"  # no pairs
    assert supervision({"type": "random"}) == "none"


def test_label_weight_trains_on_the_rows_labels_in_the_clip_scope(clips, tmp_path: Path) -> None:
    shards, sources, classes = clips
    common = dict(model_type="contrastive", arch=SMALL, batch_size=128, lr=3e-3, threads=1)
    w = tmp_path / "mix.safetensors"
    train(
        shards, w, tmp_path / "mix.tsv", tmp_path / "mix.png", **common, frames=12_800,
        positives=sources, max_offset=3, label_weight=1.0,
    )  # fmt: skip
    net, meta = load_model(w)
    assert meta["label_weight"] == 1.0 and meta["positive_scope"] == "clip"
    label_loss = pd.read_csv(tmp_path / "mix.tsv", sep="\t")["label_loss"].to_numpy()
    assert np.isfinite(label_loss).all() and label_loss[-1] < label_loss[0] - 0.5
    all_frames = np.concatenate([np.load(p) for p in sources]).astype(np.float32)
    assert _purity(encode(net, all_frames), classes, 3) > 0.9
    with pytest.raises(SoundharvestError, match="label_weight"):
        train(
            shards, tmp_path / "x.safetensors", tmp_path / "x.tsv", tmp_path / "x.png",
            **common, frames=256, positives=sources, positive_scope="label", label_weight=1.0,
        )  # fmt: skip


def test_gain_jitter_draws_levels_in_range() -> None:
    model = build_model("contrastive", 16, {"hidden": [16], "latent": 4}, seed=0)
    off = ContrastiveObjective(model).draw(1000)
    assert torch.all(off == 0)
    on = ContrastiveObjective(model, gain_jitter=0.1, seed=3).draw(1000)
    assert float(on.abs().max()) <= 0.1 and float(on.std()) > 0.04


def test_eq_basis_is_a_tilt_then_finer_weaker_curves() -> None:
    basis = eq_basis(513)
    assert basis.shape == (EQ_TERMS, 513)
    tilt = basis[0].numpy()
    assert tilt[0] == pytest.approx(1.0) and tilt[-1] == pytest.approx(-1.0)
    assert np.all(np.diff(tilt) <= 1e-7)  # the first curve falls monotonically: a tilt
    peaks = basis.abs().max(dim=1).values.numpy()
    assert peaks == pytest.approx(1.0 / np.arange(1, EQ_TERMS + 1), abs=0.02)
    # each curve crosses zero once more than the one before (ever finer bumps)
    crossings = [int(np.sum(np.diff(np.sign(row)) != 0)) for row in basis.numpy()]
    assert crossings == list(range(1, EQ_TERMS + 1))


def test_eq_jitter_colours_each_anchor_with_one_smooth_curve() -> None:
    model = build_model("contrastive", 64, {"hidden": [16], "latent": 4}, seed=0)
    plain = ContrastiveObjective(model, gain_jitter=0.1, seed=3)
    both = ContrastiveObjective(model, gain_jitter=0.1, eq_jitter=0.05, seed=3)
    n_plain, n_both = plain.draw(500), both.draw(500)
    assert n_plain.shape == (500, 1) and n_both.shape == (500, 1 + EQ_TERMS)
    assert float(n_both[:, 0].abs().max()) <= 0.1 and float(n_both[:, 1:].abs().max()) <= 0.05
    assert float(n_both[:, 1:].std()) > 0.02
    # windows (b, T, bins) at mid-level: every frame of a window gets the same curve
    x = torch.full((500, 3, 64), 0.5)
    out = both.augment(x, n_both)
    want = 0.5 + n_both[:, :1] + n_both[:, 1:] @ eq_basis(64)
    assert torch.allclose(out, want.clamp(0, 1)[:, None, :].expand_as(out), atol=1e-6)
    assert torch.allclose(plain.augment(x, n_plain), (0.5 + n_plain[:, :1, None]).expand_as(x))
    # the scale's ends are kept
    assert float(both.augment(torch.ones_like(x), n_both).max()) <= 1.0
    assert float(both.augment(torch.zeros_like(x), n_both).min()) >= 0.0
    # the clip ids still follow the draws: a same-clip pair is a positive
    pairs = torch.rand(4, 2, 64)
    ids = torch.tensor([0.0, 0.0, 1.0, 2.0])[:, None]
    drawn = both.draw(4)
    _, apart = both.losses(pairs, torch.cat([drawn, torch.arange(4.0)[:, None]], 1))
    _, shared = both.losses(pairs, torch.cat([drawn, ids], 1))
    assert float(shared[-1]) >= float(apart[-1])


def test_pitch_shift_moves_harmonics_and_fills_the_top_with_silence() -> None:
    hz = torch.linspace(0.0, 8000.0, 513)  # an STFT's bins, 15.6 Hz apart
    x = torch.zeros(3, 2, 513)
    for h in (1, 2, 3):  # a 437.5 Hz tone and its harmonics, in every frame of a window
        x[:, :, 28 * h] = 1.0 / h
    x[:, :, -1] = 0.5  # energy at the top bin
    y = pitch_shift(x, torch.tensor([12.0, -12.0, 0.0]), hz)
    assert y.shape == x.shape
    up, down = y[0, 1].numpy(), y[1, 0].numpy()
    # an octave up: the harmonics at twice their bins (between them, interpolated)
    assert up[[56, 112, 168]] == pytest.approx([1.0, 1 / 2, 1 / 3])
    assert up[55] == pytest.approx(0.5) and up[100] == 0.0
    # an octave down: at half their bins
    assert down[[14, 28, 42]] == pytest.approx([1.0, 1 / 2, 1 / 3])
    assert int(np.argmax(up)) == 56 and int(np.argmax(down)) == 14
    assert float(down[257:].max()) == 0.0  # read from above the top bin: silence
    assert torch.allclose(y[2], x[2])  # no shift: unchanged
    # a shift down reads the top bin's energy at half its frequency
    assert down[256] == pytest.approx(0.5, abs=1e-3)


def test_pitch_jitter_shifts_each_anchor_and_trains(tmp_path: Path) -> None:
    hz = np.linspace(0.0, 8000.0, 64)
    model = build_model("contrastive", 64, {"hidden": [16], "latent": 4}, seed=0)
    obj = ContrastiveObjective(model, gain_jitter=0.1, pitch_jitter=7.0, bin_hz=hz.tolist(), seed=1)
    drawn = obj.draw(400)
    assert drawn.shape == (400, 2)
    assert float(drawn[:, -1].abs().max()) <= 7.0 and float(drawn[:, -1].std()) > 3.0
    x = torch.rand(400, 64) * 0.5 + 0.25
    want = pitch_shift(x, drawn[:, -1], torch.as_tensor(hz, dtype=torch.float32))
    want = (want + drawn[:, :1]).clamp(0, 1)
    assert torch.allclose(obj.augment(x, drawn), want, atol=1e-6)
    # clip ids appended after the draws (as the training loop does) do not change the shift
    with_ids = torch.cat([drawn, torch.arange(400.0)[:, None]], 1)
    assert torch.allclose(obj.augment(x, with_ids), want, atol=1e-6)
    with pytest.raises(SoundharvestError, match="pitch_jitter"):
        ContrastiveObjective(model, pitch_jitter=7.0).augment(x, drawn)


# --------------------------------------------------------------------------- context windows

#: A logconv encoder on windows of 4 frames, 2 apart (span 7).
CONTEXT = {**LOGCONV, "channels": [8, 8], "context": 4, "context_stride": 2}
SPEC64 = {"kind": "stft", "params": {"n_fft": 126, "hop_length": 63}, "sample_rate": 16000}


def _context_net(seed: int = 0):
    from soundharvest.features import bin_frequencies

    hz = bin_frequencies("stft", SPEC64["params"], 16000)
    return build_model("contrastive", 64, {**CONTEXT, "bin_hz": list(hz)}, seed=seed)


def test_windows_stay_in_their_clip(clips) -> None:
    _, sources, _ = clips  # 16 clips of 40 rows per file: global row r is in clip r // 40
    for scope in ("clip", "label"):  # label-scope partners, but windows still end at a clip
        pairs = ClipPositives(sources, scope=scope)
        w = pairs.window_rows(np.array([0, 5, 33, 39, 40, 679]), 4, 2)
        assert w.shape == (6, 4) and np.all(np.diff(w, axis=1) == 2)
        # From the row where the span of 7 fits, else moved back to end at the clip's end.
        assert w[:, 0].tolist() == [0, 5, 33, 33, 40, 673]
        assert np.all(w // 40 == w[:, :1] // 40)
    # A clip shorter than the window holds its last row.
    w = pairs.window_rows(np.array([45]), 30, 2)
    assert w[0, 0] == 40 and w[0, -1] == 79 and np.all(w // 40 == 1)
    got = pairs.frames(w)
    assert got.shape == (1, 30, 64)
    assert np.array_equal(got[0, -1], pairs.frames(np.array([79]))[0])
    with pytest.raises(SoundharvestError, match="outside every clip"):
        pairs.window_rows(np.array([pairs.n_rows]), 4, 2)


def test_context_encoder_shapes_sequences_and_errors() -> None:
    from soundharvest.encoder import encode_sequence
    from soundharvest.models import context_of, resolve_arch, window_index

    net = _context_net()
    assert context_of(net) == (4, 2)
    assert context_of(build_model("contrastive", 64, SMALL)) == (1, 1)
    x = torch.rand(5, 4, 64)
    assert net.encode(x).shape == (5, 8)
    # A window's code depends on the order of its frames (the convolution along time).
    assert not torch.allclose(net.encode(x), net.encode(x.flip(1)), atol=1e-4)
    with pytest.raises(SoundharvestError, match="windows of 4 frames"):
        net.encode(torch.rand(5, 64))
    with pytest.raises(SoundharvestError, match="expects"):
        encode(net, np.random.rand(5, 64).astype(np.float32))
    # A sequence: one code per frame, of the window that starts there (the end held).
    seq = np.random.default_rng(0).random((11, 64)).astype(np.float32)
    idx = window_index(np.arange(11), 11, 4, 2)
    assert idx[8].tolist() == [8, 10, 10, 10] and idx[10].tolist() == [10] * 4
    assert np.allclose(encode_sequence(net, seq, batch_size=12), encode(net, seq[idx]), atol=1e-6)
    with pytest.raises(SoundharvestError, match="reconstructs single frames"):
        build_model("ae", 64, {**CONTEXT, "bin_hz": list(np.linspace(10, 8000, 64))})
    with pytest.raises(SoundharvestError, match="context"):
        resolve_arch({**SMALL, "context": 4})  # the thesis MLP takes single frames
    with pytest.raises(SoundharvestError, match="context_stride"):
        resolve_arch({**CONTEXT, "context_stride": 0})


def test_context_model_trains_on_clip_windows_and_labels_clusters(clips, tmp_path: Path) -> None:
    from soundharvest.models import context_of
    from soundharvest.predict import Predictor, label_clusters_file

    shards, sources, classes = clips
    w = tmp_path / "ctx.safetensors"
    kw = dict(model_type="contrastive", arch=CONTEXT, batch_size=64, lr=1e-3, threads=1,
              positives=sources, gain_jitter=0.1, metadata={"features": SPEC64})  # fmt: skip
    train(shards, w, tmp_path / "c.tsv", tmp_path / "c.png", frames=3072, **kw)
    net, meta = load_model(w)
    assert context_of(net) == (4, 2) and meta["frames_seen"] == 3072
    curves = pd.read_csv(tmp_path / "c.tsv", sep="\t")
    assert curves["nce_loss"].iloc[-1] < curves["nce_loss"].iloc[0]
    assert "critic_loss" not in curves and "alpha_corr" not in curves
    # Windows of every clip: the trained codes group clips by class better than untrained ones.
    pairs = ClipPositives(sources)
    starts = np.arange(0, pairs.n_rows, 10)
    windows = pairs.frames(pairs.window_rows(starts, 4, 2))
    trained = _purity(encode(net, windows), classes[starts], 3)
    untrained = _purity(encode(_context_net(seed=0), windows), classes[starts], 3)
    assert trained > untrained, (trained, untrained)
    with pytest.raises(SoundharvestError, match="recon_weight"):
        train(shards, tmp_path / "r.safetensors", tmp_path / "r.tsv", tmp_path / "r.png",
              frames=64, recon_weight=0.5, **kw)  # fmt: skip
    # The cluster -> label model samples training frames and encodes their windows.
    labels = shards[0].parent / "labels.json"
    with pytest.raises(SoundharvestError, match="sources"):
        label_clusters_file(shards, labels, w, tmp_path / "p0", k=3, sample_frames=300)
    meta = label_clusters_file(
        shards, labels, w, tmp_path / "pred", k=3, sample_frames=300, sources=sources
    )
    assert meta["sample_frames"] == 300
    pred = Predictor.load(tmp_path / "pred")
    assert pred.encode(np.load(sources[0])[:9].astype(np.float32)).shape == (9, 8)


def test_sampled_windows_are_encoded_in_bounded_blocks_with_the_same_codes(
    clips, monkeypatch
) -> None:
    from soundharvest import encoder as encoder_mod
    from soundharvest import sampling
    from soundharvest.encoder import encode_batch
    from soundharvest.models import activation_floats, autoencoder_of

    shards, sources, _ = clips
    net = _context_net()
    # The widest layer is the front end's: channels x log bins per frame, x 4 frames a window.
    floats = activation_floats(net)
    assert floats == 4 * 8 * autoencoder_of(net).encoder.resample.shape[1]
    assert encode_batch(net) == encoder_mod.ENCODE_BATCH_BYTES // (4 * floats)
    # Reference: the whole sample at once (what label_clusters did), 25 % of the clips held out.
    pos = ClipPositives(sources)
    _, ids, rows = sampling.sample_shards(shards, 400, with_rows=True)
    keep = ~pos.held_out(rows, 0.25)
    assert 300 < keep.sum() < 400  # some held out, enough left
    ids, rows = ids[keep][:300], rows[keep][:300]
    expected = encode(net, pos.frames(pos.window_rows(rows, 4, 2)))
    # Blocks of 37 windows, forward passes of 5: many of each, and the same codes in order.
    monkeypatch.setattr(sampling, "SAMPLE_BLOCK_BYTES", 37 * 4 * 64 * 4)
    monkeypatch.setattr(encoder_mod, "ENCODE_BATCH_BYTES", 5 * 4 * floats)
    assert encode_batch(net) == 5
    codes, got_ids, got_rows = sampling.sample_codes(shards, 300, net, sources, holdout=0.25)
    assert np.array_equal(got_ids, ids) and np.array_equal(got_rows, rows)
    assert np.allclose(codes, expected, atol=1e-5)
    # The raw baseline's codes are the sampled frames themselves.
    frames, raw_ids = sampling.sample_shards(shards, 50)
    raw, raw_got, _ = sampling.sample_codes(shards, 50)
    assert np.array_equal(raw, frames) and np.array_equal(raw_got, raw_ids)


def test_one_pass_encodes_every_training_frame_once_for_the_clusters_and_the_votes(
    clips, tmp_path, monkeypatch
):
    """label_clusters encodes each training frame once (not the sample, then every clip again
    for the label-noise report), each clip as one sequence whatever the block size, so the
    votes are what the predictor says on the clip; the scratch codes are removed after."""
    from soundharvest import encoder as encoder_mod
    from soundharvest import noise
    from soundharvest.acquire.catalog import CATALOG_COLUMNS
    from soundharvest.dataset import read_index
    from soundharvest.predict import Predictor, label_clusters_file

    shards, sources, _ = clips
    w = tmp_path / "rand.safetensors"
    train(shards, w, tmp_path / "c.tsv", tmp_path / "c.png", model_type="random", arch=CONTEXT,
          threads=1, metadata={"features": SPEC64})  # fmt: skip
    encoded = []
    real_encode = encoder_mod.encode

    def counting(model, frames, *a, **kw):
        encoded.append(len(frames))
        return real_encode(model, frames, *a, **kw)

    monkeypatch.setattr(encoder_mod, "encode", counting)
    monkeypatch.setattr(noise, "BLOCK_ROWS", 7)  # clips are 40 rows: many block edges
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    votes = tmp_path / "votes.tsv"
    label_clusters_file(shards, shards[0].parent / "labels.json", w, tmp_path / "pred", k=4,
                        sample_frames=300, sources=sources, votes_tsv=votes,
                        scratch_dir=scratch)  # fmt: skip
    assert sum(encoded) == ClipPositives(sources).n_rows  # every frame once, nothing more
    assert list(scratch.iterdir()) == []
    rows = [{"label": p.stem, "video_id": vid, "status": "ok"}
            for p in sources for vid, _, _ in read_index(p.with_suffix(".index.tsv"))]  # fmt: skip
    pd.DataFrame([{c: r.get(c, "") for c in CATALOG_COLUMNS} for r in rows]).to_csv(
        tmp_path / "catalog.csv", index=False
    )
    report = noise.label_noise_file(votes, tmp_path / "pred", tmp_path / "catalog.csv",
                                    tmp_path / "n.tsv", tmp_path / "q.tsv")  # fmt: skip
    assert len(report) == len(rows)
    monkeypatch.setattr(encoder_mod, "encode", real_encode)
    pred = Predictor.load(tmp_path / "pred")
    own = report.set_index("video_id")["own_share"]
    for i, p in enumerate(sources):
        frames = np.load(p)
        for vid, first, n in read_index(p.with_suffix(".index.tsv"))[:4]:
            ids, _ = pred.clusters.predict(pred.encode(frames[first : first + n]))
            assert own[vid] == pytest.approx(round(float(np.mean(ids == i)), 4)), vid
    # A failure mid-pass leaves no scratch file behind either.
    monkeypatch.setattr(encoder_mod, "encode", lambda *a, **kw: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        label_clusters_file(shards, shards[0].parent / "labels.json", w, tmp_path / "p2", k=4,
                            sample_frames=300, sources=sources, votes_tsv=tmp_path / "v2.tsv",
                            scratch_dir=scratch)  # fmt: skip
    assert list(scratch.iterdir()) == []


def test_log_lines_and_curves_use_the_objectives_own_metric_names(clips, tmp_path, caplog):
    """A contrastive run logs its InfoNCE loss and top-1, not ACAI's critic and alpha-hat."""
    import logging

    shards, sources, _ = clips
    with caplog.at_level(logging.INFO, logger="soundharvest"):
        train(shards, tmp_path / "w.safetensors", tmp_path / "c.tsv", tmp_path / "c.png",
              model_type="contrastive", arch=SMALL, batch_size=64, frames=640, log_every=320,
              positives=sources, threads=1)  # fmt: skip
    lines = [r.getMessage() for r in caplog.records if "train contrastive: " in r.getMessage()]
    steps = [line for line in lines if "/640 frames" in line]
    assert len(steps) == 2, lines
    assert all("nce_loss " in line and "top1 " in line for line in steps), steps
    assert not any("critic" in line or "alpha" in line or "nan" in line for line in steps), steps
    curves = pd.read_csv(tmp_path / "c.tsv", sep="\t")
    assert list(curves.columns) == ["frames", "nce_loss", "recon_loss", "label_loss", "top1",
                                    "frames_per_s"]  # fmt: skip
