"""Benchmark of the offline demo source and the rendered NSynth-format evaluation set.

Prints: render and encode speed (seconds of audio per second of wall time, one core), the size
of downloaded clips, the truth statistics of default-option search results (off-topic share and
kinds, accompaniment, unavailable), and the time to render, validate and read an eval set.

    .venv/bin/python bench/bench_demo.py [--clips 40] [--notes 1000]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import tempfile
import time
from pathlib import Path

from soundharvest.acquire.demo import DemoSource
from soundharvest.audio import decode
from soundharvest.evaluate import nsynth
from soundharvest.synth import LABEL_PROGRAMS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=40, help="clips to render and encode")
    ap.add_argument("--notes", type=int, default=1000, help="eval-set notes to render")
    ap.add_argument("--results", type=int, default=30, help="search results per query")
    args = ap.parse_args()
    labels = sorted(LABEL_PROGRAMS)

    # Truth statistics of search results with default options (recipes only: no rendering).
    src = DemoSource()
    rows = {}
    for label in labels:
        for query in (f"{label}", f"{label} music", f"{label} solo"):
            for c in src.search(label, query, args.results):
                rows[(label, c.video_id)] = src.recipe(label, c.video_id)
    recs = list(rows.values())
    n = len(recs)
    kinds = collections.Counter(r["off_topic_kind"] for r in recs if r["off_topic"])
    print(
        f"search: {n} distinct results ({len(labels)} labels x 3 queries x {args.results}, "
        f"deduplicated)"
    )
    print(
        f"  off-topic share {sum(r['off_topic'] for r in recs) / n:.3f} (knob 0.2); kinds "
        + ", ".join(f"{k} {v / n:.3f}" for k, v in sorted(kinds.items()))
    )
    print(
        f"  accompanied {sum(bool(r['accompaniment']) for r in recs) / n:.3f}, reverb "
        f"{sum(bool(r['reverb']) for r in recs) / n:.3f}, level changes "
        f"{sum(bool(r['level_changes']) for r in recs) / n:.3f}, unavailable "
        f"{sum(r['unavailable'] for r in recs) / n:.3f}"
    )
    print(
        f"  duration mean {statistics.mean(r['duration'] for r in recs):.1f} s, median "
        f"{statistics.median(r['duration'] for r in recs):.0f} s"
    )

    # Render + encode speed and clip size.
    picks = [(r["label"], r["video_id"]) for r in recs if not r["unavailable"]][
        :: max(1, n // args.clips)
    ]
    picks = picks[: args.clips]
    with tempfile.TemporaryDirectory() as tmp:
        for codec in ("opus", "aac"):
            src = DemoSource({"codec": codec})
            t_render = t_encode = t_decode = 0.0
            seconds = 0
            sizes = []
            for i, (label, vid) in enumerate(picks):
                t0 = time.perf_counter()
                audio, rec = src.render(label, vid)
                t1 = time.perf_counter()
                path = Path(tmp) / f"{codec}{i}.{'webm' if codec == 'opus' else 'm4a'}"
                src.encode(audio, path)
                t2 = time.perf_counter()
                decode(path)
                t3 = time.perf_counter()
                t_render += t1 - t0
                t_encode += t2 - t1
                t_decode += t3 - t2
                seconds += rec["duration"]
                sizes.append(path.stat().st_size)
            print(
                f"{codec} ({src.bitrate}, {src.encode_rate} Hz): {len(picks)} clips, {seconds} s "
                f"of audio; render {seconds / t_render:.0f}x real time, encode "
                f"{seconds / t_encode:.0f}x, render+encode {seconds / (t_render + t_encode):.0f}x"
                f" ({(t_render + t_encode) / len(picks):.2f} s a clip); decode to 16 kHz "
                f"{seconds / t_decode:.0f}x"
            )
            print(
                f"  clip size median {statistics.median(sizes) / 1e3:.0f} kB, "
                f"{sum(sizes) / seconds / 1e3:.1f} kB per second of audio"
            )

        # Eval set: render, validate, read.
        fams = nsynth.NSYNTH_FAMILIES
        per = max(1, args.notes // len(fams))
        t0 = time.perf_counter()
        nsynth.render_eval_set(Path(tmp) / "es", fams, per)
        t1 = time.perf_counter()
        problems = nsynth.validate_nsynth(Path(tmp) / "es")
        t2 = time.perf_counter()
        frame = nsynth.read_nsynth(Path(tmp) / "es")
        t3 = time.perf_counter()
        print(
            f"eval set: {len(frame)} notes rendered+written in {t1 - t0:.1f} s "
            f"({(t1 - t0) / len(frame) * 1e3:.1f} ms a note); validate {t2 - t1:.3f} s "
            f"({len(problems)} problems), read (validate included) {t3 - t2:.3f} s"
        )


if __name__ == "__main__":
    main()
