"""Real Snakemake runs of the whole workflow on the tiny demo config.

They are the workflow's contract: a complete run produces every output, a re-run does nothing,
and a config change re-runs exactly what depends on it.
"""

from __future__ import annotations

import json
import re
import subprocess

import pandas as pd
import pytest
import yaml
from wfutil import changed, snakemake, snapshot, write_config

from soundharvest.synth import training_programs

pytestmark = pytest.mark.workflow


def test_complete_run_writes_catalog_and_summary(tiny_run):
    catalog = pd.read_csv(tiny_run / "results" / "catalog.csv", dtype=str, keep_default_na=False)
    assert set(catalog["label"]) == {"flute", "organ"}
    assert set(catalog["status"]) <= {"ok", "failed", "skipped"}
    assert (catalog["status"] == "ok").sum() >= 3
    # every non-ok row says why
    assert (catalog.loc[catalog["status"] != "ok", "reason"] != "").all()
    summary = pd.read_csv(tiny_run / "results" / "summary.tsv", sep="\t")
    assert {(k, m) for k, m in zip(summary["kind"], summary["model"], strict=True)} == {
        (k, m) for k in ("stft", "mel") for m in ("ae", "classifier", "contrastive", "raw", "pca")
    }


def test_model_settings_reach_the_trained_weights(tiny_run):
    from soundharvest.encoder import load_model

    model = yaml.safe_load((tiny_run / "config.yaml").read_text())["models"]["contrastive"]
    _net, meta = load_model(tiny_run / "results/train/stft/contrastive/weights.safetensors")
    for key in ("gain_jitter", "eq_jitter", "lr", "batch_size"):
        assert meta[key] == model[key], key
    assert meta["frames_seen"] == model["frames"]


def test_nothing_to_do_after_a_complete_run(tiny_run):
    proc = snakemake(tiny_run, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_a_hard_linked_copy_judges_trained_models_on_other_notes_without_training(tiny_copy):
    # config/overlap.yaml's recipe: hard-link a finished results folder, point a config with
    # another evaluation set at the copy and force the evaluation set (the copy has no
    # Snakemake metadata, so a changed parameter alone triggers nothing). Only what the notes
    # feed may run, and the original folder must stay as it was (new outputs replace links).
    subprocess.run(["cp", "-al", "results", "results-o"], cwd=tiny_copy, check=True)
    original = (tiny_copy / "results/eval_set/examples.json").read_bytes()
    config = yaml.safe_load((tiny_copy / "config.yaml").read_text())
    config["results"] = "results-o"
    config["eval_set"]["programs"] = "overlap"
    write_config(tiny_copy, config)
    assert "Nothing to be done" in snakemake(tiny_copy, "-n").stdout  # weights are up to date
    out = snakemake(tiny_copy, "-n", "--quiet", "rules", "--forcerun", "eval_set").stdout
    planned = set(dict(re.findall(r"^(\w+)\s+(\d+)$", out, re.M))) - {"total", "count"}
    assert {"eval_set", "eval_frames", "embed", "kmeans_sweep", "score_eval"} <= planned, out
    data_and_models = {"search", "download", "convert", "spectrogram", "concatenate", "shuffle"}
    assert not planned & (data_and_models | {"train", "label_clusters", "label_noise"}), out
    snakemake(tiny_copy, "--until", "eval_set", "--forcerun", "eval_set")
    assert (tiny_copy / "results/eval_set/examples.json").read_bytes() == original

    def programs(examples: str) -> set[int]:  # note "flute_acoustic_074-061-050": program 74
        return {int(note.split("-")[0].rsplit("_", 1)[1]) for note in json.loads(examples)}

    overlap = programs((tiny_copy / "results-o/eval_set/examples.json").read_text())
    assert overlap & training_programs(), overlap  # overlap: the training programs too
    disjoint = programs(original.decode())
    assert not disjoint & training_programs(), disjoint


def test_changing_a_query_reruns_only_that_label(tiny_copy):
    config = yaml.safe_load((tiny_copy / "config.yaml").read_text())
    config["labels"]["organ"] = ["organ music", "pipe organ"]
    write_config(tiny_copy, config)
    before = snapshot(tiny_copy)
    # The data stages (what a label's queries decide); training and evaluation re-run on any
    # change of the data, which test_incremental's plans check.
    targets = ["results/catalog.csv"]
    targets += [
        f"results/concatenate/{k}/{lb}.npy" for k in ("stft", "mel") for lb in config["labels"]
    ]
    snakemake(tiny_copy, *targets)
    touched = changed(before, snapshot(tiny_copy))
    # the new query was searched, the old ones were not searched again
    assert any(p.startswith("results/search/organ/") for p in touched)
    assert not any(p.startswith("results/search/flute/") for p in touched)
    # flute's data were not touched: no download, no conversion, no concatenation
    catalog = pd.read_csv(tiny_copy / "results" / "catalog.csv", dtype=str, keep_default_na=False)
    flute_ids = set(catalog.loc[catalog["label"] == "flute", "video_id"])
    assert not any(any(v in p for v in flute_ids) for p in touched)
    assert not any(p.startswith("results/concatenate/") and "flute" in p for p in touched)
    assert any(p.startswith("results/concatenate/") and "organ" in p for p in touched)
    assert "Nothing to be done" in snakemake(tiny_copy, "-n", *targets).stdout


def test_report_holds_every_figure_and_table(tiny_report):
    page = (tiny_report / "report.html").read_text(encoding="utf-8", errors="replace")
    figures = sorted((tiny_report / "results" / "figures").rglob("*.png"))
    # per kind: inertia, elbow vs max_k and a projection per model and baseline (5), a confusion
    # matrix per predictor (4), the metrics-vs-k figure
    assert len(figures) == 2 * (3 * 5 + 4 + 1)
    missing = [f.name for f in figures if f.name not in page]
    assert missing == []
    for table in ("summary.tsv", "catalog.csv", "players.html", "queries.tsv"):
        assert table in page


def test_summary_has_accuracy_of_the_cluster_label_model(tiny_run):
    summary = pd.read_csv(tiny_run / "results" / "summary.tsv", sep="\t")
    trained = summary[summary["model"].isin(["ae", "classifier", "contrastive", "raw"])]
    assert trained["accuracy"].between(0, 1).all()
    assert summary.loc[summary["model"] == "pca", "accuracy"].isna().all()
    # Every predictor is calibrated on held-out clips, and says how it answers off-topic ones.
    assert trained["ece"].between(0, 1).all()
    assert trained["synthetic_rejected"].between(0, 1).all()
    # ... and how many held-out clips those figures rest on, as the calibration counted them.
    for kind, model in trained[["kind", "model"]].itertuples(index=False):
        cal = json.loads(
            (tiny_run / f"results/predictor/{kind}/{model}/calibration.json").read_text()
        )
        got = trained.loc[(trained["kind"] == kind) & (trained["model"] == model)]
        assert got["calibration_clips"].item() == cal["n_test"] > 0, (kind, model)
        assert got["ece_p"].item() == pytest.approx(cal["ece_p"]) and 0 < cal["ece_p"] <= 1
    weak = summary[summary["kind"] == "stft"].set_index("model")["supervision"]
    assert weak["classifier"] == "weak" and weak["ae"] == "none"
    # What `soundharvest predict` answers on the notes' whole files, beside the codes' figures.
    for col in ("file_accuracy", "file_closed_accuracy", "file_rejected"):
        assert trained[col].between(0, 1).all(), col
    answers = pd.read_csv(tiny_run / "results/scores/stft/classifier.answers.tsv", sep="\t")
    notes = pd.read_csv(tiny_run / "results/eval_frames/stft.notes.tsv", sep="\t")
    assert answers["note_str"].tolist() == notes["note_str"].tolist()
    row = summary[(summary["kind"] == "stft") & (summary["model"] == "classifier")].iloc[0]
    assert row["file_accuracy"] == pytest.approx(
        (answers["answer_family"] == answers["family"]).mean(), abs=1e-4
    )


def test_weak_recogniser_answers_through_its_head_and_calibration(tiny_run):
    import json

    from soundharvest.calibrate import held_out
    from soundharvest.predict import Predictor

    results = tiny_run / "results"
    pred_dir = results / "predictor" / "stft" / "classifier"
    meta = json.loads((pred_dir / "meta.json").read_text())
    assert meta["label_model"] == "head" and (pred_dir / "head.npz").is_file()
    assert not (pred_dir / "clusters.npz").exists()
    cal = json.loads((pred_dir / "calibration.json").read_text())
    assert cal["temperature"] > 0 and 0 <= cal["threshold"] <= 1 and cal["holdout"] == 0.4
    clips = pd.read_csv(results / "calibration" / "stft" / "classifier.clips.tsv", sep="\t")
    real = clips[clips["set"] != "synthetic"]
    # Exactly the catalog's held-out clips, and digital silence is answered "silent".
    catalog = pd.read_csv(results / "catalog.csv", dtype=str, keep_default_na=False)
    ok = catalog[catalog["status"] == "ok"].drop_duplicates("video_id")["video_id"].tolist()
    expected = {v for v, h in zip(ok, held_out(ok, 0.4), strict=True) if h}
    assert set(real["video_id"]) == expected and expected
    assert clips.set_index("video_id").loc["silence-0", "answer"] == "silent"
    pred = Predictor.load(pred_dir)
    assert pred.calibration["temperature"] == cal["temperature"]
    wav = results / "convert" / f"{real['video_id'].iloc[0]}.wav"
    res = pred.predict_file(wav)
    assert res["answer"] in {*pred.labels, "unknown"} and res["calibrated"] is True


def test_summary_has_the_linear_probe_of_every_model_and_baseline(tiny_run):
    summary = pd.read_csv(tiny_run / "results" / "summary.tsv", sep="\t")
    by = pd.read_csv(tiny_run / "results" / "summary_by_model.tsv", sep="\t")
    for table in (summary, by):
        for col in ("probe_accuracy", "probe_balanced_accuracy"):
            assert table[col].between(0, 1).all() and table[col].notna().all(), col
    assert "probe_accuracy_std" in by
    probe = pd.read_csv(tiny_run / "results/probe/stft/raw.tsv", sep="\t").iloc[0]
    assert probe["folds"] == 5 and probe["n_classes"] == 2 and probe["n_notes"] == 16
    raw = summary[(summary["kind"] == "stft") & (summary["model"] == "raw")].iloc[0]
    assert raw["probe_accuracy"] == probe["probe_accuracy"]
    # two families (flute, organ): the k-means metrics are at k = 2, not at the thesis' 4
    assert "nmi@k=2" in summary and "nmi@k=4" not in summary
    provenance = json.loads((tiny_run / "results/eval_set/provenance.json").read_text())
    assert provenance["soundfont"] == "TimGM6mb.sf2"
