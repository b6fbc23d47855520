"""Incremental re-runs of the tiny demo config: each change re-runs exactly what depends on it.

Each test starts from a private copy of one complete run (``tiny_copy``), changes one thing and
reads the jobs Snakemake plans (``snakemake -n``: the per-job "rule X:" blocks and their
wildcards). A dry run is the evidence where it suffices; adding a label needs real runs,
because the new label's search is a checkpoint whose result decides its downloads. What each
change re-runs, and why, is documented in docs/reruns.md. Tested elsewhere (test_workflow.py):
nothing to do after a complete run, a changed query, a bad config value.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from wfutil import ROOT, changed, demo_store, snakemake, snapshot, write_config

pytestmark = pytest.mark.workflow

_JOB = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):\n((?:[ \t]+.*\n?)*)", re.M)


def planned_jobs(workdir: Path, *args: str) -> list[tuple[str, dict[str, str]]]:
    """The jobs ``snakemake -n`` would run: ``(rule, wildcards)`` for each, in print order."""
    proc = snakemake(workdir, "-n", *args)
    jobs = []
    for rule, body in _JOB.findall(proc.stdout):
        wc = re.search(r"^\s+wildcards: (.*)$", body, re.M)
        pairs = [kv.split("=", 1) for kv in wc.group(1).split(", ")] if wc else []
        jobs.append((rule, dict(pairs)))
    return jobs


def rules_of(jobs) -> Counter:
    return Counter(rule for rule, _ in jobs)


def edit_config(workdir: Path, edit) -> dict:
    config = yaml.safe_load((workdir / "config.yaml").read_text(encoding="utf-8"))
    edit(config)
    write_config(workdir, config)
    return config


def n_embedded(config: dict) -> int:
    """Models whose latent codes are evaluated: the configured ones + the raw and PCA baselines."""
    return len(config["models"]) + 2


ACQUISITION = {"search", "download", "convert", "catalog"}
#: Every rule upstream of the latent codes (evaluation rules below them may grow).
UPSTREAM_OF_CODES = ACQUISITION | {
    "spectrogram", "concatenate", "shuffle", "train", "eval_set", "eval_frames"
}  # fmt: skip


def test_n_mels_reruns_only_mel_features_and_what_depends_on_them(tiny_copy):
    config = edit_config(tiny_copy, lambda c: c["features"]["mel"].update(n_mels=48))
    jobs = planned_jobs(tiny_copy)
    rules = rules_of(jobs)
    # no download, no convert, no STFT: every job with a feature kind is a mel job
    assert not ACQUISITION & set(rules), rules
    assert {wc["kind"] for _, wc in jobs if "kind" in wc} == {"mel"}, jobs
    assert "eval_set" not in rules  # the labelled notes do not depend on features
    # every batch's mel spectrograms and everything downstream of them
    batches = list((tiny_copy / "results" / "batches" / "spectrogram" / "mel").glob("*.tsv"))
    assert rules["spectrogram"] == len(batches) and len(batches) == len(config["labels"])
    assert rules["concatenate"] == len(config["labels"])
    assert rules["shuffle"] == 1 and rules["eval_frames"] == 1
    assert rules["train"] == len(config["models"])
    assert rules["embed"] == n_embedded(config) and rules["elbow"] == n_embedded(config)
    assert rules["summary"] == 1


def test_max_k_reruns_only_the_sweeps_elbows_and_report(tiny_copy):
    # k is swept in chunks of k_chunk = 9: 2-10 before; 2-10, 11-15 after.
    config = edit_config(tiny_copy, lambda c: c["evaluation"].update(max_k=[5, 15]))
    jobs = planned_jobs(tiny_copy)
    rules = rules_of(jobs)
    assert not (UPSTREAM_OF_CODES | {"embed"}) & set(rules), rules  # models not retrained
    chunks = {(wc["start"], wc["stop"]) for rule, wc in jobs if rule == "kmeans_sweep"}
    assert chunks == {("11", "15")}  # the existing chunk k = 2..10 is kept
    n_kinds = len(config["features"]["kinds"])
    assert rules["elbow"] == n_kinds * n_embedded(config)  # every model's elbow, per kind
    assert rules["metrics_figure"] == n_kinds


def test_model_hyperparameter_reruns_only_that_model(tiny_copy):
    config = edit_config(tiny_copy, lambda c: c["models"]["ae"].update(lr=2.0e-3))
    jobs = planned_jobs(tiny_copy)
    rules = rules_of(jobs)
    assert not (UPSTREAM_OF_CODES - {"train"}) & set(rules), rules  # the data is not touched
    per_model = [wc.get("model", wc.get("trained_model")) for _, wc in jobs]
    assert {m for m in per_model if m} == {"ae"}, jobs
    n_kinds = len(config["features"]["kinds"])
    assert rules["train"] == n_kinds  # ae on each kind; the other models are not touched
    assert rules["embed"] == n_kinds


def test_a_calibration_setting_refits_without_running_an_encoder(tiny_copy):
    # score_clips runs each predictor over every held-out clip (hours at the thesis' scale);
    # the budget of 'unknown' only changes the fit on its table.
    config = edit_config(tiny_copy, lambda c: c["calibration"].update(on_topic_reject=0.2))
    jobs = planned_jobs(tiny_copy)
    rules = rules_of(jobs)
    n_predictors = len(config["features"]["kinds"]) * (len(config["models"]) + 1)  # + raw
    assert rules["calibrate"] == n_predictors, rules
    encoders = {"train", "label_clusters", "embed", "score_clips"}
    assert not (UPSTREAM_OF_CODES | encoders) & set(rules), rules
    # What reads calibration.json (the notes' answers, the tables) follows it.
    assert rules["score_eval"] == n_predictors and rules["summary"] == 1
    # The synthetic clips are scored by score_clips: their number re-runs it, never the models.
    edit_config(tiny_copy, lambda c: c["calibration"].update(synthetic=2))
    rules = rules_of(planned_jobs(tiny_copy))
    assert rules["score_clips"] == n_predictors and not {"train", "label_clusters"} & set(rules)


def test_adding_a_label_fetches_only_its_videos(tiny_copy):
    before = snapshot(tiny_copy)
    old_store = {p: t for p, t in before.items() if p.startswith("downloads/")}
    config = edit_config(tiny_copy, lambda c: c["labels"].update(violin=["violin solo"]))
    # Its search is a checkpoint: before it has run, the plan shows only the new search, and
    # no download, conversion or spectrogram of an existing video.
    jobs = planned_jobs(tiny_copy)
    assert [wc["label"] for r, wc in jobs if r == "search"] == ["violin"]
    assert not {"download", "convert", "spectrogram"} & set(rules_of(jobs)), jobs

    snakemake(tiny_copy, "results/concatenate/mel/violin.npy", "results/catalog.csv")
    catalog = pd.read_csv(tiny_copy / "results" / "catalog.csv", dtype=str, keep_default_na=False)
    new_ids = set(catalog.loc[catalog["label"] == "violin", "video_id"])
    assert new_ids and not new_ids & set(catalog.loc[catalog["label"] != "violin", "video_id"])
    touched = changed(before, snapshot(tiny_copy))
    # only the new label's search, downloads and conversions ran; nothing old was fetched
    assert {p.split("/")[2] for p in touched if p.startswith("results/search/")} == {"violin"}
    store_dir = str(demo_store(tiny_copy).relative_to(tiny_copy))
    batches = f"{store_dir}/batches/"
    store_touched = {
        p.removeprefix(f"{store_dir}/").split("/")[0].split(".")[0]
        for p in touched
        if p.startswith("downloads/") and not p.startswith(batches)
    }
    assert store_touched and store_touched <= new_ids
    manifests = {p.removeprefix(batches) for p in touched if p.startswith(batches)}
    assert manifests and all(m.startswith("violin-") for m in manifests), manifests
    assert not touched & set(old_store)
    converted = {Path(p).stem for p in touched if p.startswith("results/convert/")}
    assert converted <= new_ids

    # The rest of the plan: the new videos' features and everything downstream of the data.
    jobs = planned_jobs(tiny_copy)
    rules = rules_of(jobs)
    assert not ACQUISITION & set(rules), rules
    # the new label's batches only (a batch is one label's videos)
    assert {wc["batch"].split("-")[0] for r, wc in jobs if r == "spectrogram"} == {"violin"}
    assert {wc["label"] for r, wc in jobs if r == "concatenate"} == {"violin"}  # stft's
    n_kinds = len(config["features"]["kinds"])
    assert rules["shuffle"] == n_kinds and rules["train"] == n_kinds * len(config["models"])
    assert "eval_set" not in rules and "eval_frames" not in rules
    assert {wc["model"] for r, wc in jobs if r == "embed"} == set(config["models"])

    # Delete results/ and Snakemake's metadata, keep the store: nothing is fetched again.
    store = {p: t for p, t in snapshot(tiny_copy).items() if p.startswith("downloads/")}
    shutil.rmtree(tiny_copy / "results")
    shutil.rmtree(tiny_copy / ".snakemake")
    snakemake(tiny_copy, "results/catalog.csv")
    assert changed(store, snapshot(tiny_copy)) & set(store) == set()
    assert not [p for p in changed(store, snapshot(tiny_copy)) if p.startswith("downloads/")]
    assert (tiny_copy / "results" / "catalog.csv").is_file()

    # Even forced download jobs re-use the store: the audio is not fetched again.
    audio = {p: t for p, t in store.items() if "/audio." in p}
    snakemake(tiny_copy, "results/catalog.csv", "--forcerun", "download")
    assert {p for p, t in snapshot(tiny_copy).items() if p in audio and audio[p] != t} == set()
    for vid in new_ids & {Path(p).parent.name for p in audio}:
        status = json.loads((demo_store(tiny_copy) / f"{vid}.status.json").read_text())
        assert status["status"] == "ok" and status["cached"] is True


def test_code_trigger_is_the_scripts_modification_time(tiny_copy, tmp_path):
    # A private copy of the workflow code, so that touching a script affects no other test.
    code = tmp_path / "code"
    code.mkdir()
    shutil.copy2(ROOT / "Snakefile", code / "Snakefile")
    for sub in ("workflow", "envs", "config", "resources"):
        if (ROOT / sub).is_dir():
            shutil.copytree(ROOT / sub, code / sub, copy_function=shutil.copy2)
    snakefile = ["-s", str(code / "Snakefile")]

    def plan() -> set:
        return {(r, tuple(sorted(wc.items()))) for r, wc in planned_jobs(tiny_copy, *snakefile)}

    # The copy's own files (resources/) have other paths than the recorded ones, so the rules
    # that read them are planned already: the evidence is what touching a script adds.
    before = plan()
    assert not {r for r, _ in before} & (UPSTREAM_OF_CODES | {"embed", "kmeans_sweep", "elbow"})

    # Editing a script (here: only its modification time) re-runs every job of its rule and
    # everything downstream; the rest is kept.
    script = code / "workflow" / "scripts" / "elbow.py"
    now = time.time()
    os.utime(script, (now, now))
    added = plan() - before
    rules = Counter(r for r, _ in added)
    config = yaml.safe_load((tiny_copy / "config.yaml").read_text(encoding="utf-8"))
    n_elbows = len(config["features"]["kinds"]) * n_embedded(config)
    assert rules["elbow"] == n_elbows  # and what is downstream of the elbows
    assert not (UPSTREAM_OF_CODES | {"embed", "kmeans_sweep"}) & set(rules), rules
    proc = snakemake(tiny_copy, "-n", *snakefile)
    assert "Code has changed since last execution" in proc.stdout

    # `--rerun-triggers` without `code` ignores it (then force what you changed with -R).
    no_code = ("--rerun-triggers", "mtime", "params", "input", "software-env")
    jobs = planned_jobs(tiny_copy, *snakefile, *no_code)
    assert {(r, tuple(sorted(wc.items()))) for r, wc in jobs} == before
