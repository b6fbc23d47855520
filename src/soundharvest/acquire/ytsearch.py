"""The ``ytsearch`` source: yt-dlp's own YouTube search (``ytsearchN:query``), no API key.

Search runs yt-dlp with flat extraction (``extract_flat="in_playlist"``): one request pages
through the results and each entry is a small dict (id, url, title, channel, duration,
live_status), not a full video extraction. The query is handed to yt-dlp as a Python string;
no shell is involved. Download is the same yt-dlp downloader as the ``youtube`` source's.

Options: ``sleep_interval_requests`` (seconds between yt-dlp's requests) and the downloader's
options (see :class:`~.download.YtDlpDownloader`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..io import SoundharvestError
from .base import SAFE_ID, Candidate, DownloadResult, Source, register_source
from .search import SearchInterrupted, SearchOutcome, SkippedCandidate

log = logging.getLogger("soundharvest.ytsearch")

#: yt-dlp ``live_status`` values that have nothing to download yet (or only a live stream).
_LIVE = {"is_live": "live broadcast", "is_upcoming": "upcoming broadcast"}


def _duration(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


def entries_to_outcome(info: dict[str, Any] | None, label: str, query: str) -> SearchOutcome:
    """Turn yt-dlp's flat search result (a playlist info dict) into ranked candidates.

    Entries without a safe id (channels, playlists, malformed entries) are logged and left out;
    live and upcoming broadcasts are kept as skipped. Ranks are positions in yt-dlp's list.

    :param info: what ``YoutubeDL.extract_info("ytsearchN:...", download=False)`` returned.
    :param label: the label the query belongs to.
    :param query: the query text.
    """
    outcome = SearchOutcome()
    entries = list((info or {}).get("entries") or [])
    for rank, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            continue
        vid = str(entry.get("id") or "")
        if not SAFE_ID.match(vid) or entry.get("ie_key", "Youtube") not in ("Youtube", None):
            log.info("ytsearch: ignoring result %d (%r): not a video", rank, vid)
            continue
        cand = Candidate(
            video_id=vid,
            # The watch URL, also for shorts: one URL form for the downloader and the archive.
            url=f"https://www.youtube.com/watch?v={vid}",
            title=str(entry.get("title") or ""),
            channel=str(entry.get("channel") or entry.get("uploader") or ""),
            duration=_duration(entry.get("duration")),
            query=query,
            rank=rank,
            label=label,
        )
        live = _LIVE.get(str(entry.get("live_status") or ""))
        if live:
            outcome.skipped.append(SkippedCandidate(cand, live))
        else:
            outcome.candidates.append(cand)
    return outcome


@register_source
class YtSearchSource(Source):
    """yt-dlp's YouTube search; yt-dlp download."""

    name = "ytsearch"

    def search(self, label: str, query: str, n_results: int) -> SearchOutcome:
        """Search ``query`` with ``ytsearch{n_results}:``.

        :raises SearchInterrupted: when yt-dlp cannot search (network, bot check...).
        """
        import yt_dlp

        from .download import YtDlpLogger, classify_ytdlp_error

        if "\n" in query or "\r" in query:
            # yt-dlp reads the whole string as the search terms; a line break there is a typo.
            log.warning("ytsearch: the query contains a line break; YouTube sees it as a space")
        params: dict[str, Any] = {
            "extract_flat": "in_playlist",
            "skip_download": True,
            "quiet": True,
            "no_warnings": False,
            "noprogress": True,
            "logger": YtDlpLogger(log),
            "socket_timeout": float(self.options.get("socket_timeout", 30)),
        }
        if self.options.get("sleep_interval_requests"):
            params["sleep_interval_requests"] = float(self.options["sleep_interval_requests"])
        try:
            with yt_dlp.YoutubeDL(params) as ydl:
                info = ydl.extract_info(f"ytsearch{int(n_results)}:{query}", download=False)
        except yt_dlp.utils.DownloadError as e:
            code, message, _transient = classify_ytdlp_error(str(e))
            raise SearchInterrupted(f"yt-dlp search failed ({code}: {message})", code) from None
        if info is None:
            raise SoundharvestError(f"ytsearch: yt-dlp returned nothing for label {label!r}")
        return entries_to_outcome(info, label, query)

    def download(self, candidate: dict[str, Any], out_dir: Path) -> DownloadResult:
        """Download with yt-dlp."""
        from .download import YtDlpDownloader

        return YtDlpDownloader(self.options).download(candidate, out_dir)
