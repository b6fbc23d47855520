"""The youtube source against replayed API responses (HttpMockSequence): paging, durations,
quota exhausted mid-way, a bad key, server errors, and the key never leaking anywhere."""

from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from googleapiclient.http import HttpMockSequence

from soundharvest.acquire import youtube
from soundharvest.acquire.base import get_source
from soundharvest.acquire.search import SearchInterrupted, read_search_table, run_search
from soundharvest.io import SoundharvestError

DATA = Path(__file__).parent / "data"
KEY = "AIzaSyD-SENTINEL-KEY-0123456789abcdefXYZ"


def body(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


OK = {"status": "200", "content-type": "application/json; charset=UTF-8"}
QUOTA = ({"status": "403", "content-type": "application/json"}, body("youtube_error_quota.json"))
BADKEY = (
    {"status": "400", "content-type": "application/json"},
    body("youtube_error_key_invalid.json"),
)
BACKEND = (
    {"status": "503", "content-type": "application/json"},
    body("youtube_error_backend.json"),
)
PAGE1 = (OK, body("youtube_search_page1.json"))
PAGE2 = (OK, body("youtube_search_page2.json"))
VIDEOS = (OK, body("youtube_videos.json"))


@pytest.fixture
def api(monkeypatch):
    """Install a replay of ``responses`` as the source's HTTP; returns the mock for inspection."""
    monkeypatch.setenv("YOUTUBE_API_KEY", KEY)
    # Start without the redaction filter: each test must see the source install it.
    for name in youtube._CLIENT_LOGGERS:
        logging.getLogger(name).removeFilter(youtube._REDACTOR)
    youtube._REDACTOR.keys.clear()
    holder = {}

    def install(responses):
        mock = HttpMockSequence(list(responses))
        holder["mock"] = mock
        monkeypatch.setattr(youtube.YouTubeSource, "http_factory", staticmethod(lambda: mock))
        return mock

    return install


def requests_of(mock):
    """(path, query params) of every request the client sent."""
    out = []
    for uri, _method, _body, _headers in mock.request_sequence:
        parsed = urlparse(uri)
        out.append((parsed.path, {k: v[0] for k, v in parse_qs(parsed.query).items()}))
    return out


def assert_no_key(*texts):
    for text in texts:
        assert KEY not in text


def test_parse_iso_duration():
    assert youtube.parse_iso_duration("PT4M13S") == 253
    assert youtube.parse_iso_duration("PT1H2M3S") == 3723
    assert youtube.parse_iso_duration("P1DT1S") == 86401
    assert youtube.parse_iso_duration("P0D") == 0
    assert youtube.parse_iso_duration("PT0.5S") == 0.5
    assert youtube.parse_iso_duration("") is None
    assert youtube.parse_iso_duration("4:13") is None
    assert youtube.parse_iso_duration("PT") is None


def test_two_pages_and_durations(api, caplog):
    mock = api([PAGE1, PAGE2, VIDEOS])
    caplog.set_level(logging.DEBUG)
    source = get_source("youtube", {"language": "en", "safe_search": "none"})
    outcome = source.search("cello", "cello solo", 5)

    # Five candidates: the upcoming broadcast does not count toward the five asked for.
    ids = [c.video_id for c in outcome.candidates]
    assert ids == ["dQ3x9Kc1aB0", "Zx-8_PqLm2w", "0123456789a", "Lng-Vid_001", "Extra-Never"]
    assert [c.rank for c in outcome.candidates] == [1, 2, 4, 5, 6]
    first = outcome.candidates[0]
    assert first.title == "Bach & Brahms: Cello Suite No. 1 'Prelude'"
    assert first.channel == "Cello & Co"
    assert first.url == "https://www.youtube.com/watch?v=dQ3x9Kc1aB0"
    assert [c.duration for c in outcome.candidates] == [253, 178, 3723, 36001, None]
    assert [s.candidate.video_id for s in outcome.skipped] == ["Up1c0m1ng__"]
    assert "upcoming" in outcome.skipped[0].reason

    reqs = requests_of(mock)
    assert [p for p, _ in reqs] == [
        "/youtube/v3/search",
        "/youtube/v3/search",
        "/youtube/v3/videos",
    ]
    s1, s2, v = (q for _, q in reqs)
    assert s1["type"] == "video" and s1["q"] == "cello solo" and s1["maxResults"] == "5"
    assert s1["relevanceLanguage"] == "en" and s1["safeSearch"] == "none"
    assert "pageToken" not in s1
    assert s2["pageToken"] == "CAMQAA" and s2["maxResults"] == "3"
    assert v["id"].split(",") == [
        "dQ3x9Kc1aB0",
        "Zx-8_PqLm2w",
        "Up1c0m1ng__",
        "0123456789a",
        "Lng-Vid_001",
        "Extra-Never",
    ]
    # The key really was sent (so the redaction checks below test something)...
    assert s1["key"] == KEY
    # ...and was logged by the client only in redacted form.
    assert "key=REDACTED" in caplog.text
    assert_no_key(caplog.text)
    assert source.quota_units == 2 * 100 + 1
    assert "201 units" in caplog.text


def test_videos_batches_of_50(api):
    page = json.loads(body("youtube_search_page1.json"))
    template = page["items"][0]
    page["items"] = []
    for i in range(60):
        it = json.loads(json.dumps(template))
        it["id"]["videoId"] = f"vid{i:08d}"
        page["items"].append(it)
    del page["nextPageToken"]
    empty_videos = json.dumps({"kind": "youtube#videoListResponse", "items": []})
    mock = api([(OK, json.dumps(page)), (OK, empty_videos), (OK, empty_videos)])
    outcome = get_source("youtube", {}).search("cello", "cello", 60)
    assert len(outcome.candidates) == 60
    assert all(c.duration is None for c in outcome.candidates)
    reqs = requests_of(mock)
    batches = [q["id"].split(",") for p, q in reqs if p.endswith("/videos")]
    assert [len(b) for b in batches] == [50, 10]
    assert requests_of(mock)[0][1]["maxResults"] == "50"


def test_quota_exhausted_midway_keeps_results(api, tmp_path, caplog, capsys):
    api([PAGE1, QUOTA, VIDEOS])
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "search" / "cello" / "q.tsv"
    frame = run_search("youtube", {}, "cello", "cello solo", 5, out, max_duration=600)
    assert out.is_file()
    table = read_search_table(out)
    assert list(table["video_id"]) == ["dQ3x9Kc1aB0", "Zx-8_PqLm2w", "Up1c0m1ng__"]
    assert list(table["status"]) == ["ok", "ok", "skipped"]
    assert len(frame) == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("quota exhausted" in w and "keeping the 3 results" in w for w in warnings)
    captured = capsys.readouterr()
    assert_no_key(caplog.text, out.read_text(encoding="utf-8"), captured.out, captured.err)


def test_quota_exhausted_before_any_result_fails_the_job(api, tmp_path):
    api([QUOTA])
    out = tmp_path / "q.tsv"
    with pytest.raises(SoundharvestError, match="quota exhausted") as info:
        run_search("youtube", {}, "cello", "cello", 5, out)
    assert not out.exists()
    assert_no_key(str(info.value), "".join(traceback.format_exception(info.value)))


def test_bad_key_fails_with_clear_message_and_no_key(api, tmp_path, caplog, capsys):
    mock = api([BADKEY])
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "q.tsv"
    with pytest.raises(SoundharvestError) as info:
        run_search("youtube", {}, "cello", "cello", 5, out)
    message = str(info.value)
    assert "API key not valid" in message and "YOUTUBE_API_KEY" in message
    assert "\n" not in message
    assert not out.exists()
    # The request did carry the key: its absence from what follows is the redaction's doing.
    assert requests_of(mock)[0][1]["key"] == KEY
    tb = "".join(traceback.format_exception(info.value))
    captured = capsys.readouterr()
    assert_no_key(message, repr(info.value), tb, caplog.text, captured.out, captured.err)


def test_bad_key_on_second_page_is_fatal_too(api):
    api([PAGE1, BADKEY])
    with pytest.raises(SearchInterrupted) as info:
        get_source("youtube", {}).search("cello", "cello", 5)
    assert info.value.fatal and info.value.code == "bad_key"


def test_server_error_is_retried(api):
    mock = api([BACKEND, PAGE1, VIDEOS])
    source = get_source("youtube", {"api_retries": 2, "api_backoff": 0.0})
    outcome = source.search("cello", "cello", 2)
    assert len(outcome.candidates) == 2
    assert len(mock.request_sequence) == 3


class _Unreachable:
    """An ``httplib2.Http`` stand-in whose network is down after ``ok`` replies."""

    def __init__(self, ok):
        self.inner = HttpMockSequence(list(ok))
        self.calls = 0

    def request(self, uri, method="GET", body=None, headers=None, **kw):
        self.calls += 1
        if self.inner._iterable:
            return self.inner.request(uri, method, body, headers, **kw)
        raise OSError(f"[Errno 101] Network is unreachable while fetching {uri}")


def test_network_error_after_retries_keeps_partial(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("YOUTUBE_API_KEY", KEY)
    http = _Unreachable([PAGE1])
    monkeypatch.setattr(youtube.YouTubeSource, "http_factory", staticmethod(lambda: http))
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "q.tsv"
    frame = run_search("youtube", {"api_retries": 1, "api_backoff": 0.0}, "cello", "c", 5, out)
    assert list(frame["video_id"]) == ["dQ3x9Kc1aB0", "Zx-8_PqLm2w", "Up1c0m1ng__"]
    assert frame["duration"].isna().all()  # videos.list never answered
    assert "network error" in caplog.text
    # page 2 once + one retry; videos.list once + one retry
    assert http.calls == 1 + 2 + 2
    assert_no_key(caplog.text, out.read_text(encoding="utf-8"))


def test_key_only_from_environment(monkeypatch):
    monkeypatch.delenv("YOUTUBE_API_KEY", raising=False)
    with pytest.raises(SoundharvestError, match="YOUTUBE_API_KEY"):
        get_source("youtube", {}).search("cello", "cello", 5)
    monkeypatch.setenv("YOUTUBE_API_KEY", KEY)
    with pytest.raises(SoundharvestError, match="must not hold the API key") as info:
        get_source("youtube", {"api_key": KEY}).search("cello", "cello", 5)
    assert_no_key(str(info.value))


def test_api_error_classification_uses_status_and_reason():
    from googleapiclient.errors import HttpError
    from httplib2 import Response

    uri = f"https://youtube.googleapis.com/youtube/v3/search?q=x&key={KEY}&alt=json"
    cases = {
        "quota": (QUOTA, "403"),
        "bad_key": (BADKEY, "400"),
        "server": (BACKEND, "503"),
    }
    for code, ((_h, content), status) in cases.items():
        err = HttpError(Response({"status": status}), content.encode(), uri=uri)
        assert KEY in str(err)  # the library's own text leaks the key: that is why we avoid it
        got, message, _transient, _fatal = youtube.api_error(err, KEY)
        assert got == code
        assert_no_key(message)
    # A message that somehow quotes the key is redacted too.
    leaky = json.dumps({"error": {"code": 403, "message": f"blocked key={KEY}", "errors": []}})
    err = HttpError(Response({"status": "403"}), leaky.encode(), uri=uri)
    _c, message, _t, fatal = youtube.api_error(err, KEY)
    assert fatal and KEY not in message


def test_redaction_filter_on_client_logger(api, caplog):
    api([])
    caplog.set_level(logging.DEBUG)
    youtube._install_redactor(KEY)
    logging.getLogger("googleapiclient.http").warning(
        "retrying GET %s", f"https://x/y?key={KEY}&q=1"
    )
    try:
        raise RuntimeError(f"boom {KEY}")
    except RuntimeError:
        logging.getLogger("googleapiclient.discovery").exception("failed")
    assert "key=REDACTED" in caplog.text
    assert_no_key(caplog.text)


def test_sentinel_key_appears_in_no_output_of_a_search_run(api, tmp_path, capsys):
    """Search two labels (one interrupted by the quota), merge, catalog; grep everything."""
    from soundharvest.acquire.catalog import build_catalog, write_catalog
    from soundharvest.acquire.search import merge_candidates, query_id, write_merged
    from soundharvest.io import setup_logging

    log_file = tmp_path / "logs" / "search.log"
    setup_logging(log_file, level=logging.DEBUG)
    try:
        api([PAGE1, PAGE2, VIDEOS, PAGE1, QUOTA, VIDEOS, BADKEY])
        tsvs = {}
        for label, query in [("cello", "cello solo"), ("violin", "violin'; rm -rf ~ #")]:
            out = tmp_path / "search" / label / f"{query_id(query)}.tsv"
            run_search("youtube", {}, label, query, 5, out, max_duration=3600)
            tsvs[label] = [out]
        with pytest.raises(SoundharvestError) as info:
            run_search("youtube", {}, "flute", "flûte à bec", 5, tmp_path / "search" / "flute.tsv")
        # as a workflow script would: the error, with its traceback, goes to the job's log
        logging.getLogger("soundharvest").error("search failed", exc_info=info.value)
        merged = merge_candidates(tsvs, "exclude")
        write_merged(merged, tmp_path / "search" / "merged.tsv")
        write_catalog(build_catalog(merged, {}), tmp_path / "catalog.csv")
    finally:
        logging.getLogger().handlers[-1].flush()
        setup_logging(None, level=logging.WARNING)
    captured = capsys.readouterr()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert log_file in files and len(files) >= 5
    text = log_file.read_text(encoding="utf-8")
    assert "key=REDACTED" in text and "quota exhausted" in text and "API key not valid" in text
    assert "Traceback" in text
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path
    assert_no_key(captured.out, captured.err)


def _page(ids, next_token=None, live=()):
    """A search.list page in the API's format, built from page 1's first item."""
    template = json.loads(body("youtube_search_page1.json"))["items"][0]
    items = []
    for vid in ids:
        it = json.loads(json.dumps(template))
        it["id"]["videoId"] = vid
        it["snippet"]["title"] = f"title of {vid}"
        it["snippet"]["liveBroadcastContent"] = "live" if vid in live else "none"
        items.append(it)
    page = {"kind": "youtube#searchListResponse", "items": items}
    if next_token:
        page["nextPageToken"] = next_token
    return (OK, json.dumps(page))


def _videos(durations):
    items = [
        {"kind": "youtube#video", "id": vid, "contentDetails": {"duration": d}}
        for vid, d in durations.items()
    ]
    return (OK, json.dumps({"kind": "youtube#videoListResponse", "items": items}))


def test_duplicates_and_live_do_not_count_toward_results_per_query(api):
    """A page with a duplicate and a live broadcast: page 2 is fetched for the two missing."""
    page1 = _page(["vidA_000001", "vidB_000002", "vidA_000001", "Live_000003", "vidC_000004"],
                  next_token="P2", live={"Live_000003"})  # fmt: skip
    page2 = _page(["vidB_000002", "vidD_000005", "vidE_000006", "vidF_000007"], next_token="P3")
    mock = api([page1, page2, _videos({})])
    outcome = get_source("youtube", {}).search("cello", "cello", 5)
    ids = [c.video_id for c in outcome.candidates]
    assert ids == ["vidA_000001", "vidB_000002", "vidC_000004", "vidD_000005", "vidE_000006"]
    assert [c.rank for c in outcome.candidates] == [1, 2, 4, 5, 6]  # no gaps
    assert [s.candidate.rank for s in outcome.skipped] == [3]
    reqs = requests_of(mock)
    assert [p.rsplit("/", 1)[1] for p, _ in reqs] == ["search", "search", "videos"]
    assert reqs[1][1]["maxResults"] == "2" and reqs[1][1]["pageToken"] == "P2"
    videos_ids = reqs[2][1]["id"].split(",")
    assert len(videos_ids) == len(set(videos_ids)) == 6


def test_quota_warning_counts_what_the_table_keeps(api, tmp_path, caplog):
    page1 = _page(["vidA_000001", "vidB_000002", "vidA_000001", "vidC_000004"], next_token="P2")
    api([page1, QUOTA, _videos({})])
    caplog.set_level(logging.INFO)
    frame = run_search("youtube", {}, "cello", "cello", 5, tmp_path / "q.tsv")
    assert list(frame["video_id"]) == ["vidA_000001", "vidB_000002", "vidC_000004"]
    assert list(frame["rank"]) == [1, 2, 3]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("keeping the 3 results" in w for w in warnings), warnings


def test_p0d_without_a_live_flag_is_skipped_even_without_min_duration(api, tmp_path):
    page = _page(["Premiere_01", "vidA_000001"])
    api([page, _videos({"Premiere_01": "P0D", "vidA_000001": "PT3M"})])
    frame = run_search("youtube", {}, "cello", "cello", 2, tmp_path / "q.tsv")  # no min_duration
    row = frame.set_index("video_id").loc["Premiere_01"]
    assert row["status"] == "skipped" and "P0D" in row["reason"]
    assert frame.set_index("video_id").loc["vidA_000001", "status"] == "ok"


def test_key_is_not_in_frame_locals_of_a_traceback(api):
    """A traceback printed with its locals (pytest --showlocals, rich) must not show the key."""
    api([PAGE1, BADKEY])
    source = get_source("youtube", {})
    try:
        source.search("cello", "cello", 5)
    except SearchInterrupted as e:
        error = e
    else:
        pytest.fail("a rejected key must interrupt the search")
    text = "".join(traceback.TracebackException.from_exception(error, capture_locals=True).format())
    assert "ApiKey(REDACTED)" in text  # the locals were printed, the key among them redacted
    assert_no_key(text)
    tb = error.__traceback__
    while tb is not None:
        for name, value in tb.tb_frame.f_locals.items():
            assert_no_key(f"{name}={value!r}", f"{value}")
        tb = tb.tb_next
    key = youtube.ApiKey(KEY)
    assert_no_key(repr(key), str(key), f"{key}", f"{key!r:>80}", repr([key]), repr({"k": key}))
    assert key.reveal() == KEY


@pytest.mark.parametrize("content_type", ["text/html", "application/json"])
def test_a_body_that_is_not_json_is_one_line(api, tmp_path, content_type):
    """A captive portal's page instead of the API's answer."""
    api([({"status": "200", "content-type": content_type}, "<html>Sign in to Wi-Fi</html>")])
    with pytest.raises(SoundharvestError) as info:
        run_search("youtube", {}, "cello", "cello", 5, tmp_path / "q.tsv")
    message = str(info.value)
    assert "not a JSON object" in message and "\n" not in message
    assert not (tmp_path / "q.tsv").exists()
    assert_no_key(message, "".join(traceback.format_exception(info.value)))
