"""The download store: one folder per video, kept apart from ``results/``, never fetched twice.

Layout, under ``<downloads>/<source>/`` (the demo's: ``<downloads>/demo/<options hash>/``,
:func:`soundharvest.config.download_store`)::

    <video_id>/audio.<ext>     the audio stream as published
    <video_id>/info.json       what the source said about it
    <video_id>/status.json     written last by the download (ok / failed and why)
    <video_id>.status.json     the workflow's record of the download (its declared output)

Snakemake deletes a job's declared outputs before it re-runs the job (a changed parameter, a
deleted ``results/`` or ``.snakemake/``), so the audio lives in the folder, which Snakemake
does not own, and :func:`download_to_store` re-uses a folder whose ``status.json`` says ``ok``
instead of fetching again. A failed download is tried again on the next run.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..io import Pathlike, SoundharvestError, read_json, write_json
from .download import download_video

log = logging.getLogger("soundharvest.download")


def cached_status(store_dir: Pathlike) -> dict[str, Any] | None:
    """The status of a complete, successful earlier download in ``store_dir``, else ``None``."""
    status_path = Path(store_dir) / "status.json"
    if not status_path.is_file():
        return None
    try:
        status = read_json(status_path)
    except SoundharvestError:
        return None
    audio = status.get("audio") if isinstance(status, dict) else None
    if status.get("status") != "ok" or not audio or not (Path(store_dir) / audio).is_file():
        return None
    return status


def download_to_store(
    source_name: str,
    options: dict[str, Any],
    candidate: dict[str, Any],
    store_dir: Pathlike,
    out_status: Pathlike,
) -> dict[str, Any]:
    """Download ``candidate`` into ``store_dir`` unless it is there already; record the status.

    :param out_status: the status JSON to write beside ``store_dir``; its ``audio`` is relative
        to the JSON's own folder, as :func:`~soundharvest.acquire.convert.convert_file` expects.
    :return: the status written.
    """
    store_dir = Path(store_dir)
    status = cached_status(store_dir)
    if status is not None:
        log.info(
            "%s: already in the store (%s); not fetched again", store_dir.name, status["audio"]
        )
        status = {**status, "cached": True}
    else:
        status = {**download_video(source_name, options, candidate, store_dir), "cached": False}
    if status.get("audio"):
        rel = os.path.relpath(store_dir / status["audio"], Path(out_status).parent)
        status["audio"] = rel
    write_json(out_status, status)
    return status


def download_batch(
    source_name: str,
    options: dict[str, Any],
    candidates: list[dict[str, Any]],
    store_root: Pathlike,
    manifest: Pathlike,
):
    """Download a batch of candidates into the store and write the batch's manifest.

    Each video is its own unit, as :func:`download_to_store` makes it: a video whose folder
    holds a successful download is re-used, any other is fetched (a failure of an earlier run
    is tried again), and ``<store_root>/<video_id>.status.json`` is written as each finishes,
    so a killed batch fetches only what it had not finished. The manifest (written last) has
    ``status``, ``reason`` and ``cached`` per video.
    """
    import pandas as pd

    from ..io import write_tsv

    store_root = Path(store_root)
    rows = []
    for candidate in candidates:
        vid = str(candidate["video_id"])
        status = download_to_store(
            source_name, options, candidate, store_root / vid, store_root / f"{vid}.status.json"
        )
        rows.append(
            {
                "video_id": vid,
                "status": status["status"],
                "reason": status.get("reason") or "",
                "cached": bool(status.get("cached")),
            }
        )
    frame = pd.DataFrame(rows, columns=["video_id", "status", "reason", "cached"])
    write_tsv(manifest, frame)
    fetched = int((~frame["cached"]).sum()) if len(frame) else 0
    failed = int((frame["status"] != "ok").sum()) if len(frame) else 0
    log.info(
        "download: %d video(s), %d fetched now, %d re-used from the store, %d failed",
        len(frame),
        fetched,
        len(frame) - fetched,
        failed,
    )
    return frame
