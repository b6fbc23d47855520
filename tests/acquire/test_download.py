"""download_video with real yt-dlp fetching from an HTTP server on 127.0.0.1 (yt-dlp's generic
extractor takes a direct media URL): a good file, a 404, a truncated and a corrupt file, HTTP 429
for good and for a while, the download archive and cookies."""

from __future__ import annotations

import http.server
import json
import logging
import os
import subprocess
import threading
from collections import Counter

import pytest

from soundharvest.acquire.download import classify_ytdlp_error, download_video
from soundharvest.audio import ffmpeg_exe
from soundharvest.io import SoundharvestError

COOKIE_VALUE = "SENTINELcookieVALUE42"


@pytest.fixture(scope="module")
def m4a(tmp_path_factory) -> bytes:
    """Three seconds of a 440 Hz tone, AAC in MP4, made with the real ffmpeg."""
    path = tmp_path_factory.mktemp("media") / "tone.m4a"
    subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "lavfi",
         "-i", "sine=frequency=440:duration=3:sample_rate=44100", "-c:a", "aac", str(path)],
        check=True,
    )  # fmt: skip
    return path.read_bytes()


class Server:
    def __init__(self, media: bytes):
        self.media = media
        self.hits: Counter = Counter()
        self.cookies: list[str | None] = []
        self.flaky_429s = 2
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body=b"", ctype="audio/mp4", length=None):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                name = self.path.lstrip("/")
                server.hits[name] += 1
                server.cookies.append(self.headers.get("Cookie"))
                if name == "good.m4a":
                    self._send(200, server.media)
                elif name == "truncated.m4a":
                    half = server.media[: len(server.media) // 2]
                    self._send(200, half, length=len(server.media))
                    self.close_connection = True
                elif name == "corrupt.m4a":
                    junk = bytes((i * 7919) % 251 for i in range(6000))
                    self._send(200, junk)
                elif name == "ratelimited.m4a":
                    self._send(429, b"slow down", ctype="text/plain")
                elif name == "flaky.m4a":
                    if server.hits[name] <= server.flaky_429s:
                        self._send(429, b"slow down", ctype="text/plain")
                    else:
                        self._send(200, server.media)
                else:
                    self._send(404, b"not found", ctype="text/plain")

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def _server(m4a):
    srv = Server(m4a)
    yield srv
    srv.close()


@pytest.fixture
def server(_server):
    _server.hits.clear()
    _server.cookies.clear()
    _server.flaky_429s = 2
    return _server


FAST = {"retries": 2, "backoff": 0.01, "ytdlp_retries": 0, "socket_timeout": 5}


def candidate(server, name, vid=None):
    return {
        "video_id": vid or name.split(".")[0],
        "url": f"{server.base}/{name}",
        "title": "a title with / slashes; rm -rf ~ and 'quotes'",
        "label": "cello",
    }


def read_status(out_dir):
    return json.loads((out_dir / "status.json").read_text(encoding="utf-8"))


def test_good_file(server, tmp_path, m4a):
    out = tmp_path / "good"
    status = download_video("ytsearch", FAST, candidate(server, "good.m4a"), out)
    assert status == read_status(out)
    assert status["status"] == "ok" and status["reason"] == ""
    assert status["audio"] == "audio.m4a"
    assert (out / "audio.m4a").read_bytes() == m4a  # as published: no re-encoding
    assert status["bytes"] == len(m4a) and status["attempts"] == 1
    info = json.loads((out / "info.json").read_text(encoding="utf-8"))
    assert info["id"] == "good" and info["ext"] == "m4a"
    assert "url" not in info and "http_headers" not in json.dumps(info)
    # file names come from the id and the extension, never from the title
    assert sorted(p.name for p in out.iterdir()) == ["audio.m4a", "info.json", "status.json"]


def test_404_is_recorded_not_retried(server, tmp_path):
    status = download_video("ytsearch", FAST, candidate(server, "missing.m4a"), tmp_path / "m")
    assert status["status"] == "failed"
    assert status["reason_code"] == "http_404"
    assert "404" in status["reason"] and "\n" not in status["reason"]
    assert status["attempts"] == 1 and status["audio"] is None


def test_truncated_transfer_is_retried_then_recorded(server, tmp_path):
    status = download_video("ytsearch", FAST, candidate(server, "truncated.m4a"), tmp_path / "t")
    assert status["status"] == "failed"
    assert status["reason_code"] == "truncated"
    assert status["attempts"] == FAST["retries"] + 1


def test_corrupt_file_is_caught_by_the_decode_check(server, tmp_path):
    status = download_video("ytsearch", FAST, candidate(server, "corrupt.m4a"), tmp_path / "c")
    assert status["status"] == "failed"
    assert status["reason_code"] == "corrupt"
    assert status["audio"] is None
    assert not list((tmp_path / "c").glob("audio.*"))  # a re-run fetches it again


def test_429_until_retries_run_out(server, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    status = download_video("ytsearch", FAST, candidate(server, "ratelimited.m4a"), tmp_path / "r")
    assert status["status"] == "failed"
    assert status["reason_code"] == "rate_limited"
    assert status["attempts"] == FAST["retries"] + 1
    assert caplog.text.count("retry") >= FAST["retries"]


def test_429_for_a_while_then_success(server, tmp_path):
    server.flaky_429s = 2
    status = download_video("ytsearch", FAST, candidate(server, "flaky.m4a"), tmp_path / "f")
    assert status["status"] == "ok"
    assert status["attempts"] == 3


def test_download_archive(server, tmp_path):
    archive = tmp_path / "archive.txt"
    opts = dict(FAST, download_archive=str(archive))
    first = download_video("ytsearch", opts, candidate(server, "good.m4a"), tmp_path / "a")
    assert first["status"] == "ok"
    assert archive.read_text().split() == ["generic", "good"]
    media_gets = server.hits["good.m4a"]
    # Same directory again (a job killed before its status.json): the file is reused.
    again = download_video("ytsearch", opts, candidate(server, "good.m4a"), tmp_path / "a")
    assert again["status"] == "ok" and again["audio"] == "audio.m4a"
    # Elsewhere: not fetched twice, and recorded as such rather than silently empty.
    other = download_video("ytsearch", opts, candidate(server, "good.m4a"), tmp_path / "b")
    assert other["status"] == "failed" and other["reason_code"] == "archived"
    assert not list((tmp_path / "b").glob("audio.*"))
    # yt-dlp still probes the URL, but never downloads the media again (at most 2 GETs per probe)
    assert server.hits["good.m4a"] - media_gets <= 4
    assert archive.read_text().split() == ["generic", "good"]


def test_cookies_from_environment_are_used_but_never_written(server, tmp_path, caplog, monkeypatch):
    cookie_file = tmp_path / "cookies.txt"
    text = f"# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\t{COOKIE_VALUE}\n"
    cookie_file.write_text(text)
    monkeypatch.setenv("SOUNDHARVEST_COOKIES", str(cookie_file))
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "k"
    status = download_video("ytsearch", FAST, candidate(server, "good.m4a"), out)
    assert status["status"] == "ok"
    assert any(c and COOKIE_VALUE in c for c in server.cookies)  # really sent
    assert cookie_file.read_text() == text  # the user's file is not rewritten by yt-dlp
    for path in out.iterdir():
        assert COOKIE_VALUE.encode() not in path.read_bytes(), path.name
    assert COOKIE_VALUE not in caplog.text and str(cookie_file) not in caplog.text


def test_missing_cookie_file_is_a_setup_error(server, tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDHARVEST_COOKIES", str(tmp_path / "nope.txt"))
    with pytest.raises(SoundharvestError, match="SOUNDHARVEST_COOKIES"):
        download_video("ytsearch", FAST, candidate(server, "good.m4a"), tmp_path / "x")


def test_unsafe_video_id_is_refused(server, tmp_path):
    with pytest.raises(SoundharvestError, match="safe id"):
        download_video("ytsearch", FAST, candidate(server, "good.m4a", vid="../x"), tmp_path / "x")


def test_stale_status_is_removed_before_a_new_attempt(server, tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    (out / "status.json").write_text('{"status": "ok"}')
    status = download_video("ytsearch", FAST, candidate(server, "missing.m4a"), out)
    assert read_status(out) == status and status["status"] == "failed"


@pytest.mark.parametrize(
    ("message", "code", "transient"),
    [
        ("ERROR: [youtube] abc: Private video. Sign in if you've been granted access to this video", "private", False),
        ("ERROR: [youtube] abc: Sign in to confirm you\u2019re not a bot. Use --cookies-from-browser or --cookies for the authentication.", "bot_check", False),
        ("ERROR: [youtube] abc: Sign in to confirm your age. This video may be inappropriate for some users.", "age", False),
        ("ERROR: [youtube] abc: The uploader has not made this video available in your country", "geo", False),
        ("ERROR: [youtube] abc: Video unavailable. This video has been removed by the uploader", "unavailable", False),
        ("ERROR: [youtube] abc: Video unavailable. This content isn't available, try again later.", "rate_limited", True),
        ("ERROR: [youtube] abc: Join this channel to get access to members-only content like this video", "members_only", False),
        ("ERROR: [youtube] abc: This live event will begin in 3 hours.", "live", False),
        ("ERROR: unable to download video data: HTTP Error 403: Forbidden", "http_403", False),
        ("ERROR: unable to download video data: HTTP Error 503: Service Unavailable", "http_5xx", True),
        ("ERROR: [youtube] abc: Requested format is not available. Use --list-formats", "no_audio", False),
        ("ERROR: [youtube] abc: Unable to download API page: <urlopen error timed out>", "network", True),
        ("ERROR: something nobody has seen", "error", False),
    ],
)  # fmt: skip
def test_classify_ytdlp_errors(message, code, transient):
    got, cleaned, is_transient = classify_ytdlp_error(message)
    assert (got, is_transient) == (code, transient)
    assert not cleaned.startswith("ERROR") and not cleaned.startswith("[")
    assert os.linesep not in cleaned


def test_reasons_in_a_sources_own_words_get_a_code():
    from soundharvest.acquire.download import normalize_reason

    assert normalize_reason("Private video (demo)") == "private: Private video (demo)"
    assert normalize_reason("Video not available in your country").startswith("geo: ")
    assert normalize_reason("http_404: HTTP Error 404") == "http_404: HTTP Error 404"
    assert normalize_reason("") == "error: no reason given"
