"""Helpers for real Snakemake runs of the workflow on tiny configs in temporary directories."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SNAKEFILE = ROOT / "Snakefile"
TINY = ROOT / "tests" / "configs" / "tiny.yaml"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def snakemake(workdir: Path, *args: str, config: Path | None = None, check: bool = True):
    """Run the real snakemake on the workflow in ``workdir``; return the CompletedProcess."""
    cmd = [str(SNAKEMAKE), "-s", str(SNAKEFILE), "--cores", "2", "--nocolor"]
    # --configfile takes several values: it goes last so that it swallows no target.
    cmd += [*args, "--configfile", str(config or workdir / "config.yaml")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env, timeout=1200)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
            f"{proc.stderr[-8000:]}"
        )
    return proc


def write_config(workdir: Path, config: dict) -> Path:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def tiny_config(**overrides) -> dict:
    config = yaml.safe_load(TINY.read_text(encoding="utf-8"))
    config.update(overrides)
    return config


def demo_store(workdir: Path) -> Path:
    """The demo's download store of a run in ``workdir``: ``downloads/demo/<hash of the demo's
    options>`` (soundharvest.config.download_store), the only one a test run makes."""
    (store,) = (p for p in (workdir / "downloads" / "demo").iterdir() if p.is_dir())
    return store


def snapshot(workdir: Path) -> dict[str, int]:
    """mtime (ns) of every file the workflow wrote."""
    out = {}
    for top in ("results", "downloads"):
        for path in (workdir / top).rglob("*"):
            if path.is_file():
                out[str(path.relative_to(workdir))] = path.stat().st_mtime_ns
    return out


def changed(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {p for p, t in after.items() if before.get(p) != t}
