"""The download store: one folder per video, kept apart from ``results/``, never fetched twice.

Layout, under ``<downloads>/<source>/``::

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
