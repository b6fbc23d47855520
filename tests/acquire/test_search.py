"""run_search, query ids, merging and the cross-label rule."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf

from soundharvest.acquire.base import Candidate
from soundharvest.acquire.search import (
    MERGED_COLUMNS,
    SEARCH_COLUMNS,
    SearchOutcome,
    SkippedCandidate,
    cross_label_status,
    label_video_ids,
    merge_candidates,
    outcome_frame,
    query_id,
    read_search_table,
    run_search,
)
from soundharvest.io import SoundharvestError, write_tsv

NASTY = ["violin'; rm -rf ~ #", "flûte à bec", 'say "hi"\tthen\nbye', "$(touch pwned) `id`"]


def test_query_id_is_safe_stable_and_distinct():
    ids = [query_id(q) for q in NASTY]
    assert all(re.fullmatch(r"q-[0-9a-f]{10}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert query_id("flûte à bec") == query_id("flûte à bec")
    assert query_id("flute") != query_id("flute ")


@pytest.fixture
def folders(tmp_path):
    """A local library whose folder names are the nasty queries, each with clips of 1..4 s."""
    root = tmp_path / "root"
    sr = 8000
    for q in NASTY:
        folder = root / q
        folder.mkdir(parents=True)
        for seconds in (1, 2, 3, 4):
            sf.write(folder / f"clip{seconds}.wav", np.zeros(seconds * sr, np.float32) + 0.1, sr)
    return root


def test_run_search_writes_table_with_duration_filter(folders, tmp_path):
    opts = {"root": str(folders)}
    for q in NASTY:
        out = tmp_path / "search" / "violin" / f"{query_id(q)}.tsv"
        frame = run_search("local", opts, "violin", q, 10, out, min_duration=1.5, max_duration=3.5)
        assert list(frame.columns) == SEARCH_COLUMNS
        table = read_search_table(out)
        assert list(table.columns) == SEARCH_COLUMNS
        assert set(table["query"]) == {q}  # the query survives the TSV byte for byte
        assert set(table["query_id"]) == {query_id(q)}
        assert list(table["status"]) == ["skipped", "ok", "ok", "skipped"]
        assert table["reason"][0] == "too short (1 s < 1.5 s)"
        assert table["reason"][3] == "too long (4 s > 3.5 s)"
        assert list(table["rank"]) == ["1", "2", "3", "4"]
    assert sorted(p.name for p in (tmp_path / "search" / "violin").iterdir()) == sorted(
        f"{query_id(q)}.tsv" for q in NASTY
    )


def test_run_search_rejects_zero_results(folders, tmp_path):
    with pytest.raises(SoundharvestError, match="n_results"):
        run_search("local", {"root": str(folders)}, "violin", NASTY[0], 0, tmp_path / "x.tsv")


def test_unknown_source_is_a_config_error(tmp_path):
    with pytest.raises(SoundharvestError, match="unknown"):
        run_search("vimeo", {}, "violin", "violin", 5, tmp_path / "x.tsv")


def cand(vid, rank, label="violin", query="q", duration=60.0):
    return Candidate(
        vid, f"https://example.org/{vid}", f"title {vid}", "ch", duration, query, rank, label
    )


def write_query(path, label, query, ids, skipped=()):
    outcome = SearchOutcome(
        candidates=[cand(v, r, label, query) for r, v in ids],
        skipped=[SkippedCandidate(cand(v, r, label, query), "live broadcast") for r, v in skipped],
    )
    write_tsv(path, outcome_frame(outcome, query))
    return path


def test_outcome_frame_keeps_first_rank_of_a_repeated_id():
    outcome = SearchOutcome(candidates=[cand("a", 1), cand("b", 2), cand("a", 3)])
    frame = outcome_frame(outcome, "q")
    assert list(frame["video_id"]) == ["a", "b"]


@pytest.fixture
def tables(tmp_path):
    v1 = write_query(tmp_path / "v1.tsv", "violin", "violin", [(1, "A"), (2, "B"), (3, "0123")])
    v2 = write_query(tmp_path / "v2.tsv", "violin", "violin solo", [(1, "B"), (2, "C"), (3, "D")])
    c1 = write_query(
        tmp_path / "c1.tsv", "cello", "cello", [(1, "D"), (2, "E")], skipped=[(3, "A")]
    )
    return {"violin": [v1, v2], "cello": [c1]}


def test_merge_dedups_within_label_and_records_cross_label(tables):
    merged = merge_candidates(tables, cross_label="keep")
    assert list(merged.columns) == MERGED_COLUMNS
    violin = merged[merged["label"] == "violin"].set_index("video_id")
    assert list(violin.index) == ["A", "B", "C", "0123", "D"]  # best rank, then query order
    assert violin.loc["B", "rank"] == "1" and violin.loc["B", "query"] == "violin solo"
    assert violin.loc["B", "query_ids"].split(",") == [query_id("violin"), query_id("violin solo")]
    assert violin.loc["D", "labels"] == "cello,violin"
    # A was only a skipped (live) result for cello: not a cross-label conflict
    assert violin.loc["A", "labels"] == "violin"
    assert (merged["status"] == "ok").sum() == 7


def test_cross_label_exclude_and_keep_agree_with_label_video_ids(tables):
    excl = merge_candidates(tables, cross_label="exclude")
    d_rows = excl[excl["video_id"] == "D"]
    assert set(d_rows["status"]) == {"skipped"}
    assert set(d_rows["reason"]) == {"found by labels cello, violin"}
    assert label_video_ids("violin", tables, "exclude") == ["A", "B", "C", "0123"]
    assert label_video_ids("cello", tables, "exclude") == ["E"]
    assert label_video_ids("violin", tables, "keep") == ["A", "B", "C", "0123", "D"]
    assert label_video_ids("cello", tables, "keep") == ["D", "E"]
    for policy in ("exclude", "keep"):
        merged = merge_candidates(tables, cross_label=policy)
        for label in tables:
            ok = merged[(merged["label"] == label) & (merged["status"] == "ok")]
            assert list(ok["video_id"]) == label_video_ids(label, tables, policy)


def test_cross_label_status_rejects_unknown_policy():
    assert cross_label_status(["a"], "exclude") == (True, "")
    assert cross_label_status(["a", "b", "a"], "exclude") == (False, "found by labels a, b")
    assert cross_label_status(["a", "b"], "keep") == (True, "")
    with pytest.raises(SoundharvestError, match="cross_label"):
        cross_label_status(["a"], "first")


def test_label_video_ids_errors(tables, tmp_path):
    with pytest.raises(SoundharvestError, match="no search tables"):
        label_video_ids("flute", tables)
    bad = dict(tables, flute=[tmp_path / "missing.tsv"])
    with pytest.raises(SoundharvestError, match="run the search first"):
        label_video_ids("flute", bad)
    junk = tmp_path / "junk.tsv"
    junk.write_text("a\tb\n1\t2\n")
    with pytest.raises(SoundharvestError, match="not a search table"):
        label_video_ids("flute", dict(tables, flute=[junk]))


def test_tables_by_label_groups_by_folder_in_order(tmp_path):
    from soundharvest.acquire.search import tables_by_label

    paths = [tmp_path / "organ" / "q-2.tsv", tmp_path / "flute" / "q-1.tsv"]
    paths.append(tmp_path / "organ" / "q-1.tsv")
    assert tables_by_label(paths) == {"organ": [paths[0], paths[2]], "flute": [paths[1]]}
