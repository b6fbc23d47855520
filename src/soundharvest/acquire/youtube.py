"""The ``youtube`` source: YouTube Data API v3 search, yt-dlp download.

Search calls ``search.list`` (``type=video``, up to 50 results a page, paging with
``pageToken`` until the configured count) and then ``videos.list`` (``part=contentDetails``, 50
ids a call) for the durations. The API key comes from the ``YOUTUBE_API_KEY`` environment
variable only; a key in the config is refused so that it never lands in a committed file.

The key must never be printed. google-api-python-client puts it in every request URI
(``...&key=...``), logs that URI at DEBUG level, and ``str()`` of its ``HttpError`` contains it.
So this module:

- reports errors from ``HttpError.status_code`` and the error reasons of the response body only,
  never from the exception's text or ``uri``, and raises its own errors ``from None``;
- installs a logging filter on the client's loggers that rewrites ``key=...`` to
  ``key=REDACTED`` (and the key's literal value wherever it appears) before any handler sees it;
- retries server and network errors itself instead of the client's ``num_retries``, whose
  warning prints the URI;
- holds the key in an :class:`ApiKey`, whose ``repr`` and ``str`` are redacted, so that a
  traceback printed with its frames' locals (``pytest --showlocals``, rich tracebacks,
  ``TracebackException(capture_locals=True)``) shows ``ApiKey(REDACTED)``, never the key.

What counts toward ``n_results`` (the config's ``results_per_query``): distinct videos that are
not live or upcoming broadcasts. A video listed twice (on one page or on two) keeps its first
place; ranks are the positions among distinct results, without gaps. Live and upcoming
broadcasts are kept as skipped rows, and so is a video whose duration is ``P0D`` without a
live flag (a premiere not yet published, or a broken item): there is nothing to download.

Quota: the classic model charges 100 units per ``search.list`` call and 1 per ``videos.list``
call out of 10,000 a day; the current one gives ``search.list`` its own bucket of 100 calls a
day. Both are logged per query.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import time
from typing import Any

from ..io import SoundharvestError
from .base import SAFE_ID, Candidate, DownloadResult, Source, register_source
from .search import SearchInterrupted, SearchOutcome, SkippedCandidate

log = logging.getLogger("soundharvest.youtube")

#: The only place the API key is read from.
API_KEY_ENV = "YOUTUBE_API_KEY"

#: Quota cost per call under the classic model (units out of 10,000 a day).
SEARCH_UNITS = 100
VIDEOS_UNITS = 1

#: The API's limits: 50 results per page and 50 ids per ``videos.list`` call.
PAGE_SIZE = 50

_ISO_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_KEY_IN_TEXT = re.compile(r"(key=)[^&\s'\"<>]+")
_TAG = re.compile(r"<[^>]+>")
_CONFIG_KEY_NAMES = ("api_key", "key", "developer_key", "youtube_api_key")


def parse_iso_duration(text: str | None) -> float | None:
    """Seconds of an ISO 8601 duration such as ``PT1H2M3S``; ``None`` if absent or malformed.

    :param text: ``contentDetails.duration`` of a ``videos.list`` item (``P0D`` for live).
    """
    if not text:
        return None
    m = _ISO_DURATION.match(text.strip())
    if not m or text.strip() in ("P", "PT"):
        return None
    parts = {k: float(v) if v else 0.0 for k, v in m.groupdict().items()}
    return (
        parts["weeks"] * 604800
        + parts["days"] * 86400
        + parts["hours"] * 3600
        + parts["minutes"] * 60
        + parts["seconds"]
    )


def redact(text: str, key: ApiKey | str | None = None) -> str:
    """Replace ``key=...`` query parameters and the literal ``key`` in ``text``."""
    text = _KEY_IN_TEXT.sub(r"\1REDACTED", text)
    if _secret(key):
        text = text.replace(_secret(key), "REDACTED")
    return text


class _KeyRedactor(logging.Filter):
    """Logger filter: rewrite a record's message with the API key redacted."""

    def __init__(self) -> None:
        super().__init__("soundharvest-key-redactor")
        self.keys: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: drop its arguments rather than risk the key
            message = str(record.msg)
        for key in self.keys:
            message = message.replace(key, "REDACTED")
        record.msg = _KEY_IN_TEXT.sub(r"\1REDACTED", message)
        record.args = None
        if record.exc_info or record.exc_text:
            # A traceback of an HttpError would print its URI: keep only the type's name.
            exc = record.exc_info[1] if record.exc_info else None
            record.msg += f" [{type(exc).__name__ if exc else 'exception'} omitted]"
            record.exc_info = None
            record.exc_text = None
        return True


_REDACTOR = _KeyRedactor()
_CLIENT_LOGGERS = (
    "googleapiclient",
    "googleapiclient.discovery",
    "googleapiclient.discovery_cache",
    "googleapiclient.http",
    "googleapiclient.model",
    "googleapiclient.errors",
    "httplib2",
)


def _install_redactor(key: ApiKey | str) -> None:
    _REDACTOR.keys.add(_secret(key))
    for name in _CLIENT_LOGGERS:
        logger = logging.getLogger(name)
        if _REDACTOR not in logger.filters:
            logger.addFilter(_REDACTOR)


def api_error(exc: Exception, key: ApiKey | str | None = None) -> tuple[str, str, bool, bool]:
    """Classify an API error without touching the exception's text (it holds the key).

    :param exc: a ``googleapiclient.errors.HttpError`` or a network exception.
    :param key: the key, redacted from the message as a last line of defence.
    :return: ``(code, message, transient, fatal)``: ``transient`` errors are worth retrying,
        ``fatal`` ones need the user to fix something.
    """
    from googleapiclient.errors import HttpError

    if not isinstance(exc, HttpError):
        # Network errors: name the type only (httplib2 and socket messages may carry the URI).
        return "network", f"network error ({type(exc).__name__})", True, False
    status = int(exc.status_code or 0)
    reasons: list[str] = []
    message = ""
    details = exc.error_details if isinstance(exc.error_details, list) else []
    try:
        body = json.loads(exc.content.decode("utf-8"))
        err = body.get("error", {}) if isinstance(body, dict) else {}
        message = str(err.get("message", ""))
        details = details + list(err.get("errors", [])) + list(err.get("details", []))
    except (ValueError, AttributeError, TypeError):
        pass
    for item in details:
        if isinstance(item, dict) and item.get("reason"):
            reasons.append(str(item["reason"]))
    message = redact(html.unescape(_TAG.sub("", message)).strip(), key)[:200]
    rs = set(reasons)
    low = message.lower()
    if rs & {"quotaExceeded", "dailyLimitExceeded"}:
        return (
            "quota",
            f"YouTube API quota exhausted (HTTP {status} quotaExceeded); "
            "it resets at midnight Pacific time",
            False,
            False,
        )
    if rs & {"keyInvalid", "API_KEY_INVALID"} or "api key not valid" in low:
        return (
            "bad_key",
            f"YouTube API key rejected (HTTP {status} API key not valid): "
            f"check the {API_KEY_ENV} environment variable",
            False,
            True,
        )
    if rs & {"keyExpired", "API_KEY_EXPIRED"} or ("expired" in low and "key" in low):
        return "bad_key", f"YouTube API key expired (HTTP {status}): renew it", False, True
    if rs & {"accessNotConfigured", "SERVICE_DISABLED"}:
        return (
            "disabled",
            f"YouTube Data API v3 is not enabled for the key's project (HTTP {status}): "
            "enable it in the Google Cloud console",
            False,
            True,
        )
    if rs & {"rateLimitExceeded", "userRateLimitExceeded"} or status == 429:
        return "rate_limited", f"YouTube API rate limit (HTTP {status})", True, False
    if status >= 500:
        return "server", f"YouTube API server error (HTTP {status})", True, False
    why = ", ".join(sorted(rs)) or message or "no reason given"
    fatal = status in (400, 401, 403)
    return f"http_{status}", f"YouTube API error (HTTP {status}: {why})", False, fatal


class ApiKey:
    """The API key, redacted in ``repr`` and ``str`` (so in logs, messages and frame locals).

    Only :meth:`reveal` gives the value, at the one place it is needed (the client's build).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The key itself: pass it to the API client, never to a message or a log."""
        return self._value

    def __repr__(self) -> str:
        return "ApiKey(REDACTED)"

    def __str__(self) -> str:
        return "REDACTED"

    def __format__(self, spec: str) -> str:
        return "REDACTED"

    def __reduce__(self):
        raise TypeError("ApiKey is not picklable: it holds a secret")


def _secret(key: ApiKey | str | None) -> str | None:
    return key.reveal() if isinstance(key, ApiKey) else key


def _api_key(options: dict[str, Any]) -> ApiKey:
    for name in _CONFIG_KEY_NAMES:
        if name in options:
            raise SoundharvestError(
                f"config: youtube option {name!r} must not hold the API key; remove it and set "
                f"the {API_KEY_ENV} environment variable instead"
            )
    if not os.environ.get(API_KEY_ENV, "").strip():
        raise SoundharvestError(
            f"youtube source: the {API_KEY_ENV} environment variable is not set; "
            "export it (a YouTube Data API v3 key) or use source: ytsearch"
        )
    return ApiKey(os.environ[API_KEY_ENV].strip())


def _not_json(what: str) -> SearchInterrupted:
    return SearchInterrupted(
        f"YouTube API answered with a body that is not a JSON object ({what}); "
        "is a proxy or a captive portal in the way?",
        "bad_response",
        fatal=True,
    )


def _video_id(item: dict[str, Any]) -> str:
    ident = item.get("id")
    return str(ident.get("videoId") or "") if isinstance(ident, dict) else ""


def _is_live(item: dict[str, Any]) -> bool:
    snippet = item.get("snippet") or {}
    return snippet.get("liveBroadcastContent", "none") in ("live", "upcoming")


@register_source
class YouTubeSource(Source):
    """YouTube Data API v3 search; yt-dlp download (see :class:`~.download.YtDlpDownloader`).

    Options: ``language`` (relevanceLanguage), ``region`` (regionCode), ``safe_search``
    (``none``/``moderate``/``strict``), ``video_duration`` (``any``/``short``/``medium``/``long``),
    ``order`` (default ``relevance``), ``sleep_requests`` (seconds between API calls; yt-dlp's
    name ``sleep_interval_requests`` works too),
    ``api_retries`` (default 2) and ``api_backoff`` (seconds, default 2) for server and network
    errors, and the downloader's options.
    """

    name = "youtube"

    #: Returns the ``httplib2.Http``-like object to use, or ``None`` for a real connection.
    #: Tests replace it with a ``googleapiclient.http.HttpMockSequence`` factory.
    http_factory: Any = staticmethod(lambda: None)

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.search_calls = 0
        self.videos_calls = 0

    def _client(self, key: ApiKey) -> Any:
        from googleapiclient.discovery import build
        from googleapiclient.http import build_http

        _install_redactor(key)
        http = self.http_factory() or build_http()
        try:
            return build(
                "youtube",
                "v3",
                developerKey=key.reveal(),
                http=http,
                static_discovery=True,
                cache_discovery=False,
            )
        except Exception as e:  # build's frames hold the key as a plain local: drop them
            name = type(e).__name__
        raise SoundharvestError(f"youtube source: cannot build the API client ({name})")

    def _execute(self, request: Any, key: ApiKey) -> dict[str, Any]:
        """Run one API request with retries for transient errors; raise a redacted error."""
        from googleapiclient.errors import HttpError

        retries = int(self.options.get("api_retries", 2))
        backoff = float(self.options.get("api_backoff", 2.0))
        for attempt in range(retries + 1):
            try:
                answer = request.execute(num_retries=0)
            except (HttpError, OSError, ConnectionError, TimeoutError) as e:
                error = e
            except ValueError as e:  # a body that is not JSON (a proxy's page, a cut answer)
                raise _not_json(type(e).__name__) from None
            except Exception as e:  # httplib2's own errors do not all derive from OSError
                if type(e).__module__.split(".")[0] != "httplib2":
                    raise
                error = e
            else:
                if not isinstance(answer, dict):
                    raise _not_json(type(answer).__name__)
                return answer
            code, message, transient, fatal = api_error(error, key)
            del error
            if transient and attempt < retries:
                wait = backoff * 2**attempt
                log.warning(
                    "youtube: %s; retrying in %.1f s (%d/%d)", message, wait, attempt + 1, retries
                )
                time.sleep(wait)
                continue
            raise SearchInterrupted(message, code, fatal=fatal) from None
        raise AssertionError("unreachable")

    def _sleep(self) -> None:
        pause = float(
            self.options.get("sleep_requests", self.options.get("sleep_interval_requests")) or 0.0
        )
        if pause > 0:
            time.sleep(pause)

    def _search_params(self, query: str) -> dict[str, Any]:
        params: dict[str, Any] = {"part": "snippet", "q": query, "type": "video"}
        mapping = {
            "language": "relevanceLanguage",
            "region": "regionCode",
            "safe_search": "safeSearch",
            "video_duration": "videoDuration",
            "order": "order",
        }
        for opt, api_name in mapping.items():
            value = self.options.get(opt)
            if value not in (None, ""):
                params[api_name] = value
        return params

    def search(self, label: str, query: str, n_results: int) -> SearchOutcome:
        """Search ``query``; return ranked candidates, live/upcoming broadcasts as skipped.

        :raises SearchInterrupted: with what was found so far, on quota, key or network errors.
        """
        key = _api_key(self.options)
        youtube = self._client(key)
        outcome = SearchOutcome()
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        usable = 0  # distinct results that are not live or upcoming: what n_results counts
        duplicates = 0
        interrupted: SearchInterrupted | None = None
        page_token: str | None = None
        try:
            while usable < n_results:
                params = self._search_params(query)
                params["maxResults"] = min(PAGE_SIZE, n_results - usable)
                if page_token:
                    params["pageToken"] = page_token
                if self.search_calls:
                    self._sleep()
                self.search_calls += 1
                page = self._execute(youtube.search().list(**params), key)
                page_items = [it for it in page.get("items", []) if _video_id(it)]
                for it in page_items:
                    vid = _video_id(it)
                    if vid in seen:
                        duplicates += 1
                        continue
                    seen.add(vid)
                    items.append(it)
                    usable += not _is_live(it)
                    if usable >= n_results:
                        break
                page_token = page.get("nextPageToken")
                if not page_token or not page_items:
                    break
        except SearchInterrupted as e:
            if e.fatal:
                self._log_quota(label, query)
                raise
            interrupted = e
        durations: dict[str, float | None] = {}
        ids = [_video_id(it) for it in items]
        try:
            for start in range(0, len(ids), PAGE_SIZE):
                batch = ids[start : start + PAGE_SIZE]
                self._sleep()
                self.videos_calls += 1
                resp = self._execute(
                    youtube.videos().list(
                        part="contentDetails", id=",".join(batch), maxResults=PAGE_SIZE
                    ),
                    key,
                )
                for video in resp.get("items", []):
                    durations[video.get("id", "")] = parse_iso_duration(
                        video.get("contentDetails", {}).get("duration")
                    )
        except SearchInterrupted as e:
            if e.fatal:
                self._log_quota(label, query)
                raise
            log.warning("youtube: durations incomplete for %r: %s", label, e)
            interrupted = interrupted or e
        self._log_quota(label, query)
        if duplicates:
            log.info("youtube: %d duplicate result(s) for %r dropped", duplicates, label)
        for rank, item in enumerate(items, start=1):
            vid = _video_id(item)
            snippet = item.get("snippet", {})
            if not SAFE_ID.match(vid):
                log.warning("youtube: ignoring result with unsafe id %r", vid)
                continue
            cand = Candidate(
                video_id=vid,
                url=f"https://www.youtube.com/watch?v={vid}",
                title=html.unescape(snippet.get("title", "")),
                channel=html.unescape(snippet.get("channelTitle", "")),
                duration=durations.get(vid),
                query=query,
                rank=rank,
                label=label,
            )
            live = snippet.get("liveBroadcastContent", "none")
            if live in ("live", "upcoming"):
                outcome.skipped.append(SkippedCandidate(cand, f"{live} broadcast"))
            elif cand.duration == 0:
                reason = "no audio yet (duration P0D: a premiere or a broken item)"
                outcome.skipped.append(SkippedCandidate(cand, reason))
            else:
                outcome.candidates.append(cand)
        if interrupted is not None:
            interrupted.outcome = outcome
            raise interrupted
        return outcome

    def _log_quota(self, label: str, query: str) -> None:
        from .search import query_id

        log.info(
            "youtube quota for %s/%s: %d search.list call(s) (%d units in the classic model; "
            "%d of the 100 daily search calls in the current one), %d videos.list call(s) "
            "(%d units); %d units in all (classic model)",
            label,
            query_id(query),
            self.search_calls,
            self.search_calls * SEARCH_UNITS,
            self.search_calls,
            self.videos_calls,
            self.videos_calls * VIDEOS_UNITS,
            self.search_calls * SEARCH_UNITS + self.videos_calls * VIDEOS_UNITS,
        )

    @property
    def quota_units(self) -> int:
        """Units spent by this instance under the classic quota model."""
        return self.search_calls * SEARCH_UNITS + self.videos_calls * VIDEOS_UNITS

    def download(self, candidate: dict[str, Any], out_dir) -> DownloadResult:
        """Download with yt-dlp (the API itself does not serve media)."""
        from .download import YtDlpDownloader

        return YtDlpDownloader(self.options).download(candidate, out_dir)
