"""Fixtures for real Snakemake runs of the workflow on tiny configs in temporary directories."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from wfutil import snakemake, tiny_config, write_config


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One complete run of the tiny demo config (shared, read-only: copy it to change it)."""
    workdir = tmp_path_factory.mktemp("tiny_run")
    write_config(workdir, tiny_config())
    snakemake(workdir)
    return workdir


@pytest.fixture
def tiny_copy(tiny_run, tmp_path) -> Path:
    """A private copy of the complete tiny run (with Snakemake's metadata) to modify."""
    dest = tmp_path / "run"
    shutil.copytree(tiny_run, dest, symlinks=True, copy_function=shutil.copy2)
    return dest


@pytest.fixture(scope="session")
def tiny_report(tiny_run, tmp_path_factory) -> Path:
    """``snakemake --report report.html`` of a copy of the complete tiny run (shared, read-only):
    the copy's directory, with ``report.html`` in it."""
    dest = tmp_path_factory.mktemp("tiny_report") / "run"
    shutil.copytree(tiny_run, dest, symlinks=True, copy_function=shutil.copy2)
    snakemake(dest, "--report", "report.html")
    return dest
