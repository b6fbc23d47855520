"""The report's first screen from summary tables: columns read by name, the best model named."""

from __future__ import annotations

import pandas as pd
import pytest

from soundharvest.io import SoundharvestError
from soundharvest.overview import metric_columns, overview_html, ranking_column

PNG = b"\x89PNG\r\n\x1a\n fake"


def tables(tmp_path, by_model_rows, summary_rows=None):
    by_model = pd.DataFrame(by_model_rows)
    summary = pd.DataFrame(summary_rows if summary_rows is not None else by_model_rows)
    by_model.to_csv(tmp_path / "by_model.tsv", sep="\t", index=False)
    summary.to_csv(tmp_path / "summary.tsv", sep="\t", index=False)
    return tmp_path / "summary.tsv", tmp_path / "by_model.tsv"


def figures(tmp_path, keys):
    out = {}
    for kind, model in keys:
        path = tmp_path / f"{kind}.{model}.confusion.png"
        path.write_bytes(PNG + model.encode())
        out[(kind, model)] = path
    return out


def row(model, kind="stft", **metrics):
    return {"kind": kind, "model": model, "n_seeds": 1, "supervision": "none", **metrics}


def test_probe_columns_lead_and_rank_the_models_when_present(tmp_path):
    rows = [
        row("ae", **{"nmi@k=4": 0.3, "purity@k=4": 0.5, "accuracy": 0.6, "probe_accuracy": 0.7,
                     "probe_balanced_accuracy": 0.68, "probe_accuracy_std": None}),
        row("acai", **{"nmi@k=4": 0.4, "purity@k=4": 0.6, "accuracy": 0.7, "probe_accuracy": 0.65,
                       "probe_balanced_accuracy": 0.6}),
        row("raw", **{"nmi@k=4": 0.2, "purity@k=4": 0.4, "accuracy": 0.5, "probe_accuracy": 0.6,
                      "probe_balanced_accuracy": 0.55}),
    ]  # fmt: skip
    assert metric_columns(pd.DataFrame(rows).columns) == [
        "probe_accuracy", "probe_balanced_accuracy", "nmi@k=4", "purity@k=4", "accuracy",
    ]  # fmt: skip
    assert ranking_column(pd.DataFrame(rows).columns) == "probe_accuracy"
    s, b = tables(tmp_path, rows)
    text = overview_html(
        s, b, figures(tmp_path, [("stft", "ae"), ("stft", "acai"), ("stft", "raw")])
    )
    assert "Best model: <strong>ae</strong> on stft features, probe_accuracy 0.700" in text
    assert "best baseline: raw on stft, 0.600" in text
    assert "<th>probe_balanced_accuracy</th>" in text
    assert text.index("<td><strong>ae") < text.index("<td>acai") < text.index("<td>raw")


def test_without_probe_the_accuracy_ranks_and_seeds_show_their_spread(tmp_path):
    by_model = [
        {**row("ae", **{"nmi@k=2": 0.3, "nmi@k=2_std": 0.05, "accuracy": 0.8, "accuracy_std": 0.02}), "n_seeds": 2},
        row("raw", **{"nmi@k=2": 0.2, "accuracy": 0.6}),
        row("pca", **{"nmi@k=2": 0.9, "accuracy": 0.95}),  # no confusion figure: not a candidate
    ]  # fmt: skip
    summary = [
        {"kind": "stft", "model": "ae-s1", "base_model": "ae", "accuracy": 0.78, "nmi@k=2": 0.3},
        {"kind": "stft", "model": "ae-s2", "base_model": "ae", "accuracy": 0.82, "nmi@k=2": 0.3},
        {"kind": "stft", "model": "raw", "base_model": "raw", "accuracy": 0.6, "nmi@k=2": 0.2},
        {"kind": "stft", "model": "pca", "base_model": "pca", "accuracy": 0.95, "nmi@k=2": 0.9},
    ]
    s, b = tables(tmp_path, by_model, summary)
    figs = figures(tmp_path, [("stft", "ae-s1"), ("stft", "ae-s2"), ("stft", "raw")])
    text = overview_html(s, b, figs)
    assert "Best model: <strong>ae</strong> on stft features, accuracy 0.800" in text
    assert "0.800 ± 0.020" in text and "<th>seeds</th>" in text
    assert "Confusion matrix of ae-s2's" in text  # the best seed's figure
    assert "probe_" not in text


def test_a_baseline_that_wins_is_said_so(tmp_path):
    rows = [row("ae", accuracy=0.5), row("raw", accuracy=0.7)]
    s, b = tables(tmp_path, rows)
    text = overview_html(s, b, figures(tmp_path, [("stft", "ae"), ("stft", "raw")]))
    assert "<strong>raw</strong>" in text and "no trained model beats it" in text


def test_a_table_without_metrics_is_one_line(tmp_path):
    s, b = tables(tmp_path, [{"kind": "stft", "model": "ae"}])
    with pytest.raises(SoundharvestError, match=r"none of the columns .* re-run the summary"):
        overview_html(s, b, {})
    (tmp_path / "bad.tsv").write_text("x\ty\n1\t2\n")
    with pytest.raises(SoundharvestError, match=r"bad\.tsv: not a summary table"):
        overview_html(tmp_path / "bad.tsv", b, {})
