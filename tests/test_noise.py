"""Tests of soundharvest.noise: per-clip disagreement, per-query shares, scoring against truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from soundharvest.acquire.catalog import CATALOG_COLUMNS
from soundharvest.acquire.demo import DemoSource
from soundharvest.acquire.search import query_id
from soundharvest.audio import decode
from soundharvest.features import compute_features
from soundharvest.io import SoundharvestError, write_json
from soundharvest.noise import clip_disagreement, label_noise_file, score_noise_against_truth
from soundharvest.predict import label_clusters_file

#: A feature spec with 16 bins (n_fft 30): the identity predictor clusters 16-d frames.
SMALL_SPEC = {"kind": "stft", "params": {"n_fft": 30}, "sample_rate": 16000}


def write_label_data(root: Path, clips: dict[str, list[tuple[str, np.ndarray]]]) -> list[Path]:
    """Per label: ``<label>.npy`` (clips' frames in order) and ``<label>.index.tsv``."""
    paths = []
    for label, items in clips.items():
        lines, row = ["video_id\tfirst_row\tn_rows"], 0
        for vid, frames in items:
            lines.append(f"{vid}\t{row}\t{len(frames)}")
            row += len(frames)
        np.save(root / f"{label}.npy", np.concatenate([f for _, f in items]).astype(np.float16))
        (root / f"{label}.index.tsv").write_text("\n".join(lines) + "\n")
        paths.append(root / f"{label}.npy")
    return paths


def write_shard(root: Path, clips: dict[str, list[tuple[str, np.ndarray]]]) -> list[Path]:
    labels = sorted(clips)
    x = np.concatenate([f for lab in labels for _, f in clips[lab]])
    y = np.concatenate(
        [np.full(len(f), i, np.int16) for i, lab in enumerate(labels) for _, f in clips[lab]]
    )
    perm = np.random.default_rng(0).permutation(len(x))
    (root / "shuffle").mkdir()
    np.save(root / "shuffle" / "shard-00.npy", x[perm].astype(np.float16))
    np.save(root / "shuffle" / "shard-00.labels.npy", y[perm])
    np.save(root / "shuffle" / "shard-00.rows.npy", perm.astype(np.int64))  # global rows
    write_json(root / "shuffle" / "labels.json", labels)
    return [root / "shuffle" / "shard-00.npy"]


def write_catalog(path: Path, rows: list[dict]) -> None:
    pd.DataFrame([{c: r.get(c, "") for c in CATALOG_COLUMNS} for r in rows]).to_csv(
        path, index=False
    )


def test_clip_disagreement_counts_other_labels() -> None:
    assert clip_disagreement(np.array([0, 1, 1, 2, 1]), 0, 3) == (0.2, 0.8, 1, 0.6)
    own, dis, top, share = clip_disagreement(np.array([2, 2]), 2, 3)
    assert (own, dis, top, share) == (1.0, 0.0, -1, 0.0)
    assert np.isnan(clip_disagreement(np.array([], dtype=int), 0, 3)[1])


def test_separable_off_topic_clips_are_found(tmp_path) -> None:
    """Three labels with distinct spectra; a poor query of label a returns mostly b/c clips."""
    rng = np.random.default_rng(1)
    templates = {lab: rng.uniform(0.1, 0.9, 16) for lab in "abc"}

    def frames(lab: str, n: int = 40) -> np.ndarray:
        return np.clip(templates[lab] + rng.normal(0, 0.03, (n, 16)), 0, 1)

    clips: dict[str, list] = {lab: [] for lab in "abc"}
    truth, catalog = {}, []
    good_q, poor_q = "a solo", "a"
    for lab in "abc":
        for i in range(12):
            vid = f"{lab}{i:02d}"
            q = (poor_q if i >= 6 else good_q) if lab == "a" else f"{lab} solo"
            # Label a's poor query: 5 of its 6 clips are another label; other queries 1 in 6.
            off = (i >= 7) if q == poor_q else (i % 6 == 5)
            other = "b" if lab != "b" else "c"
            # An off-topic clip is mostly the other instrument, with some of its own label.
            f = np.concatenate([frames(other, 30), frames(lab, 10)]) if off else frames(lab)
            clips[lab].append((vid, f))
            truth[vid] = off
            catalog.append({"label": lab, "video_id": vid, "rank": i + 1, "title": f"t {vid}",
                            "query": q, "query_ids": query_id(q), "status": "ok"})  # fmt: skip
    concat = write_label_data(tmp_path, clips)
    shards = write_shard(tmp_path, clips)
    write_catalog(tmp_path / "catalog.csv", catalog)
    label_clusters_file(
        shards, shards[0].parent / "labels.json", None, tmp_path / "pred", k=6,
        features=SMALL_SPEC, sources=concat, votes_tsv=tmp_path / "votes.tsv",
    )  # fmt: skip
    report = label_noise_file(
        tmp_path / "votes.tsv",
        tmp_path / "pred",
        tmp_path / "catalog.csv",
        tmp_path / "noise.tsv",
        tmp_path / "queries.tsv",
        queries={"a": [good_q, poor_q]},
    )
    # Ranked by disagreement within each label, with the catalog's titles.
    for _, g in report.groupby("label"):
        assert list(g["disagreement"]) == sorted(g["disagreement"], reverse=True)
    assert set(report["title"]) == {f"t {v}" for v in truth}
    downloads = tmp_path / "downloads"
    for vid, off in truth.items():
        write_json(downloads / vid / "truth.json", {"off_topic": off, "off_topic_kind":
                   "other_label" if off else None})  # fmt: skip
    scored = score_noise_against_truth(tmp_path / "noise.tsv", downloads, tmp_path / "pr.tsv")
    overall = scored.iloc[0]
    assert overall["group"] == "all" and overall["n_off_topic"] == sum(truth.values())
    assert overall["recall"] > 0.5 and overall["precision"] > 0.5
    queries = pd.read_csv(tmp_path / "queries.tsv", sep="\t").set_index(["label", "query"])
    assert queries.loc[("a", poor_q), "flagged_share"] > queries.loc[("a", good_q), "flagged_share"]
    assert queries.loc[("a", "(all)"), "n_clips"] == 12
    assert queries.groupby("label")["clusters_named"].first().sum() == 6  # k = 6, all named


def test_demo_with_many_off_topic_clips(tmp_path) -> None:
    """Real demo clips (off_topic_share 0.7) through decode, features, the raw predictor and
    the truth side files: the counts agree with truth.json."""
    src = DemoSource({"seed": 5, "min_duration": 3, "max_duration": 4, "off_topic_share": 0.7,
                      "unavailable_share": 0.0, "programs_per_label": 1})  # fmt: skip
    downloads = tmp_path / "downloads" / "demo"
    clips: dict[str, list] = {}
    catalog, n_off = [], 0
    for label in ("flute", "organ", "trumpet"):
        q = f"{label} solo"
        for cand in src.search(label, q, 4):
            res = src.download(cand.__dict__, downloads / cand.video_id)
            audio = decode(res.audio)
            f, _ = compute_features(audio, 16000, "stft", SMALL_SPEC["params"])
            clips.setdefault(label, []).append((cand.video_id, f))
            catalog.append({"label": label, "video_id": cand.video_id, "rank": cand.rank,
                            "title": cand.title, "query": q, "query_ids": query_id(q)})  # fmt: skip
            n_off += src.recipe(label, cand.video_id)["off_topic"]
    concat = write_label_data(tmp_path, clips)
    shards = write_shard(tmp_path, clips)
    write_catalog(tmp_path / "catalog.csv", catalog)
    label_clusters_file(
        shards, shards[0].parent / "labels.json", None, tmp_path / "pred", k="elbow", max_k=10,
        features=SMALL_SPEC, sources=concat, votes_tsv=tmp_path / "votes.tsv",
    )  # fmt: skip
    report = label_noise_file(
        tmp_path / "votes.tsv", tmp_path / "pred", tmp_path / "catalog.csv",
        tmp_path / "noise.tsv", tmp_path / "queries.tsv", threshold=0.5,
    )  # fmt: skip
    # A threshold is a re-read of the votes: nothing is encoded again, the flags follow it.
    strict = label_noise_file(
        tmp_path / "votes.tsv", tmp_path / "pred", tmp_path / "catalog.csv",
        tmp_path / "n2.tsv", tmp_path / "q2.tsv", threshold=0.9,
    )  # fmt: skip
    assert strict["flagged"].sum() == (strict["disagreement"] > 0.9).sum()
    assert strict["flagged"].sum() <= report["flagged"].sum()
    with pytest.raises(SoundharvestError, match="votes.tsv: file not found"):
        label_noise_file(tmp_path / "no" / "votes.tsv", tmp_path / "pred",
                         tmp_path / "catalog.csv", tmp_path / "x.tsv", tmp_path / "y.tsv")  # fmt: skip
    with pytest.raises(SoundharvestError, match="sources"):
        label_clusters_file(shards, shards[0].parent / "labels.json", None, tmp_path / "p2",
                            k=2, features=SMALL_SPEC, votes_tsv=tmp_path / "v2.tsv")  # fmt: skip
    assert len(report) == 12 and report["flagged"].sum() == (report["disagreement"] > 0.5).sum()
    scored = score_noise_against_truth(tmp_path / "noise.tsv", downloads, tmp_path / "pr.tsv")
    overall = scored.iloc[0]
    assert overall["n_clips"] == 12 and overall["n_off_topic"] == n_off >= 6
    assert overall["n_flagged"] == report["flagged"].sum()
    kinds = scored[scored["group"].str.startswith("kind:")]
    assert kinds["n_off_topic"].sum() == n_off
    with pytest.raises(SoundharvestError, match="truth.json"):
        score_noise_against_truth(tmp_path / "noise.tsv", tmp_path, tmp_path / "x.tsv")


def test_a_clip_without_frames_keeps_its_own_label(tmp_path) -> None:
    """A clip of no frames at the end of one label's file starts where the next label's file
    does: its vote row (NaN shares, never flagged) still belongs to its own label. One at the
    end of the last file starts past every row: it is encoded as nothing, not an IndexError
    (what the recogniser config's run met)."""
    from soundharvest.loader import ClipPositives
    from soundharvest.noise import clip_votes

    rng = np.random.default_rng(0)
    clips = {
        "a": [("a0", rng.uniform(0, 0.3, (20, 16))), ("a-empty", np.zeros((0, 16)))],
        "b": [("b0", rng.uniform(0.7, 1, (20, 16))), ("b-empty", np.zeros((0, 16)))],
    }
    concat = write_label_data(tmp_path, clips)
    shards = write_shard(tmp_path, clips)
    from soundharvest.train import train

    weights = tmp_path / "w.safetensors"
    train(shards, weights, tmp_path / "c.tsv", tmp_path / "c.png", model_type="random",
          arch={"hidden": [8], "latent": 3}, threads=1)  # fmt: skip
    for w, out in ((None, "pred"), (weights, "pred-w")):  # raw frames, and codes of a model
        label_clusters_file(shards, shards[0].parent / "labels.json", w, tmp_path / out, k=2,
                            features=SMALL_SPEC, sources=concat, votes_tsv=tmp_path / "v.tsv")  # fmt: skip
        votes = pd.read_csv(tmp_path / "v.tsv", sep="\t", dtype={"label": str, "video_id": str})
        row = votes.set_index("video_id").loc["a-empty"]
        assert row["label"] == "a" and row["n_frames"] == 0 and np.isnan(row["own_share"])
    from soundharvest.predict import Predictor

    direct = clip_votes(Predictor.load(tmp_path / "pred").clusters, concat, ClipPositives(concat))
    assert list(direct["label"]) == ["a", "a", "b", "b"]
    assert votes.set_index("video_id").loc["b-empty", "n_frames"] == 0
