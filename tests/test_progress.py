"""Progress lines of the long encoder passes (soundharvest.progress)."""

from __future__ import annotations

import logging

import numpy as np

from soundharvest.progress import Progress


def test_progress_logs_rate_and_time_left_then_a_closing_line(caplog) -> None:
    log = logging.getLogger("soundharvest.test")
    with caplog.at_level("INFO", logger="soundharvest.test"):
        p = Progress(10, "pass: units", log, every=0)
        for _ in range(4):
            p.step(2)
        p.step(2)  # the last step: no progress line, the closing line says it all
        p.finish()
    lines = [r.getMessage() for r in caplog.records]
    assert [ln.split(" (")[0] for ln in lines[:4]] == [
        f"pass: units: {n} of 10" for n in (2, 4, 6, 8)
    ]
    assert all("/s, " in ln and ln.endswith(" left") for ln in lines[:4])
    assert len(lines) == 5 and lines[-1].startswith("pass: units: 10 in 0:00:0")


def test_progress_stays_quiet_between_its_lines(caplog) -> None:
    log = logging.getLogger("soundharvest.test")
    with caplog.at_level("INFO", logger="soundharvest.test"):
        p = Progress(1000, "pass", log, every=3600)
        for _ in range(999):
            p.step()
        p.finish()
    assert len(caplog.records) == 1 and "999 in" in caplog.records[0].getMessage()


def test_encoding_every_training_frame_reports_its_progress(tmp_path, caplog) -> None:
    from test_contrastive import make_clips

    from soundharvest.encoder import Encoder
    from soundharvest.loader import ClipPositives
    from soundharvest.sampling import encode_sources

    _, sources, _ = make_clips(tmp_path, n_classes=2, clips=3, length=40, d=16)
    clips = ClipPositives(sources)
    out = np.zeros((clips.n_rows, 16), dtype=np.float32)
    with caplog.at_level("INFO", logger="soundharvest.sampling"):
        encode_sources(Encoder(None), clips, out)  # the identity: the codes are the frames
    frames = np.concatenate([np.load(s) for s in sources]).astype(np.float32)
    assert np.array_equal(out, frames)
    assert f"encode every training frame: {clips.n_rows} in" in caplog.text
