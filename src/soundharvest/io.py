"""Safe file output and small I/O helpers shared by every stage.

Every output is written to a temporary name in the same directory and renamed into place only
when complete (``os.replace`` is atomic on POSIX), so a crash or ``kill -9`` never leaves a
half-written file under the final name that Snakemake or a later stage would trust.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
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


#: errno values that mean "the disk (or the user's quota) is full".
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
#: numpy's ``tofile``/``np.save`` report a short write (a full disk) without an errno.
_SHORT_WRITE = re.compile(r"^\d+ requested and \d+ written$")


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` says that the disk (or quota) is full."""
    if not isinstance(error, OSError):
        return False
    if error.errno in _DISK_FULL:
        return True
    return error.errno is None and bool(_SHORT_WRITE.match(str(error)))


def disk_full_error(path: Pathlike, error: OSError) -> SoundharvestError:
    """The one-line error for a write to ``path`` that failed because the disk is full."""
    return SoundharvestError(
        f"{path}: no space left on the device while writing it ({error.strerror or error}); "
        "nothing was written under this name: free some space (or move results/downloads) and re-run"
    )


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: The process' umask, read once at import (reading it means setting it, which is not
#: thread-safe later on).
_UMASK = _current_umask()


def plain_mode(directory: bool = False) -> int:
    """The permissions ``open()`` / ``mkdir()`` would give a new file / directory (0666 / 0777
    less the umask): for outputs created by ``mkstemp`` / ``mkdtemp``, which use 0600 / 0700."""
    return (0o777 if directory else 0o666) & ~_UMASK


@contextlib.contextmanager
def atomic_path(path: Pathlike, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    The file gets the permissions a plain ``open()`` would give it (``0666`` less the umask),
    not ``mkstemp``'s ``0600``. The temporary file keeps ``path``'s suffix (so that tools that look at extensions, such as
    ffmpeg or ``numpy.save``, behave) and starts with a dot so that globbing ignores it. On any
    exception the temporary file is removed and the final path is left untouched; a full disk
    (``ENOSPC``, ``EDQUOT``) is reported as a one-line :class:`SoundharvestError` naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=".tmp" + path.suffix, dir=path.parent
    )
    # mkstemp creates the file 0600; an output gets the mode a plain open() would give it
    # (0666 less the umask), so that results stay readable by a group on a shared cluster.
    os.fchmod(fd, plain_mode())
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
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if is_disk_full(e):
            raise disk_full_error(path, e) from None
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


def write_tsv(path: Pathlike, frame, float_format: str | None = None) -> None:
    """Write a pandas DataFrame as TSV atomically (no index column; ``float_format`` as
    pandas takes it, e.g. ``"%.9g"`` for numbers read back into a fit)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format=float_format)


def read_tsv(path: Pathlike, what: str, fix: str):
    """A TSV file as a DataFrame, or a one-line error naming the file, what it should be and the
    fix (``what`` = ``"sweep table"``, ``fix`` = ``"re-run its chunk"``, say)."""
    import pandas as pd

    try:
        return pd.read_csv(path, sep="\t")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise SoundharvestError(
            f"{path}: cannot read the {what} ({type(e).__name__}: {e}); {fix}"
        ) from None


def save_npy(path: Pathlike, array: np.ndarray) -> None:
    """Save ``array`` as ``.npy`` atomically."""
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise SoundharvestError(f"{path}: object arrays cannot be saved as plain .npy")
    header = np.lib.format.header_data_from_array_1_0(array)
    header["fortran_order"] = False  # the data is written in C order below
    data = np.require(array, requirements="C")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        # The header by numpy, the data by Python's write: numpy's own ``tofile`` reports a
        # full disk as a short write without an errno.
        try:
            np.lib.format.write_array_header_1_0(fh, header)
        except ValueError:  # a header too long for format 1.0 (very wide structured dtypes)
            fh.seek(0)
            fh.truncate()
            np.lib.format.write_array_header_2_0(fh, header)
        if data.size:
            fh.write(memoryview(data.reshape(-1).view(np.uint8)))


def reserve_blocks(path: Path) -> None:
    """Allocate the disk blocks of ``path``'s current size (raises ``OSError(ENOSPC)``)."""
    if not hasattr(os, "posix_fallocate"):  # pragma: no cover - macOS, Windows
        return
    with open(path, "r+b") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size:
            try:
                os.posix_fallocate(fh.fileno(), 0, size)
            except OSError as e:
                if e.errno in _DISK_FULL:
                    raise
                # EOPNOTSUPP/EINVAL: a filesystem without fallocate; the writes will tell.


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
        # Reserve the blocks now: the map is a sparse file, and a store into a page that the
        # full disk cannot back kills the process with SIGBUS instead of raising ENOSPC.
        reserve_blocks(tmp)
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


def write_npz(path: Pathlike, **arrays: Any) -> None:
    """Write plain arrays (no pickle: strings as fixed-width unicode) to an ``.npz``
    atomically: what :func:`read_npz` reads."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})


def read_npz(path: Pathlike, what: str, build: Any) -> Any:
    """``build(arrays)`` of an ``.npz`` of plain arrays (no pickle), with one-line errors for a
    missing or foreign file (``what`` names the kind of file, e.g. ``clusters``)."""
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):  # an .npy under another name
            raise ValueError("a single array, not an .npz archive")
        with z:
            return build(z)
    except FileNotFoundError:
        raise SoundharvestError(f"{path}: {what} file not found") from None
    except (KeyError, ValueError, OSError) as e:
        raise SoundharvestError(
            f"{path}: not a {what} file ({e}); re-run the label_clusters stage"
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
    """Run ``func`` with logging to ``log_file``; a SoundharvestError (or a full disk) ends the
    process with its one-line message (no traceback), any other error is logged with its
    traceback and re-raised.

    This is what every ``workflow/scripts`` adapter calls.
    """
    logger = setup_logging(log_file)
    try:
        return func(*args, **kwargs)
    except SoundharvestError as e:
        logger.error("%s", e)
        raise SystemExit(1) from None
    except OSError as e:
        if not is_disk_full(e):
            logger.exception("unexpected error")
            raise
        # A full disk outside atomic_path (a temporary work file): still one line.
        logger.error("%s", disk_full_error(e.filename or "a temporary file", e))
        raise SystemExit(1) from None
    except Exception:
        logger.exception("unexpected error")
        raise
