"""Safe file output and small I/O helpers shared by every stage.

Every output is written to a temporary name in the same directory and renamed into place only
when complete (``os.replace`` is atomic on POSIX), so a crash or ``kill -9`` never leaves a
half-written file under the final name that Snakemake or a later stage would trust.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

Pathlike = str | os.PathLike

log = logging.getLogger("soundharvest")


class SoundharvestError(Exception):
    """An error with a one-line message meant for the user (file, field, fix)."""


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Pathlike, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    The temporary file keeps ``path``'s suffix (so that tools that look at extensions, such as
    ffmpeg or ``numpy.save``, behave) and starts with a dot so that globbing ignores it. On any
    exception the temporary file is removed and the final path is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=".tmp" + path.suffix, dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if fsync and tmp_path.is_file():
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp_path, path)
        if fsync:
            _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text(path: Pathlike, text: str) -> None:
    """Write ``text`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Pathlike, obj: Any) -> None:
    """Write ``obj`` as pretty JSON atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def read_json(path: Pathlike) -> Any:
    """Read a JSON file, with a one-line error naming the file if it is not valid JSON."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as e:
        raise SoundharvestError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


def write_tsv(path: Pathlike, frame) -> None:
    """Write a pandas DataFrame as TSV atomically (no index column)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False)


def save_npy(path: Pathlike, array: np.ndarray) -> None:
    """Save ``array`` as ``.npy`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(array), allow_pickle=False)


@contextlib.contextmanager
def open_memmap_atomic(
    path: Pathlike, shape: tuple[int, ...], dtype: np.dtype | str
) -> Iterator[np.memmap]:
    """Create a ``.npy`` memmap under a temporary name; flush and rename it on success.

    The result is a plain ``.npy`` file (self-describing shape and dtype) that any numpy can read
    with ``np.load(path, mmap_mode="r")``.
    """
    with atomic_path(path) as tmp:
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.dtype(dtype), shape=shape)
        try:
            yield mm
            mm.flush()
        finally:
            del mm


def load_npy(path: Pathlike, mmap: bool = True) -> np.ndarray:
    """Open a ``.npy`` file (memory-mapped by default) with a one-line error if it is broken."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise SoundharvestError(f"{path}: file not found") from None
    except (ValueError, OSError, EOFError) as e:
        raise SoundharvestError(
            f"{path}: not a readable .npy array ({e}); delete it and re-run the stage that makes it"
        ) from None


def setup_logging(log_file: Pathlike | None = None, level: int = logging.INFO) -> logging.Logger:
    """Send the package's log (and Python warnings) to ``log_file`` and to stderr."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w", encoding="utf-8"))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)
    return log


def run_logged(log_file: Pathlike | None, func, *args, **kwargs):
    """Run ``func`` with logging to ``log_file``; a SoundharvestError ends the process with its
    one-line message (no traceback), any other error is logged with its traceback and re-raised.

    This is what every ``workflow/scripts`` adapter calls.
    """
    logger = setup_logging(log_file)
    try:
        return func(*args, **kwargs)
    except SoundharvestError as e:
        logger.error("%s", e)
        raise SystemExit(1) from None
    except Exception:
        logger.exception("unexpected error")
        raise
