"""Test-suite wide settings: which tests must share a pytest-xdist worker.

``make test`` runs two workers with ``--dist loadgroup``. A session fixture is built once per
worker, so the tests that read the one tiny workflow run (``tiny_run`` and the fixtures built on
it) go to one worker, and the SLURM tests (one cluster, one run through it) to one worker, which
keeps that worker waiting on the scheduler while the other runs the rest. Every other test is
grouped with its module, whose module-scoped fixtures are then built once too.
"""

from __future__ import annotations

import pytest

#: fixture -> the xdist group of every test that uses it (first match wins).
SHARED_FIXTURES = {
    "slurm_run": "slurm",
    "slurm": "slurm",
    "tiny_run": "tiny_run",
}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        group = next((g for f, g in SHARED_FIXTURES.items() if f in names), None)
        item.add_marker(pytest.mark.xdist_group(group or item.nodeid.split("::")[0]))
