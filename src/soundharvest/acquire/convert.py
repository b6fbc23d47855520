"""The ``convert`` stage: a download's audio -> 16 kHz mono 16-bit wav, or a reason why not.

ffmpeg (called with an argument list, never through a shell) decodes the first audio stream,
downmixes to mono, resamples and trims to ``max_seconds``, writing the wav straight to disk so
that memory stays bounded whatever the video's length. The result is then checked in blocks:

- the download failed -> ``status = "failed"``, reason ``download: <its reason>``;
- ffmpeg cannot decode it -> ``skipped``, ``undecodable (<ffmpeg's first and last error lines>)``;
- a wav (or other file libsndfile reads) whose header promises more samples than the file
  holds -> ``skipped``, ``corrupt (its header promises ...)``: ffmpeg would quietly decode
  what is there;
- float samples that are NaN or infinite -> ``skipped``, ``non-finite samples (...)``: ffmpeg
  turns them into full-scale 16-bit values, a loud click or a wall of DC that would pass every
  later check;
- shorter than ``min_seconds`` -> ``skipped``, ``too short (x s < min s)``;
- RMS level below ``silence_dbfs`` -> ``skipped``, ``silent (RMS x dBFS < t dBFS)``.

Every case that is not ``ok`` still writes a valid wav with zero samples, so that the workflow's
file graph stays fixed; every downstream stage treats a 0-sample wav as "nothing here". Both
outputs are written atomically. The status JSON has ``video_id``, ``status``, ``reason``,
``seconds`` (of the wav), ``sample_rate``, ``rms_dbfs``, ``peak_dbfs``, ``trimmed`` and
``decode_warnings`` (ffmpeg error lines of a decode that still succeeded).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..audio import SAMPLE_RATE, ffmpeg_exe, wav_header_problem, write_wav_file
from ..io import Pathlike, atomic_path, write_json
from .download import ffmpeg_error_summary, read_download_status

log = logging.getLogger("soundharvest.convert")

#: Samples read per block when measuring the level: 2**16 (4 s at 16 kHz) bounds memory.
_BLOCK = 1 << 16


def write_empty_wav(path: Pathlike, sample_rate: int = SAMPLE_RATE) -> None:
    """Write a valid mono 16-bit wav with zero samples (``path`` is written in place)."""
    write_wav_file(path, np.zeros(0, dtype=np.int16), sample_rate)


def wav_level(path: Pathlike) -> tuple[int, float, float]:
    """Frames, RMS and peak (both dBFS, -inf for digital silence) of a wav, read in blocks."""
    frames = 0
    sum_sq = 0.0
    peak = 0.0
    with sf.SoundFile(str(path)) as fh:
        for block in fh.blocks(blocksize=_BLOCK, dtype="float64", always_2d=True):
            frames += block.shape[0]
            sum_sq += float(np.square(block).sum())
            if block.size:
                peak = max(peak, float(np.abs(block).max()))
    rms = math.sqrt(sum_sq / frames) if frames else 0.0

    def dbfs(x: float) -> float:
        return 20.0 * math.log10(x) if x > 0 else float("-inf")

    return frames, dbfs(rms), dbfs(peak)


def source_problem(path: Pathlike, max_seconds: float | None = None) -> str:
    """Why a source file that libsndfile can read must not be converted, or ``""``.

    Checks the header (:func:`~soundharvest.audio.wav_header_problem`) and, for float PCM,
    the samples within the first ``max_seconds`` (what ffmpeg would keep), in blocks. Files
    libsndfile cannot read (compressed audio, video containers) give ``""``: ffmpeg's decoders
    produce no NaN from them.
    """
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return ""
    header = wav_header_problem(info)
    if header:
        return f"corrupt ({header.replace(' (truncated or corrupt)', '')})"
    if info.subtype not in ("FLOAT", "DOUBLE"):
        return ""
    limit = int(float(max_seconds) * info.samplerate) if max_seconds else None
    bad = seen = 0
    with sf.SoundFile(str(path)) as fh:
        for block in fh.blocks(blocksize=_BLOCK, dtype="float32", always_2d=True, frames=-1):
            if limit is not None and seen >= limit:
                break
            block = block[: None if limit is None else limit - seen]
            seen += block.shape[0]
            bad += int(block.shape[0] - np.isfinite(block).all(axis=1).sum())
    if bad:
        share = 100.0 * bad / max(seen, 1)
        return f"non-finite samples ({bad} of {seen} frames NaN or infinite, {share:.3g} %)"
    return ""


def _ffmpeg_cmd(
    exe: str, src: Path, dst: Path, sample_rate: int, max_seconds: float | None
) -> list[str]:
    cmd = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src)]
    cmd += ["-map", "0:a:0", "-vn", "-sn", "-dn"]
    if max_seconds:
        cmd += ["-t", f"{float(max_seconds):.3f}"]
    cmd += ["-ac", "1", "-ar", str(sample_rate), "-c:a", "pcm_s16le"]
    # No metadata chunk: the wav holds samples only, identical for identical audio.
    cmd += ["-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact"]
    cmd += ["-f", "wav", str(dst)]
    return cmd


def _json_float(x: float) -> float | None:
    return round(x, 2) if math.isfinite(x) else None


def convert_file(
    download_status_json: Pathlike,
    out_wav: Pathlike,
    out_status_json: Pathlike,
    sample_rate: int = SAMPLE_RATE,
    max_seconds: float | None = 600.0,
    min_seconds: float = 1.0,
    silence_dbfs: float = -60.0,
    ffmpeg: str = "imageio",
) -> dict[str, Any]:
    """Convert one download to a mono 16-bit wav and record what happened.

    :param download_status_json: the download's ``status.json`` (its ``audio`` is relative to it).
    :param out_wav: the wav to write (0 samples unless the status is ``ok``).
    :param out_status_json: the conversion status to write.
    :param sample_rate: output rate in Hz (16 kHz: the thesis' rate).
    :param max_seconds: keep at most this many seconds from the start (``None``: everything).
    :param min_seconds: shorter results are skipped.
    :param silence_dbfs: results whose RMS level is below this are skipped as silent; -60 dBFS
        is far below any music recording yet above the dither noise of a silent track.
    :param ffmpeg: ``imageio`` (the bundled binary), ``system`` (``ffmpeg`` on PATH) or a path.
    :return: the status written.
    """
    status_path = Path(download_status_json)
    download = read_download_status(status_path)
    vid = str(download.get("video_id", status_path.parent.name))
    record: dict[str, Any] = {
        "video_id": vid,
        "status": "ok",
        "reason": "",
        "seconds": 0.0,
        "sample_rate": int(sample_rate),
        "rms_dbfs": None,
        "peak_dbfs": None,
        "trimmed": False,
        "decode_warnings": [],
    }
    with atomic_path(out_wav) as tmp:
        if download["status"] != "ok" or not download.get("audio"):
            record["status"] = "failed"
            record["reason"] = f"download: {download.get('reason') or 'no audio file'}"
            write_empty_wav(tmp, sample_rate)
        elif problem := source_problem(status_path.parent / str(download["audio"]), max_seconds):
            record["status"], record["reason"] = "skipped", problem
            write_empty_wav(tmp, sample_rate)
        else:
            src = status_path.parent / str(download["audio"])
            exe = ffmpeg_exe(ffmpeg)
            proc = subprocess.run(
                _ffmpeg_cmd(exe, src, tmp, sample_rate, max_seconds),
                capture_output=True,
                check=False,
            )
            stderr = proc.stderr.decode("utf-8", "replace")
            if "No space left on device" in stderr:
                # A full disk is not the video's fault: fail the job, never record it skipped.
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out_wav))
            lines = [ln.replace(str(src), src.name) for ln in stderr.splitlines() if ln.strip()]
            if proc.returncode != 0:
                why = ffmpeg_error_summary(stderr, src) or f"ffmpeg exit status {proc.returncode}"
                record["status"], record["reason"] = "skipped", f"undecodable ({why})"
                write_empty_wav(tmp, sample_rate)
            else:
                record["decode_warnings"] = lines[-5:]
                frames, rms, peak = wav_level(tmp)
                seconds = frames / sample_rate
                record.update(
                    seconds=round(seconds, 4),
                    rms_dbfs=_json_float(rms),
                    peak_dbfs=_json_float(peak),
                    trimmed=bool(max_seconds) and frames >= int(float(max_seconds) * sample_rate),
                )
                if seconds < min_seconds:
                    record["status"] = "skipped"
                    record["reason"] = f"too short ({seconds:.2f} s < {min_seconds:g} s)"
                elif rms < silence_dbfs:
                    record["status"] = "skipped"
                    shown = "-inf" if not math.isfinite(rms) else f"{rms:.1f}"
                    record["reason"] = f"silent (RMS {shown} dBFS < {silence_dbfs:g} dBFS)"
                if record["status"] != "ok":
                    record["seconds"] = 0.0
                    write_empty_wav(tmp, sample_rate)
    write_json(out_status_json, record)
    if record["status"] == "ok":
        if record["decode_warnings"]:
            log.warning("convert %s: decoded with errors: %s", vid, record["decode_warnings"][-1])
        log.info("convert %s: ok, %.2f s", vid, record["seconds"])
    else:
        log.warning("convert %s: %s: %s", vid, record["status"], record["reason"])
    return record


#: Bump when convert_file's output for the same input and parameters changes: every stamp's
#: fingerprint changes with it, so the next run converts every video again.
CONVERT_VERSION = 1
#: Fields of a download record that change on every run of the download without the audio
#: changing (a re-used store says ``cached: true``): left out of the conversion's fingerprint.
_VOLATILE = ("cached", "elapsed_s")


def download_identity(download_status_json: Pathlike) -> dict[str, Any]:
    """What identifies a download's audio: its record (less what changes on every run) and the
    size of its audio file; a video fetched anew or a file replaced in the store differs."""
    path = Path(download_status_json)
    record = {k: v for k, v in read_download_status(path).items() if k not in _VOLATILE}
    audio = path.parent / str(record.get("audio") or "")
    record["audio_bytes"] = audio.stat().st_size if record.get("audio") and audio.is_file() else 0
    return record


def convert_batch(
    video_ids: list[str],
    downloads_dir: Pathlike,
    out_dir: Pathlike,
    manifest: Pathlike,
    **params: Any,
):
    """Convert a batch of downloads (:func:`convert_file` each) and write the batch's manifest.

    ``<downloads_dir>/<video_id>.status.json`` -> ``<out_dir>/<video_id>.wav`` and ``.json``
    (as :func:`convert_file`), a video whose stamp matches its download and ``params`` being
    re-used (:mod:`soundharvest.batch`). The manifest has ``status``, ``reason`` and
    ``seconds`` per video.
    """
    from ..batch import fingerprint, run_batch

    downloads_dir, out_dir = Path(downloads_dir), Path(out_dir)

    def step(vid: str):
        status = downloads_dir / f"{vid}.status.json"
        wav, record = out_dir / f"{vid}.wav", out_dir / f"{vid}.json"
        fp = fingerprint("convert", CONVERT_VERSION, params, download_identity(status))

        def work() -> dict[str, Any]:
            done = convert_file(status, wav, record, **params)
            return {k: done[k] for k in ("status", "reason", "seconds")}

        return fp, [wav, record], work

    return run_batch(video_ids, step, manifest, "convert")
