"""The ``local`` source: folders of audio files the user already has.

A query names a folder: relative to the ``root`` option (or absolute). The usual layout is one
folder per label, ``<root>/<label>/``, with the label's name as its only query. Every file with
an audio or video extension under the folder (recursively, hidden files excluded) is a
"search result", ranked by its path. ``download`` hard-links (or copies) the file into the
job's directory, so that later stages never depend on the user's folder staying put.

A file's id is derived from its path, never used as-is: the stem reduced to
``[A-Za-z0-9_-]`` (at most 40 characters) plus 8 hex digits of the SHA-1 of the path relative
to ``root``, so that ``Flûte à bec (live).mp3`` and ``Flute a bec live.mp3`` stay distinct
and every id is a safe file name.

Options: ``root`` (required), ``extensions`` (list; default :data:`AUDIO_EXTENSIONS`),
``probe_durations`` (default ``true``: read each file's duration, needed for duration limits),
``ffmpeg`` (``imageio``, ``system`` or a path; used to probe formats libsndfile cannot read).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import soundfile as sf

from ..audio import ffmpeg_exe
from ..io import SoundharvestError, write_json
from .base import Candidate, DownloadResult, Source, register_source

log = logging.getLogger("soundharvest.local")

#: Extensions (lower case, no dot) taken as audio by default: what ffmpeg commonly decodes.
AUDIO_EXTENSIONS = (
    "wav", "flac", "mp3", "m4a", "aac", "ogg", "oga", "opus", "webm", "mp4", "mkv", "mka",
    "wma", "aif", "aiff", "wv", "ape", "mov", "avi", "caf", "ac3", "amr", "au",
)  # fmt: skip

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_FFMPEG_DURATION = re.compile(r"Duration:\s*(\d+):(\d\d):(\d\d(?:\.\d+)?)")


def audio_files(folder: Path, extensions: Iterable[str] = AUDIO_EXTENSIONS) -> list[Path]:
    """The audio files under ``folder`` (recursively; by extension, lower case, no dot), sorted
    by their path inside it; hidden files and folders are left out."""
    exts = {str(e).lower().lstrip(".") for e in extensions}
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            if name.rsplit(".", 1)[-1].lower() in exts and "." in name:
                found.append(Path(dirpath) / name)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def file_id(path: Path, root: Path) -> str:
    """Safe, stable id of a local file (see the module docstring)."""
    try:
        rel = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        rel = path.resolve().as_posix()
    stem = _UNSAFE.sub("_", path.stem).strip("_")[:40] or "file"
    return f"{stem}-{hashlib.sha1(rel.encode('utf-8')).hexdigest()[:8]}"


def probe_duration(path: Path, ffmpeg: str | None = None) -> float | None:
    """Duration in seconds from the file's header (libsndfile, else ffmpeg); ``None`` if unknown."""
    try:
        info = sf.info(str(path))
        if info.samplerate > 0 and info.frames > 0:
            return info.frames / info.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError):
        pass
    cmd = [ffmpeg or ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = _FFMPEG_DURATION.search(proc.stderr.decode("utf-8", "replace"))
    if not m:
        return None
    h, mi, s = m.groups()
    return int(h) * 3600 + int(mi) * 60 + float(s)


def path_from_url(url: str) -> Path:
    """The local path of a ``file://`` URL (as written by :meth:`LocalSource.search`)."""
    parsed = urlparse(url)
    if parsed.scheme != "file":
        raise SoundharvestError(f"local source: {url!r} is not a file:// URL; re-run the search")
    return Path(unquote(parsed.path))


@register_source
class LocalSource(Source):
    """Audio files in local folders, one folder per query."""

    name = "local"

    def _root(self) -> Path:
        root = self.options.get("root")
        if not root:
            raise SoundharvestError(
                "config: the local source needs options.root (the folder holding one folder "
                "per label)"
            )
        return Path(os.path.expanduser(str(root)))

    def _folder(self, query: str) -> Path:
        root = self._root()
        folder = Path(os.path.expanduser(query))
        if not folder.is_absolute():
            folder = root / folder
        if not folder.is_dir():
            raise SoundharvestError(
                f"local source: folder {str(folder)!r} (query {query!r}) does not exist; create "
                f"it with the label's audio files or fix the query"
            )
        return folder

    def _extensions(self) -> set[str]:
        exts = self.options.get("extensions") or AUDIO_EXTENSIONS
        return {str(e).lower().lstrip(".") for e in exts}

    def list_files(self, query: str) -> list[Path]:
        """Audio files under the query's folder, sorted by their path (hidden ones excluded)."""
        return audio_files(self._folder(query), self._extensions())

    def search(self, label: str, query: str, n_results: int) -> list[Candidate]:
        """List the first ``n_results`` audio files of the query's folder as candidates."""
        root = self._root()
        files = self.list_files(query)
        if not files:
            log.warning("local: no audio files in %s (query %r)", self._folder(query), query)
        probe = bool(self.options.get("probe_durations", True))
        exe = ffmpeg_exe(self.options.get("ffmpeg", "imageio")) if probe else None
        out: list[Candidate] = []
        seen: set[str] = set()
        for path in files[:n_results]:
            vid = file_id(path, root)
            if vid in seen:  # same stem and same 32-bit path hash: keep the first file
                log.warning("local: %s has the same id as another file; skipped", path)
                continue
            seen.add(vid)
            out.append(
                Candidate(
                    video_id=vid,
                    url=path.resolve().as_uri(),
                    title=path.name,
                    channel=path.parent.name,
                    duration=probe_duration(path, exe) if probe else None,
                    query=query,
                    rank=len(out) + 1,
                    label=label,
                )
            )
        return out

    def download(self, candidate: dict[str, Any], out_dir: Path) -> DownloadResult:
        """Hard-link (or copy) the user's file to ``out_dir/audio.<ext>``."""
        src = path_from_url(str(candidate["url"]))
        out_dir = Path(out_dir)
        if not src.is_file():
            return DownloadResult("failed", f"missing: {src} no longer exists")
        ext = src.suffix.lower().lstrip(".")
        ext = ext if re.fullmatch(r"[a-z0-9]{1,5}", ext) else "bin"
        dest = out_dir / f"audio.{ext}"
        tmp = out_dir / f".audio.{ext}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
            how = "hardlink"
        except OSError:
            shutil.copyfile(src, tmp)
            how = "copy"
        os.replace(tmp, dest)
        stat = src.stat()
        info = {
            "id": candidate.get("video_id"),
            "source_path": str(src),
            "size": stat.st_size,
            "mtime": stat.st_mtime,
            "how": how,
        }
        write_json(out_dir / "info.json", info)
        return DownloadResult("ok", audio=dest, info=info)
