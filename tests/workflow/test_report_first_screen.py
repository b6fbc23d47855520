"""The report's first screen in a real headless browser: the summary leads, the rule graph stays.

Debian's chromium renders the report that `snakemake --report` wrote for the tiny run, and the
test reads the DOM it built (the report is a React page: its content exists only once its
scripts have run). The browser is installed with apt-get when missing (root only, as
tests/slurm installs SLURM); the test skips, saying why, where that is impossible.
SOUNDHARVEST_BROWSER=skip skips it outright, SOUNDHARVEST_BROWSER=require turns the skips into
failures (for CI).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pandas as pd
import pytest

pytestmark = pytest.mark.workflow

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Flags for a headless run on a machine without a network (see the module doc).
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--virtual-time-budget=15000",
]  # fmt: skip


def _unavailable(reason: str):
    if os.environ.get("SOUNDHARVEST_BROWSER") == "require":
        pytest.fail(f"SOUNDHARVEST_BROWSER=require, but: {reason}")
    pytest.skip(reason)


def _installed() -> str | None:
    return next((exe for name in BROWSERS if (exe := shutil.which(name))), None)


@pytest.fixture(scope="session")
def browser() -> str:
    """A headless-capable chromium: the one on PATH, or Debian's, installed here."""
    if os.environ.get("SOUNDHARVEST_BROWSER") == "skip":
        pytest.skip("SOUNDHARVEST_BROWSER=skip")
    exe = _installed()
    if exe:
        return exe
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        _unavailable(
            "chromium is not installed and installing it needs root (apt-get install chromium)"
        )
    if shutil.which("apt-get") is None:
        _unavailable("chromium is not installed and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "-y", "-qq", "-o", "Dpkg::Use-Pty=0", "install", "chromium"]
    proc = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:  # an image without package lists: fetch them once, then retry
        update = subprocess.run(
            ["apt-get", "-qq", "update"], env=env, capture_output=True, text=True, timeout=300
        )
        if update.returncode != 0:
            _unavailable(f"apt-get update failed (no package registry?): {update.stderr[-300:]}")
        proc = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            _unavailable(f"apt-get install chromium failed: {proc.stderr.strip()[-300:]}")
    exe = _installed()
    if exe is None:
        _unavailable("apt-get installed chromium but no chromium is on PATH")
    return exe


def dump_dom(browser: str, page, profile) -> str:
    cmd = [browser, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


class _Elements(HTMLParser):
    """The text inside, and the attributes of, the elements with an id."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.open: list[tuple[str, str | None]] = []
        self.text: dict[str, str] = {}
        self.attrs: dict[str, dict] = {}
        self.order: list[str] = []
        self.imgs_in: dict[str, list[dict]] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        ident = a.get("id")
        if ident:
            self.attrs[ident] = a
            self.text.setdefault(ident, "")
            self.order.append(ident)
        if tag == "img":
            for _t, i in self.open:
                if i:
                    self.imgs_in.setdefault(i, []).append(a)
        if tag not in ("img", "br", "hr", "meta", "link", "input", "path", "rect"):
            self.open.append((tag, ident))

    def handle_endtag(self, tag):
        for j in range(len(self.open) - 1, -1, -1):
            if self.open[j][0] == tag:
                del self.open[j:]
                break

    def handle_data(self, data):
        for _t, i in self.open:
            if i:
                self.text[i] += data


def test_the_report_opens_on_the_summary_the_best_model_and_its_confusion(
    browser, tiny_report, tmp_path
):
    dom = dump_dom(browser, tiny_report / "report.html", tmp_path / "profile")
    page = _Elements()
    page.feed(dom)
    # the first screen (the description beside the rule graph) leads with the result...
    assert "soundharvest-overview" in page.text, dom[:2000]
    assert "rulegraph" in page.attrs  # ...and the rule graph is still where Snakemake puts it
    assert page.order.index("soundharvest-overview") < page.order.index("rulegraph")
    # the models' table: one row per model and kind of summary_by_model.tsv, its metrics
    by_model = pd.read_csv(tiny_report / "results" / "summary_by_model.tsv", sep="\t")
    table = re.sub(r"\s+", " ", page.text["summary-table"])
    for column in ("nmi@k=2", "purity@k=2", "accuracy", "closed_accuracy", "file_accuracy"):
        assert column in table
    for model in by_model["model"].unique():
        assert model in table
    # the best model is named: the one with the highest linear-probe accuracy (ties: any of them)
    rank = "probe_accuracy"
    top = by_model.loc[by_model["model"] != "pca", rank].max()  # pca has no predictor
    text = page.text["best-model"]
    named = re.search(r"Best model: (\S+) on (\S+) features, probe_accuracy ([\d.]+)", text)
    assert named, text
    best = by_model[(by_model["model"] == named[1]) & (by_model["kind"] == named[2])].iloc[0]
    assert best[rank] == pytest.approx(top) and float(named[3]) == pytest.approx(top, abs=5e-4)
    # and its confusion matrix is on the same screen, embedded
    imgs = page.imgs_in["best-confusion"]
    assert len(imgs) == 1 and imgs[0]["src"].startswith("data:image/png;base64,")
    assert best["model"] in page.text["best-confusion"]
