"""The summary tables: one row per model instance, and the mean and spread over seeds."""

import numpy as np
import pandas as pd
import pytest

from soundharvest.evaluate.pipeline import summarize_seeds, summary_file
from soundharvest.io import write_tsv


def _sweep(tmp_path, name, nmi4):
    ks = np.arange(2, 11)
    table = pd.DataFrame(
        {
            "k": ks,
            "inertia": 100.0 / ks,
            "family_purity": np.linspace(0.4, 0.9, len(ks)),
            "family_ri": 0.5,
            "family_ari": np.where(ks == 4, nmi4 / 2, 0.1),
            "family_nmi": np.where(ks == 4, nmi4, 0.2),
        }
    )
    p = tmp_path / f"{name}.sweep.tsv"
    write_tsv(p, table)
    e = tmp_path / f"{name}.elbow.tsv"
    write_tsv(e, pd.DataFrame({"max_k": [10], "elbow_k": [4], "family_nmi": [nmi4]}))
    return p, e


def test_summary_groups_seeds_and_gives_their_spread(tmp_path):
    nmi = {"acai-s0": 0.30, "acai-s1": 0.40, "acai-s2": 0.50, "raw": 0.25}
    files = {("stft", m): _sweep(tmp_path, m, v) for m, v in nmi.items()}
    scores = tmp_path / "scores.tsv"
    write_tsv(
        scores,
        pd.DataFrame(
            {
                "kind": "stft",
                "model": list(nmi),
                "k": 8,
                "accuracy": [0.5, 0.6, 0.7, 0.45],
                "balanced_accuracy": [0.5, 0.6, 0.7, 0.45],
                "file_accuracy": [0.3, 0.4, 0.5, 0.2],
            }
        ),
    )
    probes = []
    for i, model in enumerate(nmi):
        probes.append(tmp_path / f"{model}.probe.tsv")
        write_tsv(
            probes[-1],
            pd.DataFrame(
                {
                    "kind": ["stft"],
                    "model": [model],
                    "probe_accuracy": [0.7 + 0.1 * i if model != "raw" else 0.55],
                    "probe_accuracy_fold_std": [0.05],
                    "probe_balanced_accuracy": [0.6 + 0.1 * i if model != "raw" else 0.5],
                }
            ),
        )
    instances = {f"acai-s{s}": ("acai", s) for s in range(3)}
    summary = summary_file(
        {key: f[0] for key, f in files.items()},
        {key: f[1] for key, f in files.items()},
        tmp_path / "summary.tsv",
        4,
        score_tsvs=[scores],
        instances=instances,
        by_model_tsv=tmp_path / "by_model.tsv",
        probe_tsvs=probes,
    )
    rows = pd.read_csv(tmp_path / "summary.tsv", sep="\t").set_index("model")
    assert rows.loc["acai-s2", "probe_accuracy"] == pytest.approx(0.9)
    assert rows.loc["raw", "probe_balanced_accuracy"] == pytest.approx(0.5)
    assert "probe_accuracy_fold_std" not in rows  # the fold spread stays in the probe tables
    assert list(summary["base_model"]) == ["acai"] * 3 + ["raw"]
    assert list(summary["seed"].astype("object")) == [0, 1, 2, pd.NA]
    by = pd.read_csv(tmp_path / "by_model.tsv", sep="\t").set_index("model")
    assert by.loc["acai", "n_seeds"] == 3
    assert by.loc["acai", "nmi@k=4"] == pytest.approx(0.40)
    assert by.loc["acai", "nmi@k=4_std"] == pytest.approx(0.10)  # sample std of .3 .4 .5
    assert by.loc["acai", "ari@k=4"] == pytest.approx(0.20)
    assert by.loc["acai", "accuracy"] == pytest.approx(0.6)
    assert by.loc["acai", "accuracy_std"] == pytest.approx(0.1)
    # what predict answers on the notes' files travels beside the codes' accuracy
    assert rows.loc["raw", "file_accuracy"] == pytest.approx(0.2)
    assert by.loc["acai", "file_accuracy"] == pytest.approx(0.4)
    assert by.loc["acai", "file_accuracy_std"] == pytest.approx(0.1)
    assert by.loc["acai", "probe_accuracy"] == pytest.approx(0.8)  # mean of .7 .8 .9
    assert by.loc["acai", "probe_accuracy_std"] == pytest.approx(0.1)
    assert by.loc["acai", "probe_balanced_accuracy"] == pytest.approx(0.7)
    assert by.loc["raw", "probe_accuracy"] == pytest.approx(0.55)
    assert by.loc["acai", "mean_nmi@k<=100"] == pytest.approx((0.2 * 8 + 0.4) / 9, abs=1e-4)
    # a baseline is one run: a mean without a spread
    assert by.loc["raw", "n_seeds"] == 0
    assert by.loc["raw", "nmi@k=4"] == pytest.approx(0.25)
    assert np.isnan(by.loc["raw", "nmi@k=4_std"])


def test_weakly_supervised_models_are_marked_in_both_tables(tmp_path):
    nmi = {"mix-s0": 0.3, "mix-s1": 0.5, "clip-s0": 0.4, "clip-s1": 0.4, "raw": 0.2}
    files = {("stft", m): _sweep(tmp_path, m, v) for m, v in nmi.items()}
    summary = summary_file(
        {key: f[0] for key, f in files.items()},
        {key: f[1] for key, f in files.items()},
        tmp_path / "summary.tsv",
        4,
        instances={m: tuple(m.split("-s")) for m in nmi if m != "raw"},
        by_model_tsv=tmp_path / "by_model.tsv",
        supervision={"mix-s0": "weak", "mix-s1": "weak", "clip-s0": "none", "clip-s1": "none"},
    )
    assert list(summary["supervision"]) == ["weak", "weak", "none", "none", "none"]
    by = pd.read_csv(tmp_path / "by_model.tsv", sep="\t").set_index("model")
    assert by["supervision"].to_dict() == {"mix": "weak", "clip": "none", "raw": "none"}
    assert by.loc["mix", "nmi@k=4"] == pytest.approx(0.4)
    # without the mapping (older callers) the tables have no such column
    plain = summary_file(
        {key: f[0] for key, f in files.items()},
        {key: f[1] for key, f in files.items()},
        tmp_path / "plain.tsv",
        4,
    )
    assert "supervision" not in plain


def test_summarize_seeds_keeps_kinds_apart():
    summary = pd.DataFrame(
        {
            "kind": ["stft", "stft", "mel", "mel"],
            "model": ["ae-s0", "ae-s1", "ae-s0", "ae-s1"],
            "base_model": "ae",
            "seed": [0, 1, 0, 1],
            "purity@k=4": [0.4, 0.6, 0.8, 0.8],
        }
    )
    out = summarize_seeds(summary).set_index("kind")
    assert out.loc["stft", "purity@k=4"] == pytest.approx(0.5)
    assert out.loc["mel", "purity@k=4"] == pytest.approx(0.8)
    assert out.loc["mel", "purity@k=4_std"] == pytest.approx(0.0)
