"""Audio decoding and reading: ffmpeg for anything compressed, soundfile for wav."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

from .io import Pathlike, SoundharvestError

SAMPLE_RATE = 16000


def ffmpeg_exe(prefer: str = "imageio") -> str:
    """Path of the ffmpeg binary.

    :param prefer: ``"imageio"`` (the static binary shipped by ``imageio-ffmpeg``; the default,
        so that a fresh venv needs nothing else), ``"system"`` (``ffmpeg`` on ``PATH``) or an
        explicit path. The environment variable ``SOUNDHARVEST_FFMPEG`` overrides all of these.
    """
    override = os.environ.get("SOUNDHARVEST_FFMPEG")
    if override:
        return override
    if prefer == "system":
        exe = shutil.which("ffmpeg")
        if exe is None:
            raise SoundharvestError("ffmpeg: not found on PATH; set ffmpeg: imageio in the config")
        return exe
    if prefer == "imageio":
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    return prefer


def decode(
    path: Pathlike,
    sample_rate: int = SAMPLE_RATE,
    max_seconds: float | None = None,
    ffmpeg: str | None = None,
    sample_format: str = "s16",
) -> np.ndarray:
    """Decode any file ffmpeg reads to mono float32 in [-1, 1] at ``sample_rate``.

    :param sample_format: what ffmpeg hands over: ``s16`` (16-bit PCM, the convert stage's
        format) or ``f32`` (32-bit float, which keeps a float file's NaN and infinite samples
        visible instead of clipping them to full scale)."""
    if sample_format not in ("s16", "f32"):
        raise SoundharvestError(f"decode: sample_format = {sample_format!r}: use s16 or f32")
    cmd = [
        ffmpeg or ffmpeg_exe(),
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        str(path),
    ]
    if max_seconds:
        cmd += ["-t", f"{max_seconds:.3f}"]
    fmt = "s16le" if sample_format == "s16" else "f32le"
    cmd += ["-vn", "-ac", "1", "-ar", str(sample_rate), "-f", fmt, "-acodec", f"pcm_{fmt}", "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = msg[-1] if msg else f"ffmpeg exit status {proc.returncode}"
        raise SoundharvestError(f"{path}: cannot decode audio ({reason})")
    if sample_format == "f32":
        return np.frombuffer(proc.stdout, dtype="<f4").copy()
    return np.frombuffer(proc.stdout, dtype="<i2").astype(np.float32) / 32768.0


#: libsndfile's note on a data chunk whose declared size disagrees with the file.
_DATA_SIZE_NOTE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.M)


def wav_header_problem(info: sf._SoundFileInfo) -> str:
    """Why a wav's header cannot be trusted, or ``""``.

    libsndfile quietly reads what is there when the header promises more sample data than the
    file holds (a truncated copy, a download cut short), so a note or a clip would come out
    shorter than its header says without any error. Sizes of 0 and 0xFFFFFFFF are the
    placeholders of a wav written to a pipe, not lies.

    :param info: ``soundfile.info(path)``.
    """
    match = _DATA_SIZE_NOTE.search(getattr(info, "extra_info", "") or "")
    if match is None:
        return ""
    declared, actual = int(match.group(1)), int(match.group(2))
    if declared <= actual or declared == 0 or declared >= 0xFFFFFF00:
        return ""
    return (
        f"its header promises {declared} bytes of samples but the file holds {actual} "
        "(truncated or corrupt)"
    )


def read_wav(path: Pathlike) -> tuple[np.ndarray, int]:
    """Read a wav file as mono float32, returning ``(samples, sample_rate)``.

    :raises SoundharvestError: one line naming the file if it is not a wav or its header lies.
    """
    try:
        problem = wav_header_problem(sf.info(str(path)))
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        reason = " ".join(str(e).split())
        raise SoundharvestError(f"{path}: not a readable wav file ({reason})") from None
    if problem:
        raise SoundharvestError(f"{path}: {problem}; re-create the file")
    return data.mean(axis=1), sr


def wav_bytes(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A complete mono 16-bit PCM wav file in memory.

    :param samples: float in [-1, 1] (clipped) or int16.
    """
    samples = np.asarray(samples)
    if samples.dtype != np.int16:
        samples = np.clip(samples.astype(np.float32, copy=False), -1.0, 1.0)
    buf = io.BytesIO()
    sf.write(buf, samples, sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def write_wav_file(path: Pathlike, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write a mono 16-bit wav to ``path`` in place (callers wrap it in ``atomic_path``).

    The file is encoded in memory and written by Python, because libsndfile reports a full disk
    as a bare "System error."; this way it is an ``OSError(ENOSPC)`` naming the file.
    """
    data = wav_bytes(samples, sample_rate)
    with open(path, "wb") as fh:
        fh.write(data)


def write_wav(path: Pathlike, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono 16-bit PCM wav atomically."""
    from .io import atomic_path

    with atomic_path(Path(path)) as tmp:
        write_wav_file(tmp, np.asarray(samples, dtype=np.float32), sample_rate)
