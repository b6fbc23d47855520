"""The SLURM profile, end to end, on a real single-node SLURM that the test brings up itself.

tests/slurm/start_slurm.sh installs SLURM and munge when they are missing (root and apt-get
only), starts munged, slurmctld and slurmd on localhost with a generated slurm.conf under a
temporary directory (one fake GPU declared as gres), and stops them afterwards. The workflow then
runs on the tiny demo config through `--profile profiles/slurm` (plus tests/slurm/profile, the
settings a cluster without an accounting database needs). What SLURM recorded of every job (kept
for an hour by MinJobAge) shows that each job went through sbatch, that each per-video stage
went out as one job per batch of videos, that only `train` asked for a GPU, and that the rules' resources
became the documented sbatch options.

The test skips, saying why, where SLURM cannot be installed or started (not root, no apt-get, no
package registry, a machine with its own SLURM). SOUNDHARVEST_SLURM=skip skips it outright;
SOUNDHARVEST_SLURM=require turns those skips into failures (for CI, where SLURM must run).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
SNAKEFILE = ROOT / "Snakefile"
TINY = ROOT / "tests" / "configs" / "tiny.yaml"
START = ROOT / "tests" / "slurm" / "start_slurm.sh"
PROFILE = ROOT / "profiles" / "slurm"
OVERLAY = ROOT / "tests" / "slurm" / "profile"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
PARTITION = "debug"  # the one partition start_slurm.sh declares
PER_VIDEO_RULES = ("download", "convert", "spectrogram")
BATCH_VIDEOS = 2  # videos per batch job in the test config: several batches of one label
# Distinct from the profile's defaults (mem_mb 2000, runtime 60), so that the sbatch options
# can only have come from the rule's resources.
TRAIN_MEM_MB = 3000
TRAIN_RUNTIME_MIN = 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster_script(action: str, state: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(START), action, str(state)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,  # an apt-get install on a slow mirror
    )


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running single-node SLURM: the environment that points SLURM's clients at it."""
    mode = os.environ.get("SOUNDHARVEST_SLURM", "auto")
    if mode == "skip":
        pytest.skip("SOUNDHARVEST_SLURM=skip")
    if shutil.which("bash") is None:
        pytest.skip("no bash to run tests/slurm/start_slurm.sh")
    state = tmp_path_factory.mktemp("slurm")
    env = {
        **os.environ,
        "SLURMCTLD_PORT": str(_free_port()),
        "SLURMD_PORT": str(_free_port()),
        "SLURM_CONF": str(state / "slurm.conf"),
    }
    try:
        started = _cluster_script("start", state, env)
        if started.returncode == 77:
            reason = started.stdout.strip().splitlines()[-1]
            if mode == "require":
                pytest.fail(f"SOUNDHARVEST_SLURM=require, but: {reason}")
            pytest.skip(f"no SLURM test cluster here: {reason}")
        assert started.returncode == 0, (
            f"start_slurm.sh failed:\n{started.stdout}\n{started.stderr}"
        )
        yield {"env": env, "state": state}
    finally:
        stopped = _cluster_script("stop", state, env)
        assert stopped.returncode == 0, f"start_slurm.sh stop failed:\n{stopped.stderr}"


def _test_config() -> dict:
    """The tiny demo config, smaller still (one label, two queries, one feature kind, one model,
    one k-means chunk: each SLURM job costs seconds of start-up), with a GPU for train."""
    config = yaml.safe_load(TINY.read_text(encoding="utf-8"))
    # One label with two queries (two searches, one candidates checkpoint), its videos in
    # batches of two: several batch jobs per per-video stage.
    config["labels"] = {"flute": ["flute solo", "flute music"]}
    config["batch"] = {"videos": BATCH_VIDEOS}
    config["features"]["kinds"] = ["stft"]
    config["models"] = {"ae": config["models"]["ae"]}
    config["evaluation"].update(max_k=[5], k_chunk=5, projections=["pca"])
    config["train"].update(
        gpu=1, mem_mb=TRAIN_MEM_MB, runtime=TRAIN_RUNTIME_MIN, device="cpu", threads=1
    )
    return config


def _scontrol_jobs(env: dict[str, str]) -> list[dict[str, str]]:
    """Every job slurmctld still holds (all of them: the test cluster's MinJobAge is an hour)."""
    out = subprocess.run(
        ["scontrol", "show", "job", "--oneliner"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [dict(re.findall(r"(\S+?)=(\S*)", line)) for line in out.splitlines() if line.strip()]


def _minutes(limit: str) -> int:
    """SLURM's [D-]HH:MM:SS time limit in minutes."""
    days, _, hms = limit.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return (int(days or 0) * 24 + h) * 60 + m + (s > 0)


def _requests_gpu(job: dict[str, str]) -> bool:
    fields = ("TresPerJob", "TresPerNode", "TresPerSocket", "TresPerTask", "TresBind", "Gres")
    return any("gpu" in job.get(f, "") for f in fields)


@pytest.fixture(scope="module")
def slurm_run(slurm, tmp_path_factory):
    """The tiny workflow run through the SLURM profile: (workdir, snakemake's log, SLURM's jobs)."""
    work = tmp_path_factory.mktemp("slurm_run")
    (work / "config.yaml").write_text(yaml.safe_dump(_test_config()), encoding="utf-8")
    env = {
        **slurm["env"],
        "SOUNDHARVEST_SLURM_PARTITION": PARTITION,
        # No accounts on the test cluster (no slurmdbd): an empty account means "none".
        "SOUNDHARVEST_SLURM_ACCOUNT": "",
        "PYTHONUNBUFFERED": "1",
    }
    # The default target: every rule of the workflow.
    cmd = [str(SNAKEMAKE), "-s", str(SNAKEFILE), "--profile", str(PROFILE)]
    cmd += ["--profile", str(OVERLAY), "--nocolor"]
    cmd += ["--configfile", str(work / "config.yaml")]
    began = time.monotonic()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=1500)
    log = proc.stdout + proc.stderr
    (work / "snakemake.log").write_text(log, encoding="utf-8")  # kept by pytest for a look
    print(f"snakemake through SLURM took {time.monotonic() - began:.0f} s")
    assert proc.returncode == 0, f"snakemake --profile profiles/slurm failed:\n{log[-12000:]}"
    return work, log, _scontrol_jobs(slurm["env"])


def _this_run(log: str, jobs: list[dict[str, str]]) -> list[dict[str, str]]:
    """The SLURM jobs of this run: the plugin names every job after its run id."""
    run_id = re.search(r"SLURM run ID: (\S+)", log)
    assert run_id, "the SLURM executor did not report its run id"
    mine = [j for j in jobs if j.get("JobName") == run_id.group(1)]
    assert mine, f"slurmctld holds no job named {run_id.group(1)}"
    return mine


def test_workflow_outputs_exist(slurm_run):
    work, _, _ = slurm_run
    results = work / "results"
    assert (results / "catalog.csv").stat().st_size > 0
    assert (results / "train" / "stft" / "ae" / "weights.safetensors").stat().st_size > 0
    assert (results / "figures" / "stft" / "metrics_vs_k.png").stat().st_size > 0
    summary = (results / "summary.tsv").read_text(encoding="utf-8").splitlines()
    assert len(summary) >= 1 + 3  # a header and the model and both baselines (raw, pca)


def test_every_job_went_through_sbatch(slurm, slurm_run):
    work, log, jobs = slurm_run
    mine = _this_run(log, jobs)
    submitted = set(re.findall(r"has been submitted with SLURM jobid (\d+)", log))
    assert submitted == {j["JobId"] for j in mine}
    # slurmctld logged the sbatch RPC of each of them.
    ctld_log = (slurm["state"] / "slurmctld.log").read_text(encoding="utf-8", errors="replace")
    rpc = set(re.findall(r"_slurm_rpc_submit_batch_job: JobId=(\d+)", ctld_log))
    assert submitted <= rpc
    for job in mine:
        assert job["JobState"] == "COMPLETED", job
        assert job["ExitCode"] == "0:0", job
        assert job["Partition"] == PARTITION, job
    # Each job Snakemake ran (but `all`) was a SLURM job of its own.
    ran = Counter(re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", log))
    local = set(re.findall(r"^localrule (\w+):", log, re.M))
    expected = Counter({r: n for r, n in ran.items() if r not in local})
    as_slurm_jobs = Counter(
        re.sub(r"_wildcards_.*$", "", j["Comment"]).removeprefix("rule_") for j in mine
    )
    assert as_slurm_jobs == expected
    assert local <= {"all"}
    # ... and they are the whole workflow: acquisition to the summary.
    assert expected["search"] == 2  # one per query
    assert expected["train"] == 1  # one per model and feature kind
    assert {"catalog", "concatenate", "shuffle", "embed", "kmeans_sweep", "summary"} <= set(
        expected
    )
    # The SLURM log of every job was kept (slurm-keep-successful-logs in the test overlay).
    slurm_logs = list((work / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert len(slurm_logs) == len(mine)


def test_per_video_stages_go_out_as_one_sbatch_job_per_batch(slurm_run):
    work, log, jobs = slurm_run
    mine = _this_run(log, jobs)
    manifests = sorted((work / "results" / "batches" / "convert").glob("*.tsv"))
    batches = [m.stem for m in manifests]
    n_videos = len(list((work / "results" / "convert").glob("*.json")))
    # batch.videos = 2 (the test config): the label's videos in batches of at most two
    assert n_videos >= 3 and len(batches) == -(-n_videos // BATCH_VIDEOS), (n_videos, batches)
    listed = [v for m in manifests for v in pd.read_csv(m, sep="\t", dtype=str)["video_id"]]
    assert len(listed) == len(set(listed)) == n_videos
    for rule in PER_VIDEO_RULES:
        submitted = sorted(j["Comment"] for j in mine if j["Comment"].startswith(f"rule_{rule}_"))
        # one sbatch job per batch and stage (spectrogram: per kind too; the config has one)
        assert len(submitted) == len(batches), (rule, submitted)
        assert all(any(b in c for b in batches) for c in submitted), submitted
        ran = len(re.findall(rf"Finished jobid: \d+ \(Rule: {rule}\)", log))
        assert ran == len(batches), (rule, ran)


def test_only_train_asks_for_a_gpu(slurm_run):
    _, log, jobs = slurm_run
    mine = _this_run(log, jobs)
    gpu_jobs = {j["Comment"] for j in mine if _requests_gpu(j)}
    assert gpu_jobs == {"rule_train_wildcards_stft_ae"}
    train = next(j for j in mine if j["Comment"].startswith("rule_train"))
    assert "gpu:1" in train.get("TresPerJob", "") + train.get("TresPerNode", ""), train


def test_resources_become_sbatch_options(slurm_run):
    _, log, jobs = slurm_run
    mine = _this_run(log, jobs)
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text(encoding="utf-8"))
    defaults = profile["default-resources"]
    by_rule = {re.sub(r"_wildcards_.*$", "", j["Comment"]): j for j in mine}
    # train: its rule's mem_mb -> --mem, runtime -> -t, threads -> --cpus-per-task
    train = by_rule["rule_train"]
    assert train["MinMemoryNode"] == f"{TRAIN_MEM_MB}M", train
    assert _minutes(train["TimeLimit"]) == TRAIN_RUNTIME_MIN, train
    assert train["NumCPUs"] == "1", train
    # a rule without resources of its own gets the profile's default-resources
    catalog = by_rule["rule_catalog"]
    assert catalog["MinMemoryNode"] == f"{defaults['mem_mb']}M", catalog
    assert _minutes(catalog["TimeLimit"]) == defaults["runtime"], catalog
    # a batch job gets the profile's set-resources of its stage
    for rule, res in profile["set-resources"].items():
        job = by_rule[f"rule_{rule}"]
        assert job["MinMemoryNode"] == f"{res['mem_mb']}M", job
        assert _minutes(job["TimeLimit"]) == res["runtime"], job
