"""Audio decoding and reading: ffmpeg for anything compressed, soundfile for wav."""

from __future__ import annotations

import os
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
) -> np.ndarray:
    """Decode any file ffmpeg reads to mono float32 in [-1, 1] at ``sample_rate``."""
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
    cmd += ["-vn", "-ac", "1", "-ar", str(sample_rate), "-f", "s16le", "-acodec", "pcm_s16le", "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = msg[-1] if msg else f"ffmpeg exit status {proc.returncode}"
        raise SoundharvestError(f"{path}: cannot decode audio ({reason})")
    return np.frombuffer(proc.stdout, dtype="<i2").astype(np.float32) / 32768.0


def read_wav(path: Pathlike) -> tuple[np.ndarray, int]:
    """Read a wav file as mono float32, returning ``(samples, sample_rate)``."""
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise SoundharvestError(f"{path}: not a readable wav file ({e})") from None
    return data.mean(axis=1), sr


def write_wav(path: Pathlike, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono 16-bit PCM wav atomically."""
    from .io import atomic_path

    samples = np.asarray(samples, dtype=np.float32)
    with atomic_path(Path(path)) as tmp:
        sf.write(str(tmp), np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
