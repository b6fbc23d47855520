"""Acquisition: search sources, download, convert to wav, and the catalog of what was found."""

from .base import CANDIDATE_COLUMNS, Candidate, DownloadResult, Source, get_source, register_source

__all__ = [
    "CANDIDATE_COLUMNS",
    "Candidate",
    "DownloadResult",
    "Source",
    "get_source",
    "register_source",
]
