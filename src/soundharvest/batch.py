"""Per-video stages in batches: many videos per job, each video still its own unit of work.

A job per video and stage costs an interpreter and its imports (about 2 s of CPU) for some
10-100 ms of decoding or STFT; at thousands of videos the start-up is most of the run. So the
per-video stages (``download``, ``convert``, ``spectrogram`` of each kind) run one job per
*batch* of videos (:func:`assign_batches`), and inside it each video keeps what a job of its
own gave:

- its outputs are written atomically under their usual per-video names, then a *stamp*
  (``<video_id>.stamp``, JSON) records the fingerprint of what made them (the stage's
  parameters and the identity of the video's input) and their sizes;
- a batch that runs again (killed half-way, a video added to it, ``--forcerun``) re-uses every
  video whose stamp matches (:func:`is_current`) and redoes only the others: a kill -9 costs
  the unfinished videos, a changed parameter changes every fingerprint and redoes them all;
- a bad video is recorded with its reason by the stage itself (``convert`` writes ``skipped``
  and why) and the batch goes on; an error that is not the video's (a full disk, a damaged
  output of an earlier stage) fails the job, and the videos done before it are kept;
- the job's one declared output is its *manifest*, a TSV with a row per video, written last:
  Snakemake re-runs a batch when its manifest is missing, and downstream rules read the
  manifests (the per-video files are beside them, by name).

Batches are cut per label (a video found by two labels belongs to the first), in the order of
the video ids, so adding a video to one label changes that label's batches only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .io import Pathlike, SoundharvestError, read_json, write_json, write_tsv

log = logging.getLogger("soundharvest.batch")


def assign_batches(ids_by_label: Mapping[str, Sequence[str]], size: int) -> dict[str, list[str]]:
    """Cut each label's videos into batches of at most ``size``.

    Returns ``{"<label>-<i>-<hash>": [ids]}``: ``i`` counts the label's batches (000, 001, ...)
    and ``hash`` is 8 hex digits of the batch's members, so a batch whose videos change gets a
    new name, and with it new jobs that Snakemake knows it must run (a missing output), however
    it learns of the change (a checkpoint re-evaluated mid-run included). Labels are taken in
    sorted order; a video already in an earlier label's batch is left out of later ones (one
    video is one unit of work, whichever labels use it). Within a label the ids are sorted, so
    the batches do not depend on the search's ranking.
    """
    if int(size) < 1:
        raise SoundharvestError(f"batch.videos: {size!r} must be a whole number >= 1")
    size = int(size)
    seen: set[str] = set()
    out: dict[str, list[str]] = {}
    for label in sorted(ids_by_label):
        ids = sorted(set(ids_by_label[label]) - seen)
        seen.update(ids)
        for i in range(0, len(ids), size):
            members = ids[i : i + size]
            out[f"{label}-{i // size:03d}-{fingerprint(members)[:8]}"] = members
    return out


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-able ``parts`` (keys sorted): what made a video's outputs."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def stamp_path(directory: Pathlike, video_id: str) -> Path:
    """Where a stage writes a video's stamp (beside its outputs)."""
    return Path(directory) / f"{video_id}.stamp"


def read_stamp(path: Pathlike) -> dict[str, Any] | None:
    """A stamp's record, or ``None`` if it is missing or unreadable (then the video is redone)."""
    try:
        stamp = read_json(path)
    except (OSError, SoundharvestError):
        return None
    return stamp if isinstance(stamp, dict) else None


def is_current(stamp_file: Pathlike, fp: str, outputs: Iterable[Pathlike]) -> bool:
    """Whether ``stamp_file`` says ``outputs`` were made from ``fp`` and they are still whole.

    Whole means present with the size recorded when they were written: a deleted, truncated or
    replaced output makes its video redone.
    """
    stamp = read_stamp(stamp_file)
    if stamp is None or stamp.get("fingerprint") != fp:
        return False
    sizes = stamp.get("bytes") or {}
    for out in outputs:
        p = Path(out)
        try:
            if p.stat().st_size != sizes.get(p.name):
                return False
        except OSError:
            return False
    return True


def write_stamp(stamp_file: Pathlike, fp: str, outputs: Iterable[Pathlike], **extra: Any) -> None:
    """Record (atomically, after the outputs) that ``outputs`` were made from ``fp``."""
    sizes = {Path(p).name: Path(p).stat().st_size for p in outputs}
    write_json(stamp_file, {"fingerprint": fp, "bytes": sizes, **extra})


def run_batch(
    video_ids: Sequence[str],
    step: Callable[[str], tuple[str, list[Path], Callable[[], dict[str, Any]]]],
    manifest: Pathlike,
    stage: str,
) -> pd.DataFrame:
    """Run one stage over a batch and write its manifest.

    :param step: for a video id, ``(fingerprint, outputs, work)``: ``work()`` writes the outputs
        (atomically) and returns the video's manifest row; it is called only when the video's
        stamp does not match. A re-used video's row is the one its stamp recorded.
    :param manifest: the TSV to write last (``video_id`` plus the rows' fields, ``reused``).
    :param stage: the stage's name, for the log.
    :return: the manifest's rows.
    """
    rows = []
    redone = 0
    for vid in video_ids:
        fp, outputs, work = step(vid)
        stamp = stamp_path(Path(outputs[0]).parent, vid)
        if is_current(stamp, fp, outputs):
            record = read_stamp(stamp) or {}
            row = record.get("row") or {}
            order = record.get("columns") or sorted(row)
            rows.append({"video_id": vid, **{k: row.get(k) for k in order}, "reused": True})
            continue
        for p in outputs:  # a stale output must not be trusted while its video is redone
            Path(p).unlink(missing_ok=True)
        stamp.unlink(missing_ok=True)
        row = {k: v for k, v in work().items() if k != "video_id"}
        write_stamp(stamp, fp, outputs, row=row, columns=list(row))
        rows.append({"video_id": vid, **row, "reused": False})
        redone += 1
    frame = pd.DataFrame(rows, columns=None if rows else ["video_id", "reused"])
    write_tsv(manifest, frame)
    log.info(
        "%s: %d video(s), %d done now, %d re-used (unchanged since their stamp)",
        stage,
        len(rows),
        redone,
        len(rows) - redone,
    )
    return frame


def read_manifests(paths: Iterable[Pathlike]) -> pd.DataFrame:
    """The rows of several manifests, in order, with a one-line error for a broken one."""
    frames = []
    for p in paths:
        try:
            frame = pd.read_csv(p, sep="\t", dtype={"video_id": str}, keep_default_na=False)
        except (OSError, ValueError, pd.errors.ParserError) as e:
            raise SoundharvestError(
                f"{p}: not a readable batch manifest ({e}); delete it and re-run"
            ) from None
        if "video_id" not in frame.columns:
            raise SoundharvestError(f"{p}: field 'video_id' is missing; delete it and re-run")
        frame["manifest"] = os.fspath(p)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["video_id", "manifest"])
    return pd.concat(frames, ignore_index=True)


def manifest_of(video_ids: Iterable[str], paths: Iterable[Pathlike]) -> dict[str, str]:
    """``{video_id: the manifest that lists it}`` for ``video_ids``, from the manifests."""
    rows = read_manifests(paths)
    where = dict(zip(rows["video_id"], rows["manifest"], strict=True))
    wanted = list(video_ids)
    missing = [v for v in wanted if v not in where]
    if missing:
        raise SoundharvestError(
            f"video {missing[0]} is in none of the batch manifests given "
            f"({len(missing)} missing); delete them and re-run"
        )
    return {v: where[v] for v in wanted}
