"""The ``search`` stage: one ranked candidate table per query, merged per label.

A query is named by :func:`query_id` (a hash of its text), never by the text itself, so that a
query such as ``violin'; rm -rf ~ #`` or ``flûte à bec`` is only ever data: it travels inside
TSV cells and Python strings, never through a shell or a file name.

Per-query tables (:func:`run_search`) have the columns :data:`SEARCH_COLUMNS`: the source's
:data:`~soundharvest.acquire.base.CANDIDATE_COLUMNS`, then ``status``, ``reason`` and
``query_id``. A result that the search already rules out (too short, too long, a live or upcoming
broadcast) is kept with ``status = "skipped"`` and its reason, so the catalog shows what the search
gave and what was lost, instead of dropping it silently.

Errors of the search service (see :class:`SearchInterrupted`):

- a bad key, a disabled API, or anything the user must fix: the job fails with a one-line message;
- quota exhausted, server or network errors after some results were found: the results found so
  far are written and a warning is logged (the catalog then holds fewer rows for that query);
- the same errors before any result was found: the job fails, so that a re-run (after the quota
  resets, or once the network is back) searches again instead of trusting an empty table.

Cross-label duplicates (a video found by the queries of several labels) are decided by one
function, :func:`cross_label_status`, used both by :func:`label_video_ids` (what the workflow
downloads and trains on) and by the catalog, so the two always agree.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..io import Pathlike, SoundharvestError, write_tsv
from .base import CANDIDATE_COLUMNS, SAFE_ID, Candidate, get_source

log = logging.getLogger("soundharvest.search")

#: Columns of a per-query search table, in order.
SEARCH_COLUMNS = [*CANDIDATE_COLUMNS, "status", "reason", "query_id"]

#: Columns of the merged table (one row per label and video), in order.
MERGED_COLUMNS = [*SEARCH_COLUMNS, "query_ids", "labels"]

#: Allowed values of the ``search.cross_label`` config key.
CROSS_LABEL_POLICIES = ("exclude", "keep")


def query_id(query: str) -> str:
    """Safe, stable id of a query: ``"q-"`` and the first 10 hex digits of its SHA-1.

    10 hex digits (40 bits) make a collision between two queries of one config negligible
    (about 1e-10 for 100 queries) while keeping file names short.

    :param query: the query exactly as written in the config (no normalisation: two spellings
        are two queries).
    """
    return "q-" + hashlib.sha1(query.encode("utf-8")).hexdigest()[:10]


@dataclass
class SkippedCandidate:
    """A search result that the source itself rules out, kept so the catalog can show it."""

    candidate: Candidate
    reason: str


@dataclass
class SearchOutcome:
    """What a source may return instead of a plain list: candidates plus skipped results."""

    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[SkippedCandidate] = field(default_factory=list)


class SearchInterrupted(SoundharvestError):
    """The search service stopped answering part-way (quota, server, network) or refused the key.

    :param message: one line for the user; never contains the API key.
    :param code: short machine-readable cause (``quota``, ``bad_key``, ``server``, ``network``...).
    :param outcome: what had been found before the interruption.
    :param fatal: ``True`` when the user must fix something before any re-run helps (bad key):
        then even partial results fail the job.
    """

    def __init__(
        self, message: str, code: str, outcome: SearchOutcome | None = None, fatal: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self.outcome = outcome or SearchOutcome()
        self.fatal = fatal


def _as_outcome(result: Any) -> SearchOutcome:
    if isinstance(result, SearchOutcome):
        return result
    return SearchOutcome(candidates=list(result))


def _duration_reason(
    duration: float | None, min_duration: float | None, max_duration: float | None
) -> str:
    if duration is None:
        return ""
    if duration <= 0:
        return f"no audio (duration {duration:g} s)"
    if min_duration is not None and duration < min_duration:
        return f"too short ({duration:g} s < {min_duration:g} s)"
    if max_duration is not None and duration > max_duration:
        return f"too long ({duration:g} s > {max_duration:g} s)"
    return ""


def outcome_frame(
    outcome: SearchOutcome,
    query: str,
    min_duration: float | None = None,
    max_duration: float | None = None,
) -> pd.DataFrame:
    """Turn a source's outcome into a search table (columns :data:`SEARCH_COLUMNS`).

    Rows are ordered by rank; a video listed twice by the source keeps its first (best) rank.
    """
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    entries = [(c, "") for c in outcome.candidates] + [
        (s.candidate, s.reason) for s in outcome.skipped
    ]
    entries.sort(key=lambda e: e[0].rank)
    for cand, skip_reason in entries:
        if cand.video_id in seen:
            continue
        seen.add(cand.video_id)
        reason = skip_reason or _duration_reason(cand.duration, min_duration, max_duration)
        row = cand.to_dict()
        row.update(status="skipped" if reason else "ok", reason=reason, query_id=query_id(query))
        rows.append(row)
    frame = pd.DataFrame(rows, columns=SEARCH_COLUMNS)
    return frame


def run_search(
    source_name: str,
    options: dict[str, Any] | None,
    label: str,
    query: str,
    n_results: int,
    out_tsv: Pathlike,
    min_duration: float | None = None,
    max_duration: float | None = None,
) -> pd.DataFrame:
    """Search one query and write its ranked candidate table atomically.

    :param source_name: ``youtube``, ``ytsearch``, ``local`` or ``demo``.
    :param options: the source's options from the config.
    :param label: the label the query belongs to.
    :param query: the query text (data only: never interpreted by a shell).
    :param n_results: how many results to ask the source for.
    :param out_tsv: the table to write (columns :data:`SEARCH_COLUMNS`).
    :param min_duration: results shorter than this (seconds) get ``status = "skipped"``.
    :param max_duration: results longer than this (seconds) get ``status = "skipped"``.
    :return: the table written.
    :raises SoundharvestError: bad key or configuration, or an interruption before any result.
    """
    if n_results < 1:
        raise SoundharvestError(f"config: n_results for query {query_id(query)} must be >= 1")
    source = get_source(source_name, options)
    qid = query_id(query)
    try:
        outcome = _as_outcome(source.search(label, query, n_results))
    except SearchInterrupted as e:
        # What the table will hold: distinct videos (a source may list one twice).
        found = len(
            {c.video_id for c in e.outcome.candidates}
            | {s.candidate.video_id for s in e.outcome.skipped}
        )
        if e.fatal or found == 0:
            raise SoundharvestError(
                f"search {label}/{qid}: {e} (nothing written; re-run once fixed)"
            ) from None
        log.warning(
            "search %s/%s: %s; keeping the %d results found before it", label, qid, e, found
        )
        outcome = e.outcome
    frame = outcome_frame(outcome, query, min_duration, max_duration)
    n_ok = int((frame["status"] == "ok").sum())
    log.info(
        "search %s/%s (%s): %d results, %d usable, %d skipped",
        label,
        qid,
        source_name,
        len(frame),
        n_ok,
        len(frame) - n_ok,
    )
    for row in frame[frame["status"] != "ok"].itertuples():
        log.info("search %s/%s: skipped %s: %s", label, qid, row.video_id, row.reason)
    write_tsv(out_tsv, frame)
    return frame


# ---------------------------------------------------------------------------------------------
# Reading and merging


def _read_rows(path: Pathlike) -> list[dict[str, str]]:
    """Read a search table with the csv module (cheap: used inside Snakemake input functions)."""
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t")
            missing = {"video_id", "rank", "status"} - set(reader.fieldnames or [])
            if missing:
                raise SoundharvestError(
                    f"{path}: not a search table (missing columns {', '.join(sorted(missing))}); "
                    "delete it and re-run the search"
                )
            return list(reader)
    except FileNotFoundError:
        raise SoundharvestError(f"{path}: search table not found; run the search first") from None


def read_search_table(path: Pathlike) -> pd.DataFrame:
    """Read a per-query search table with every column as text (ids such as ``0123`` stay ids)."""
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    return frame


def cross_label_status(labels: Sequence[str], policy: str = "exclude") -> tuple[bool, str]:
    """Decide whether a video found by the queries of ``labels`` may be used for each of them.

    :param labels: every label whose queries found the video.
    :param policy: ``"exclude"`` (a video found by several labels is used by none: its label is
        ambiguous) or ``"keep"`` (used by each label that found it).
    :return: ``(usable, reason)``; ``reason`` is empty when usable.
    """
    if policy not in CROSS_LABEL_POLICIES:
        raise SoundharvestError(
            f"config: search.cross_label is {policy!r}; use one of {', '.join(CROSS_LABEL_POLICIES)}"
        )
    unique = sorted(set(labels))
    if len(unique) > 1 and policy == "exclude":
        return False, f"found by labels {', '.join(unique)}"
    return True, ""


def _rank(row: Mapping[str, str]) -> int:
    try:
        return int(row["rank"])
    except (TypeError, ValueError):
        return 1 << 30


def _merge_rows(
    label_tsvs: Mapping[str, Sequence[Pathlike]], cross_label: str
) -> list[dict[str, str]]:
    """Merge per-query tables; one row per (label, video), best rank first within a label."""
    per_label: dict[str, dict[str, dict[str, str]]] = {}
    order: dict[tuple[str, str], tuple[int, int]] = {}
    labels_of: dict[str, set[str]] = {}
    for label, paths in label_tsvs.items():
        merged = per_label.setdefault(label, {})
        for q_index, path in enumerate(paths):
            for row in _read_rows(path):
                vid = row["video_id"]
                if not SAFE_ID.match(vid or ""):
                    raise SoundharvestError(
                        f"{path}: video_id {vid!r} is not a safe id; delete it and re-run the search"
                    )
                key = (_rank(row), q_index)
                qid = row.get("query_id", "")
                if vid not in merged:
                    merged[vid] = dict(row, query_ids=qid)
                    order[(label, vid)] = key
                else:
                    have = merged[vid]
                    qids = have["query_ids"].split(",") if have["query_ids"] else []
                    if qid and qid not in qids:
                        qids.append(qid)
                    if key < order[(label, vid)]:
                        merged[vid] = dict(row)
                        order[(label, vid)] = key
                    merged[vid]["query_ids"] = ",".join(qids)
                if row.get("status", "ok") == "ok":
                    labels_of.setdefault(vid, set()).add(label)
                else:
                    labels_of.setdefault(vid, set())
    out: list[dict[str, str]] = []
    for label, merged in per_label.items():
        vids = sorted(merged, key=lambda v: order[(label, v)])
        for vid in vids:
            row = merged[vid]
            row["label"] = label
            found_by = sorted(labels_of.get(vid, set()) | {label})
            row["labels"] = ",".join(found_by)
            if row.get("status", "ok") == "ok":
                usable, reason = cross_label_status(found_by, cross_label)
                if not usable:
                    row["status"], row["reason"] = "skipped", reason
            out.append(row)
    return out


def tables_by_label(paths: Sequence[Pathlike]) -> dict[str, list[Pathlike]]:
    """Group per-query tables laid out as ``<any>/<label>/<query_id>.tsv`` by label, in order."""
    tables: dict[str, list[Pathlike]] = {}
    for path in paths:
        tables.setdefault(Path(path).parent.name, []).append(path)
    return tables


def merge_candidates(
    label_tsvs: Mapping[str, Sequence[Pathlike]], cross_label: str = "exclude"
) -> pd.DataFrame:
    """Merge every label's per-query tables into one table of candidates.

    Within a label, a video found by several queries appears once, with its best rank (ties: the
    query listed first) and all its queries' ids in ``query_ids``. Across labels, ``labels`` lists
    every label whose queries found the video (usable results only), and :func:`cross_label_status`
    decides whether it stays usable (``status``/``reason``).

    :param label_tsvs: label -> its queries' search tables, in config order.
    :param cross_label: ``"exclude"`` or ``"keep"`` (see :func:`cross_label_status`).
    :return: columns :data:`MERGED_COLUMNS`, every value as text.
    """
    rows = _merge_rows(label_tsvs, cross_label)
    return pd.DataFrame(rows, columns=MERGED_COLUMNS).fillna("")


def label_video_ids(
    label: str, label_tsvs: Mapping[str, Sequence[Pathlike]], cross_label: str = "exclude"
) -> list[str]:
    """Usable video ids of one label, best rank first, without duplicates.

    Cheap (csv module, no pandas): meant for a Snakemake input function after the checkpoint.
    Needs every label's tables because the cross-label rule looks at what the others found.

    :param label: the label whose ids to list.
    :param label_tsvs: label -> its queries' search tables (all labels).
    :param cross_label: ``"exclude"`` or ``"keep"``; must be the value given to the catalog.
    """
    if label not in label_tsvs:
        raise SoundharvestError(f"config: label {label!r} has no search tables")
    return [
        row["video_id"]
        for row in _merge_rows(label_tsvs, cross_label)
        if row["label"] == label and row.get("status") == "ok"
    ]


def write_merged(frame: pd.DataFrame, out_tsv: Pathlike) -> None:
    """Write a merged candidate table atomically (TSV)."""
    write_tsv(out_tsv, frame)
