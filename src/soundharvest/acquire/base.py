"""What every acquisition source provides, and the registry that names them.

A source turns a query into ranked :class:`Candidate` rows (``search``) and a candidate into an
audio file in a directory of its own (``download``). Sources are registered by name; the
config's ``source`` key picks one. Adding a source means writing one module that defines a
class decorated with :func:`register_source` and adding its module path to ``SOURCE_MODULES``.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..io import SoundharvestError

#: The columns of a search result table, in order.
CANDIDATE_COLUMNS = ["video_id", "url", "title", "channel", "duration", "query", "rank", "label"]

#: Video ids become file names: only these characters are allowed in them.
SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

#: name -> module that defines and registers the source. Imported lazily, so that a source's
#: optional dependencies are needed only when it is used.
SOURCE_MODULES = {
    "youtube": "soundharvest.acquire.youtube",
    "ytsearch": "soundharvest.acquire.ytsearch",
    "local": "soundharvest.acquire.local",
    "demo": "soundharvest.acquire.demo",
}

#: The download settings (config section ``download`` and ``convert.ffmpeg``) that reach a
#: source's ``download`` beside its own options. A source that does not use them ignores them.
DOWNLOAD_OPTIONS = frozenset(
    {
        "format",
        "retries",
        "backoff",
        "backoff_max",
        "sleep_interval",
        "max_sleep_interval",
        "sleep_interval_requests",
        "download_archive",
        "socket_timeout",
        "ytdlp_retries",
        "ytdlp_options",
        "probe_seconds",
        "ffmpeg",
    }
)

_REGISTRY: dict[str, type[Source]] = {}


@dataclass
class Candidate:
    """One search result.

    :param video_id: the source's id, restricted to ``[A-Za-z0-9_-]`` (it names files).
    :param duration: seconds, or ``None`` when the source does not say.
    :param rank: 1-based position in the query's result list.
    """

    video_id: str
    url: str
    title: str
    channel: str
    duration: float | None
    query: str
    rank: int
    label: str

    def __post_init__(self) -> None:
        if not SAFE_ID.match(self.video_id):
            raise SoundharvestError(
                f"search result {self.video_id!r}: video id must match {SAFE_ID.pattern}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DownloadResult:
    """What a download gave: ``status`` is ``"ok"`` or ``"failed"`` (with ``reason``)."""

    status: str
    reason: str = ""
    audio: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)


class Source:
    """Base class of acquisition sources; subclasses set ``name`` and implement both methods."""

    name: ClassVar[str] = ""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = dict(options or {})

    def search(self, label: str, query: str, n_results: int) -> list[Candidate] | Any:
        """Return up to ``n_results`` ranked candidates for ``query`` (found for ``label``):
        a list of :class:`Candidate`, or a
        :class:`~soundharvest.acquire.search.SearchOutcome` that also lists skipped results."""
        raise NotImplementedError

    def download(self, candidate: dict[str, Any], out_dir: Path) -> DownloadResult:
        """Fetch ``candidate``'s audio into ``out_dir`` (which exists and is empty)."""
        raise NotImplementedError


def register_source(cls: type[Source]) -> type[Source]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def get_source(name: str, options: dict[str, Any] | None = None) -> Source:
    """Instantiate the source called ``name`` with its options."""
    if name not in SOURCE_MODULES:
        raise SoundharvestError(
            f"config: source {name!r} is unknown; use one of {', '.join(sorted(SOURCE_MODULES))}"
        )
    importlib.import_module(SOURCE_MODULES[name])
    return _REGISTRY[name](options)
