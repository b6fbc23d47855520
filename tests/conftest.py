"""Test order for ``make test``'s two pytest-xdist workers (``--dist loadfile``).

The workers take whole files in collection order (``--no-loadscope-reorder``: xdist would
otherwise hand out the files with the most tests first, and the SLURM file has five), so the
order decides the balance: the SLURM test (mostly waiting on its scheduler, ~6-10 minutes) goes
first so that it runs beside everything else instead of alone at the end; the workflow tests
(whole Snakemake runs) next; the quick unit tests last, to fill in whichever worker frees first.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def _rank(item) -> int:
    parts = Path(str(item.path)).resolve().relative_to(HERE).parts
    return {"slurm": 0, "workflow": 1}.get(parts[0], 2) if len(parts) > 1 else 2


def pytest_collection_modifyitems(session, config, items) -> None:
    items.sort(key=_rank)  # stable: the order within each rank stays pytest's
