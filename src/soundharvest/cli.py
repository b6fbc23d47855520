"""The ``soundharvest`` command: look at what the workflow's stages made, or label audio.

Subcommands are registered in :data:`COMMANDS` (name -> (add_arguments, run)); adding one
means writing those two functions and one dictionary entry.

``soundharvest predict <predictor dir> <files>`` names the instrument of each file through a
:class:`~soundharvest.predict.Predictor` (calibrated probabilities, ``unknown``, ``silent``;
``--json`` for machines, ``--frames`` for a per-second timeline).

``soundharvest inspect <file.npy>`` prints an array's shape, dtype and value range; for a
shuffle shard the label counts (from ``<name>.labels.npy`` and ``labels.json``); for a label's
concatenation the number of videos (from ``<name>.index.tsv``); and one frame as a text
sparkline, or as a PNG with ``--png``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .io import SoundharvestError

#: Sparkline glyphs, from low to high.
_SPARK = " ▁▂▃▄▅▆▇█"

#: Rows scanned for value statistics (and to pick the loudest frame) when the file is larger.
_STATS_ROWS = 1 << 20


def sparkline(
    values: np.ndarray, width: int = 64, lo: float | None = None, hi: float | None = None
) -> str:
    """A one-line text picture of ``values``: ``width`` glyphs, each the mean of its span.

    :param values: 1-D numbers (e.g. one spectrogram frame, low to high frequency).
    :param width: number of characters (at most ``len(values)``).
    :param lo: value drawn as the lowest glyph (default: the minimum).
    :param hi: value drawn as the highest glyph (default: the maximum).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return ""
    width = max(1, min(width, v.size))
    edges = np.linspace(0, v.size, width + 1).astype(int)
    means = np.add.reduceat(v, edges[:-1]) / np.diff(edges)
    lo = float(np.nanmin(means)) if lo is None else lo
    hi = float(np.nanmax(means)) if hi is None else hi
    span = hi - lo if hi > lo else 1.0
    levels = np.clip(np.round((means - lo) / span * (len(_SPARK) - 1)), 0, len(_SPARK) - 1)
    return "".join(_SPARK[int(i)] for i in np.nan_to_num(levels))


def _label_names(shard: Path, n: int) -> list[str]:
    from .dataset import read_labels

    path = shard.parent / "labels.json"
    if path.is_file():
        names = read_labels(path)
        if len(names) >= n:
            return names
    return [f"label {i}" for i in range(n)]


def inspect_array(
    path: Path, frame: int | None = None, png: Path | None = None, width: int = 64
) -> str:
    """Describe a ``.npy`` file made by the workflow (see the module doc); return the text.

    :param path: the ``.npy`` file.
    :param frame: row to picture; default the row with the highest mean among the first
        ``_STATS_ROWS`` rows (the loudest frame for a spectrogram).
    :param png: also draw the frame (and its neighbourhood, for 2-D arrays) into this PNG.
    :param width: sparkline width in characters.
    """
    from .dataset import index_path, read_index, shard_side_paths
    from .io import load_npy

    arr = load_npy(path)
    lines = [f"{path}", f"  shape {arr.shape}  dtype {arr.dtype}"]
    if arr.size == 0:
        lines.append("  (empty)")
        return "\n".join(lines)
    n = arr.shape[0] if arr.ndim else 1
    head = np.asarray(arr[:_STATS_ROWS] if arr.ndim else arr.reshape(1), dtype=np.float32)
    scanned = "" if n <= _STATS_ROWS else f" (first {_STATS_ROWS} rows)"
    lines.append(
        f"  min {np.nanmin(head):.4g}  max {np.nanmax(head):.4g}  mean {np.nanmean(head):.4g}{scanned}"
    )

    labels_p, rows_p = shard_side_paths(path)
    if labels_p.is_file() and arr.ndim == 2:
        lab = load_npy(labels_p, mmap=False)
        counts = np.bincount(lab.astype(np.int64), minlength=1)
        names = _label_names(path, len(counts))
        lines.append(f"  shard: {len(lab)} label ids ({labels_p.name})")
        for i, c in enumerate(counts):
            if c:
                lines.append(f"    {names[i]:<16} {c:>10}  {c / max(1, len(lab)):6.1%}")
    index_p = index_path(path)
    if index_p.is_file():
        idx = read_index(index_p)
        lines.append(f"  concatenation of {len(idx)} videos ({index_p.name})")

    if arr.ndim == 2:
        if frame is None:
            frame = int(np.argmax(head.mean(axis=1)))
            how = "highest mean"
        else:
            how = "chosen"
        if not -n <= frame < n:
            raise SoundharvestError(f"{path}: --frame {frame} is outside 0..{n - 1}")
        frame %= n
        row = np.asarray(arr[frame], dtype=np.float32)
        where = ""
        if labels_p.is_file():
            lab_id = int(load_npy(labels_p)[frame])
            src = int(load_npy(rows_p)[frame]) if rows_p.is_file() else -1
            where = f", label {_label_names(path, lab_id + 1)[lab_id]}, source row {src}"
        elif index_p.is_file():
            for vid, first, k in read_index(index_p):
                if first <= frame < first + k:
                    where = f", video {vid} frame {frame - first}"
                    break
        lines.append(f"  frame {frame} ({how}{where}), bins low -> high:")
        # Features scaled to [0, 1] are drawn on that fixed scale so frames compare by eye.
        scaled = row.min() >= 0.0 and row.max() <= 1.0
        pic = sparkline(row, width, 0.0, 1.0) if scaled else sparkline(row, width)
        lines.append(f"  |{pic}|")
    elif arr.ndim == 1:
        lines.append(f"  values: |{sparkline(head, width)}|")

    if png is not None:
        _draw_png(arr, frame, png, path.name)
        lines.append(f"  picture: {png}")
    return "\n".join(lines)


def _draw_png(arr: np.ndarray, frame: int | None, png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_path

    if arr.ndim == 2 and frame is not None:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1, 2]})
        ax1.plot(np.asarray(arr[frame], dtype=np.float32), lw=0.8)
        ax1.set(title=f"frame {frame}", xlabel="bin", ylabel="value")
        a, b = max(0, frame - 128), min(arr.shape[0], frame + 128)
        img = np.asarray(arr[a:b], dtype=np.float32).T
        ax2.imshow(img, origin="lower", aspect="auto", extent=(a, b, 0, arr.shape[1]), cmap="magma")
        ax2.axvline(frame, color="cyan", lw=0.6)
        ax2.set(title=f"rows {a}..{b - 1}", xlabel="row (frame)", ylabel="bin")
    else:
        fig, ax1 = plt.subplots(figsize=(8, 3))
        ax1.plot(np.asarray(arr[:_STATS_ROWS], dtype=np.float32).ravel(), lw=0.6)
        ax1.set(xlabel="row", ylabel="value")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _inspect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, help="a .npy file made by the workflow")
    p.add_argument("--frame", type=int, default=None, help="row to picture (default: loudest)")
    p.add_argument("--png", type=Path, default=None, help="also draw the frame into this PNG")
    p.add_argument("--width", type=int, default=64, help="sparkline width in characters")


def _inspect_run(args: argparse.Namespace) -> int:
    print(inspect_array(args.file, args.frame, args.png, args.width))
    return 0


def _verdict(r: Mapping[str, Any]) -> str:
    if r["answer"] == "silent":
        return "silent"
    runner = list(r["probabilities"].items())[1:2]
    best = f"{r['label']} {r['confidence']:.1%}"
    if r["answer"] == "unknown":
        if r.get("unknown_because") == "atypical":
            return f"unknown (unlike the training audio; best guess {best})"
        return f"unknown (not confident; best guess {best})"
    return best + (f" (next {runner[0][0]} {runner[0][1]:.1%})" if runner else "")


def format_result(result: Mapping[str, Any], frames: bool = False) -> str:
    """Human-readable lines for one file's result
    (:meth:`~soundharvest.predict.Predictor.predict_file`): the answer with its calibrated
    probability, and with ``frames`` the per-second timeline."""
    line = f"{result['file']}: {_verdict(result)}"
    line += f", {result['voiced_frames']} of {result['n_frames']} frames voiced, "
    line += f"{result['seconds']:.1f} s"
    if not result.get("calibrated", True):
        line += " (uncalibrated: no calibration.json, nothing is called unknown)"
    lines = [line]
    if frames:
        for t in result["timeline"]:
            span = f"{t['start']}-{t['end']} s"
            lines.append(f"  {span:>12}  {_verdict(t)}")
    return "\n".join(lines)


def _predict_args(p: argparse.ArgumentParser) -> None:
    """Arguments of ``soundharvest predict`` (``p`` is an ``argparse.ArgumentParser``)."""
    p.add_argument(
        "model_dir", type=Path, help="a predictor directory (results/predictor/<kind>/<model>)"
    )
    p.add_argument(
        "files",
        nargs="+",
        type=Path,
        help="audio files (any format ffmpeg reads), or folders: every audio file under them",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON document for machines")
    out.add_argument(
        "--tsv",
        action="store_true",
        help="print a table, one row per file as it is done (a row per second too with --frames)",
    )
    p.add_argument("--frames", action="store_true", help="also print a per-second timeline")
    p.add_argument("--kind", default=None, help="fail unless the model uses this feature kind")
    p.add_argument(
        "--device",
        default="auto",
        help="torch device of the encoder: auto (a CUDA GPU where there is one), cpu, cuda:N",
    )


def expand_inputs(paths: Sequence[Path]) -> list[tuple[Path, str | None]]:
    """The files ``soundharvest predict`` labels, in order, each with ``None`` or the reason it
    cannot be: a file as given, a folder as the audio files under it
    (:func:`soundharvest.acquire.local.audio_files`); a folder with none is an error."""
    from .acquire.local import audio_files

    out: list[tuple[Path, str | None]] = []
    for p in paths:
        if not p.is_dir():
            out.append((p, None))
            continue
        found = [(f, None) for f in audio_files(p)]
        out += found or [(p, f"{p}: no audio files in this folder (by their extension)")]
    return out


#: The columns of ``soundharvest predict --tsv`` before one ``p_<label>`` column per label.
TSV_COLUMNS = (
    "file", "span", "start", "end", "answer", "label", "confidence", "unknown_because",
    "distance", "voiced_frames", "n_frames", "error",
)  # fmt: skip


def tsv_rows(result: Mapping[str, Any], labels: Sequence[str], frames: bool = False) -> list[str]:
    """``--tsv`` lines of one file's result (or ``{"file", "error"}``): the file's row (span
    ``file``), then with ``frames`` one row per second (span ``second``)."""

    def cell(v: Any) -> str:
        return "" if v is None else str(v).replace("\t", " ").replace("\n", " ")

    def row(r: Mapping[str, Any], span: str, start: Any, end: Any) -> str:
        probs = r.get("probabilities") or {}
        vals = [result["file"], span, start, end] + [r.get(c) for c in TSV_COLUMNS[4:]]
        return "\t".join(cell(v) for v in vals + [probs.get(lab) for lab in labels])

    if "error" in result:
        return [row(result, "file", None, None)]
    lines = [row(result, "file", 0, result["seconds"])]
    if frames:
        lines += [row(t, "second", t["start"], t["end"]) for t in result["timeline"]]
    return lines


def _predict_run(args: argparse.Namespace) -> int:
    """Run ``soundharvest predict``: one verdict per file; an unreadable file gets a one-line
    error on stderr and the others go on (exit status 1 if any failed). Text and ``--tsv``
    print each file's answer as soon as it is known (a long batch can be read, or cut, as it
    goes); ``--json`` prints one document at the end."""
    import json

    from .predict import Predictor  # imported on use: keeps `inspect` light

    predictor = Predictor.load(args.model_dir, device=args.device, expect_kind=args.kind)
    warning = predictor.calibration_warning
    if warning:
        print(f"soundharvest predict: warning: {args.model_dir}: {warning}", file=sys.stderr)
    if args.tsv:
        header = list(TSV_COLUMNS) + [f"p_{lab}" for lab in predictor.labels]
        print("\t".join(header), flush=True)
    results, failed = [], 0
    for f, why in expand_inputs(args.files):
        try:
            if why is not None:
                raise SoundharvestError(why)
            res = predictor.predict_file(f)
        except SoundharvestError as e:
            failed += 1
            print(f"soundharvest predict: {e}", file=sys.stderr)
            res = {"file": str(f), "error": str(e)}
            results.append(res)
            if args.tsv:
                print("\n".join(tsv_rows(res, predictor.labels)), flush=True)
            continue
        if not args.frames:
            res.pop("timeline")
        results.append(res)
        if args.tsv:
            print("\n".join(tsv_rows(res, predictor.labels, args.frames)), flush=True)
        elif not args.json:
            print(format_result(res, args.frames), flush=True)
    if args.json:
        doc = {
            "model_dir": str(args.model_dir),
            "model": predictor.meta.get("model"),
            "kind": predictor.kind,
            "labels": predictor.labels,
            # Without the calibrate stage's calibration.json: temperature 1, never 'unknown'.
            "calibrated": predictor.calibration is not None,
            "temperature": predictor.temperature,
            # The top label's probability p is reported as sigmoid(a * logit(p) + b).
            "confidence_map": list(predictor.confidence_map),
            # Added to the logits / temperature, per label, before the softmax (None: none).
            "label_bias": None
            if predictor.label_bias is None
            else dict(zip(predictor.labels, predictor.label_bias.round(6).tolist(), strict=True)),
            "unknown_below": predictor.threshold,
            # An answer whose distance to the training codes exceeds this is unknown too.
            "unknown_beyond_distance": predictor.distance_threshold,
            "silence_dbfs": predictor.silence_dbfs,
            # Why the calibration's probabilities or 'unknown' may be rough (None: no reason).
            "calibration_warning": warning,
            "results": results,
        }
        print(json.dumps(doc, indent=2))
    return 1 if failed else 0


#: subcommand -> (add its arguments to a parser, run it with the parsed arguments -> exit code)
COMMANDS: dict[
    str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
] = {
    "inspect": (_inspect_args, _inspect_run),
    "predict": (_predict_args, _predict_run),
}

_HELP = {
    "inspect": "describe a .npy file: shape, dtype, label counts, a frame as a picture",
    "predict": "name the instrument of audio files (calibrated probabilities, unknown, silent)",
}


#: The first line of ``--help``: plain text (the module docstring is reStructuredText).
DESCRIPTION = (
    "soundharvest: look at what the workflow's stages made (inspect), or label audio files "
    "with a trained predictor (predict)."
)


def plain(text: str) -> str:
    """reStructuredText inline markup (````x````, ``:class:`x```) as plain text for a terminal."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    return text.replace("``", "")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="soundharvest", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"soundharvest {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add_args, run) in COMMANDS.items():
        p = sub.add_parser(name, help=plain(_HELP.get(name, "")))
        add_args(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``soundharvest`` console script.

    :param argv: arguments (default ``sys.argv[1:]``).
    :return: the exit status (1 on a :class:`SoundharvestError`, whose one line goes to stderr).
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except SoundharvestError as e:
        print(f"soundharvest {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
