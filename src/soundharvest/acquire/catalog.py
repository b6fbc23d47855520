"""The ``catalog`` stage: one CSV row per label and candidate, with what became of it.

The catalog is where a user sees what the search gave and what was lost on the way: every
candidate of every label, its query and rank, and a final ``status`` (``ok``, ``failed`` or
``skipped``) with its ``reason``. The status comes from the first stage that ruled the video
out: the search (duration limits, live broadcasts), the cross-label rule (see
:func:`~soundharvest.acquire.search.cross_label_status`, shared with ``label_video_ids``), the
download (``failed``: ``download: <code>: <message>``) or the conversion (too short, silent,
undecodable).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from ..io import Pathlike, SoundharvestError, atomic_path, read_json
from .search import merge_candidates

log = logging.getLogger("soundharvest.catalog")

#: The catalog's columns, in order.
CATALOG_COLUMNS = [
    "label",
    "query",
    "rank",
    "video_id",
    "title",
    "channel",
    "duration",
    "status",
    "reason",
    "labels",
    "seconds",
    "query_ids",
    "url",
]

STATUSES = ("ok", "failed", "skipped")


def _convert_status(path: Pathlike) -> dict:
    status = read_json(path)
    if not isinstance(status, dict) or status.get("status") not in STATUSES:
        raise SoundharvestError(
            f"{path}: field 'status' must be one of {', '.join(STATUSES)}; re-run convert"
        )
    return status


def build_catalog(
    merged: pd.DataFrame | Mapping[str, Sequence[Pathlike]],
    convert_status_paths: Mapping[str, Pathlike],
    cross_label: str = "exclude",
) -> pd.DataFrame:
    """Join the merged candidates with the conversion statuses.

    :param merged: the table of :func:`~soundharvest.acquire.search.merge_candidates`, or the
        per-label lists of search tables to merge (then ``cross_label`` applies).
    :param convert_status_paths: video id -> its conversion status JSON. A usable candidate
        without one is recorded as ``skipped``, ``not processed``.
    :param cross_label: ``"exclude"`` or ``"keep"``, used only when ``merged`` is a mapping.
    :return: columns :data:`CATALOG_COLUMNS`, one row per label and video, by label then rank.
    """
    if isinstance(merged, Mapping):
        merged = merge_candidates(merged, cross_label)
    rows = []
    cache: dict[str, dict] = {}
    for row in merged.to_dict("records"):
        vid = str(row["video_id"])
        out = {col: row.get(col, "") for col in CATALOG_COLUMNS}
        out["seconds"] = 0.0
        if row.get("status", "ok") != "ok":
            out["status"] = row.get("status") or "skipped"
            out["reason"] = row.get("reason", "")
        elif vid in convert_status_paths and Path(convert_status_paths[vid]).is_file():
            if vid not in cache:
                cache[vid] = _convert_status(convert_status_paths[vid])
            conv = cache[vid]
            out["status"] = conv["status"]
            out["reason"] = conv.get("reason", "")
            out["seconds"] = float(conv.get("seconds") or 0.0) if conv["status"] == "ok" else 0.0
        else:
            out["status"], out["reason"] = "skipped", "not processed"
        rows.append(out)
    frame = pd.DataFrame(rows, columns=CATALOG_COLUMNS)
    if len(frame):
        frame["_rank"] = pd.to_numeric(frame["rank"], errors="coerce")
        frame = frame.sort_values(["label", "_rank"], kind="stable").drop(columns="_rank")
        frame = frame.reset_index(drop=True)
    return frame


def summarize(catalog: pd.DataFrame) -> pd.DataFrame:
    """Counts of each status per label (columns ``ok``, ``failed``, ``skipped``, ``total``)."""
    counts = (
        catalog.groupby(["label", "status"]).size().unstack(fill_value=0)
        if len(catalog)
        else pd.DataFrame()
    )
    counts = counts.reindex(columns=list(STATUSES), fill_value=0)
    counts["total"] = counts.sum(axis=1)
    return counts


def write_catalog(catalog: pd.DataFrame, out_csv: Pathlike) -> None:
    """Write the catalog as CSV atomically and log its per-label counts."""
    with atomic_path(out_csv) as tmp:
        catalog.to_csv(tmp, index=False)
    counts = summarize(catalog)
    for label, row in counts.iterrows():
        log.info(
            "catalog %s: %d ok, %d failed, %d skipped of %d",
            label, row["ok"], row["failed"], row["skipped"], row["total"],
        )  # fmt: skip


def read_catalog(path: Pathlike) -> pd.DataFrame:
    """Read a catalog CSV with ids and text kept as text."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame["seconds"] = pd.to_numeric(frame["seconds"], errors="coerce").fillna(0.0)
    return frame
