"""`make bench`: every benchmark in turn, each printing its figures and its PASS/FAIL lines.

Each benchmark measures its reference in the same run (numpy, librosa, cp, scikit-learn, the
same batches in memory) and prints ratios against it. This runner collects the PASS/FAIL lines
and exits non-zero if any bar failed. Pass names to run a subset: `python bench/run_all.py kmeans`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = [
    "features",
    "dataset",
    "loader",
    "train",
    "kmeans",
    "demo",
    "predict",
    "label_clusters",
    "encode",
    "scale",
]


def main(argv: list[str]) -> int:
    names = argv or BENCHES
    failed, summary = [], []
    for name in names:
        script = HERE / f"bench_{name}.py"
        if not script.exists():
            print(f"== {name}: {script.name} not found, skipped")
            continue
        print(f"\n== bench {name} " + "=" * 60, flush=True)
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, str(script)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        print(proc.stdout, flush=True)
        verdicts = [ln for ln in proc.stdout.splitlines() if "PASS" in ln or "FAIL" in ln]
        summary += [f"{name}: {ln.strip()}" for ln in verdicts]
        if proc.returncode != 0 or any("FAIL" in ln for ln in verdicts):
            failed.append(name)
        print(f"== {name}: {time.monotonic() - start:.0f} s, exit {proc.returncode}")
    print("\n== summary")
    print("\n".join(summary) or "(no verdict lines)")
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
