"""`snakemake --directory DIR`: the default config is found beside the Snakefile, and an overlay
given alone in a directory without the defaults says what to pass (real snakemake, dry-runs)."""

from __future__ import annotations

import subprocess

from wfutil import ROOT, SNAKEFILE, SNAKEMAKE


def dry_run(workdir, *args, cwd=None):
    cmd = [str(SNAKEMAKE), "-s", str(SNAKEFILE), "--directory", str(workdir), "--dry-run"]
    cmd += ["--cores", "1", "--nocolor", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_directory_alone_runs_the_default_config_elsewhere(tmp_path):
    proc = dry_run(tmp_path / "elsewhere", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rule search" in proc.stdout + proc.stderr


def test_an_overlay_alone_names_the_defaults_to_pass(tmp_path):
    overlay = tmp_path / "mine.yaml"
    overlay.write_text("results: out\n", encoding="utf-8")
    proc = dry_run(tmp_path / "elsewhere", "--configfile", str(overlay), cwd=tmp_path)
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("soundharvest:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "is a required property" in lines[0]
    assert f"--configfile {ROOT / 'config' / 'config.yaml'} yours.yaml" in lines[0]
