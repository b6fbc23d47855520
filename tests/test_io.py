"""Atomic outputs under failure: an exception, an injected ENOSPC, and a really full filesystem.

The contract (DESIGN.md, "Every output is written to a temporary name and renamed when
complete"): whatever goes wrong during a write, the final name holds either its old complete
content or nothing, no temporary file is left behind, and a full disk is one line naming the
file.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from soundharvest import io
from soundharvest.audio import ffmpeg_exe, write_wav
from soundharvest.io import (
    SoundharvestError,
    atomic_path,
    load_npy,
    run_logged,
    save_npy,
    write_json,
    write_text,
    write_tsv,
)


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_atomic_path_renames_on_success_and_keeps_the_suffix(tmp_path):
    target = tmp_path / "sub" / "out.npy"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".")
        assert tmp.suffix == ".npy"  # numpy.save and ffmpeg look at extensions
        assert not target.exists()
        tmp.write_bytes(b"complete")
    assert target.read_bytes() == b"complete"
    assert _listing(target.parent) == ["out.npy"]


def test_exception_keeps_the_old_content_and_removes_the_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old, complete")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise KeyboardInterrupt  # BaseException too: Ctrl-C, SystemExit
    assert target.read_text() == "old, complete"
    assert _listing(tmp_path) == ["out.txt"]


def _enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


WRITERS = {
    "write_text": lambda p: write_text(p, "x" * 10_000),
    "write_json": lambda p: write_json(p, {"a": list(range(1000))}),
    "write_tsv": lambda p: write_tsv(p, pd.DataFrame({"a": range(1000)})),
    "save_npy": lambda p: save_npy(p, np.ones((100, 10), np.float32)),
    "write_wav": lambda p: write_wav(p, np.zeros(16000, np.float32)),
}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_enospc_at_flush_is_one_line_and_leaves_no_output(tmp_path, monkeypatch, name):
    # Delayed allocation: the writes succeed into the page cache and the disk-full error only
    # surfaces when the data is flushed (fsync), after the writer has finished.
    target = tmp_path / ("out.wav" if name == "write_wav" else f"out.{name}")
    monkeypatch.setattr(io.os, "fsync", _enospc)
    with pytest.raises(SoundharvestError) as err:
        WRITERS[name](target)
    message = str(err.value)
    assert "\n" not in message and str(target) in message and "no space left" in message
    assert _listing(tmp_path) == []


def test_enospc_during_the_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "frames.npy"
    save_npy(target, np.zeros(5))
    before = target.read_bytes()

    def half_then_full(fh, header):
        fh.write(b"\x93NUMPY partial")
        _enospc()

    monkeypatch.setattr(np.lib.format, "write_array_header_1_0", half_then_full)
    with pytest.raises(SoundharvestError, match="no space left"):
        save_npy(target, np.ones(10_000))
    assert target.read_bytes() == before
    assert _listing(tmp_path) == ["frames.npy"]


def test_other_os_errors_are_not_disguised_as_a_full_disk(tmp_path, monkeypatch):
    def denied(*_a, **_k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(io.os, "fsync", denied)
    with pytest.raises(PermissionError):
        write_text(tmp_path / "x.txt", "x")
    assert _listing(tmp_path) == []


def test_run_logged_turns_a_full_disk_into_one_logged_line(tmp_path):
    log_file = tmp_path / "job.log"

    def job():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "cells.dat"))

    with pytest.raises(SystemExit) as exit_:
        run_logged(log_file, job)
    assert exit_.value.code == 1
    lines = log_file.read_text().splitlines()
    assert len(lines) == 1 and "cells.dat: no space left" in lines[0]
    logging.getLogger().handlers.clear()


def test_load_npy_of_a_truncated_file_is_one_line_naming_it(tmp_path):
    path = tmp_path / "frames.npy"
    np.save(path, np.ones((1000, 64), np.float16))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SoundharvestError) as err:
        load_npy(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------ a really full filesystem

# Runs inside a private mount namespace (unshare: no root needed where user namespaces are
# allowed, and nothing is mounted for the rest of the machine) on a 256 KiB tmpfs.
_FULL_DISK_SCRIPT = textwrap.dedent(
    r"""
    import json, sys
    from pathlib import Path
    import numpy as np
    from soundharvest.io import SoundharvestError, open_memmap_atomic, save_npy, write_text
    from soundharvest.audio import ffmpeg_exe, write_wav
    from soundharvest.dataset import concatenate, shuffle
    from soundharvest.acquire.convert import convert_file

    full, inputs = Path(sys.argv[1]), Path(sys.argv[2])
    frames = sorted(str(p) for p in inputs.glob("*.npy"))
    big = 300 * 1024  # more than the filesystem holds

    def memmap():
        with open_memmap_atomic(full / "memmap.npy", (big // 4, 1), np.float32) as mm:
            mm[:] = 1.0  # without the reservation, this store would be a SIGBUS

    def scratch_codes():
        # label_clusters' one pass: the codes of 2,400 training frames (64 floats each, 614 KB)
        # in a scratch file on the full filesystem.
        from soundharvest.predict import label_clusters_file
        from soundharvest.train import train

        work = inputs / "lc"
        if not work.exists():
            work.mkdir()
            items = []
            for i, p in enumerate(frames):
                concatenate([(f"v{i}", p)], work / f"l{i}.npy", work / f"l{i}.index.tsv")
                items.append((f"l{i}", work / f"l{i}.npy"))
            shuffle(items, [work / "shard-00.npy"], seed=0, memory_budget_mb=64)
            train([work / "shard-00.npy"], work / "w.safetensors", work / "c.tsv", work / "c.png",
                  model_type="random", arch={"hidden": [8], "latent": 64}, threads=1)
        label_clusters_file(
            [work / "shard-00.npy"], work / "labels.json", work / "w.safetensors", work / "pred",
            k=2, features={"kind": "stft", "params": {"n_fft": 126}, "sample_rate": 16000},
            sources=[work / "l0.npy", work / "l1.npy"], votes_tsv=work / "votes.tsv",
            scratch_dir=full)

    cases = {
        "label_clusters_scratch": scratch_codes,
        "save_npy": lambda: save_npy(full / "save.npy", np.ones(big, np.uint8)),
        "write_text": lambda: write_text(full / "text.txt", "x" * big),
        "write_wav": lambda: write_wav(full / "audio.wav", np.zeros(big // 2, np.float32)),
        "open_memmap_atomic": memmap,
        "concatenate": lambda: concatenate(
            [(f"v{i}", p) for i, p in enumerate(frames)], full / "label.npy",
            full / "label.index.tsv"),
        "shuffle": lambda: shuffle(
            [("a", frames[0]), ("b", frames[1])], [full / "shard-00.npy", full / "shard-01.npy"],
            seed=0, memory_budget_mb=64),
        # ffmpeg writes the wav itself; a full disk must fail the job, not skip the video
        "convert": lambda: convert_file(
            inputs / "download.status.json", full / "v.wav", full / "v.json", max_seconds=None),
    }
    out = {}
    for name, fn in cases.items():
        try:
            fn()
            out[name] = {"error": None}
        except SoundharvestError as e:
            out[name] = {"error": str(e)}
        except OSError as e:
            out[name] = {"error": "OSError: " + str(e)}
        out[name]["left"] = sorted(p.name for p in full.rglob("*"))
    print(json.dumps(out))
    """
)


def _unshare_available() -> bool:
    exe = shutil.which("unshare")
    if exe is None or sys.platform != "linux":
        return False
    proc = subprocess.run([exe, "-rm", "true"], capture_output=True, check=False)
    return proc.returncode == 0


@pytest.mark.skipif(not _unshare_available(), reason="needs unshare -rm (user namespaces)")
def test_writers_on_a_really_full_filesystem(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for i in range(2):  # 2 x 150 KiB of frames: more than the 256 KiB filesystem together
        np.save(inputs / f"f{i}.npy", np.ones((1200, 64), np.float16))
    subprocess.run(  # 10 s of AAC: 320 KB once decoded to 16-bit wav
        [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "lavfi",
         "-i", "sine=frequency=440:duration=10", "-c:a", "aac", str(inputs / "v.m4a")],
        check=True,
    )  # fmt: skip
    status = {"video_id": "v", "status": "ok", "audio": "v.m4a", "reason": ""}
    (inputs / "download.status.json").write_text(json.dumps(status))
    script = tmp_path / "full_disk.py"
    script.write_text(_FULL_DISK_SCRIPT)
    cmd = f"mount -t tmpfs -o size=256k tmpfs {full} && {sys.executable} {script} {full} {inputs}"
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", cmd], capture_output=True, text=True, timeout=120
    )
    if "mount" in proc.stderr and proc.returncode != 0 and not proc.stdout:
        pytest.skip(f"tmpfs mount not permitted here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.splitlines()[-1])
    for name, res in results.items():
        assert res["error"], f"{name}: wrote more than the filesystem holds?"
        assert "no space left" in res["error"] and "\n" not in res["error"], (name, res)
        assert not res["error"].startswith("OSError"), (name, res)
        # nothing under a final name, no temporary left behind
        assert res["left"] == [], (name, res)


def test_atomic_outputs_get_the_umask_mode_not_0600(tmp_path):
    import os
    import stat

    from soundharvest.io import atomic_path, write_text

    old = os.umask(0o022)
    os.umask(old)
    write_text(tmp_path / "a.txt", "x")
    mode = stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)
    assert mode == 0o666 & ~old  # what a plain open() gives: e.g. 0644 under umask 022
    with atomic_path(tmp_path / "b.npy") as tmp:
        tmp.write_bytes(b"y")
    assert stat.S_IMODE((tmp_path / "b.npy").stat().st_mode) == 0o666 & ~old
