"""The catalog: every candidate with what became of it, consistent with label_video_ids."""

from __future__ import annotations

import json

import pytest

from soundharvest.acquire.base import Candidate
from soundharvest.acquire.catalog import (
    CATALOG_COLUMNS,
    build_catalog,
    read_catalog,
    summarize,
    write_catalog,
)
from soundharvest.acquire.search import (
    SearchOutcome,
    label_video_ids,
    merge_candidates,
    outcome_frame,
    query_id,
)
from soundharvest.io import SoundharvestError, write_tsv

VIOLIN_Q = "violin'; rm -rf ~ #"
FLUTE_Q = "flûte à bec"


def table(path, label, query, rows, max_duration=None):
    outcome = SearchOutcome(
        candidates=[
            Candidate(
                v,
                f"https://www.youtube.com/watch?v={v}",
                f"«{v}», live",
                "chan",
                d,
                query,
                r,
                label,
            )
            for r, (v, d) in enumerate(rows, start=1)
        ]
    )
    write_tsv(path, outcome_frame(outcome, query, max_duration=max_duration))
    return path


@pytest.fixture
def setup(tmp_path):
    tsvs = {
        "violin": [
            table(tmp_path / "v.tsv", "violin", VIOLIN_Q,
                  [("ok_1", 60.0), ("dl_fail", 60.0), ("silent", 60.0), ("both", 60.0), ("long", 9000.0)],
                  max_duration=3600),
        ],
        "flute": [table(tmp_path / "f.tsv", "flute", FLUTE_Q, [("both", 60.0), ("0042", 30.0), ("todo", 5.0)])],
    }  # fmt: skip
    conv = {}
    records = {
        "ok_1": {"status": "ok", "reason": "", "seconds": 59.5},
        "dl_fail": {
            "status": "failed",
            "reason": "download: private: Private video",
            "seconds": 0.0,
        },
        "silent": {
            "status": "skipped",
            "reason": "silent (RMS -inf dBFS < -60 dBFS)",
            "seconds": 0.0,
        },
        "both": {"status": "ok", "reason": "", "seconds": 60.0},
        "0042": {"status": "ok", "reason": "", "seconds": 30.0},
    }
    for vid, rec in records.items():
        path = tmp_path / "convert" / f"{vid}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(dict(rec, video_id=vid)))
        conv[vid] = path
    return tsvs, conv


def test_catalog_statuses_and_reasons(setup, tmp_path):
    tsvs, conv = setup
    cat = build_catalog(tsvs, conv, cross_label="exclude")
    assert list(cat.columns) == CATALOG_COLUMNS
    by = {(r.label, r.video_id): r for r in cat.itertuples()}
    assert len(by) == 8
    assert (by["violin", "ok_1"].status, by["violin", "ok_1"].seconds) == ("ok", 59.5)
    assert by["violin", "dl_fail"].status == "failed"
    assert by["violin", "dl_fail"].reason == "download: private: Private video"
    assert by["violin", "silent"].status == "skipped" and by["violin", "silent"].reason.startswith(
        "silent"
    )
    assert by["violin", "long"].reason == "too long (9000 s > 3600 s)"
    for label in ("violin", "flute"):
        row = by[label, "both"]
        assert (row.status, row.reason, row.labels) == (
            "skipped",
            "found by labels flute, violin",
            "flute,violin",
        )
        assert row.seconds == 0.0
    assert by["flute", "todo"].status == "skipped" and by["flute", "todo"].reason == "not processed"
    assert by["flute", "0042"].query == FLUTE_Q and by["violin", "ok_1"].query == VIOLIN_Q
    assert by["violin", "ok_1"].query_ids == query_id(VIOLIN_Q)
    counts = summarize(cat)
    assert counts.loc["violin"].to_dict() == {"ok": 1, "failed": 1, "skipped": 3, "total": 5}


def test_catalog_agrees_with_label_video_ids(setup):
    tsvs, conv = setup
    for policy in ("exclude", "keep"):
        cat = build_catalog(merge_candidates(tsvs, policy), conv)
        for label in tsvs:
            usable = label_video_ids(label, tsvs, policy)
            rows = cat[cat["label"] == label]
            # every video the catalog calls ok was used; every used one was either ok or recorded
            assert set(rows[rows["status"] == "ok"]["video_id"]) <= set(usable)
            not_usable = rows[~rows["video_id"].isin(usable)]
            assert (not_usable["status"] != "ok").all()
    keep = build_catalog(tsvs, conv, cross_label="keep")
    assert set(keep[keep["video_id"] == "both"]["status"]) == {"ok"}


def test_catalog_csv_round_trip(setup, tmp_path):
    tsvs, conv = setup
    cat = build_catalog(tsvs, conv)
    out = tmp_path / "catalog.csv"
    write_catalog(cat, out)
    back = read_catalog(out)
    assert list(back.columns) == CATALOG_COLUMNS
    assert len(back) == len(cat)
    assert "0042" in set(back["video_id"])  # ids stay text
    assert set(back["query"]) == {VIOLIN_Q, FLUTE_Q}
    assert "«ok_1», live" in set(back["title"])
    assert back["seconds"].sum() == pytest.approx(59.5 + 30.0)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_bad_convert_status_is_a_clear_error(setup, tmp_path):
    tsvs, conv = setup
    conv["ok_1"].write_text(json.dumps({"status": "maybe"}))
    with pytest.raises(SoundharvestError, match="status"):
        build_catalog(tsvs, conv)
