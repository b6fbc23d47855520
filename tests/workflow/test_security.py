"""Security: secrets never reach an output, queries are data, weights are never unpickled, and
no config value makes the workflow write outside its working directory.

One small complete run of the demo source (module fixture ``sentinel_run``) is made with a
sentinel API key and a sentinel cookie file in the environment, hostile queries, and a fake
``HOME`` holding a canary file; three tests read it. (The key's redaction inside the YouTube
client is tested in tests/acquire/test_youtube.py; the cookies' use by yt-dlp in
tests/acquire/test_download.py and, at the workflow level, in test_faults.py's 429 run.)
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from wfutil import ROOT, snakemake, tiny_config, write_config

from soundharvest.acquire.search import query_id
from soundharvest.config import validate_config
from soundharvest.dataset import shard_side_paths
from soundharvest.encoder import load_model
from soundharvest.io import SoundharvestError
from soundharvest.train import train

pytestmark = pytest.mark.workflow

KEY = "AIzaSENTINELkey0123456789abcdefghijklmno"
COOKIE_VALUE = "SENTINELcookieVALUE7f3a"
COOKIE_DIR = "sentinel-cookie-dir-5c1e"

QUERIES = {
    "flute": ["violin'; rm -rf ~ #", "flûte à bec"],
    "organ": ['organ "quoted"\nsecond line $(touch PWNED) `touch PWNED2` && echo $HOME'],
}


@pytest.fixture(scope="module")
def sentinel_run(tmp_path_factory):
    """A complete small run (+ report) with sentinel secrets set; returns (workdir, outputs)."""
    base = tmp_path_factory.mktemp("sentinel")
    home = base / "home"
    home.mkdir()
    (home / "canary.txt").write_text("still here")
    cookies = base / COOKIE_DIR / "cookies.txt"
    cookies.parent.mkdir()
    cookies.write_text(
        f"# Netscape HTTP Cookie File\n.youtube.com\tTRUE\t/\tTRUE\t0\tSID\t{COOKIE_VALUE}\n"
    )
    work = base / "work"
    work.mkdir()
    config = tiny_config(labels=QUERIES)
    config["features"] = {**config["features"], "kinds": ["mel"]}
    config["models"] = {"ae": {**config["models"]["ae"], "frames": 1000}}
    config["evaluation"] = {**config["evaluation"], "max_k": [5]}
    write_config(work, config)
    env = {"YOUTUBE_API_KEY": KEY, "SOUNDHARVEST_COOKIES": str(cookies), "HOME": str(home)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        run = snakemake(work)
        report = snakemake(work, "--report", "report.html")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    texts = [run.stdout, run.stderr, report.stdout, report.stderr]
    return work, home, texts


def _secrets() -> list[bytes]:
    return [KEY.encode(), COOKIE_VALUE.encode(), COOKIE_DIR.encode()]


def test_secrets_appear_in_no_output_log_benchmark_catalog_or_report(sentinel_run):
    work, _home, texts = sentinel_run
    files = [work / "report.html"]
    for top in ("results", "logs", "benchmarks", "downloads", ".snakemake/log"):
        files += [p for p in (work / top).rglob("*") if p.is_file()]
    assert (work / "report.html").stat().st_size > 0 and (work / "results/catalog.csv") in files
    assert any("benchmarks" in str(p) for p in files)
    leaks = [
        (str(p.relative_to(work)), s.decode())
        for p in files
        for s in _secrets()
        if s in p.read_bytes()
    ]
    leaks += [
        ("snakemake output", s.decode()) for t in texts for s in _secrets() if s.decode() in t
    ]
    assert leaks == []


def test_hostile_queries_are_data_never_shell(sentinel_run):
    work, home, _texts = sentinel_run
    assert (home / "canary.txt").read_text() == "still here"  # ~ was not removed
    assert not list(work.parent.rglob("PWNED*"))
    for label, queries in QUERIES.items():
        for query in queries:
            tsv = work / "results" / "search" / label / f"{query_id(query)}.tsv"
            table = pd.read_csv(tsv, sep="\t", dtype=str, keep_default_na=False)
            assert set(table["query"]) == {query}  # byte for byte, newline and quotes included
    catalog = pd.read_csv(work / "results" / "catalog.csv", dtype=str, keep_default_na=False)
    assert set(catalog["label"]) == set(QUERIES) and (catalog["status"] == "ok").any()


_SAFE_NAME = re.compile(r"^[A-Za-z0-9._+-]+$")  # no space, quote, shell or path character


def test_file_names_come_from_ids_never_from_titles_or_queries(sentinel_run):
    work, _home, _texts = sentinel_run
    catalog = pd.read_csv(work / "results" / "catalog.csv", dtype=str, keep_default_na=False)
    titles = [t for t in catalog["title"] if t]
    assert titles
    paths = [
        p.relative_to(work)
        for top in ("results", "downloads", "logs", "benchmarks")
        for p in (work / top).rglob("*")
    ]
    unsafe = [str(p) for p in paths if not all(_SAFE_NAME.match(part) for part in p.parts)]
    assert unsafe == []
    words = {w for t in titles for w in re.findall(r"[A-Za-z]{6,}", t)} - {"violin", "flute"}
    named = [str(p) for p in paths if any(w in str(p) for w in words)]
    assert named == []
    # and the run wrote nothing beside its own directories
    expected = {"config.yaml", "results", "downloads", "logs", "benchmarks", ".snakemake"}
    assert {p.name for p in work.iterdir()} <= expected | {"report.html"}


# ------------------------------------------------------------------------------ weights


class _Evil:
    """Unpickling this runs ``touch <path>``: what a hostile checkpoint or weights file does."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _shards(directory: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    directory.mkdir()
    paths = []
    for i in range(2):
        p = directory / f"shard-{i:02d}.npy"
        np.save(p, rng.uniform(0, 1, (256, 16)).astype(np.float16))
        np.save(shard_side_paths(p)[0], np.zeros(256, np.int16))
        paths.append(p)
    return paths


def test_a_hostile_checkpoint_is_not_unpickled(tmp_path, caplog):
    canary = tmp_path / "pwned-by-checkpoint"
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save(
        {"config": _Evil(canary), "frames_seen": 0, "model": {}, "objective": {}}, checkpoint
    )
    out = {k: tmp_path / f"w.{k}" for k in ("safetensors", "tsv", "png")}
    summary = train(
        _shards(tmp_path / "shards"), out["safetensors"], out["tsv"], out["png"],
        model_type="ae", arch={"hidden": [8], "latent": 2}, frames=512, batch_size=64,
        lr=1e-3, seed=0, device="cpu", threads=1, checkpoint_path=checkpoint,
    )  # fmt: skip
    assert not canary.exists()
    assert summary["resumed_from"] is None and "unreadable" in caplog.text  # started fresh


def test_weights_are_read_with_safetensors_never_pickle(tmp_path):
    canary = tmp_path / "pwned-by-weights"
    weights = tmp_path / "weights.safetensors"
    torch.save({"layer.weight": _Evil(canary)}, weights)  # a pickle under the expected name
    with pytest.raises(SoundharvestError) as err:
        load_model(weights)
    assert not canary.exists()
    assert str(weights) in str(err.value) and "\n" not in str(err.value)


def _calls(tree: ast.AST, dotted: str):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == dotted:
            yield node


def test_no_code_path_unpickles():
    """Every torch.load in the package passes weights_only=True; no pickle, no allow_pickle."""
    checked = 0
    for path in sorted((ROOT / "src" / "soundharvest").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for call in _calls(tree, "torch.load"):
            kw = {k.arg: k.value for k in call.keywords}
            assert "weights_only" in kw and ast.literal_eval(kw["weights_only"]) is True, (
                f"{path.name}:{call.lineno}: torch.load without weights_only=True"
            )
            checked += 1
        for name in ("pickle.load", "pickle.loads", "joblib.load", "dill.load"):
            assert not list(_calls(tree, name)), f"{path.name}: {name}"
        for call in _calls(tree, "np.load"):
            kw = {k.arg: k.value for k in call.keywords}
            if "allow_pickle" in kw:
                assert ast.literal_eval(kw["allow_pickle"]) is False, f"{path.name}:{call.lineno}"
    assert checked >= 1  # the checkpoint loader is among them


# ------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "key, value",
    [
        ("results", "../outside"),
        ("results", "/tmp/soundharvest-abs"),
        ("results", "~/results"),
        ("results", "a/../../b"),
        ("downloads", "../store"),
        ("downloads", "/var/tmp/store"),
    ],
)
def test_config_paths_cannot_leave_the_working_directory(key, value):
    with pytest.raises(SoundharvestError) as err:
        validate_config(tiny_config(**{key: value}))
    assert str(err.value).startswith(f"config: {key} = ") and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "edit",
    [
        lambda c: c["labels"].update({"../x": ["q"]}),
        lambda c: c["labels"].update({"a/b": ["q"]}),
        lambda c: c["models"].update({"../m": {"type": "random", "architecture": "tiny"}}),
    ],
)
def test_names_that_become_paths_are_refused(edit):
    config = tiny_config()
    edit(config)
    with pytest.raises(SoundharvestError):
        validate_config(config)


def test_workflow_refuses_an_escaping_results_directory(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    write_config(work, tiny_config(results="../escaped"))
    proc = snakemake(work, "-n", check=False)
    assert proc.returncode != 0
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "soundharvest:" in ln]
    assert len(lines) == 1 and "results = '../escaped'" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]
