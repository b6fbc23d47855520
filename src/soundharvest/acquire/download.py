"""The ``download`` stage: one video's audio as published, or a recorded reason why not.

:func:`download_video` is the stage's entry point for every source. It lets the source fetch
the audio into the job's directory, checks that the file decodes (the first few seconds, with
ffmpeg: a truncated download, an HTML error page or random bytes are caught here as
``corrupt``), and writes ``status.json`` atomically, last. It never raises for a video-level
failure (removed, private, age or geo restricted, HTTP 404/429, bot check, corrupt...): the
video is recorded as ``failed`` with a short reason code and message, and later stages skip it.

The ``youtube`` and ``ytsearch`` sources download with :class:`YtDlpDownloader` (yt-dlp's
Python API): the best audio stream as published (no re-encoding), retries with exponential
backoff for transient errors (HTTP 429, 5xx, network, truncated transfers), yt-dlp's sleep
between downloads, and yt-dlp's download archive.

``status.json`` fields: ``video_id``, ``source``, ``url``, ``label``, ``status`` (``ok`` or
``failed``), ``reason_code`` and ``reason`` (``"<code>: <message>"``, empty when ok), ``audio``
(the audio file's name inside the directory, or ``null``), ``attempts``, ``bytes``,
``elapsed_s``.

Secrets: cookies (``SOUNDHARVEST_COOKIES``, a Netscape cookie file) are copied to a private
temporary file per job, because yt-dlp writes the cookie jar back at exit and concurrent jobs
would otherwise race on the user's file; they are stripped from ``info.json``, and neither
their content nor their path is logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..audio import SAMPLE_RATE, ffmpeg_exe
from ..io import Pathlike, SoundharvestError, write_json
from .base import SAFE_ID, DownloadResult, get_source

log = logging.getLogger("soundharvest.download")

#: The environment variable naming a Netscape cookie file for yt-dlp.
COOKIES_ENV = "SOUNDHARVEST_COOKIES"

#: Files that are yt-dlp's or our own bookkeeping, never the audio.
_NOT_AUDIO = re.compile(r"(\.part|\.ytdl|\.tmp|\.json|\.temp|\.part-Frag\d+)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

#: yt-dlp info keys dropped from ``info.json``: media URLs (they embed the downloader's IP
#: address and expire within hours), request headers and cookies (secrets), and bulky lists.
_DROP_KEYS = frozenset(
    {
        "cookies",
        "http_headers",
        "url",
        "manifest_url",
        "fragment_base_url",
        "fragments",
        "formats",
        "requested_formats",
        "requested_downloads",
        "thumbnails",
        "automatic_captions",
        "subtitles",
        "heatmap",
    }
)

# (code, transient, patterns): the first row whose pattern is found in the lower-cased message
# gives the reason. Ordered from the most specific: "Private video. Sign in..." is "private",
# not a sign-in problem; "HTTP Error 429" is a rate limit even inside an "unable to download".
_RULES: list[tuple[str, bool, tuple[str, ...]]] = [
    ("bot_check", False, ("not a bot", "confirm you are not a robot", "captcha")),
    ("private", False, ("private video", "this video is private")),
    ("age", False, ("confirm your age", "age-restricted", "age restricted", "inappropriate for some users")),
    ("geo", False, ("in your country", "geo restrict", "geo-restrict", "not available from your location")),
    ("members_only", False, ("members-only", "members only", "join this channel")),
    ("live", False, ("live event will begin", "premieres in", "this live event", "is_upcoming")),
    ("drm", False, ("drm protected", "drm-protected")),
    ("rate_limited", True, ("http error 429", "too many requests", "rate-limit", "rate limit",
                            "try again later")),
    ("no_audio", False, ("requested format is not available", "no video formats",
                         "no formats found")),
    ("unavailable", False, ("video unavailable", "no longer available", "has been removed",
                            "been terminated", "does not exist", "http error 410", "not available")),
    ("http_404", False, ("http error 404", "404: not found")),
    ("http_403", False, ("http error 403",)),
    ("http_5xx", True, ("http error 500", "http error 502", "http error 503", "http error 504",
                        "http error 5")),
    ("truncated", True, ("more expected", "content too short", "downloaded file is empty",
                         "incompleteread", "incomplete read")),
    ("network", True, ("timed out", "timeout", "connection reset", "connection refused",
                       "connection aborted", "name resolution", "name or service not known",
                       "network is unreachable", "remote end closed", "failed to resolve",
                       "ssl", "unable to connect", "urlopen error", "transporterror")),
    ("unsupported", False, ("unsupported url",)),
    ("extractor", False, ("unable to extract", "please report this issue", "update yt-dlp")),
]  # fmt: skip


def clean_message(message: str, limit: int = 300) -> str:
    """One short line of a yt-dlp error: no ANSI codes, ``ERROR:``, extractor prefix or cause."""
    text = _ANSI.sub("", message).replace("\r", " ")
    text = re.sub(r"^\s*ERROR:\s*", "", text)
    text = re.sub(r"^\[[^\]]+\]\s*(?:[A-Za-z0-9_-]+:\s*)?", "", text)
    text = re.sub(r"\s*\(caused by <.*$", "", text, flags=re.S)
    text = re.sub(r"\s+", " ", text).strip()
    return text[:limit]


def classify_ytdlp_error(message: str) -> tuple[str, str, bool]:
    """Reason code of a yt-dlp error message.

    :param message: ``str(yt_dlp.utils.DownloadError)`` (or any yt-dlp error text).
    :return: ``(code, cleaned message, transient)``; ``transient`` errors are worth retrying.
    """
    cleaned = clean_message(message)
    low = _ANSI.sub("", message).lower()
    for code, transient, patterns in _RULES:
        if any(p in low for p in patterns):
            return code, cleaned, transient
    return "error", cleaned, False


class YtDlpLogger:
    """Route yt-dlp's messages to a :mod:`logging` logger (its errors are reported by us)."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def debug(self, msg: str) -> None:
        # yt-dlp sends its normal screen output through debug() too; keep it at INFO without
        # the "[debug]" chatter.
        if msg.startswith("[debug] "):
            self.logger.debug("yt-dlp: %s", msg[8:])
        else:
            self.logger.info("yt-dlp: %s", _ANSI.sub("", msg))

    def info(self, msg: str) -> None:
        self.logger.info("yt-dlp: %s", _ANSI.sub("", msg))

    def warning(self, msg: str) -> None:
        self.logger.warning("yt-dlp: %s", _ANSI.sub("", msg))

    def error(self, msg: str) -> None:
        self.logger.info("yt-dlp: %s", clean_message(msg))


def scrub_info(obj: Any) -> Any:
    """Drop URLs, headers, cookies and bulky lists (:data:`_DROP_KEYS`) from a yt-dlp info dict."""
    if isinstance(obj, dict):
        return {k: scrub_info(v) for k, v in obj.items() if k not in _DROP_KEYS}
    if isinstance(obj, list):
        return [scrub_info(v) for v in obj]
    return obj


@contextlib.contextmanager
def _private_cookiefile() -> Iterator[str | None]:
    """A private copy of the cookie file named by ``SOUNDHARVEST_COOKIES``, or ``None``."""
    path = os.environ.get(COOKIES_ENV, "").strip()
    if not path:
        yield None
        return
    if not os.path.isfile(path):
        raise SoundharvestError(
            f"{COOKIES_ENV} names a file that does not exist; export a Netscape-format cookie "
            "file there or unset the variable"
        )
    tmpdir = tempfile.mkdtemp(prefix="soundharvest-cookies-")
    try:
        os.chmod(tmpdir, 0o700)
        copy = os.path.join(tmpdir, "cookies.txt")
        shutil.copyfile(path, copy)
        os.chmod(copy, 0o600)
        log.info("download: using the cookies named by %s", COOKIES_ENV)
        yield copy
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def find_audio(out_dir: Path) -> Path | None:
    """The downloaded audio file in ``out_dir`` (``audio.<ext>``), if there is exactly one."""
    found = [
        p
        for p in sorted(out_dir.glob("audio.*"))
        if p.is_file() and not _NOT_AUDIO.search(p.name) and p.stat().st_size > 0
    ]
    return found[0] if found else None


class YtDlpDownloader:
    """Download one video's best audio stream with yt-dlp's Python API.

    Options (the source's options): ``format`` (default ``bestaudio/best``), ``retries``
    (attempts after the first for transient errors, default 3), ``backoff`` (seconds before the
    first retry, doubled each time, default 10), ``backoff_max`` (default 300),
    ``sleep_interval``/``max_sleep_interval`` (yt-dlp's random sleep before each download),
    ``sleep_interval_requests`` (between yt-dlp's requests), ``download_archive`` (path of
    yt-dlp's archive file, shared by all jobs; yt-dlp locks it while appending),
    ``socket_timeout`` (default 30 s), ``ytdlp_retries`` (yt-dlp's own HTTP retries, default 3),
    ``ytdlp_options`` (extra yt-dlp parameters, for experts).
    """

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = dict(options or {})

    def params(self, out_dir: Path, cookiefile: str | None) -> dict[str, Any]:
        """yt-dlp parameters for a download into ``out_dir``."""
        o = self.options
        params: dict[str, Any] = dict(o.get("ytdlp_options") or {})
        params.update(
            {
                "format": o.get("format", "bestaudio/best"),
                "outtmpl": {"default": str(Path(out_dir) / "audio.%(ext)s")},
                "noplaylist": True,
                "quiet": True,
                "no_warnings": False,
                "noprogress": True,
                "logger": YtDlpLogger(log),
                "continuedl": True,
                "socket_timeout": float(o.get("socket_timeout", 30)),
                "retries": int(o.get("ytdlp_retries", 3)),
                "fragment_retries": int(o.get("ytdlp_retries", 3)),
                "extractor_retries": int(o.get("ytdlp_retries", 3)),
                "postprocessors": [],
                "writeinfojson": False,
                "writethumbnail": False,
            }
        )
        for name in ("sleep_interval", "max_sleep_interval", "sleep_interval_requests"):
            if o.get(name) not in (None, "", 0):
                params[name] = float(o[name])
        if o.get("download_archive"):
            params["download_archive"] = str(o["download_archive"])
        if cookiefile:
            params["cookiefile"] = cookiefile
        return params

    def download(self, candidate: dict[str, Any], out_dir: Pathlike) -> DownloadResult:
        """Download ``candidate["url"]`` into ``out_dir``; never raises for a video's failure."""
        import yt_dlp

        out_dir = Path(out_dir)
        url = str(candidate["url"])
        vid = str(candidate.get("video_id", ""))
        retries = int(self.options.get("retries", 3))
        backoff = float(self.options.get("backoff", 10.0))
        backoff_max = float(self.options.get("backoff_max", 300.0))
        attempt = 0
        with _private_cookiefile() as cookiefile:
            params = self.params(out_dir, cookiefile)
            while True:
                attempt += 1
                try:
                    with yt_dlp.YoutubeDL(params) as ydl:
                        info = ydl.extract_info(url, download=True)
                        clean = scrub_info(ydl.sanitize_info(info, remove_private_keys=True))
                except yt_dlp.utils.YoutubeDLError as e:
                    code, message, transient = classify_ytdlp_error(str(e))
                    if transient and attempt <= retries:
                        wait = min(backoff * 2 ** (attempt - 1), backoff_max)
                        log.warning(
                            "download %s: %s: %s; retry %d/%d in %.1f s",
                            vid, code, message, attempt, retries, wait,
                        )  # fmt: skip
                        time.sleep(wait)
                        continue
                    return DownloadResult(
                        "failed", f"{code}: {message}", info={"attempts": attempt}
                    )
                break
        audio = None
        downloads = (info or {}).get("requested_downloads") or []
        if downloads and downloads[0].get("filepath"):
            audio = Path(downloads[0]["filepath"])
            if not audio.is_absolute():
                audio = out_dir / audio
        if audio is None or not audio.is_file():
            audio = find_audio(out_dir)
        if audio is None:
            archive = self.options.get("download_archive")
            if info is not None and archive:
                return DownloadResult(
                    "failed",
                    f"archived: already recorded in the download archive {archive} but no audio "
                    f"in {out_dir}; remove its line from the archive to fetch it again",
                    info={"attempts": attempt},
                )
            return DownloadResult(
                "failed", "error: yt-dlp reported success but wrote no audio file",
                info={"attempts": attempt},
            )  # fmt: skip
        if clean:
            write_json(out_dir / "info.json", clean)
        return DownloadResult(
            "ok",
            audio=audio,
            info={"attempts": attempt, "title": (clean or {}).get("title", "")},
        )


_FFMPEG_PREFIX = re.compile(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*")


def ffmpeg_error_summary(stderr: str, path: Pathlike | None = None, limit: int = 300) -> str:
    """One line from ffmpeg's error output: its first message and, if different, its last.

    ffmpeg's last line is generic ("Error opening input files: Invalid data found..."); its
    first names the cause ("moov atom not found"). Full paths are shortened to the file name.
    """
    lines = [_FFMPEG_PREFIX.sub("", ln).strip() for ln in stderr.splitlines()]
    lines = [ln for ln in lines if ln]
    if path is not None:
        lines = [ln.replace(str(path), Path(path).name) for ln in lines]
    if not lines:
        return ""
    first, last = lines[0], lines[-1]
    if first.startswith("Stream map") and "matches no streams" in first:
        first = "no audio stream"
    text = first if first == last else f"{first}; {last}"
    return text[:limit]


def probe_audio(path: Pathlike, seconds: float = 10.0, ffmpeg: str | None = None) -> str:
    """Decode the first ``seconds`` of ``path``; return ``""`` if audio came out, else why not.

    A quick check (ffmpeg decodes compressed audio at hundreds of times real time, so 10 s take
    milliseconds) that catches HTML error pages, random bytes and files cut before their first
    frame; damage further in is left to ``convert``, which keeps what decodes.
    """
    path = Path(path)
    cmd = [
        ffmpeg or ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error",
        "-i", str(path), "-t", f"{seconds:.3f}", "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE),
        "-f", "s16le", "-",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        why = ffmpeg_error_summary(proc.stderr.decode("utf-8", "replace"), path)
        return why or f"ffmpeg exit status {proc.returncode}"
    if len(proc.stdout) == 0:
        return "no audio decoded"
    return ""


def normalize_reason(reason: str) -> str:
    """``"<code>: <message>"`` for any failure text: kept if it has a code, else classified.

    Sources report reasons in their own words (yt-dlp's, the demo's); a code makes them
    countable in the catalog.
    """
    reason = re.sub(r"\s+", " ", reason or "").strip()
    if re.match(r"^[a-z][a-z0-9_]*: ", reason):
        return reason
    code, message, _transient = classify_ytdlp_error(reason or "no reason given")
    return f"{code}: {message or reason}"


def download_video(
    source_name: str,
    options: dict[str, Any] | None,
    candidate: dict[str, Any],
    out_dir: Pathlike,
) -> dict[str, Any]:
    """Fetch one candidate's audio into ``out_dir`` and write ``out_dir/status.json`` last.

    :param source_name: the config's source (``youtube``, ``ytsearch``, ``local``, ``demo``).
    :param options: the source's options (see :class:`YtDlpDownloader` for yt-dlp's);
        ``probe_seconds`` (default 10; 0 turns the decode check off) and ``ffmpeg``
        (``imageio``, ``system`` or a path) apply to every source.
    :param candidate: a row of the search table (at least ``video_id`` and ``url``).
    :param out_dir: the video's directory (created if needed).
    :return: the status written (see the module docstring).
    :raises SoundharvestError: only for problems of the setup (unknown source, bad cookie path,
        unsafe video id), never for a video that cannot be had.
    """
    options = dict(options or {})
    vid = str(candidate.get("video_id", ""))
    if not SAFE_ID.match(vid):
        raise SoundharvestError(
            f"download: video_id {vid!r} is not a safe id; re-run the search that produced it"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    status_path = out_dir / "status.json"
    status_path.unlink(missing_ok=True)
    source = get_source(source_name, options)
    start = time.monotonic()
    result = source.download(candidate, out_dir)
    attempts = int(result.info.get("attempts", 1)) if isinstance(result.info, dict) else 1
    audio = Path(result.audio) if result.audio else None
    status, reason = result.status, result.reason
    if status == "ok":
        if audio is None or not audio.is_file():
            status, reason = "failed", "error: the source reported success but wrote no file"
            audio = None
        elif float(options.get("probe_seconds", 10.0)) > 0:
            why = probe_audio(
                audio,
                float(options.get("probe_seconds", 10.0)),
                ffmpeg_exe(options.get("ffmpeg", "imageio")),
            )
            if why:
                status, reason = "failed", f"corrupt: {why}"
                # Remove it, so that a re-run fetches it again instead of re-using a bad file.
                audio.unlink(missing_ok=True)
    elif status != "failed":
        raise SoundharvestError(f"download: source {source_name!r} returned status {status!r}")
    if status == "ok" and not (out_dir / "info.json").exists() and result.info:
        write_json(out_dir / "info.json", result.info)
    reason = normalize_reason(reason) if status == "failed" else ""
    reason_code = reason.split(":", 1)[0]
    record = {
        "video_id": vid,
        "source": source_name,
        "url": str(candidate.get("url", "")),
        "label": str(candidate.get("label", "")),
        "status": status,
        "reason_code": reason_code,
        "reason": reason,
        "audio": os.path.relpath(audio, out_dir)
        if (audio is not None and status == "ok")
        else None,
        "attempts": attempts,
        "bytes": audio.stat().st_size if audio is not None and audio.is_file() else 0,
        "elapsed_s": round(time.monotonic() - start, 3),
    }
    write_json(status_path, record)
    if status == "ok":
        log.info(
            "download %s: ok (%s, %d bytes, %d attempt(s))",
            vid,
            record["audio"],
            record["bytes"],
            attempts,
        )
    else:
        log.warning("download %s: failed: %s (%d attempt(s))", vid, reason, attempts)
    return record


def read_download_status(path: Pathlike) -> dict[str, Any]:
    """Read a download's ``status.json`` with a one-line error if it is missing or broken."""
    from ..io import read_json

    path = Path(path)
    if not path.is_file():
        raise SoundharvestError(f"{path}: download status not found; run the download first")
    status = read_json(path)
    if not isinstance(status, dict) or status.get("status") not in ("ok", "failed"):
        raise SoundharvestError(f"{path}: field 'status' must be ok or failed; re-run the download")
    return status
