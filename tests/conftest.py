"""Test order for ``make test``'s pytest-xdist workers (``--dist loadfile``).

The workers take whole files in collection order (``--no-loadscope-reorder``: xdist would
otherwise hand out the files with the most tests first, and the SLURM file has five), so the
order decides the balance. First the SLURM test (mostly waiting on its scheduler, ~10 minutes)
and the workflow file that builds the shared tiny run (tests/workflow/conftest.py, ~10 minutes),
each on a worker of its own; then the unit tests, which need neither and fill the other cores
while those two run; then the workflow files with their own runs; last the files that wait for
the tiny run, by then built.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


#: Workflow files that run their own Snakemake runs, not the shared tiny run.
OWN_RUNS = {"test_directory.py", "test_dry_runs.py", "test_local_source.py", "test_security.py"}


def _rank(item) -> int:
    parts = Path(str(item.path)).resolve().relative_to(HERE).parts
    if parts[0] == "slurm":
        return 0
    if parts[0] != "workflow":
        return 2  # unit tests
    if parts[-1] == "test_workflow.py":
        return 1  # builds the tiny run the other workflow files share
    return 3 if parts[-1] in OWN_RUNS else 4


def pytest_collection_modifyitems(session, config, items) -> None:
    items.sort(key=_rank)  # stable: the order within each rank stays pytest's
