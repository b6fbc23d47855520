"""Tests of soundharvest.predict: cluster naming, predictor directories, scoring, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from soundharvest.acquire.demo import DemoSource
from soundharvest.cli import format_result
from soundharvest.evaluate.scoring import NO_FAMILY, score_eval_file
from soundharvest.features import compute_features
from soundharvest.io import SoundharvestError, write_json
from soundharvest.labelmodel import ClusterLabelModel, fit_clusters, name_clusters
from soundharvest.predict import CLUSTERS_NAME, META_NAME, Predictor, label_clusters_file
from soundharvest.train import train
from soundharvest.typicality import TYPICALITY_NAME

ROOT = Path(__file__).resolve().parents[1]
FAMILIES_TSV = ROOT / "resources" / "label_families.tsv"
SPEC = {"kind": "stft", "params": {}, "sample_rate": 16000}
#: Clean demo clips: one instrument, no accompaniment, room or level changes.
CLEAN = {
    "seed": 3,
    "programs_per_label": 1,
    "min_duration": 4,
    "max_duration": 6,
    "off_topic_share": 0.0,
    "accompaniment_prob": 0.0,
    "reverb_prob": 0.0,
    "level_change_prob": 0.0,
    "silence_intro_prob": 0.0,
    "noise_db": [-60.0, -55.0],
}


def blobs(sizes_labels, seed=0, dim=3, spread=0.05):
    """Well separated blobs; ``sizes_labels`` is per blob a list of (label id, count)."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for b, parts in enumerate(sizes_labels):
        centre = np.zeros(dim)
        centre[b % dim] = 10.0 * (1 + b // dim)
        for lab, n in parts:
            X.append(centre + rng.normal(0, spread, (n, dim)))
            y += [lab] * n
    return np.concatenate(X).astype(np.float32), np.array(y)


# ------------------------------------------------------------------------- cluster naming


def test_cluster_names_are_majority_labels_with_shares() -> None:
    X, y = blobs([[(1, 70), (0, 30)], [(2, 40)], [(0, 25), (2, 5)]])
    model = ClusterLabelModel.fit(X, y, k=3, seed=0, label_names=["a", "b", "c"])
    # The cluster of each blob, found through a point of that blob.
    c0, c1, c2 = model.assign(X[[0, 100, 140]])
    assert [model.cluster_names[c] for c in (c0, c1, c2)] == ["b", "c", "a"]
    assert model.shares[c0] == pytest.approx(0.7)
    assert model.shares[c1] == pytest.approx(1.0)
    assert model.shares[c2] == pytest.approx(25 / 30)
    ids, conf = model.predict(X[[0, 140]])
    assert list(ids) == [1, 0] and conf[0] == pytest.approx(0.7)


def test_cluster_name_ties_go_to_the_first_label_whatever_the_order() -> None:
    X, y = blobs([[(2, 20), (1, 20)], [(0, 10), (1, 10), (2, 5)]], seed=1)
    names = ["x", "y", "z"]
    first = ClusterLabelModel.fit(X, y, k=2, seed=0, label_names=names)
    perm = np.random.default_rng(5).permutation(len(X))
    second = ClusterLabelModel.fit(X[perm], y[perm], k=2, seed=7, label_names=names)
    for m in (first, second):
        a, b = m.assign(X[[0, 45]])
        assert m.cluster_names[a] == "y"  # tie y/z: y is listed first
        assert m.cluster_names[b] == "x"  # tie x/y: x is listed first
        assert m.shares[a] == pytest.approx(0.5)
    # name_clusters directly: an empty cluster is named after label 0 with share 0.
    counts, ids, shares = name_clusters(np.array([0, 0, 2, 2]), np.array([1, 0, 2, 1]), 3, 3)
    assert list(ids) == [0, 0, 1] and list(shares) == [0.5, 0.0, 0.5]
    assert counts.sum() == 4


def test_cluster_model_saves_plain_arrays(tmp_path) -> None:
    X, y = blobs([[(0, 30)], [(1, 20), (0, 3)]])
    model = ClusterLabelModel.fit(X, y, k=2, label_names=["organ", "flute"])
    model.save(tmp_path / CLUSTERS_NAME)
    with np.load(tmp_path / CLUSTERS_NAME, allow_pickle=False) as z:  # readable without us
        assert sorted(z["names"]) == ["flute", "organ"]
    back = ClusterLabelModel.load(tmp_path / CLUSTERS_NAME)
    assert np.array_equal(back.centroids, model.centroids)
    assert back.cluster_names == model.cluster_names
    assert np.allclose(back.shares, model.shares)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(SoundharvestError, match="bad.npz"):
        ClusterLabelModel.load(tmp_path / "bad.npz")


def test_elbow_choice_finds_the_blob_count() -> None:
    X, y = blobs([[(i, 60)] for i in range(4)], dim=4, spread=0.3)
    model, info, table = fit_clusters(X, y, ["a", "b", "c", "d"], k="elbow", max_k=12)
    assert info["k"] == 4 and model.k == 4
    assert sorted(model.cluster_names) == ["a", "b", "c", "d"]
    assert list(table["k"]) == list(range(2, 13))
    with pytest.raises(SoundharvestError, match="label_clusters.k"):
        fit_clusters(X, y, ["a", "b", "c", "d"], k="knee")


# ------------------------------------------------------------------------- scoring


def test_score_eval_accuracy_and_confusion(tmp_path) -> None:
    labels = ["drums", "flute", "organ", "voice"]  # drums has no NSynth family
    X, y = blobs([[(1, 40)], [(2, 40)], [(3, 40)], [(0, 40)]], dim=4)
    model = ClusterLabelModel.fit(X, y, k=4, label_names=labels)
    from soundharvest.predict import write_predictor_dir

    write_predictor_dir(tmp_path / "pred", model, SPEC, None, {"model": "raw"})
    # Eval notes at the blob centres: flute, organ, vocal right; "vocal" notes in the drums
    # blob get "(none)"; two organ notes sit in the flute blob.
    codes = X[[0, 1, 40, 41, 42, 80, 81, 120, 121]]
    codes[[3, 4]] = X[[2, 3]]
    fam = ["flute", "flute", "organ", "organ", "organ", "vocal", "vocal", "vocal", "vocal"]
    np.save(tmp_path / "codes.npy", codes)
    pd.DataFrame({"note_str": [f"n{i}" for i in range(9)], "family": fam}).to_csv(
        tmp_path / "notes.tsv", sep="\t", index=False
    )
    row = score_eval_file(
        tmp_path / "codes.npy",
        tmp_path / "notes.tsv",
        tmp_path / "pred",
        FAMILIES_TSV,
        tmp_path / "score.tsv",
        tmp_path / "confusion.png",
        tmp_path / "confusion.tsv",
        tmp_path / "closed.tsv",
    )
    assert row["accuracy"] == pytest.approx(round(5 / 9, 4))
    assert row["balanced_accuracy"] == pytest.approx(round((1 + 1 / 3 + 0.5) / 3, 4))
    # Closed set: the drums cluster (no evaluated family) does not compete, so the two vocal
    # notes in its blob go to the nearest of flute, organ and voice.
    assert row["closed_clusters"] == 3
    named = np.array(model.cluster_names)
    allowed = np.flatnonzero(named != "drums")
    d = ((codes[7:9, None, :] - model.centroids[None, allowed, :]) ** 2).sum(-1)
    rescued = int((named[allowed][d.argmin(1)] == "voice").sum())
    assert row["closed_accuracy"] == pytest.approx(round((5 + rescued) / 9, 4))
    # The closed-set matrix: rows the evaluated families, columns only evaluated families (no
    # "(none)"); its diagonal is the closed accuracy, and the drums-blob vocal notes land on the
    # family their nearest allowed cluster names.
    closed = pd.read_csv(tmp_path / "closed.tsv", sep="\t").set_index("true")
    assert list(closed.index) == ["flute", "organ", "vocal"]
    assert set(closed.columns) <= {"flute", "organ", "vocal"}
    assert np.trace(closed.to_numpy()) / closed.to_numpy().sum() == pytest.approx(
        row["closed_accuracy"], abs=1e-4
    )
    assert closed.loc["vocal", "vocal"] == 2 + rescued
    assert closed.loc["organ", "flute"] == 2
    conf = pd.read_csv(tmp_path / "confusion.tsv", sep="\t").set_index("true")
    assert conf.loc["vocal", NO_FAMILY] == 2 and conf.loc["organ", "flute"] == 2
    assert (tmp_path / "confusion.png").stat().st_size > 1000
    assert pd.read_csv(tmp_path / "score.tsv", sep="\t")["model"].tolist() == ["raw"]
    np.save(tmp_path / "codes3.npy", codes[:, :3])
    with pytest.raises(SoundharvestError, match="dimensions"):
        score_eval_file(
            tmp_path / "codes3.npy",
            tmp_path / "notes.tsv",
            tmp_path / "pred",
            FAMILIES_TSV,
            tmp_path / "s.tsv",
            tmp_path / "c.png",
        )


# ------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny autoencoder trained on stft frames of rendered flute and organ clips, its
    predictor directory, the raw baseline's, and a held-out compressed clip per label."""
    root = tmp_path_factory.mktemp("predict")
    src = DemoSource(CLEAN)
    labels = ["flute", "organ"]
    frames, ids = [], []
    held = {}
    for lab_id, label in enumerate(labels):
        cands = src.search(label, f"{label} solo", 4)
        for c in cands[:3]:
            audio, _ = src.render(label, c.video_id)
            f, _ = compute_features(audio.astype(np.float32), 16000, "stft", {})
            frames.append(f)
            ids += [lab_id] * len(f)
        audio, _ = src.render(label, cands[3].video_id)
        held[label] = root / f"{label}.webm"
        src.encode(audio, held[label])
    x = np.concatenate(frames).astype(np.float16)
    y = np.array(ids, dtype=np.int16)
    perm = np.random.default_rng(0).permutation(len(x))
    shard_dir = root / "shuffle"
    shard_dir.mkdir()
    np.save(shard_dir / "shard-00.npy", x[perm])
    np.save(shard_dir / "shard-00.labels.npy", y[perm])
    write_json(shard_dir / "labels.json", labels)
    shards = [shard_dir / "shard-00.npy"]
    weights = root / "train" / "weights.safetensors"
    train(
        shards,
        weights,
        root / "train" / "curves.tsv",
        root / "train" / "curves.png",
        model_type="ae",
        arch={"hidden": [64], "latent": 6},
        frames=30_000,
        batch_size=128,
        lr=2e-3,
        threads=1,
        device="cpu",
        metadata={"model": "tiny", "features": SPEC},
    )
    meta = label_clusters_file(
        shards, shard_dir / "labels.json", weights, root / "pred", k=6, sample_frames=4000
    )
    raw = label_clusters_file(
        shards, shard_dir / "labels.json", None, root / "raw", k="elbow", max_k=8, features=SPEC
    )
    return {"root": root, "meta": meta, "raw": raw, "held": held, "shards": shards}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "soundharvest.cli", "predict", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_label_clusters_writes_a_loadable_directory(trained) -> None:
    root, meta = trained["root"], trained["meta"]
    assert meta["model"] == "tiny" and meta["k"] == 6 and meta["encoder"] == "weights"
    assert sorted(p.name for p in (root / "pred").iterdir()) == [
        CLUSTERS_NAME,
        META_NAME,
        "model.safetensors",
        TYPICALITY_NAME,
    ]
    pred = Predictor.load(root / "pred")
    assert pred.kind == "stft" and pred.labels == ["flute", "organ"]
    assert set(pred.clusters.cluster_names) == {"flute", "organ"}
    raw = Predictor.load(root / "raw")
    assert raw.model is None and raw.clusters.dim == 513
    assert trained["raw"]["k_choice"].startswith("elbow") and 2 <= trained["raw"]["k"] <= 7
    assert not (root / "raw" / "model.safetensors").exists()


def test_a_typicality_model_of_other_labels_is_refused_and_a_label_without_codes_skipped(
    trained, tmp_path
) -> None:
    import shutil

    from soundharvest.typicality import CodeDensity

    d = tmp_path / "pred"
    shutil.copytree(trained["root"] / "pred", d)
    dens = CodeDensity.load(d / TYPICALITY_NAME)
    CodeDensity(dens.means[::-1], dens.precision, ["organ", "flute"]).save(d / TYPICALITY_NAME)
    with pytest.raises(SoundharvestError, match=r"typicality model's labels .* re-run the label"):
        Predictor.load(d)
    # A label without training codes (NaN mean) is never nearest: the clip's distance is to the
    # other label, as the frame timeline has it, not NaN.
    one = dens.means.copy()
    one[1] = np.nan
    CodeDensity(one, dens.precision, dens.labels).save(d / TYPICALITY_NAME)
    pred = Predictor.load(d)
    scored = pred.score_file(trained["held"]["flute"])
    assert np.isfinite(scored["distance"]) and np.isnan(scored["label_distances"][1])
    assert scored["distance"] == pytest.approx(scored["label_distances"][0], rel=1e-9)


def test_predict_cli_labels_held_out_clips(trained) -> None:
    held = trained["held"]
    proc = run_cli(trained["root"] / "pred", held["flute"], held["organ"], "--json", "--frames")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["kind"] == "stft" and doc["model"] == "tiny"
    got = {Path(r["file"]).stem: r for r in doc["results"]}
    assert doc["labels"] == ["flute", "organ"] and doc["temperature"] == 1.0
    assert doc["calibrated"] is False
    for label in ("flute", "organ"):
        r = got[label]
        assert r["answer"] == r["label"] == label, r
        probs = r["probabilities"]
        assert list(probs)[0] == label and sum(probs.values()) == pytest.approx(1.0, abs=1e-3)
        assert r["confidence"] == probs[label] > 0.5
        assert 0 < r["voiced_frames"] <= r["n_frames"]
        assert len(r["timeline"]) == int(np.ceil(r["seconds"]))
        assert all(set(t) >= {"start", "end", "answer", "probabilities"} for t in r["timeline"])
    text = run_cli(trained["root"] / "raw", held["organ"], "--frames")
    assert text.returncode == 0, text.stderr
    first, *timeline = text.stdout.strip().splitlines()
    assert first.startswith(f"{held['organ']}: organ ") and "frames voiced" in first
    assert "uncalibrated" in first and not text.stderr
    import re

    spans = [re.match(r"\s+(\d+)-(\d+) s\s+(\w+) ([\d.]+)%", t) for t in timeline]
    assert all(spans), timeline
    assert [int(m[1]) for m in spans] == list(range(len(timeline))) and len(timeline) >= 3
    assert {m[3] for m in spans} <= {"flute", "organ"}


def test_predict_cli_bad_inputs(trained, tmp_path, capsys) -> None:
    from soundharvest.cli import main

    pred_dir = trained["root"] / "pred"
    good = trained["held"]["flute"]
    junk = tmp_path / "song.mp3"
    junk.write_text("this is not audio\n")
    missing = tmp_path / "nope.wav"
    proc = run_cli(pred_dir, junk, good, missing)
    assert proc.returncode == 1
    err = proc.stderr.strip().splitlines()
    assert len(err) == 2  # one line per bad file
    assert str(junk) in err[0] and "cannot decode" in err[0]
    assert err[1].endswith(f"{missing}: file not found")
    assert proc.stdout.startswith(f"{good}: flute")  # the good file is still labelled

    empty = tmp_path / "empty_dir"
    empty.mkdir()
    proc = run_cli(empty, good)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert f"{empty}: not a predictor directory" in proc.stderr
    proc = run_cli(pred_dir, good, "--kind", "mel")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "feature kind mismatch" in proc.stderr

    # The same command in-process for the other bad model directories.
    import shutil

    bad_dir = tmp_path / "mel_pred"  # meta.json says mel, the weights take stft frames
    shutil.copytree(pred_dir, bad_dir)
    meta = json.loads((bad_dir / META_NAME).read_text())
    meta["features"] = {"kind": "mel", "params": {}, "sample_rate": 16000}
    (bad_dir / META_NAME).write_text(json.dumps(meta))
    capsys.readouterr()
    for bad, why in ((junk, "not a directory"), (tmp_path / "absent", "not a directory"),
                     (bad_dir, "feature kind mismatch")):  # fmt: skip
        assert main(["predict", str(bad), str(good)]) == 1
        out = capsys.readouterr()
        assert out.out == "" and out.err.count("\n") == 1
        assert str(bad) in out.err and why in out.err


def test_predict_cli_labels_folders_and_streams_a_table(trained, tmp_path) -> None:
    import io
    import shutil

    import pandas as pd

    folder = tmp_path / "batch"
    (folder / "sub").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    shutil.copy(trained["held"]["flute"], folder / "b_flute.webm")
    shutil.copy(trained["held"]["organ"], folder / "sub" / "a_organ.webm")
    shutil.copy(trained["held"]["organ"], folder / ".hidden" / "skipped.webm")
    (folder / "notes.txt").write_text("not audio, and not by its name either\n")
    (folder / "broken.mp3").write_text("not audio, though its name says so\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    pred_dir = trained["root"] / "pred"

    proc = run_cli(pred_dir, folder, empty, "--tsv", "--frames")
    assert proc.returncode == 1  # the broken file and the empty folder
    table = pd.read_csv(io.StringIO(proc.stdout), sep="\t", keep_default_na=False)
    assert list(table.columns[-2:]) == ["p_flute", "p_organ"]
    files = table[table["span"] == "file"]
    # Sorted by the path inside the folder; hidden folders and non-audio names left out.
    assert [Path(f).name for f in files["file"]] == [
        "b_flute.webm", "broken.mp3", "a_organ.webm", "empty",
    ]  # fmt: skip
    ok = files[files["error"] == ""]
    assert list(ok["answer"]) == ["flute", "organ"]
    assert (ok[["p_flute", "p_organ"]].astype(float).sum(axis=1) - 1).abs().max() < 1e-3
    bad = files[files["error"] != ""]
    bad = bad.set_index(bad["file"].map(lambda f: Path(f).name))
    assert "cannot decode" in bad.loc["broken.mp3", "error"]
    assert "no audio files in this folder" in bad.loc["empty", "error"]
    assert proc.stderr.count("\n") == 2
    # The same answers as --json gives, and a row per second of each file.
    doc = json.loads(run_cli(pred_dir, folder / "sub" / "a_organ.webm", "--json").stdout)
    organ = doc["results"][0]
    row = ok.iloc[1]
    assert float(row["confidence"]) == organ["confidence"]
    assert float(row["end"]) == organ["seconds"] and int(row["voiced_frames"]) > 0
    seconds = table[(table["span"] == "second") & (table["file"] == row["file"])]
    assert len(seconds) == int(np.ceil(organ["seconds"]))
    assert list(seconds["start"].astype(int)) == list(range(len(seconds)))

    both = run_cli(pred_dir, folder, "--tsv", "--json")
    assert both.returncode == 2 and "not allowed with" in both.stderr
    import torch

    if not torch.cuda.is_available():  # the default device is auto: a GPU only where there is one
        gpu = run_cli(pred_dir, folder / "b_flute.webm", "--device", "cuda")
        assert gpu.returncode == 1 and gpu.stderr.count("\n") == 1
        assert "no CUDA GPU here; use auto or cpu" in gpu.stderr


def test_label_clusters_rejects_other_kind_shards(trained, tmp_path) -> None:
    shards = trained["shards"]
    with pytest.raises(SoundharvestError, match="bins per frame"):
        label_clusters_file(
            shards,
            shards[0].parent / "labels.json",
            None,
            tmp_path / "p",
            k=2,
            features={"kind": "mel", "params": {}, "sample_rate": 16000},
        )


def test_predictor_answers_silent_and_rejects_nan_and_too_short_audio(trained, tmp_path) -> None:
    import soundfile as sf

    pred = Predictor.load(trained["root"] / "pred")
    quiet = np.random.default_rng(0).normal(0, 10 ** (-75 / 20), 3 * 16000)  # -75 dBFS hiss
    for x in (np.zeros(3 * 16000), quiet):
        res = pred.predict_samples(x)
        assert res["answer"] == "silent" and res["voiced_frames"] == 0
        assert res["probabilities"] == {} and res["label"] is None
        assert {t["answer"] for t in res["timeline"]} == {"silent"} and len(res["timeline"]) == 3
    # Silence before music does not vote: only the voiced frames decide.
    music = sf.read(_wav_of(trained["held"]["organ"], tmp_path))[0]
    padded = np.concatenate([np.zeros(2 * 16000), music])
    res = pred.predict_samples(padded)
    assert res["answer"] == "organ" and res["voiced_frames"] < res["n_frames"]
    assert res["timeline"][0]["answer"] == "silent"  # (second 1's last frame hears the music)
    # NaN or infinite samples, and audio shorter than one frame: one line naming the file.
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    short = tmp_path / "short.wav"
    sf.write(short, music[:480].astype(np.float32), 16000)  # 30 ms < n_fft 1024 samples
    for path, why in ((nan, "NaN or infinite"), (short, "shorter than one datapoint")):
        with pytest.raises(SoundharvestError, match=why) as e:
            pred.predict_file(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_score_eval_whole_files_answer_as_predict_does(trained, tmp_path) -> None:
    """The ``file_*`` figures are what ``soundharvest predict`` says on each note's file: the
    same answers (``silent`` for a silent note), scored against the notes' families."""
    import soundfile as sf

    from soundharvest.evaluate.frames import eval_frames
    from soundharvest.evaluate.nsynth import load_label_families, render_eval_set

    nsynth = tmp_path / "nsynth"
    notes = render_eval_set(nsynth, ["flute", "organ"], 4, programs="overlap", seed=1)
    silent = notes["note_str"].iloc[0]
    sf.write(nsynth / "audio" / f"{silent}.wav", np.zeros(64000, dtype=np.int16), 16000)
    table = eval_frames(nsynth, tmp_path / "frames.npy", tmp_path / "notes.tsv", "stft", {})
    pred_dir = trained["root"] / "pred"
    pred = Predictor.load(pred_dir)
    np.save(tmp_path / "codes.npy", pred.encode(np.load(tmp_path / "frames.npy")))
    row = score_eval_file(
        tmp_path / "codes.npy",
        tmp_path / "notes.tsv",
        pred_dir,
        FAMILIES_TSV,
        tmp_path / "score.tsv",
        tmp_path / "confusion.png",
        nsynth_dir=nsynth,
        out_answers_tsv=tmp_path / "answers.tsv",
    )
    answers = pd.read_csv(tmp_path / "answers.tsv", sep="\t", keep_default_na=False)
    assert answers["note_str"].tolist() == table["note_str"].tolist()
    fam = load_label_families(FAMILIES_TSV)
    expected = []
    for key in table["note_str"]:
        res = pred.predict_file(nsynth / "audio" / f"{key}.wav")
        expected.append(res["answer"])
    assert answers["answer"].tolist() == expected
    by_note = answers.set_index("note_str")
    assert by_note.loc[silent, "answer"] == "silent" and by_note.loc[silent, "closed_family"] == ""
    family = table.set_index("note_str")["family"]
    right = [fam.get(a) == family[k] for k, a in zip(table["note_str"], expected, strict=True)]
    assert row["file_accuracy"] == pytest.approx(round(float(np.mean(right)), 4))
    assert row["file_rejected"] == pytest.approx(
        round(float(np.isin(expected, ["unknown", "silent"]).mean()), 4)
    )
    assert row["file_rejected"] >= 1 / len(table)  # the silent note at least
    # The closed set: flute and organ are the only labels, so every voiced note's choice is
    # its most probable label's family, and the silent note's is empty (wrong).
    voiced = answers[answers["answer"] != "silent"]
    assert (voiced["closed_family"] == voiced["label"].map(fam)).all()
    assert row["file_closed_accuracy"] == pytest.approx(
        round(float((answers["closed_family"] == answers["family"]).mean()), 4)
    )
    assert set(pd.read_csv(tmp_path / "score.tsv", sep="\t").columns) >= {
        "file_accuracy", "file_closed_accuracy", "file_rejected"
    }  # fmt: skip


def _wav_of(path: Path, tmp_path: Path) -> Path:
    from soundharvest.audio import decode, write_wav_file

    out = tmp_path / (path.stem + ".wav")
    write_wav_file(out, decode(path, 16000))
    return out


def test_calibration_sets_probabilities_and_unknown(trained, tmp_path) -> None:
    import shutil

    d = tmp_path / "pred"
    shutil.copytree(trained["root"] / "pred", d)
    held = trained["held"]["flute"]
    raw = Predictor.load(d).predict_file(held)
    assert raw["calibrated"] is False and raw["answer"] == "flute"
    # A softer temperature and a threshold above this clip's calibrated confidence.
    write_json(d / "calibration.json", {"temperature": 4.0, "threshold": 0.999})
    pred = Predictor.load(d)
    soft = pred.predict_file(held)
    assert soft["calibrated"] is True and soft["label"] == "flute"
    assert 0.5 < soft["confidence"] < raw["confidence"]  # a higher temperature: less sure
    assert soft["answer"] == "unknown"
    write_json(d / "calibration.json", {"temperature": 4.0})
    with pytest.raises(SoundharvestError, match="threshold"):
        Predictor.load(d)


def test_calibration_answers_unknown_for_noise_and_silent_for_silence_but_keeps_clips(
    trained, tmp_path, caplog
) -> None:
    """score_clips_file then calibrate_file end to end on held-out clips of the training labels:
    white, pink and brown noise and speech-like babble, none of which holds an instrument, are
    answered ``unknown`` (their codes lie far from every label's training codes), silence
    ``silent``, while the on-topic clips keep their labels within the rejection budget."""
    import shutil

    from soundharvest.audio import write_wav_file
    from soundharvest.calibrate import calibrate_file, held_out, score_clips_file
    from soundharvest.io import read_json

    d = tmp_path / "pred"
    shutil.copytree(trained["root"] / "pred", d)
    src = DemoSource(CLEAN)
    rows = []
    convert = tmp_path / "convert"
    convert.mkdir()
    for label in ("flute", "organ"):
        for c in src.search(label, f"{label} solo", 12)[4:]:  # not the fixture's clips
            audio, _ = src.render(label, c.video_id)
            write_wav_file(convert / f"{c.video_id}.wav", audio.astype(np.float32))
            rows.append({"label": label, "video_id": c.video_id, "status": "ok", "seconds": 5})
    assert held_out([r["video_id"] for r in rows], 0.999).all()
    pd.DataFrame(rows).to_csv(tmp_path / "catalog.csv", index=False)
    scores = tmp_path / "scores.tsv"
    score_clips_file(d, tmp_path / "catalog.csv", convert, scores, holdout=0.999, n_synthetic=3)
    # The encoder's pass is kept: every held-out and synthetic clip's logits and distance.
    kept = pd.read_csv(scores, sep="\t")
    assert len(kept) == len(rows) + 3 * 4 and {"logit_flute", "logit_organ"} <= set(kept.columns)
    # Each frame's distance is its smallest to a label's mean: their mean is at most the
    # smallest of the per-label means.
    sounding = kept[kept["voiced_frames"] > 0]
    nearest = sounding[["distance_flute", "distance_organ"]].min(axis=1)
    assert (sounding["distance"] <= nearest + 1e-6).all() and (nearest > 0).all()
    cal = calibrate_file(
        scores, d / "calibration.json", tmp_path / "clips.tsv", holdout=0.999, on_topic_reject=0.25
    )
    assert cal["distance_threshold"] is not None and cal["threshold"] > 0
    clips = pd.read_csv(tmp_path / "clips.tsv", sep="\t")
    synth = clips[clips["set"] == "synthetic"]
    silence = synth["truth"] == "silence"
    assert (synth.loc[silence, "answer"].isin(["silent", "unknown"])).all()
    noise = synth[~silence]
    assert (noise["answer"] == "unknown").all(), noise[["video_id", "answer", "distance"]]
    # The distance test did it: every noise clip lies beyond the threshold ...
    assert (noise["distance"] > cal["distance_threshold"]).all()
    assert cal["synthetic_rejected"] == 1.0
    # ... while the held-out clips of the labels are mostly answered, and right.
    real = clips[clips["set"] != "synthetic"]
    answered = real[~real["answer"].isin(["unknown", "silent"])]
    assert len(answered) >= 0.6 * len(real)
    assert (answered["answer"] == answered["label"]).mean() >= 0.9
    # The predictor that soundharvest predict loads says the same of a noise file.
    noise_wav = tmp_path / "noise.wav"
    rng = np.random.default_rng(5)
    write_wav_file(noise_wav, (0.05 * rng.standard_normal(5 * 16000)).astype(np.float32))
    got = Predictor.load(d).predict_file(noise_wav)
    assert got["answer"] == "unknown" and got["distance"] > cal["distance_threshold"], got
    assert got["unknown_because"] == "atypical"
    assert "unknown (unlike the training audio; best guess" in format_result(got)
    saved = read_json(d / "calibration.json")
    assert saved["distance_share_setting"] == "auto" and saved["distance_share"] in (
        0.0, 0.25, 0.5, 0.75, 1.0)  # fmt: skip
    # soundharvest predict applies the saved temperature, label biases and top-label map to a
    # file's logits.
    from soundharvest.calibrate import calibrated_probabilities, ece_floor

    held = trained["held"]["flute"]
    logits = Predictor.load(d).score_file(held)["logits"]
    p = calibrated_probabilities(
        logits, saved["temperature"], saved["confidence_map"], saved["label_bias"]
    )[0]  # fmt: skip
    assert Predictor.load(d).predict_file(held)["confidence"] == pytest.approx(p.max(), abs=1e-4)
    assert len(saved["label_bias"]) == 2 and abs(sum(saved["label_bias"])) < 1e-4
    # A bias large enough against flute turns the flute clip's answer (as a head that learnt
    # too many flute clips would be mended) ...
    i_flute = Predictor.load(d).labels.index("flute")
    gap = float(logits[i_flute] - logits[1 - i_flute]) / saved["temperature"]
    against = [0.0, 0.0]
    against[i_flute], against[1 - i_flute] = -(gap + 1.0), 0.0
    write_json(d / "calibration.json", saved | {"label_bias": against, "threshold": 0.0,
                                                "distance_threshold": None})  # fmt: skip
    assert Predictor.load(d).predict_file(held)["answer"] == "organ"
    # ... and one bias per label is checked against the labels.
    write_json(d / "calibration.json", saved | {"label_bias": [0.0, 0.0, 0.0]})
    with pytest.raises(SoundharvestError, match="label_bias.*3 values for 2 labels.*calibrate"):
        Predictor.load(d)
    write_json(d / "calibration.json", saved)
    # Cross-fitted: every held-out clip is in one half and measures the calibration fitted on
    # the other; beside the ECE, the noise a perfectly calibrated predictor shows on as many.
    assert set(real["set"]) <= {"a", "b"} and len(set(real["set"])) == 2
    # Each half was answered by the fold fitted on the other half's voiced clips.
    n_voiced = real.groupby("set")["voiced_frames"].apply(lambda v: int((v > 0).sum()))
    assert saved["folds"]["a"]["n_fit"] == n_voiced["b"] and saved["folds"]["b"]["n_fit"] == (
        n_voiced["a"])  # fmt: skip
    a_clips = real[(real["set"] == "a") & (real["voiced_frames"] > 0)]
    fold_a = saved["folds"]["a"]
    too_far = a_clips["distance"] > (fold_a["distance_threshold"] or np.inf)
    unsure = a_clips["confidence"] < fold_a["threshold"]
    assert ((a_clips["answer"] == "unknown") == (too_far | unsure)).all()
    test = real[real["voiced_frames"] > 0]
    assert cal["n_test"] == len(test) and cal["n_test"] > 0
    assert cal["ece_floor"] == pytest.approx(ece_floor(test["confidence"].to_numpy()), abs=1e-4)
    from soundharvest.calibrate import ece_p_value

    right = (test["top_label"] == test["label"]).to_numpy()
    assert cal["ece_p"] == pytest.approx(
        ece_p_value(test["confidence"].to_numpy(), right), abs=0.02
    )  # the table's confidences are rounded to 4 decimals
    # A scores table that is not one: one line naming it and the rule to re-run.
    (tmp_path / "bad.tsv").write_text("video_id\tlabel\nx\tflute\n", encoding="utf-8")
    with pytest.raises(SoundharvestError, match=r"bad.tsv: columns .* re-run score_clips"):
        calibrate_file(tmp_path / "bad.tsv", tmp_path / "bad.json", tmp_path / "bad.clips.tsv")
    assert not (tmp_path / "bad.json").exists()
    # No clip held out (calibration.holdout: 0): a warning, temperature 1 and no 'unknown'
    # threshold from clips, not a crash.
    score_clips_file(d, tmp_path / "catalog.csv", convert, tmp_path / "none.scores.tsv",
                     holdout=0.0, n_synthetic=1)  # fmt: skip
    none = calibrate_file(
        tmp_path / "none.scores.tsv", tmp_path / "none.json", tmp_path / "none.tsv", holdout=0.0
    )
    assert none["temperature"] == 1.0 and none["n_fit"] == 0
    # Clips too few for the budget (16 at 5 %: floor(0.8) = 0 rejected): thresholds are still
    # written, and the log says why no confidence threshold came from them.
    with caplog.at_level("WARNING", logger="soundharvest.calibrate"):
        few = calibrate_file(
            scores, tmp_path / "few.json", tmp_path / "few.tsv", holdout=0.999,
            on_topic_reject=0.05,
        )  # fmt: skip
    assert few["threshold"] == 0.0 and few["n_fit"] == len(rows)
    assert f"only {len(rows)} fitting clips" in caplog.text and "at least 20" in caplog.text
    # ... and soundharvest predict repeats it to whoever uses the predictor.
    assert cal["warning"] is None and f"only {len(rows)} fitting clips" in few["warning"]
    shutil.copy(tmp_path / "few.json", d / "calibration.json")
    proc = run_cli(d, held, "--json")
    assert proc.returncode == 0 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"soundharvest predict: warning: {d}: only {len(rows)} fitting")
    assert json.loads(proc.stdout)["calibration_warning"] in proc.stderr
    biases = dict(zip(["flute", "organ"], few["label_bias"], strict=True))
    assert json.loads(proc.stdout)["label_bias"] == biases
    # So does a floor above 0.1 (these toy clips are all surely right: floor 0): held-out clips
    # too few to tell its probabilities from ones off by that much.
    assert few["ece_floor"] < 0.1
    write_json(d / "calibration.json", few | {"warning": None, "ece_floor": 0.18})
    rough = Predictor.load(d).calibration_warning
    assert rough.startswith(f"calibrated on {few['n_test']} held-out clips") and "0.18" in rough
    write_json(d / "calibration.json", few | {"warning": None})
    assert Predictor.load(d).calibration_warning is None
