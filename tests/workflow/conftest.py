"""Fixtures for real Snakemake runs of the workflow on tiny configs in temporary directories."""

from __future__ import annotations

import fcntl
import shutil
from pathlib import Path

import pytest
from wfutil import snakemake, tiny_config, write_config


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, worker_id) -> Path:
    """One complete run of the tiny demo config (shared, read-only: copy it to change it).

    Under pytest-xdist (``make test`` runs two workers) the run is made once for all workers:
    the first to get here makes it under a lock in the directory the workers' temporary
    directories share, the others wait for it and read the same run.
    """
    if worker_id == "master":  # no xdist
        workdir = tmp_path_factory.mktemp("tiny_run")
        write_config(workdir, tiny_config())
        snakemake(workdir)
        return workdir
    shared = tmp_path_factory.getbasetemp().parent
    workdir = shared / "tiny_run"
    with open(shared / "tiny_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (workdir / ".complete").exists():
            shutil.rmtree(workdir, ignore_errors=True)  # a run that failed before
            workdir.mkdir()
            write_config(workdir, tiny_config())
            snakemake(workdir)
            (workdir / ".complete").touch()
    return workdir


def copy_run(src: Path, dest: Path) -> Path:
    """Copy a run with Snakemake's metadata, but not a lock of a dry run going on in ``src``."""

    def skip(directory: str, names: list[str]) -> list[str]:
        return ["locks"] if Path(directory).name == ".snakemake" else []

    shutil.copytree(src, dest, symlinks=True, copy_function=shutil.copy2, ignore=skip)
    return dest


@pytest.fixture
def tiny_copy(tiny_run, tmp_path) -> Path:
    """A private copy of the complete tiny run (with Snakemake's metadata) to modify."""
    return copy_run(tiny_run, tmp_path / "run")


@pytest.fixture(scope="session")
def tiny_report(tiny_run, tmp_path_factory) -> Path:
    """``snakemake --report report.html`` of a copy of the complete tiny run (shared, read-only):
    the copy's directory, with ``report.html`` in it."""
    dest = copy_run(tiny_run, tmp_path_factory.mktemp("tiny_report") / "run")
    snakemake(dest, "--report", "report.html")
    return dest
