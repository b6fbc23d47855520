"""Issue 10: can a trained latent space beat the random baseline? Small, seeded experiments.

Data (cached under ``--work``): the ``demo`` source's rendered search results for a few labels
(the four evaluation families' labels plus distractors), STFT features as the workflow computes
them (n_fft 1024, hop 512, 513 bins, [-80, 0] dB -> [0, 1] per clip), written as concatenate-stage
files (``<label>.npy`` + ``<label>.index.tsv``) and shuffled into shards with the library's
``shuffle``; models are trained with the library's ``train`` on those shards. Evaluation notes are
rendered NSynth-style from GM programs the training data never used (``disjoint``) and from all
of the family's programs (``overlap``).

Per model x seed x evaluation set x pooling (``top``: the note's highest-energy frame, the
thesis; ``mean``: the mean code over the note's loud frames) it prints NMI, purity and ARI of
k-means at k = number of families, NMI averaged over k = 2..100, and the accuracy of the
cluster -> label model (k-means on codes of training frames, each cluster named after its
majority query label, label -> NSynth family, each note predicted by its nearest centroid).

Run: ``.venv/bin/python experiments/beat_thesis.py --work /tmp/beat_thesis`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from soundharvest.acquire.demo import DemoSource
from soundharvest.dataset import shuffle
from soundharvest.evaluate.frames import eval_frames, eval_windows, loud_frames, pool_codes
from soundharvest.evaluate.kmeans import sweep
from soundharvest.evaluate.nsynth import (
    families_of,
    load_label_families,
    load_note,
    read_nsynth,
    render_eval_set,
)
from soundharvest.features import compute_features
from soundharvest.io import save_npy
from soundharvest.loader import ClipPositives, ShardReader
from soundharvest.models import Normalizer, context_of, context_span
from soundharvest.predict import ClusterLabelModel
from soundharvest.train import encode, load_model, train

ROOT = Path(__file__).resolve().parents[1]
STFT = {"n_fft": 1024, "hop_length": 512}
LABELS = ["guitar", "voice", "organ", "flute", "piano", "violin"]
FAMILIES = ["guitar", "vocal", "organ", "flute"]

#: The pitch-shift-invariant encoder (``frontend: logconv``), small enough for a CPU.
LOGCONV = {"frontend": "logconv", "channels": [32, 32, 32], "hidden": [128], "latent": 10}

#: name -> (model type, train() keyword arguments). The thesis architecture unless ``arch``.
MODELS: dict[str, tuple[str, dict]] = {
    "random": ("random", {}),
    "random-frame": ("random", {"normalize": "frame"}),
    "ae": ("ae", {}),
    "ae-frame": ("ae", {"normalize": "frame"}),
    "acai": ("acai", {}),
    "acai-frame": ("acai", {"normalize": "frame"}),
    "contrastive": ("contrastive", {}),
    "contrastive-frame": ("contrastive", {"normalize": "frame"}),
    "contrastive-bin": ("contrastive", {"normalize": "bin"}),
    # Weak supervision (positives = any frame of the same query label): not unsupervised.
    "supcon-label-frame": ("contrastive", {"normalize": "frame", "positive_scope": "label"}),
    "supcon-label": ("contrastive", {"positive_scope": "label"}),
    # The logconv encoder: untrained, and trained on pairs from anywhere in one clip.
    "random-logconv": ("random", {"arch": LOGCONV}),
    "clip-logconv": ("contrastive", {"arch": LOGCONV, "max_offset": 100_000, "gain_jitter": 0.1}),
    "clip-logconv-near": ("contrastive", {"arch": LOGCONV, "max_offset": 8, "gain_jitter": 0.1}),
    "clip-logconv-nojitter": ("contrastive", {"arch": LOGCONV, "max_offset": 100_000}),
    "clip-logconv-ch64": (
        "contrastive",
        {"arch": {**LOGCONV, "channels": [64, 64, 64]}, "max_offset": 100_000, "gain_jitter": 0.1},
    ),
    "clip-logconv-lat32": (
        "contrastive",
        {"arch": {**LOGCONV, "latent": 32}, "max_offset": 100_000, "gain_jitter": 0.1},
    ),
    # Windows of 8 frames, 4 apart (architecture.context): untrained and trained on clip windows.
    "random-ctx": ("random", {"arch": {**LOGCONV, "context": 8, "context_stride": 4}}),
    "clip-ctx": (
        "contrastive",
        {
            "arch": {**LOGCONV, "context": 8, "context_stride": 4},
            "max_offset": 100_000,
            "gain_jitter": 0.1,
        },
    ),
    # The same with a random equaliser on each anchor (recording colour must not solve it).
    "clip-ctx-eq": (
        "contrastive",
        {
            "arch": {**LOGCONV, "context": 8, "context_stride": 4},
            "max_offset": 100_000,
            "gain_jitter": 0.1,
            "eq_jitter": 0.1,
        },
    ),
    # ... with each anchor shifted by up to an octave (register must not solve it), and both.
    "clip-ctx-pitch": (
        "contrastive",
        {
            "arch": {**LOGCONV, "context": 8, "context_stride": 4},
            "max_offset": 100_000,
            "gain_jitter": 0.1,
            "pitch_jitter": 12.0,
        },
    ),
    "clip-ctx-all": (
        "contrastive",
        {
            "arch": {**LOGCONV, "context": 8, "context_stride": 4},
            "max_offset": 100_000,
            "gain_jitter": 0.1,
            "eq_jitter": 0.1,
            "pitch_jitter": 12.0,
        },
    ),
    # Weak supervision on windows: positives are windows of any clip of the same query label.
    "label-ctx": (
        "contrastive",
        {
            "arch": {**LOGCONV, "context": 8, "context_stride": 4},
            "positive_scope": "label",
            "gain_jitter": 0.1,
        },
    ),
    "label-logconv": (
        "contrastive",
        {"arch": LOGCONV, "positive_scope": "label", "gain_jitter": 0.1},
    ),
}


def make_training_data(work: Path, clips_per_label: int, seed: int = 0) -> list[Path]:
    """Render demo clips, write concatenate-stage files, shuffle into 2 shards."""
    concat = work / "concatenate"
    shards = [work / "shards" / f"shard-{i:02d}.npy" for i in range(2)]
    if all(p.is_file() for p in shards):
        return shards
    concat.mkdir(parents=True, exist_ok=True)
    src = DemoSource({"seed": seed, "min_duration": 6, "max_duration": 12})
    inputs = []
    for label in LABELS:
        frames, lines, row = [], ["video_id\tfirst_row\tn_rows"], 0
        for cand in src.search(label, f"{label} music", clips_per_label):
            audio, _rec = src.render(label, cand.video_id)
            f, _e = compute_features(audio, 16000, "stft", STFT)
            frames.append(f.astype(np.float16))
            lines.append(f"{cand.video_id}\t{row}\t{len(f)}")
            row += len(f)
        save_npy(concat / f"{label}.npy", np.concatenate(frames))
        (concat / f"{label}.index.tsv").write_text("\n".join(lines) + "\n")
        inputs.append((label, concat / f"{label}.npy"))
    shuffle(inputs, shards, seed=seed, memory_budget_mb=256)
    return shards


def sources(work: Path) -> list[Path]:
    return [work / "concatenate" / f"{label}.npy" for label in LABELS]


def make_eval_data(work: Path, programs: str, notes_per_family: int) -> dict[str, np.ndarray]:
    """Render an NSynth-style set; return top frames, loud frames + note ids, families."""
    cache = work / f"eval-{programs}.npz"
    if cache.is_file():
        return dict(np.load(cache))
    d = work / f"nsynth-{programs}"
    render_eval_set(d, FAMILIES, notes_per_family, programs=programs, seed=0)
    ex = read_nsynth(d).sort_values("note_str").reset_index(drop=True)
    top, loud, note_of = [], [], []
    for i, key in enumerate(ex["note_str"]):
        f, e = compute_features(load_note(d, key), 16000, "stft", STFT)
        top.append(f[int(np.argmax(e))])
        sel = loud_frames(e, 20.0)
        loud.append(f[sel])
        note_of.append(np.full(len(sel), i))
    out = {
        "top": np.stack(top),
        "loud": np.concatenate(loud),
        "note_of": np.concatenate(note_of),
        "family": ex["instrument_family_str"].to_numpy().astype(str),
    }
    np.savez(cache, **out)
    return out


def make_eval_windows(work: Path, programs: str, span: int, families: np.ndarray) -> np.ndarray:
    """Every note's ``span`` frames from its highest-energy frame on (``eval_windows``), in the
    order of :func:`make_eval_data` (checked against its ``families``)."""
    cache = work / f"eval-{programs}.window{span}.npy"
    notes = work / f"eval-{programs}.notes.tsv"
    if not cache.is_file():
        d = work / f"nsynth-{programs}"
        eval_frames(d, work / f"eval-{programs}.top.npy", notes, "stft", STFT, families=FAMILIES)
        eval_windows(d, notes, cache, "stft", STFT, span)
    order = pd.read_csv(notes, sep="\t")["family"].to_numpy().astype(str)
    assert np.array_equal(order, families), "notes out of order"
    return np.load(cache)


def train_sample(shards: list[Path], n: int = 8000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A uniform sample of training frames, their label ids and global source rows."""
    reader = ShardReader(shards, n, with_labels=True, with_rows=True, prefetch=0)
    x, y, rows = next(iter(reader.batches(0, n)))
    return x.numpy(), y.numpy(), rows.numpy()


def scores(
    codes: np.ndarray,
    families: np.ndarray,
    clm: ClusterLabelModel,
    label_family: dict[str, str | None],
    seed: int,
) -> dict[str, float]:
    table = sweep(codes, range(2, 101), {"family": families}, seed=seed, n_init=3, device="cpu")
    at = table[table["k"] == len(FAMILIES)].iloc[0]
    # Only clusters named after a label of an evaluated family compete (a 4-way choice, as the
    # thesis' families are); a note goes to the nearest of them.
    named = np.array([label_family[clm.labels[i]] or "" for i in clm.names])
    keep = np.isin(named, FAMILIES)
    d = ((codes[:, None, :] - clm.centroids[None, keep, :]) ** 2).sum(-1)
    pred_family = named[keep][np.argmin(d, axis=1)]
    return {
        "nmi4": float(at["family_nmi"]),
        "purity4": float(at["family_purity"]),
        "ari4": float(at["family_ari"]),
        "nmi_mean": float(table["family_nmi"].mean()),
        "acc": float(np.mean(pred_family == families)),
    }


def codes_of(name: str, net, frames: np.ndarray) -> np.ndarray:
    if net is None:  # raw features (optionally frame-standardised)
        if name == "raw-frame":
            return Normalizer("frame", frames.shape[1])(torch.from_numpy(frames)).numpy()
        return np.asarray(frames, dtype=np.float32)
    return encode(net, np.asarray(frames, dtype=np.float32))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/beat_thesis"))
    ap.add_argument("--models", default="raw,random,ae,contrastive,contrastive-frame")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--frames", type=int, default=60_000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--clips-per-label", type=int, default=30)
    ap.add_argument("--notes-per-family", type=int, default=100)
    ap.add_argument("--k-labels", type=int, default=50, help="k of the cluster -> label model")
    ap.add_argument("--max-offset", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="append result rows to this TSV")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    shards = make_training_data(work, args.clips_per_label)
    evals = {p: make_eval_data(work, p, args.notes_per_family) for p in ("disjoint", "overlap")}
    xs, ys, xs_rows = train_sample(shards)
    label_names = json.loads((shards[0].parent / "labels.json").read_text())
    label_family = families_of(
        label_names, load_label_families(ROOT / "resources/label_families.tsv")
    )
    print(f"data ready in {time.perf_counter() - t0:.0f} s", flush=True)

    rows = []
    for name in args.models.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            t1 = time.perf_counter()
            net = None
            if not name.startswith("raw"):
                mtype, kw = MODELS[name]
                kw = dict(kw)
                arch = kw.pop("arch", "thesis")
                if mtype == "contrastive":
                    kw = {
                        "max_offset": args.max_offset,
                        "temperature": args.temperature,
                        **kw,
                        "positives": sources(work),
                    }
                wdir = work / "models" / f"{name}-f{args.frames}-b{args.batch_size}-s{seed}"
                weights = wdir / "model.safetensors"
                if not weights.is_file():
                    train(
                        shards,
                        weights,
                        wdir / "curves.tsv",
                        wdir / "curves.png",
                        model_type=mtype,
                        arch=arch,
                        metadata={
                            "features": {"kind": "stft", "params": STFT, "sample_rate": 16000}
                        },
                        frames=args.frames,
                        batch_size=args.batch_size,
                        lr=args.lr,
                        seed=seed,
                        threads=args.threads,
                        prefetch=0,
                        **kw,
                    )
                net, _ = load_model(weights)
            t, stride = (1, 1) if net is None else context_of(net)
            train_x = xs
            if t > 1:  # the windows that start at the sampled training frames
                clips = ClipPositives(sources(work))
                train_x = clips.frames(clips.window_rows(xs_rows, t, stride))
            clm = ClusterLabelModel.fit(
                codes_of(name, net, train_x), ys, args.k_labels, seed=seed, label_names=label_names
            )
            for programs, ev in evals.items():
                for pool in ("top",) if t > 1 else ("top", "mean"):
                    if t > 1:
                        span = context_span(t, stride)
                        windows = make_eval_windows(work, programs, span, ev["family"])
                        codes = codes_of(name, net, windows[:, :span:stride])
                    elif pool == "top":
                        codes = codes_of(name, net, ev["top"])
                    else:
                        codes = pool_codes(
                            codes_of(name, net, ev["loud"]), ev["note_of"], len(ev["family"])
                        )
                    r = {
                        "model": name,
                        "seed": seed,
                        "programs": programs,
                        "pool": pool,
                        "frames": args.frames if net is not None else 0,
                        **scores(codes, ev["family"], clm, label_family, seed),
                    }
                    rows.append(r)
                    print(
                        "\t".join(
                            f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values()
                        ),
                        flush=True,
                    )
            print(f"# {name} seed {seed}: {time.perf_counter() - t1:.0f} s", flush=True)
    df = pd.DataFrame(rows)
    if args.out:
        df.to_csv(args.out, sep="\t", index=False, mode="a", header=not args.out.exists())
    metrics = ["nmi4", "purity4", "ari4", "nmi_mean", "acc"]
    agg = df.groupby(["programs", "pool", "model"], sort=False)[metrics].agg(["mean", "std"])
    pd.set_option("display.width", 200)
    print(agg.round(3).to_string())


if __name__ == "__main__":
    main()
