"""Dry runs of the workflow on the tiny demo config, each in a directory of its own.

They need no finished run (so they run beside the shared tiny run, not after it): the jobs a
plan holds, where their logs go, and a bad config value's one-line error.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest
from wfutil import snakemake, tiny_config, write_config

pytestmark = pytest.mark.workflow


def test_a_second_results_directory_keeps_its_own_logs_and_benchmarks(tmp_path):
    # Two configs run in one working directory (results, results-best) must not overwrite each
    # other's job logs and timings: only the default results directory writes to logs/ itself.
    for results, sub in (("results", ""), ("results-b", "results-b/")):
        write_config(tmp_path, tiny_config(results=results))
        out = snakemake(tmp_path, "-n", "--until", "search", "eval_set").stdout
        logs = re.findall(r"^\s*log: (\S+)", out, re.M)
        benches = re.findall(r"^\s*benchmark: (\S+)", out, re.M)
        assert f"logs/{sub}eval_set.log" in logs, logs
        searches = [p for p in logs if p != f"logs/{sub}eval_set.log"]
        assert searches and all(p.startswith(f"logs/{sub}search/") for p in searches), logs
        assert benches == [f"benchmarks/{sub}eval_set.tsv"]


def test_dry_run_has_one_job_per_batch_of_videos_and_stage(tmp_path):
    config = tiny_config()
    config["batch"] = {"videos": 2}
    write_config(tmp_path, config)
    snakemake(tmp_path, "--until", "candidates")  # the searches and the checkpoint only
    usable = {}
    for table in (tmp_path / "results" / "candidates").glob("*.tsv"):
        rows = pd.read_csv(table, sep="\t", dtype=str, keep_default_na=False)
        usable[table.stem] = set(rows.loc[rows["status"] == "ok", "video_id"])
    assert all(usable.values())
    # each label's videos in batches of two (no video is found by both labels here)
    assert not set.intersection(*usable.values())
    n_batches = sum(-(-len(ids) // 2) for ids in usable.values())
    assert n_batches < sum(len(ids) for ids in usable.values())
    proc = snakemake(tmp_path, "-n", "--quiet", "rules")
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    assert int(counts["download"]) == n_batches
    assert int(counts["convert"]) == n_batches
    assert int(counts["spectrogram"]) == 2 * n_batches  # per feature kind


#: Libraries that take seconds to import; the jobs that need them import them themselves.
HEAVY = ("torch", "scipy", "sklearn", "matplotlib", "librosa", "numba", "umap")


def test_planning_a_run_imports_none_of_the_heavy_libraries(tmp_path, monkeypatch):
    # Every snakemake command parses the Snakefile, checks the config and plans the jobs, and
    # on SLURM every job does it once more on its node: torch and scipy.signal alone were 3.4 s
    # of a 5 s dry run. The package modules the rules read must not pull them in.
    write_config(tmp_path, tiny_config())
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")  # python -X importtime, to stderr
    proc = snakemake(tmp_path, "-n")
    imported = re.findall(r"^import time:.*\|\s*(\S+)$", proc.stderr, re.M)
    assert "soundharvest.config" in imported and "snakemake.workflow" in imported
    heavy = sorted({m.split(".")[0] for m in imported} & set(HEAVY))
    assert not heavy, f"planning the tiny run imported {heavy}"


#: The rules that run a trained encoder after training (config ``encode``).
ENCODE_RULES = {"label_clusters", "embed", "score_clips", "score_eval"}


def test_the_passes_that_run_a_trained_encoder_ask_for_the_encode_gpu_and_threads(tmp_path):
    # On a GPU cluster label_clusters encodes every training frame once: it, and the other
    # passes of a trained encoder, must be able to ask for a GPU (and threads) as train does.
    config = tiny_config()
    config["encode"] = {"gpu": 1, "threads": 2, "device": "cpu"}
    write_config(tmp_path, config)
    snakemake(tmp_path, "--until", "candidates")
    out = snakemake(tmp_path, "-n", "--cores", "4").stdout
    jobs = re.findall(r"^(?:local)?rule (\w+):\n(.*?)(?=^\S|\Z)", out, re.M | re.S)
    asks = {}
    for rule, body in jobs:
        threads = re.search(r"^\s*threads: (\d+)", body, re.M)
        resources = re.search(r"^\s*resources: (.*)$", body, re.M)
        gpu = re.search(r"\bgpu=(\d+)", resources.group(1) if resources else "")
        asks.setdefault(rule, set()).add(
            (int(threads.group(1)) if threads else 1, int(gpu.group(1)) if gpu else 0)
        )
    assert ENCODE_RULES <= set(asks), sorted(asks)
    for rule in ENCODE_RULES:
        assert asks[rule] == {(2, 1)}, (rule, asks[rule])
    # train keeps its own (train.gpu 0 here); the per-video stages and calibrate, which fits on
    # score_clips' table without an encoder, ask for no GPU.
    assert all(
        g == 0 for rule in ("train", "convert", "kmeans_sweep", "calibrate") for _, g in asks[rule]
    )


def test_bad_config_value_stops_with_one_line(tmp_path):
    write_config(tmp_path, tiny_config(search={"results_per_query": -3}))
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "soundharvest:" in ln]
    assert lines == [
        "soundharvest: config: search.results_per_query = -3: -3 is less than the minimum of 1"
    ]
