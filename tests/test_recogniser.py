"""Tests of the weak recogniser (model type ``classifier``) and of honest probabilities
(:mod:`soundharvest.calibrate`): noise-tolerant losses, held-out clips, temperature scaling,
calibration error, the head as a label model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_contrastive import make_clips

from soundharvest.calibrate import (
    calibrated_probabilities,
    choose_thresholds,
    ece_floor,
    ece_p_value,
    expected_calibration_error,
    fit_confidence_map,
    fit_temperature,
    held_out,
    softmax,
    split_half,
    synthetic_clips,
)
from soundharvest.encoder import encode, load_model
from soundharvest.io import SoundharvestError, save_npy
from soundharvest.labelmodel import ClusterLabelModel, HeadLabelModel
from soundharvest.loader import ClipPositives
from soundharvest.train import ClassifierObjective, robust_loss, train

SMALL = {"hidden": [64, 64], "latent": 8}


# ------------------------------------------------------------------------- losses


def test_gce_spans_cross_entropy_to_mean_absolute_error() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 5, generator=g)
    y = torch.randint(0, 5, (64,), generator=g)
    ce = torch.nn.functional.cross_entropy(logits, y)
    assert robust_loss(logits, y, "ce") == pytest.approx(float(ce))
    # q -> 0: (1 - p^q) / q -> -log p, the cross-entropy.
    assert float(robust_loss(logits, y, "gce", q=1e-4)) == pytest.approx(float(ce), rel=1e-3)
    p_y = logits.softmax(dim=1)[torch.arange(64), y]
    assert float(robust_loss(logits, y, "gce", q=1.0)) == pytest.approx(float((1 - p_y).mean()))
    assert float(robust_loss(logits, y, "bootstrap", beta=1.0)) == pytest.approx(float(ce))
    with pytest.raises(SoundharvestError, match="loss = 'mse'"):
        robust_loss(logits, y, "mse")


def test_gce_pulls_less_on_a_confidently_wrong_label_than_cross_entropy() -> None:
    # A datapoint the model is sure is class 0, labelled 1 (a wrong web-search label), and one
    # it is unsure about: cross-entropy's gradient is largest on the wrong label, GCE's is not.
    def grad_norms(kind: str) -> tuple[float, float]:
        out = []
        for row in ([6.0, -3.0, -3.0], [0.2, 0.0, -0.2]):
            z = torch.tensor([row], requires_grad=True)
            robust_loss(z, torch.tensor([1]), kind, q=0.7).backward()
            out.append(float(z.grad.norm()))
        return out[0], out[1]

    ce_wrong, ce_unsure = grad_norms("ce")
    gce_wrong, gce_unsure = grad_norms("gce")
    assert ce_wrong > ce_unsure
    assert gce_wrong < gce_unsure
    assert gce_wrong < 0.05 * ce_wrong


# ------------------------------------------------------------------------- held-out clips


def test_held_out_is_a_fixed_share_by_video_id() -> None:
    ids = [f"vid{i:05d}" for i in range(4000)]
    mask = held_out(ids, 0.2)
    assert abs(mask.mean() - 0.2) < 0.02
    # A clip's fate depends on its own id only, not on the others.
    assert list(held_out(ids[::-1], 0.2)) == list(mask[::-1])
    assert not held_out(ids, 0.0).any()
    assert (held_out(ids, 0.5) >= mask).all()  # a larger share keeps every smaller share's
    fit = split_half([i for i, m in zip(ids, mask, strict=True) if m])
    assert 0.4 < fit.mean() < 0.6
    with pytest.raises(SoundharvestError, match="calibration.holdout"):
        held_out(ids, 1.0)


@pytest.fixture(scope="module")
def noisy_clips(tmp_path_factory):
    """make_clips' 3 timbre classes, with 30 % of each class' clips filed under another
    class (the wrong labels of web search): the frames of a wrong clip sit in another
    label's concatenate file."""
    root = tmp_path_factory.mktemp("noisy")
    shards, sources, classes = make_clips(root / "clean", clips=20, length=32)
    rng = np.random.default_rng(1)
    arrays = [np.load(p) for p in sources]
    indexes = [pd.read_csv(p.with_name(p.stem + ".index.tsv"), sep="\t") for p in sources]
    files = {c: ([], [], []) for c in range(3)}  # label -> frames, ids, true classes
    for c, (arr, index) in enumerate(zip(arrays, indexes, strict=True)):
        for r in index.itertuples(index=False):
            label = (c + 1 + int(rng.integers(2))) % 3 if rng.random() < 0.3 else c
            files[label][0].append(arr[r.first_row : r.first_row + r.n_rows])
            files[label][1].append((r.video_id, r.n_rows))
            files[label][2].append(c)
    from soundharvest.dataset import shuffle

    inputs = []
    for label, (frames, ids, _) in files.items():
        path = root / f"label{label}.npy"
        save_npy(path, np.concatenate(frames))
        lines, row = ["video_id\tfirst_row\tn_rows"], 0
        for vid, n in ids:
            lines.append(f"{vid}\t{row}\t{n}")
            row += n
        path.with_name(path.stem + ".index.tsv").write_text("\n".join(lines) + "\n")
        inputs.append((f"label{label}", path))
    shards = [root / f"shard-{i}.npy" for i in range(2)]
    shuffle(inputs, shards, seed=0, memory_budget_mb=64)
    truth = {vid: c for _, ids, cs in files.values() for (vid, _), c in zip(ids, cs, strict=True)}
    return shards, [p for _, p in inputs], truth


def test_classifier_learns_true_classes_through_wrong_labels_and_skips_held_out_clips(
    noisy_clips, tmp_path: Path, monkeypatch
) -> None:
    shards, sources, truth = noisy_clips
    pairs = ClipPositives(sources, 100_000)
    held = held_out(pairs.clip_video_ids, 0.3)
    assert 0 < held.sum() < len(held)
    seen_clips: set[int] = set()
    original = ClassifierObjective.losses

    def spy(self, x, noise):  # the clip id of every datapoint of every batch
        seen_clips.update(int(c) for c in noise[:, self.draws()].tolist())
        return original(self, x, noise)

    monkeypatch.setattr(ClassifierObjective, "losses", spy)
    w = tmp_path / "clf.safetensors"
    train(
        shards, w, tmp_path / "clf.tsv", tmp_path / "clf.png", model_type="classifier",
        arch=SMALL, frames=16_000, batch_size=128, lr=3e-3, threads=1, positives=sources,
        max_offset=100_000, gain_jitter=0.05, loss="gce", holdout=0.3,
    )  # fmt: skip
    assert seen_clips and not seen_clips & set(np.flatnonzero(held).tolist())
    net, meta = load_model(w)
    assert meta["model_type"] == "classifier" and meta["loss"] == "gce"
    assert meta["holdout"] == 0.3 and net.classes == ["label0", "label1", "label2"]
    curves = pd.read_csv(tmp_path / "clf.tsv", sep="\t")
    # The classifier's own metric names, nothing of ACAI's.
    assert list(curves.columns) == ["frames", "loss", "ce", "accuracy", "frames_per_s"]
    assert curves["loss"].iloc[-1] < curves["loss"].iloc[0]
    # The head names the *true* class of the held-out clips, wrong labels notwithstanding.
    right, n = 0, 0
    for vid, (a, b), h in zip(pairs.clip_video_ids, pairs._clip_spans, held, strict=True):
        if not h:
            continue
        codes = encode(net, pairs.frames(np.arange(a, b)))
        head = HeadLabelModel(net.head.weight.detach().numpy(), net.head.bias.detach().numpy(),
                              net.classes)  # fmt: skip
        ids, _ = head.predict(codes)
        right += int(np.bincount(ids, minlength=3).argmax() == truth[vid])
        n += 1
    assert right / n >= 0.9, (right, n)


def test_classifier_needs_positives_and_a_known_loss(noisy_clips, tmp_path: Path) -> None:
    shards, sources, _ = noisy_clips
    out = (tmp_path / "w.safetensors", tmp_path / "c.tsv", tmp_path / "c.png")
    with pytest.raises(SoundharvestError, match="concatenate files"):
        train(shards, *out, model_type="classifier", arch=SMALL, frames=128)
    with pytest.raises(SoundharvestError, match="loss = 'l1'"):
        train(shards, *out, model_type="classifier", arch=SMALL, frames=128, positives=sources,
              loss="l1")  # fmt: skip
    with pytest.raises(SoundharvestError, match="gce_q"):
        train(shards, *out, model_type="classifier", arch=SMALL, frames=128, positives=sources,
              gce_q=0.0)  # fmt: skip


# ------------------------------------------------------------------------- calibration


def test_temperature_scaling_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3.0, (4000, 6))
    true_t = 2.5  # the logits are 2.5 times too sharp
    y = np.array([rng.choice(6, p=p) for p in softmax(z, true_t)])
    t = fit_temperature(z, y)
    assert t == pytest.approx(true_t, rel=0.1)
    before = expected_calibration_error(softmax(z).max(axis=1), softmax(z).argmax(axis=1) == y)
    p = softmax(z, t)
    after = expected_calibration_error(p.max(axis=1), p.argmax(axis=1) == y)
    assert before > 0.1 and after < 0.03
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0)) == 1.0


def test_confidence_map_recovers_a_known_map_and_stays_near_identity_on_few_clips() -> None:
    rng = np.random.default_rng(3)
    conf = rng.uniform(0.15, 0.95, 20000)
    logit = np.log(conf / (1 - conf))
    right = rng.random(len(conf)) < 1 / (1 + np.exp(-(2.0 * logit - 0.5)))
    a, b = fit_confidence_map(conf, right)
    assert a == pytest.approx(2.0, abs=0.1) and b == pytest.approx(-0.5, abs=0.1)
    assert fit_confidence_map(np.zeros(0), np.zeros(0)) == (1.0, 0.0)
    # Three clips cannot pull the map far from the identity (the prior), however they fall.
    a3, b3 = fit_confidence_map(np.array([0.3, 0.5, 0.9]), np.array([1.0, 0.0, 0.0]))
    assert 0.0 <= a3 < 1.0 and abs(b3) < 1.0
    # A confidence that says nothing of correctness: slope 0, never negative.
    a0, _ = fit_confidence_map(conf, rng.random(len(conf)) < 0.4)
    assert 0.0 <= a0 < 0.1


def test_label_bias_recovers_a_head_that_favours_some_labels_and_stays_near_zero_on_few_clips():
    # A head whose logits favour label 0 and shun label 3 (say, their shares of the training
    # clips differ from the held-out clips'): one temperature cannot mend that, a bias can.
    from soundharvest.calibrate import fit_label_bias, nll

    rng = np.random.default_rng(7)
    z = rng.normal(0, 2.0, (6000, 5))
    shift = np.array([1.5, 0.0, 0.0, -1.0, 0.0])
    y = np.array([rng.choice(5, p=p) for p in softmax(z)])  # labels drawn from z itself
    t = fit_temperature(z + shift, y)
    c = fit_label_bias(z + shift, y, t)
    want = -shift / t - np.mean(-shift / t)
    assert np.allclose(c, want, atol=0.15) and abs(c.sum()) < 1e-6, (c, want)
    onehot = np.eye(5)[y]
    loss = -np.mean(np.log((calibrated_probabilities(z + shift, t, None, c) * onehot).sum(1)))
    assert loss < nll(z + shift, y, t) - 0.05
    # Unbiased logits get (almost) no bias; no clips or one label, none; a few clips cannot
    # pull it far (the prior: one clip's weight per label), however they fall.
    assert np.abs(fit_label_bias(z, y, fit_temperature(z, y))).max() < 0.1
    assert (fit_label_bias(np.zeros((0, 4)), np.zeros(0), 1.0) == 0).all()
    for i in range(5):
        six = slice(6 * i, 6 * i + 6)
        assert np.abs(fit_label_bias(z[six] + shift, y[six], 1.0)).max() < 0.5
    assert np.abs(fit_label_bias(z[:6] + shift, y[:6], 1.0, prior=0.01)).max() > 1.0


def test_calibrated_probabilities_map_the_top_label_and_keep_it_on_top() -> None:
    rng = np.random.default_rng(4)
    z = rng.normal(0, 2.0, (500, 6))
    plain = softmax(z, 2.0)
    assert np.allclose(calibrated_probabilities(z, 2.0), plain)
    assert np.allclose(calibrated_probabilities(z, 2.0, (1.0, 0.0)), plain)
    p = calibrated_probabilities(z, 2.0, (3.0, -1.0))
    assert np.allclose(p.sum(axis=1), 1.0) and (p >= 0).all()
    assert (p.argmax(axis=1) == plain.argmax(axis=1)).all()  # the answer is the same label
    c = plain.max(axis=1)
    mapped = 1 / (1 + np.exp(-(3.0 * np.log(c / (1 - c)) - 1.0)))
    free = mapped > 0.5  # above every runner-up: the map itself, not its floor
    assert np.allclose(p.max(axis=1)[free], mapped[free])
    # The other labels keep their proportions.
    i = int(np.flatnonzero(free)[0])
    others = np.argsort(plain[i])[:-1]
    assert np.allclose(p[i, others] / p[i, others].sum(), plain[i, others] / plain[i, others].sum())


def test_a_temperature_cannot_calibrate_against_noisy_labels_the_top_label_map_can() -> None:
    """Query labels wrong for 35 % of clips: the temperature fitted to them leaves the held-out
    ECE far above its floor; the top-label map brings it to the floor."""
    rng = np.random.default_rng(5)
    n, n_labels = 4000, 8
    z = rng.normal(0, 2.5, (n, n_labels))
    truth = np.array([rng.choice(n_labels, p=q) for q in softmax(z, 0.5)])
    wrong = rng.random(n) < 0.35
    y = np.where(wrong, (truth + rng.integers(1, n_labels, n)) % n_labels, truth)
    fit, test = np.arange(n) < n // 2, np.arange(n) >= n // 2
    t = fit_temperature(z[fit], y[fit])
    p_t = softmax(z, t)
    right = p_t.argmax(axis=1) == y
    ece_t = expected_calibration_error(p_t.max(axis=1)[test], right[test])
    cmap = fit_confidence_map(p_t.max(axis=1)[fit], right[fit])
    p = calibrated_probabilities(z, t, cmap)
    ece_map = expected_calibration_error(p.max(axis=1)[test], right[test])
    floor = ece_floor(p.max(axis=1)[test])
    assert ece_t > 0.05 and ece_map < 0.5 * ece_t and ece_map < floor + 0.02


def test_ece_is_zero_when_confidence_is_accuracy_and_large_when_overconfident() -> None:
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.3, 1.0, 20000)
    correct = rng.random(20000) < conf
    assert expected_calibration_error(conf, correct) < 0.02
    assert expected_calibration_error(np.full(1000, 0.95), np.arange(1000) < 500) == (
        pytest.approx(0.45)
    )
    assert np.isnan(expected_calibration_error(np.zeros(0), np.zeros(0)))


def test_ece_floor_is_the_noise_a_calibrated_predictor_shows_on_few_clips() -> None:
    rng = np.random.default_rng(2)
    conf = rng.uniform(0.3, 0.9, 1000)
    small, large = ece_floor(conf[:24]), ece_floor(conf)
    # On 24 clips a calibrated predictor's ECE is far above a 0.05 bar, on 1,000 close to it.
    assert 0.1 < small < 0.35 and large < 0.05 and large < small / 3
    # It is the ECE that calibrated outcomes actually give: simulate them apart.
    sims = [expected_calibration_error(conf[:24], rng.random(24) < conf[:24]) for _ in range(3000)]
    assert small == pytest.approx(np.mean(sims), rel=0.05)
    # Certain answers are always right: no noise; seeded: the same confidences, the same floor.
    assert ece_floor(np.ones(10)) == 0.0
    assert ece_floor(conf[:24]) == small and np.isnan(ece_floor(np.zeros(0)))


def test_ece_p_value_is_uniform_for_a_calibrated_predictor_and_small_for_an_overconfident_one():
    rng = np.random.default_rng(5)
    conf = rng.uniform(0.4, 0.95, 300)
    # Outcomes drawn as the confidences say: about 5 % of sets fall below 0.05, 20 % below 0.2.
    ps = np.array(
        [ece_p_value(conf, rng.random(300) < conf, draws=400, seed=i) for i in range(300)]
    )
    assert 0.01 <= np.mean(ps < 0.05) <= 0.10 and 0.13 <= np.mean(ps < 0.2) <= 0.28
    assert ((ps > 0) & (ps <= 1)).all()
    # 10 points too sure on 300 clips (floor ~0.05): the clips see it.
    over = [ece_p_value(conf, rng.random(300) < conf - 0.1, seed=i) for i in range(20)]
    assert np.median(over) < 0.01
    # ... on 30 clips they do not: the same miscalibration is within the noise.
    few = [ece_p_value(conf[:30], rng.random(30) < conf[:30] - 0.1, seed=i) for i in range(50)]
    assert np.median(few) > 0.1
    assert np.isnan(ece_p_value(np.zeros(0), np.zeros(0, dtype=bool)))


def test_threshold_rejects_the_asked_share_of_on_topic_clips() -> None:
    # Without distances the confidence threshold takes the whole budget.
    conf = np.linspace(0.0, 1.0, 101)
    t = choose_thresholds(conf, None, 0.1)[0]
    assert np.mean(conf < t) == pytest.approx(0.1, abs=0.011)
    assert choose_thresholds(conf, None, 0.0)[0] == 0.0
    with pytest.raises(SoundharvestError, match="on_topic_reject"):
        choose_thresholds(conf, None, 1.5)


def test_synthetic_clips_hold_silence_noise_and_speech() -> None:
    clips = synthetic_clips(2, seconds=1.0)
    kinds = [name.split("-")[0] for name, _ in clips]
    assert sorted(set(kinds)) == ["brown", "pink", "silence", "speech", "white"]
    assert len(clips) == 8
    for name, x in clips:
        assert x.shape == (16000,) and np.isfinite(x).all()
        rms_db = 10 * np.log10(np.mean(x**2) + 1e-30)
        assert (rms_db < -80) if name.startswith("silence") else (-41 < rms_db < -9), name


# ------------------------------------------------------------------------- label models


def test_head_label_model_probabilities_closed_set_and_files(tmp_path: Path) -> None:
    w = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], dtype=np.float32)
    head = HeadLabelModel(w, np.zeros(3), ["a", "b", "c"])
    codes = np.array([[3.0, 0.0], [0.0, 3.0], [-3.0, -3.0]], dtype=np.float32)
    lp = head.log_probs(codes)
    assert np.allclose(np.exp(lp).sum(axis=1), 1.0)
    assert list(head.predict(codes)[0]) == [0, 1, 2]
    assert list(head.closed_predict(codes, [0, 1])) == [0, 1, 0]  # c is not allowed
    head.save(tmp_path / "head.npz")
    back = HeadLabelModel.load(tmp_path / "head.npz")
    assert np.array_equal(back.weight, w) and back.labels == ["a", "b", "c"]
    with pytest.raises(SoundharvestError, match="expects"):
        head.log_probs(np.zeros((2, 5)))


def test_cluster_log_probs_are_smoothed_label_histograms() -> None:
    model = ClusterLabelModel(np.array([[0.0], [10.0]]), np.array([[8, 0], [0, 0]]), ["a", "b"])
    lp = model.log_probs(np.array([[0.1], [9.0]], dtype=np.float32))
    assert np.exp(lp[0]) == pytest.approx([0.9, 0.1])  # (8 + 1) / 10, (0 + 1) / 10
    assert np.exp(lp[1]) == pytest.approx([0.5, 0.5])  # an empty cluster: no opinion
    assert list(model.closed_predict(np.array([[9.0]]), [0])) == [0]
    assert list(model.closed_predict(np.array([[9.0]]), [1])) == [-1]
