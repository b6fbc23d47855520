"""The Snakemake workflow catalog's requirements: .snakemake-workflow-catalog.yml and the files
it relies on (Snakefile, config/README.md, a README that names snakemake, conda envs)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_catalog_file_declares_usage_flags_and_software_stack():
    spec = yaml.safe_load((ROOT / ".snakemake-workflow-catalog.yml").read_text(encoding="utf-8"))
    usage = spec["usage"]
    assert set(usage) == {"mandatory-flags", "software-stack-deployment", "report"}
    flags = usage["mandatory-flags"]
    assert set(flags) == {"desc", "flags"} and flags["desc"].strip()
    assert "--cores" in flags["flags"]
    stack = usage["software-stack-deployment"]
    assert set(stack) <= {"conda", "apptainer", "apptainer+conda", "singularity"}
    assert all(isinstance(v, bool) for v in stack.values()) and any(stack.values())
    assert usage["report"] is True


def test_what_the_catalog_looks_for_is_there():
    assert (ROOT / "Snakefile").is_file() or (ROOT / "workflow" / "Snakefile").is_file()
    assert (ROOT / "config" / "README.md").is_file()
    readme = (ROOT / "README.md").read_text(encoding="utf-8").lower()
    assert "snakemake" in readme and "workflow" in readme
    # conda: true needs every rule's environment file to exist
    envs = set()
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        envs |= {
            (smk.parent / m).resolve()
            for m in re.findall(r'conda:\s*\n\s*"([^"]+)"', smk.read_text(encoding="utf-8"))
        }
    assert envs and all(p.is_file() for p in envs), sorted(map(str, envs))
