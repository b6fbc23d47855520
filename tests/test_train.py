"""Tests of soundharvest.train: learning on data of known structure, resume, outputs, weights."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from soundharvest.dataset import shard_side_paths
from soundharvest.encoder import encode, load_model
from soundharvest.io import SoundharvestError
from soundharvest.train import CURVE_COLUMNS, lr_factor, train

SMALL = {"hidden": [64, 64], "latent": 8}


def make_templates(
    directory: Path, n: int = 8192, d: int = 64, k: int = 16, seed: int = 0, shards: int = 2
) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Frames from ``k`` spectral templates (three Gaussian peaks each) times a gain, plus noise.

    :return: shard paths, all frames (float16, in shard order), and their template ids.
    """
    rng = np.random.default_rng(seed)
    bins = np.arange(d)
    centres = rng.uniform(5, d - 5, (k, 3))
    peaks = np.exp(-0.5 * ((bins[None, None, :] - centres[:, :, None]) / 2.0) ** 2).sum(axis=1)
    templates = 0.1 + 0.8 * peaks / peaks.max(axis=1, keepdims=True)
    labels = rng.integers(0, k, n)
    x = templates[labels] * rng.uniform(0.6, 1.0, (n, 1)) + rng.normal(0, 0.02, (n, d))
    x = np.clip(x, 0, 1).astype(np.float16)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, idx in enumerate(np.array_split(np.arange(n), shards)):
        p = directory / f"shard-{i:02d}.npy"
        np.save(p, x[idx])
        np.save(shard_side_paths(p)[0], labels[idx].astype(np.int16))
        paths.append(p)
    return paths, x, labels


def _outputs(d: Path, name: str) -> dict[str, Path]:
    return {
        "out_weights": d / f"{name}.safetensors",
        "out_curves_tsv": d / f"{name}.curves.tsv",
        "out_curves_png": d / f"{name}.curves.png",
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An ACAI and the random model on 16 templates (reference lambda, gamma)."""
    d = tmp_path_factory.mktemp("templates")
    paths, x, labels = make_templates(d / "shards")
    common = dict(arch=SMALL, batch_size=64, lr=2e-3, seed=0, threads=1, device="cpu")
    acai = train(paths, **_outputs(d, "acai"), model_type="acai", frames=200_000, **common)
    rnd = train(paths, **_outputs(d, "random"), model_type="random", **common)
    return d, paths, x, labels, acai, rnd


def test_acai_learns_templates_and_alpha(trained) -> None:
    d, _, x, labels, acai, rnd = trained
    assert acai["frames_seen"] == 200_000
    model, meta = load_model(d / "acai.safetensors")
    rmodel, _ = load_model(d / "random.safetensors")
    xs = torch.from_numpy(x[:4096].astype(np.float32))
    with torch.no_grad():
        recon = float(torch.mean((model(xs)[1] - xs) ** 2))
        recon_random = float(torch.mean((rmodel(xs)[1] - xs) ** 2))
        assert recon < 0.25 * recon_random
        assert abs(recon_random - rnd["recon_loss"]) < 0.1 * recon_random
        # The critic predicts alpha on fresh interpolations. Pairs of frames from the same
        # template carry no alpha signal (their mix is a realistic frame), so they are left out.
        z = model.encode(xs)
        alpha = torch.rand(len(xs), 1, generator=torch.Generator().manual_seed(1)) * 0.5
        alpha_hat = model.critic(model.autoencoder.decode(alpha * z + (1 - alpha) * z.flip(0)))
    lab = labels[:4096]
    mixed = lab != lab[::-1]
    corr = np.corrcoef(alpha[mixed, 0].numpy(), alpha_hat[mixed].numpy())[0, 1]
    assert corr > 0.5
    # The critic has not collapsed to one guess (the thesis' figure 4.1 failure).
    assert float(alpha_hat.std()) > 0.03


def test_curves_and_figure(trained) -> None:
    d, *_ = trained
    curves = pd.read_csv(d / "acai.curves.tsv", sep="\t")
    assert list(curves.columns) == CURVE_COLUMNS
    assert curves["frames"].is_monotonic_increasing and curves["frames"].iloc[-1] == 200_000
    first, last = curves.iloc[0], curves.iloc[-1]
    assert last["recon_loss"] < 0.5 * first["recon_loss"]
    assert curves[["ae_loss", "critic_loss", "alpha_hat_mean", "frames_per_s"]].notna().all().all()
    rnd = pd.read_csv(d / "random.curves.tsv", sep="\t")
    assert len(rnd) == 1 and rnd["frames"].iloc[0] == 0 and rnd["recon_loss"].iloc[0] > 0
    for name in ("acai", "random"):
        assert (d / f"{name}.curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_weights_metadata_and_encode(tmp_path: Path) -> None:
    paths, x, _ = make_templates(tmp_path / "s", n=600, d=24, k=3)
    out = _outputs(tmp_path, "ae")
    summary = train(
        paths,
        **out,
        model_type="ae",
        arch=SMALL,
        frames=1000,  # not a multiple of the batch: the last batch is cut to fit
        batch_size=64,
        threads=1,
        metadata={"kind": "stft", "n_fft": 1024},
    )
    assert summary["frames_seen"] == 1000
    model, meta = load_model(out["out_weights"])
    assert meta["model_type"] == "ae" and meta["in_dim"] == 24 and meta["frames_seen"] == 1000
    assert meta["extra"] == {"kind": "stft", "n_fft": 1024}
    assert meta["arch"]["hidden"] == [64, 64]
    codes = encode(model, np.load(paths[0], mmap_mode="r"), batch_size=128)
    assert codes.shape == (300, 8) and codes.dtype == np.float32
    with torch.no_grad():
        direct = model.encode(torch.from_numpy(x[:300].astype(np.float32))).numpy()
    np.testing.assert_allclose(codes, direct, rtol=1e-5, atol=1e-6)
    with pytest.raises(SoundharvestError, match="expects"):
        encode(model, np.zeros((4, 25), np.float32))


def test_random_model_weights_depend_only_on_seed(tmp_path: Path) -> None:
    pa, *_ = make_templates(tmp_path / "a", n=300, d=20, k=3, seed=1)
    pb, *_ = make_templates(tmp_path / "b", n=500, d=20, k=5, seed=2)
    states = []
    for name, paths, seed in (("a", pa, 4), ("b", pb, 4), ("c", pa, 5)):
        train(paths, **_outputs(tmp_path, name), model_type="random", arch=SMALL, seed=seed)
        model, _ = load_model(tmp_path / f"{name}.safetensors")
        states.append(model.state_dict())
    a, b, c = states
    assert all(torch.equal(a[k], b[k]) for k in a)  # other data, same seed: same weights
    assert any(not torch.equal(a[k], c[k]) for k in a)


_KILLED_RUN = textwrap.dedent(
    """
    import sys, time
    from soundharvest.train import train
    shards, out, ck = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
    train(shards, out + ".safetensors", out + ".tsv", out + ".png", model_type="acai",
          arch={"hidden": [32, 32], "latent": 4}, frames=12_800, batch_size=64, lr=1e-3,
          seed=3, threads=1, device="cpu", checkpoint_path=ck, checkpoint_every=640,
          log_every=640, callback=lambda seen, row: time.sleep(0.02))
    """
)


def test_kill_and_resume_matches_uninterrupted_run(tmp_path: Path, caplog) -> None:
    paths, *_ = make_templates(tmp_path / "s", n=2000, d=32, k=4)
    kw = dict(
        model_type="acai",
        arch={"hidden": [32, 32], "latent": 4},
        frames=12_800,
        batch_size=64,
        lr=1e-3,
        seed=3,
        threads=1,
        device="cpu",
        log_every=640,
    )
    ck = tmp_path / "run.ckpt.pt"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_RUN, ",".join(map(str, paths)), str(tmp_path / "k"), str(ck)]
    )
    try:
        deadline = time.monotonic() + 120
        while not ck.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # let it train past the first checkpoint
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "k.safetensors").exists()
    seen_at_kill = torch.load(ck, weights_only=True)["frames_seen"]
    assert 0 < seen_at_kill < 12_800

    with caplog.at_level(logging.INFO, logger="soundharvest"):
        resumed = train(paths, **_outputs(tmp_path, "resumed"), checkpoint_path=ck, **kw)
    assert resumed["resumed_from"] == seen_at_kill
    assert "resuming from checkpoint" in caplog.text
    assert resumed["frames_seen"] == 12_800
    whole = train(paths, **_outputs(tmp_path, "whole"), **kw)
    assert whole["resumed_from"] is None
    a, _ = load_model(tmp_path / "resumed.safetensors")
    b, _ = load_model(tmp_path / "whole.safetensors")
    sa, sb = a.state_dict(), b.state_dict()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=1e-4, atol=1e-5)
    ca = pd.read_csv(tmp_path / "resumed.curves.tsv", sep="\t")
    cb = pd.read_csv(tmp_path / "whole.curves.tsv", sep="\t")
    assert list(ca["frames"]) == list(cb["frames"])  # the killed run's rows came back too
    np.testing.assert_allclose(ca["ae_loss"], cb["ae_loss"], rtol=1e-3)

    # A finished checkpoint: the re-run only rewrites the outputs.
    again = train(paths, **_outputs(tmp_path, "again"), checkpoint_path=ck, **kw)
    assert again["resumed_from"] == 12_800 and again["frames_seen"] == 12_800

    # Other settings: the checkpoint is not used, and the log says why.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="soundharvest"):
        fresh = train(
            paths, **_outputs(tmp_path, "other"), checkpoint_path=ck, **{**kw, "lr": 5e-4}
        )
    assert fresh["resumed_from"] is None and "lr" in caplog.text and "starting fresh" in caplog.text


def test_cosine_schedule_falls_from_one_to_zero() -> None:
    assert lr_factor("constant", 700, 1000) == 1.0
    values = [lr_factor("cosine", s, 1000) for s in range(0, 1001, 100)]
    assert values[0] == pytest.approx(1.0) and values[5] == pytest.approx(0.5)
    assert values[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    with pytest.raises(SoundharvestError, match="lr_schedule = 'step'"):
        lr_factor("step", 0, 10)


class _Stop(Exception):
    pass


def test_cosine_schedule_decays_adam_and_a_resume_follows_the_same_curve(tmp_path: Path) -> None:
    paths, *_ = make_templates(tmp_path / "s", n=2000, d=32, k=4)
    kw = dict(
        model_type="ae",
        arch={"hidden": [32], "latent": 4},
        frames=6400,
        batch_size=64,
        lr=1e-3,
        seed=1,
        threads=1,
        device="cpu",
        checkpoint_every=3200,
    )

    def final_lr(name: str, **extra) -> float:
        ck = tmp_path / f"{name}.ckpt.pt"
        train(paths, **_outputs(tmp_path, name), checkpoint_path=ck, **{**kw, **extra})
        state = torch.load(ck, weights_only=True)["objective"]["optimizer"]
        return float(state["param_groups"][0]["lr"])

    # The rate of the last step: cos decay puts it near 0; constant leaves it at lr.
    assert final_lr("const") == pytest.approx(1e-3)
    last = final_lr("cos", lr_schedule="cosine")
    assert 0 < last < 1e-3 * lr_factor("cosine", 6400 - 64, 6400) * 1.01
    _, meta = load_model(tmp_path / "cos.safetensors")
    assert meta["lr_schedule"] == "cosine"
    a, _ = load_model(tmp_path / "cos.safetensors")
    b, _ = load_model(tmp_path / "const.safetensors")
    assert any(not torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())

    # Stopped after the halfway checkpoint, then resumed: the same weights as the whole run.
    ck = tmp_path / "stopped.ckpt.pt"

    def stop(seen: int, _row) -> None:
        if seen >= 3200:
            raise _Stop

    with pytest.raises(_Stop):
        train(
            paths,
            **_outputs(tmp_path, "stopped"),
            checkpoint_path=ck,
            callback=stop,
            lr_schedule="cosine",
            **kw,
        )
    resumed = train(
        paths, **_outputs(tmp_path, "stopped"), checkpoint_path=ck, lr_schedule="cosine", **kw
    )
    assert resumed["resumed_from"] == 3200
    c, _ = load_model(tmp_path / "stopped.safetensors")
    for k, v in a.state_dict().items():
        torch.testing.assert_close(c.state_dict()[k], v, rtol=1e-4, atol=1e-6)


def test_a_resumed_optimiser_holds_its_learning_rate_as_it_did() -> None:
    from soundharvest.models import build_model
    from soundharvest.train import AeObjective

    model = build_model("ae", 16, {"hidden": [8], "latent": 2}, 0)
    objective = AeObjective(model, lr=1e-3, scheduled=True)
    objective.set_lr_factor(0.25)
    state = objective.state_dict()
    # As if saved where the rate was a device tensor: it comes back a plain number on the CPU.
    state["optimizer"]["param_groups"][0]["lr"] = torch.tensor(2.5e-4)
    fresh = AeObjective(model, lr=1e-3, scheduled=True)
    fresh.load_state_dict(state)
    lr = fresh.optimizer.param_groups[0]["lr"]
    assert isinstance(lr, float) and lr == pytest.approx(2.5e-4)
    fresh.set_lr_factor(0.5)
    assert fresh.optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)


def test_bad_arguments(tmp_path: Path) -> None:
    paths, *_ = make_templates(tmp_path / "s", n=100, d=16, k=2)
    out = _outputs(tmp_path, "x")
    with pytest.raises(SoundharvestError, match="model type"):
        train(paths, **out, model_type="vae")
    with pytest.raises(SoundharvestError, match="frames"):
        train(paths, **out, model_type="ae", frames=-1)
    with pytest.raises(SoundharvestError, match="lr_schedule = 'linear'"):
        train(paths, **out, model_type="ae", frames=10, lr_schedule="linear")
    with pytest.raises(SoundharvestError, match="device"):
        train(paths, **out, model_type="ae", frames=10, device="tpu")
    # A typo in a setting is named, not silently trained at the default (nothing written).
    with pytest.raises(SoundharvestError, match="'batch_sise' is not a training setting"):
        train(paths, **out, model_type="ae", frames=10, batch_sise=64)
    assert not Path(out["out_weights"]).exists()
    with pytest.raises(SoundharvestError, match="not found"):
        load_model(tmp_path / "nothing.safetensors")


def test_settings_are_the_schemas_model_keys() -> None:
    """A hyperparameter is a field of TrainSettings (shared) or of one objective's class
    (soundharvest.hparams), and a schema model key, nothing else: every key a model entry may
    have reaches train() (renamed: type, architecture), every setting but the calibration's
    holdout can be configured, and a key of another model type is refused in one line."""
    from dataclasses import fields

    from soundharvest.config import load_schema, model_keys
    from soundharvest.hparams import HYPERPARAMETERS, entry_keys
    from soundharvest.train import OBJECTIVES, TrainSettings

    renamed = TrainSettings.ENTRY_KEYS
    shared = {f.name for f in fields(TrainSettings)} - {"hparams"}
    own = {n for c in HYPERPARAMETERS.values() for n in c.names()}
    schema_keys = {renamed.get(k, k) for k in model_keys(load_schema())}
    assert schema_keys == (shared | own) - {"holdout"}, schema_keys ^ ((shared | own) - {"holdout"})
    assert set(HYPERPARAMETERS) == set(OBJECTIVES)
    for model_type, cls in HYPERPARAMETERS.items():
        objective = OBJECTIVES[model_type]
        assert objective is None or objective.hparams_type is cls, model_type
        assert set(entry_keys(model_type)) <= set(model_keys(load_schema()))
    entry = {"type": "classifier", "architecture": "thesis", "lr": 3e-4, "seed": 2}
    s = TrainSettings.from_entry(entry, {"hidden": [8], "latent": 2}, holdout=0.2)
    got = (s.model_type, s.lr, s.seed, s.hparams.holdout, s.frames)
    assert got == ("classifier", 3e-4, 2, 0.2, 0)
    ae = TrainSettings.from_entry({**entry, "type": "ae"}, "thesis", 0.2)
    assert ae.hparams.to_dict() == {} and ae.hparam("holdout", 0.0) == 0.0
    with pytest.raises(SoundharvestError, match="'lrr' is not a training setting"):
        TrainSettings.from_entry({**entry, "lrr": 0.1}, "thesis")
    with pytest.raises(SoundharvestError, match="'temperature' is not a hyperparameter of Hyp"):
        TrainSettings.from_entry({**entry, "type": "ae", "temperature": 0.2}, "thesis")
    # The weights and the checkpoint record the objective's own hyperparameters, no other's.
    acai = TrainSettings.of(model_type="acai", advweight=0.3)
    meta = acai.metadata({"hidden": [8]}, 16, {})
    assert meta["advweight"] == 0.3 and meta["reg"] == 0.2 and "temperature" not in meta
    assert "advweight" not in TrainSettings.of(model_type="ae").metadata({}, 16, {})
