"""The ``soundharvest`` command: ``inspect`` on the files the feature stages make."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from soundharvest.cli import COMMANDS, main, sparkline
from soundharvest.dataset import concatenate, shuffle
from soundharvest.features import compute_features


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    sr = 16000
    t = np.arange(2 * sr) / sr
    inputs = []
    for k, label in enumerate(["cello", "flute", "organ"]):
        y = (0.3 * np.sin(2 * np.pi * (200 * (k + 1)) * t)).astype(np.float32)
        feats, energy = compute_features(y, sr, "stft", {})
        np.save(root / f"{label}.v.npy", feats.astype(np.float16))
        np.save(root / f"{label}.energy.npy", energy)
        inputs.append((label, root / f"{label}.v.npy"))
    concatenate(
        [("vidA", inputs[0][1]), ("vidB", inputs[1][1])],
        root / "cello.npy",
        root / "cello.index.tsv",
    )
    shards = [root / "shards" / f"shard-{j:02d}.npy" for j in range(2)]
    shuffle(inputs, shards, seed=0)
    return {
        "root": root,
        "shard": shards[0],
        "cat": root / "cello.npy",
        "energy": root / "cello.energy.npy",
    }


def test_inspect_shard_shows_shape_and_label_counts(made, capsys):
    assert main(["inspect", str(made["shard"]), "--frame", "3"]) == 0
    out = capsys.readouterr().out
    lab = np.load(made["shard"].with_name("shard-00.labels.npy"))
    assert f"shape ({len(lab)}, 513)" in out and "dtype float16" in out
    for i, name in enumerate(["cello", "flute", "organ"]):
        assert f"{name}" in out and str(int(np.sum(lab == i))) in out
    assert "frame 3 (chosen, label" in out


def test_inspect_concatenation_names_the_video(made, capsys):
    arr = np.load(made["cat"])
    n_first = int(np.load(made["root"] / "cello.v.npy").shape[0])
    assert main(["inspect", str(made["cat"]), "--frame", str(n_first + 2)]) == 0
    out = capsys.readouterr().out
    assert "concatenation of 2 videos" in out and "video vidB frame 2" in out
    assert f"shape {arr.shape}" in out


def test_inspect_draws_png_and_sparkline(made, tmp_path, capsys):
    png = tmp_path / "f.png"
    assert main(["inspect", str(made["cat"]), "--png", str(png), "--width", "32"]) == 0
    out = capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    line = [ln for ln in out.splitlines() if ln.strip().startswith("|")][0].strip()
    assert len(line) == 32 + 2


def test_inspect_energy_and_errors(made, tmp_path, capsys):
    assert main(["inspect", str(made["energy"])]) == 0
    assert "values: |" in capsys.readouterr().out
    assert main(["inspect", str(made["cat"]), "--frame", "100000"]) == 1
    assert "outside" in capsys.readouterr().err
    (tmp_path / "bad.npy").write_bytes(b"junk")
    assert main(["inspect", str(tmp_path / "bad.npy")]) == 1
    assert "bad.npy" in capsys.readouterr().err


def test_sparkline_levels():
    s = sparkline(np.linspace(0, 1, 9), width=9, lo=0.0, hi=1.0)
    assert s == " ▁▂▃▄▅▆▇█"
    assert sparkline(np.zeros(0)) == ""
    assert len(sparkline(np.arange(1000), width=50)) == 50


def test_console_script_and_registry(made):
    assert "inspect" in COMMANDS
    exe = shutil.which("soundharvest", path=str(Path(sys.executable).parent))
    assert exe, "the soundharvest console script is not installed in this environment"
    proc = subprocess.run([exe, "inspect", str(made["shard"])], capture_output=True, text=True)
    assert proc.returncode == 0 and "label" in proc.stdout


def test_version_and_help_of_the_installed_command():
    """The console script answers --version, and no help text shows reStructuredText markup."""
    from importlib.metadata import version

    import soundharvest

    exe = Path(sys.executable).with_name("soundharvest")
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"soundharvest {version('soundharvest')}"
    assert version("soundharvest") == soundharvest.__version__
    for args in ([], ["inspect"], ["predict"]):
        text = subprocess.run(
            [str(exe), *args, "--help"], capture_output=True, text=True, check=True
        ).stdout
        assert "usage: soundharvest" in text
        for markup in ("``", ":class:", ":func:", ":param", ".. "):
            assert markup not in text, (args, markup)
