"""The ytsearch source: parsing yt-dlp's flat search result (real format), offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yt_dlp

from soundharvest.acquire import ytsearch
from soundharvest.acquire.base import get_source
from soundharvest.acquire.search import read_search_table, run_search
from soundharvest.io import SoundharvestError

DATA = Path(__file__).parent / "data"


def flat_result() -> dict:
    return json.loads((DATA / "ytsearch_flat.json").read_text(encoding="utf-8"))


def test_entries_to_outcome_parses_real_format():
    outcome = ytsearch.entries_to_outcome(flat_result(), "flute", "flûte à bec")
    ids = [c.video_id for c in outcome.candidates]
    assert ids == ["aB3dE5gH7jK", "Sh0rtS-1234", "nO-DuRaTiOn"]
    assert [c.rank for c in outcome.candidates] == [1, 2, 4]
    first = outcome.candidates[0]
    assert first.title == "Flûte à bec — Telemann Fantasia No. 1"
    assert first.channel == "Blockflöte & Co"
    assert first.duration == 183.0
    assert first.query == "flûte à bec" and first.label == "flute"
    # shorts get the watch URL: one URL form for the downloader and the archive
    assert outcome.candidates[1].url == "https://www.youtube.com/watch?v=Sh0rtS-1234"
    assert outcome.candidates[2].duration is None
    assert [(s.candidate.video_id, s.reason) for s in outcome.skipped] == [
        ("L1veNow_xyz", "live broadcast")
    ]


def test_entries_without_safe_id_are_left_out():
    info = flat_result()
    info["entries"][0]["id"] = "../../etc/passwd"
    info["entries"][1] = {"_type": "url", "ie_key": "YoutubeTab", "id": "UCabc", "url": "x"}
    outcome = ytsearch.entries_to_outcome(info, "flute", "q")
    assert [c.video_id for c in outcome.candidates] == ["nO-DuRaTiOn"]
    assert ytsearch.entries_to_outcome(None, "flute", "q").candidates == []


class _FakeYDL:
    """Stands in for the remote service: records what yt-dlp would have been asked."""

    calls: list = []
    error: str | None = None

    def __init__(self, params):
        self.params = params

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def extract_info(self, url, download=True):
        _FakeYDL.calls.append((url, download, self.params))
        if _FakeYDL.error:
            raise yt_dlp.utils.DownloadError(_FakeYDL.error)
        return flat_result()


@pytest.fixture
def fake_ydl(monkeypatch):
    _FakeYDL.calls = []
    _FakeYDL.error = None
    monkeypatch.setattr(yt_dlp, "YoutubeDL", _FakeYDL)
    return _FakeYDL


def test_search_passes_query_as_data(fake_ydl, tmp_path):
    query = "violin'; rm -rf ~ #"
    out = tmp_path / "q.tsv"
    run_search(
        "ytsearch", {"sleep_interval_requests": 1.5}, "violin", query, 4, out, max_duration=60
    )
    url, download, params = fake_ydl.calls[0]
    assert url == f"ytsearch4:{query}"
    assert download is False
    assert params["extract_flat"] == "in_playlist"
    assert params["sleep_interval_requests"] == 1.5
    table = read_search_table(out)
    assert set(table["query"]) == {query}
    reasons = dict(zip(table["video_id"], table["reason"], strict=True))
    assert reasons["aB3dE5gH7jK"].startswith("too long")
    assert reasons["L1veNow_xyz"] == "live broadcast"
    assert reasons["Sh0rtS-1234"] == ""


def test_search_failure_is_one_clear_line(fake_ydl, tmp_path):
    fake_ydl.error = (
        "ERROR: [youtube:search] violin: Unable to download API page: "
        "<urlopen error [Errno -3] Temporary failure in name resolution> "
        "(caused by TransportError('<urlopen error [Errno -3]>'))"
    )
    with pytest.raises(SoundharvestError) as info:
        run_search("ytsearch", {}, "violin", "violin", 4, tmp_path / "q.tsv")
    assert "network" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "q.tsv").exists()


def test_source_is_registered():
    assert get_source("ytsearch").name == "ytsearch"
