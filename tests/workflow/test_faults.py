"""Faults: kill -9 mid-stage, HTTP 429 at the workflow level, and corrupt inputs.

kill -9: a targeted run on a copy of the complete tiny run, whose outputs of one stage were
deleted, is killed (Snakemake and every process under it) at the moment the job has written
its output under the temporary name, just before the rename. The moment is made certain by
a ``sitecustomize`` that holds ``os.replace`` for the chosen destination (the job's code is
otherwise untouched). After ``snakemake --unlock`` the re-run must finish and its outputs must
equal those of the undisturbed run; the training must resume from its checkpoint.

Acquisition-level faults are tested in tests/acquire: HTTP 429 for a while and for good, 404,
truncated and corrupt transfers (test_download.py), quota exhausted mid-search and key
redaction (test_youtube.py). Here the workflow-level versions: a run whose downloads meet 429s
completes and records the failure; a forced re-run fetches only what failed.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import subprocess
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file
from wfutil import (
    SNAKEFILE,
    SNAKEMAKE,
    changed,
    demo_store,
    snakemake,
    snapshot,
    tiny_config,
    write_config,
)

from soundharvest.acquire.convert import convert_file
from soundharvest.audio import decode, ffmpeg_exe, read_wav
from soundharvest.dataset import concatenate, shuffle
from soundharvest.evaluate.frames import eval_frames
from soundharvest.evaluate.nsynth import render_eval_set
from soundharvest.features import spectrogram_file
from soundharvest.io import SoundharvestError, load_npy

pytestmark = pytest.mark.workflow

# ------------------------------------------------------------------------------ kill -9

_HOLD = textwrap.dedent(
    '''
    """Test hook: hold os.replace of a chosen destination (after N others) until killed."""
    import os, re, time

    _pattern = os.environ.get("SOUNDHARVEST_TEST_HOLD")
    if _pattern:
        _rx, _skip, _real = re.compile(_pattern), int(os.environ["SOUNDHARVEST_TEST_SKIP"]), os.replace
        _seen = [0]

        def _replace(src, dst, *args, **kwargs):
            if _rx.search(os.fspath(dst)):
                _seen[0] += 1
                if _seen[0] > _skip:
                    with open(os.environ["SOUNDHARVEST_TEST_FLAG"], "w") as fh:
                        fh.write(os.fspath(src))
                    time.sleep(3600)
            return _real(src, dst, *args, **kwargs)

        os.replace = _replace
    '''
)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), deepest last."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def run_and_kill(workdir: Path, target, hold: str, skip: int = 0, timeout: float = 600):
    """Run snakemake on ``target`` (a string or the arguments); kill -9 it and all below it once a write matching ``hold``
    has its bytes under the temporary name. Returns that temporary file's path."""
    hook = workdir.parent / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(_HOLD)
    flag = workdir.parent / "held.txt"
    flag.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]),
        "SOUNDHARVEST_TEST_HOLD": hold,
        "SOUNDHARVEST_TEST_SKIP": str(skip),
        "SOUNDHARVEST_TEST_FLAG": str(flag),
    }
    targets = [target] if isinstance(target, str) else list(target)
    cmd = [str(SNAKEMAKE), "-s", str(SNAKEFILE), "--cores", "2", "--nocolor", *targets]
    cmd += ["--configfile", str(workdir / "config.yaml")]
    out = (workdir.parent / "killed.out").open("w")
    proc = subprocess.Popen(
        cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + timeout
        while not flag.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, (workdir.parent / "killed.out").read_text()[-3000:]
        assert flag.exists(), "the job never reached its write"
        time.sleep(0.1)  # the flag is written before the sleep: let its write finish
    finally:
        for pid in [proc.pid, *_descendants(proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=60)
        out.close()
    assert proc.returncode == -signal.SIGKILL
    tmp = Path(flag.read_text())
    return tmp if tmp.is_absolute() else workdir / tmp


def _ok_video(workdir: Path, label: str = "flute") -> str:
    catalog = pd.read_csv(workdir / "results" / "catalog.csv", dtype=str, keep_default_na=False)
    return sorted(
        catalog.loc[(catalog["label"] == label) & (catalog["status"] == "ok"), "video_id"]
    )[0]


def _same_bytes(a: Path, b: Path) -> None:
    assert a.read_bytes() == b.read_bytes(), f"{a} differs from {b}"


def test_kill_during_download(tiny_run, tiny_copy):
    vid = _ok_video(tiny_copy)
    store = demo_store(tiny_copy)
    for p in (store / vid).iterdir():
        p.unlink()
    # The killed command, run again as it was. (A download cannot be a target itself, and a
    # deleted download is not needed while its conversion exists: so force the rule.)
    args = ("results/catalog.csv", "--forcerun", "download")
    tmp = run_and_kill(tiny_copy, args, r"downloads/demo/[^/]+/[^/]+/audio\.")
    assert tmp.stat().st_size > 0 and tmp.name.startswith(".") and tmp.parent.name == vid
    assert not list((store / vid).glob("audio.*")) and not (store / vid / "status.json").exists()

    snakemake(tiny_copy, "--unlock")
    snakemake(tiny_copy, *args)
    status = json.loads((store / f"{vid}.status.json").read_text())
    assert status["status"] == "ok" and status["cached"] is False  # fetched anew, not trusted
    audio = store / vid / Path(status["audio"]).name
    _same_bytes(audio, demo_store(tiny_run) / vid / audio.name)


def test_kill_during_a_convert_batch_redoes_only_its_unfinished_videos(tiny_run, tiny_copy):
    out = tiny_copy / "results" / "convert"
    (manifest,) = (tiny_copy / "results" / "batches" / "convert").glob("flute-000-*.tsv")
    target = str(manifest.relative_to(tiny_copy))
    vids = list(pd.read_csv(manifest, sep="\t", dtype=str)["video_id"])
    assert len(vids) >= 2
    manifest.unlink()
    for vid in vids:
        for ext in ("wav", "json", "stamp"):
            (out / f"{vid}.{ext}").unlink()
    # Let the batch's first video finish (wav, status, stamp), hold the second's wav.
    # (A deleted manifest is re-made when something that must run wants it, or as a target.)
    tmp = run_and_kill(tiny_copy, target, r"results/convert/[^/]+\.wav$", skip=1)
    assert tmp.stat().st_size > 0 and tmp.name.startswith(f".{vids[1]}.")
    assert not (out / f"{vids[1]}.wav").exists() and not manifest.exists()
    first = {ext: (out / f"{vids[0]}.{ext}").stat().st_mtime_ns for ext in ("wav", "json", "stamp")}

    snakemake(tiny_copy, "--unlock")
    snakemake(tiny_copy, target)
    # The finished video was re-used from its stamp (the same files), the rest converted.
    assert {ext: (out / f"{vids[0]}.{ext}").stat().st_mtime_ns for ext in first} == first
    log = (tiny_copy / "logs" / "convert" / f"{manifest.stem}.log").read_text()
    assert f"{len(vids) - 1} done now, 1 re-used" in log, log
    ref = tiny_run / "results" / "convert"
    names = sorted(p.name for p in ref.iterdir())
    now = sorted(p.name for p in out.iterdir())
    # The killed job's temporary stays behind, hidden and never read; every real name is
    # complete and equal to the undisturbed run's.
    assert [n for n in now if not n.startswith(".")] == names
    assert all(re.match(r"^\.[\w-]+\.\w+\.tmp\.wav$", n) for n in now if n.startswith("."))
    for vid in vids:
        for ext in ("wav", "json"):
            _same_bytes(out / f"{vid}.{ext}", ref / f"{vid}.{ext}")
    got = pd.read_csv(manifest, sep="\t", dtype=str).drop(columns="reused")
    want = pd.read_csv(tiny_run / target, sep="\t", dtype=str)
    pd.testing.assert_frame_equal(got, want.drop(columns="reused"))


def test_kill_during_concatenate(tiny_run, tiny_copy):
    out = tiny_copy / "results" / "concatenate" / "mel"
    (out / "flute.npy").unlink()
    (out / "flute.index.tsv").unlink()
    target = "results/concatenate/mel/flute.npy"
    tmp = run_and_kill(tiny_copy, target, r"results/concatenate/mel/flute\.npy$")
    assert tmp.stat().st_size > 0
    assert not (out / "flute.npy").exists()

    snakemake(tiny_copy, "--unlock")
    snakemake(tiny_copy, target)
    for name in ("flute.npy", "flute.index.tsv"):
        _same_bytes(out / name, tiny_run / "results" / "concatenate" / "mel" / name)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # stale temporaries gone


def test_kill_during_shuffle_leaves_a_partial_set_that_is_not_trusted(tiny_run, tiny_copy):
    out = tiny_copy / "results" / "shuffle" / "mel"
    for p in out.iterdir():
        p.unlink()
    target = "results/shuffle/mel/labels.json"
    # Let the first shard be renamed, hold the second: one output exists, the job is dead.
    run_and_kill(tiny_copy, target, r"results/shuffle/mel/shard-\d\d\.npy$", skip=1)
    shards = sorted(p.name for p in out.glob("shard-??.npy"))
    assert len(shards) == 1

    snakemake(tiny_copy, "--unlock")
    refused = snakemake(tiny_copy, target, check=False)
    assert refused.returncode != 0 and "incomplete" in (refused.stdout + refused.stderr).lower()
    snakemake(tiny_copy, target, "--rerun-incomplete")
    ref = tiny_run / "results" / "shuffle" / "mel"
    names = sorted(p.name for p in ref.iterdir())
    assert sorted(p.name for p in out.iterdir()) == names  # every output, no temporary
    for name in names:
        _same_bytes(out / name, ref / name)


def test_kill_during_training_resumes_from_the_checkpoint(tiny_run, tiny_copy):
    out = tiny_copy / "results" / "train" / "mel" / "ae"
    for p in out.iterdir():
        p.unlink()
    target = "results/train/mel/ae/weights.safetensors"
    # The first checkpoint (after checkpoint_every = 1000 frames) is on disk; hold the second.
    run_and_kill(tiny_copy, target, r"train/mel/ae/checkpoint\.pt$", skip=1)
    seen = torch.load(out / "checkpoint.pt", weights_only=True)["frames_seen"]
    assert 0 < seen < 3000 and not (out / "weights.safetensors").exists()

    snakemake(tiny_copy, "--unlock")
    snakemake(tiny_copy, target)
    log = (tiny_copy / "logs" / "train" / "mel" / "ae.log").read_text()
    assert f"resuming from checkpoint {out.relative_to(tiny_copy)}" in log or "resuming" in log
    assert f"at {seen} frames" in log
    got = load_file(str(out / "weights.safetensors"))
    want = load_file(str(tiny_run / "results" / "train" / "mel" / "ae" / "weights.safetensors"))
    assert got.keys() == want.keys()
    for k in got:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5)
    curves = pd.read_csv(out / "curves.tsv", sep="\t")
    ref_curves = pd.read_csv(tiny_run / "results" / "train" / "mel" / "ae" / "curves.tsv", sep="\t")
    assert list(curves["frames"]) == list(ref_curves["frames"])  # the killed run's rows kept


# ---------------------------------------------------------------- HTTP 429, workflow level


class _Server:
    """Serves one AAC file per path; ``flaky`` paths answer 429 ``n_429`` times first,
    ``limited`` paths always (until ``recover()``)."""

    def __init__(self, media: bytes):
        self.hits: Counter = Counter()
        self.cookies: list[str] = []
        self.n_429 = 2
        self.recovered = False
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                server.hits[name] += 1
                server.cookies.append(self.headers.get("Cookie") or "")
                limited = name.startswith("limited") and not server.recovered
                flaky = name.startswith("flaky") and server.hits[name] <= server.n_429
                code, body, ctype = (
                    (429, b"slow down", "text/plain") if limited or flaky else
                    (200, media, "audio/mp4")
                )  # fmt: skip
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _tone(path: Path, seconds: float = 4.0) -> bytes:
    subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "lavfi",
         "-i", f"sine=frequency=440:duration={seconds}:sample_rate=44100", "-c:a", "aac",
         str(path)],
        check=True,
    )  # fmt: skip
    return path.read_bytes()


SENTINEL_KEY = "AIzaSENTINELworkflowKEY0123456789abcdef"
SENTINEL_COOKIE = "SENTINELworkflowCOOKIE42"


def test_http_429_in_a_workflow_run_is_retried_recorded_and_refetched_later(tmp_path, monkeypatch):
    """ytsearch source, its search results written beforehand (the checkpoint's outputs, as
    if the search had run), downloads from a local server: one good, one 429 twice then
    good, one 429 for good. The run completes and records the failure; once the server
    recovers, a re-run fetches only the failure. The run has a sentinel API key and cookie
    file: the cookies are really sent, and neither they nor the key's or cookie file's names
    reach any file the run writes."""
    server = _Server(_tone(tmp_path / "tone.m4a"))
    cookies = tmp_path / "SENTINELcookieDIR" / "cookies.txt"
    cookies.parent.mkdir()
    cookies.write_text(
        f"# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsid\t{SENTINEL_COOKIE}\n"
    )
    monkeypatch.setenv("SOUNDHARVEST_COOKIES", str(cookies))
    monkeypatch.setenv("YOUTUBE_API_KEY", SENTINEL_KEY)
    try:
        work = tmp_path / "work"
        work.mkdir()
        config = tiny_config(source="ytsearch", labels={"cello": ["cello"]})
        config["download"] = {"retries": 3, "backoff": 0.05, "archive": False}
        write_config(work, config)
        from soundharvest.acquire.search import query_id

        qid = query_id("cello")
        rows = [
            {"video_id": vid, "url": f"{server.base}/{vid}.m4a", "title": f"Cello {vid}",
             "channel": "c", "duration": "4.0", "query": "cello", "rank": str(i + 1),
             "label": "cello", "status": "ok", "reason": "", "query_id": qid}
            for i, vid in enumerate(["good1", "flaky1", "limited1"])
        ]  # fmt: skip
        search = work / "results" / "search" / "cello"
        search.mkdir(parents=True)
        pd.DataFrame(rows).to_csv(search / f"{qid}.tsv", sep="\t", index=False)

        snakemake(work, "results/catalog.csv")
        catalog = pd.read_csv(work / "results" / "catalog.csv", dtype=str, keep_default_na=False)
        by_id = catalog.set_index("video_id")
        assert by_id.loc["good1", "status"] == "ok" and by_id.loc["flaky1", "status"] == "ok"
        assert by_id.loc["limited1", "status"] == "failed"
        assert "rate_limited" in by_id.loc["limited1", "reason"]
        assert server.hits["flaky1.m4a"] > server.n_429  # retried until it worked

        # Later the server recovers. Retrying the failures = forcing the download batches
        # (docs/reruns.md): the store is re-used, so only the failure is fetched, and of the
        # conversions that follow only its own is redone.
        server.recovered = True
        before = dict(server.hits)
        stamps = {p.name: p.stat().st_mtime_ns for p in (work / "results/convert").glob("*.stamp")}
        snakemake(work, "results/catalog.csv", "--forcerun", "download")
        after = {p.name: p.stat().st_mtime_ns for p in (work / "results/convert").glob("*.stamp")}
        assert {n for n in after if after[n] != stamps.get(n)} == {"limited1.stamp"}
        catalog = pd.read_csv(work / "results" / "catalog.csv", dtype=str, keep_default_na=False)
        assert set(catalog["status"]) == {"ok"}
        assert server.hits["good1.m4a"] == before["good1.m4a"]  # never fetched twice
        assert server.hits["flaky1.m4a"] == before["flaky1.m4a"]
        assert server.hits["limited1.m4a"] > before["limited1.m4a"]

        assert any(SENTINEL_COOKIE in c for c in server.cookies)  # the cookies were used
        secrets = [SENTINEL_KEY, SENTINEL_COOKIE, "SENTINELcookieDIR"]
        for p in work.rglob("*"):
            if p.is_file() and p.name != "config.yaml":
                data = p.read_bytes()
                assert not [s for s in secrets if s.encode() in data], p
    finally:
        server.close()


# ------------------------------------------------------------------------ corrupt inputs


def _one_line_naming(err: pytest.ExceptionInfo, path: Path) -> None:
    message = str(err.value)
    assert "\n" not in message, message
    assert str(path) in message, message


def test_truncated_npy_is_one_line_naming_it(tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, np.ones((100, 8), np.float16))
    bad = tmp_path / "v2.npy"
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) - 300])
    with pytest.raises(SoundharvestError) as err:
        concatenate([("v1", good), ("v2", bad)], tmp_path / "c.npy", tmp_path / "c.tsv")
    _one_line_naming(err, bad)
    assert not (tmp_path / "c.npy").exists()
    with pytest.raises(SoundharvestError) as err:
        shuffle([("a", good), ("b", bad)], [tmp_path / "s0.npy"], seed=0)
    _one_line_naming(err, bad)
    with pytest.raises(SoundharvestError) as err:
        load_npy(bad)
    _one_line_naming(err, bad)


def _lying_wav(path: Path) -> Path:
    """A wav whose header promises far more samples than the file holds."""
    sf.write(str(path), np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    i = data.find(b"data")
    data[i + 4 : i + 8] = (10_000_000).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


def test_wav_with_a_lying_header_is_one_line_naming_it(tmp_path):
    wav = _lying_wav(tmp_path / "clip.wav")
    with pytest.raises(SoundharvestError) as err:
        read_wav(wav)
    _one_line_naming(err, wav)
    with pytest.raises(SoundharvestError) as err:
        spectrogram_file(wav, tmp_path / "s.npy", tmp_path / "e.npy", "stft")
    _one_line_naming(err, wav)
    assert not list(tmp_path.glob("*.npy"))


def test_html_posing_as_audio_is_one_line_naming_it(tmp_path):
    html = b"<!DOCTYPE html><html><body>Sign in to confirm you're not a bot</body></html>\n"
    page = tmp_path / "audio.m4a"
    page.write_bytes(html * 20)
    with pytest.raises(SoundharvestError) as err:
        decode(page)
    _one_line_naming(err, page)
    fake_wav = tmp_path / "note.wav"
    fake_wav.write_bytes(html * 20)
    with pytest.raises(SoundharvestError) as err:
        read_wav(fake_wav)
    _one_line_naming(err, fake_wav)
    # In the acquisition stages such a file is the video's fault: recorded on the video's
    # catalog row (one line), never fatal.
    status = {"video_id": "vid1", "status": "ok", "audio": "audio.m4a"}
    (tmp_path / "status.json").write_text(json.dumps(status))
    record = convert_file(tmp_path / "status.json", tmp_path / "v.wav", tmp_path / "v.json")
    assert record["video_id"] == "vid1" and record["status"] == "skipped"
    assert record["reason"].startswith("undecodable") and "\n" not in record["reason"]
    assert sf.info(str(tmp_path / "v.wav")).frames == 0


@pytest.fixture(scope="module")
def small_nsynth(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("nsynth") / "eval"
    render_eval_set(d, ["flute", "organ"], 2, seed=0)
    return d


def _copy_nsynth(src: Path, dst: Path) -> Path:
    (dst / "audio").mkdir(parents=True)
    (dst / "examples.json").write_bytes((src / "examples.json").read_bytes())
    for wav in (src / "audio").iterdir():
        (dst / "audio" / wav.name).write_bytes(wav.read_bytes())
    return dst


def test_nsynth_directory_with_a_missing_wav_is_one_line_naming_it(small_nsynth, tmp_path):
    d = _copy_nsynth(small_nsynth, tmp_path / "eval")
    missing = sorted((d / "audio").iterdir())[0]
    missing.unlink()
    with pytest.raises(SoundharvestError) as err:
        eval_frames(d, tmp_path / "f.npy", tmp_path / "n.tsv", "stft", {})
    message = str(err.value)
    assert "\n" not in message and str(d) in message and missing.name in message
    assert not (tmp_path / "f.npy").exists()


def test_nsynth_note_with_a_lying_header_is_one_line_naming_it(small_nsynth, tmp_path):
    d = _copy_nsynth(small_nsynth, tmp_path / "eval")
    note = sorted((d / "audio").iterdir())[0]
    data = bytearray(note.read_bytes())
    i = data.find(b"data")
    del data[len(data) // 2 :]  # the header still promises 4 s
    note.write_bytes(bytes(data))
    assert i > 0
    with pytest.raises(SoundharvestError) as err:
        eval_frames(d, tmp_path / "f.npy", tmp_path / "n.tsv", "stft", {})
    message = str(err.value)
    assert "\n" not in message and note.name in message


def test_truncated_spectrogram_in_a_run_is_one_line_then_a_rerun_repairs_it(tiny_run, tiny_copy):
    vid = _ok_video(tiny_copy)
    rel = f"results/spectrogram/mel/{vid}.npy"
    data = (tiny_copy / rel).read_bytes()
    (tiny_copy / rel).write_bytes(data[: len(data) // 2])
    target = "results/concatenate/mel/flute.npy"
    proc = snakemake(tiny_copy, target, "--forcerun", "concatenate", check=False)
    assert proc.returncode != 0
    errors = [
        ln for ln in (tiny_copy / "logs/concatenate/mel/flute.log").read_text().splitlines()
        if " ERROR " in ln
    ]  # fmt: skip
    assert len(errors) == 1 and rel in errors[0] and "truncated" in errors[0], errors
    assert not (tiny_copy / target).exists()  # no output from the failed job
    # The fix the message gives: delete the batch's manifest and re-run; the batch redoes only
    # the damaged video.
    manifest = re.search(r"delete (\S+\.tsv) and re-run", errors[0]).group(1)
    assert re.fullmatch(r"results/batches/spectrogram/mel/flute-000-[0-9a-f]{8}\.tsv", manifest)
    others = [
        p for p in (tiny_copy / "results/spectrogram/mel").glob("*.npy")
        if p.name.split(".")[0] != vid and p.name.split(".")[0] in (tiny_copy / manifest).read_text()
    ]  # fmt: skip
    inodes = {p: p.stat().st_mtime_ns for p in others}
    assert inodes
    (tiny_copy / manifest).unlink()
    before = snapshot(tiny_copy)
    snakemake(tiny_copy, target)
    assert rel in changed(before, snapshot(tiny_copy))
    assert {p: p.stat().st_mtime_ns for p in others} == inodes  # not redone
    _same_bytes(tiny_copy / target, tiny_run / target)
    _same_bytes(tiny_copy / rel, tiny_run / rel)
