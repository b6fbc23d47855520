"""The evaluation stages as file-to-file functions (what the workflow's scripts call).

Each function reads its inputs, calls the array-level library (:mod:`.kmeans`, :mod:`.elbow`,
:mod:`.embed`, :mod:`.figures`) and writes its outputs atomically.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..io import Pathlike, SoundharvestError, load_npy, save_npy, write_tsv
from .scoring import FILE_COLUMNS

# The array-level modules are imported inside the functions: each stage is its own process and
# needs only one of them (torch for k-means, matplotlib for figures, umap for projections).

log = logging.getLogger("soundharvest.evaluate")

#: The metrics recorded per k and labelling, in the order tables show them.
METRICS = ("purity", "ri", "ari", "nmi")


def read_notes(path: Pathlike) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype={"note_str": str, "family": str, "instrument": str})


def embed_file(
    frames_npy: Pathlike,
    out_npy: Pathlike,
    model: str,
    weights: Pathlike | None = None,
    latent: int = 10,
    seed: int = 0,
    loud_npy: Pathlike | None = None,
    loud_note_npy: Pathlike | None = None,
    windows_npy: Pathlike | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """Codes of the evaluation notes under ``model``: one per note.

    :param model: ``raw`` (the frames themselves), ``pca`` (their PCA to ``latent`` dimensions,
        fitted on the evaluation frames) or a trained model's name (then ``weights`` is its file).
    :param loud_npy: with ``loud_note_npy`` (from :func:`~.frames.eval_frames`): a note's code
        is the mean of the codes of its loud frames (``evaluation.pool: mean``) instead of the
        code of its highest-energy frame in ``frames_npy`` (the thesis).
    :param windows_npy: for a model with context T > 1 (``architecture.context``): every
        note's consecutive frames from its highest-energy frame on (:func:`~.frames.
        eval_windows`, at least the window's span); the note's code is that of the window
        that starts there. Single-frame models ignore it.
    :param device: where a trained model encodes (``auto``: CUDA if present).
    """
    from . import embed as _embed
    from .frames import pool_codes

    frames = np.asarray(load_npy(frames_npy), dtype=np.float32)
    n_notes = len(frames)
    pooled = loud_npy is not None
    if pooled:
        frames = np.asarray(load_npy(loud_npy), dtype=np.float32)
        note_of = np.asarray(load_npy(loud_note_npy), dtype=np.int64)
    if model in ("raw", "pca"):
        codes = pool_codes(frames, note_of, n_notes) if pooled else frames
        if model == "pca":
            codes = _embed.pca_codes(codes, latent, seed=seed)
    else:
        from ..encoder import Encoder

        enc = Encoder.load(weights, device=device)
        t, stride, span = enc.context, enc.stride, enc.span
        if t > 1:
            if pooled:
                raise SoundharvestError(
                    f"{weights}: a model with context {t} encodes a note's window, not its loud "
                    "frames one by one; set evaluation.pool: top"
                )
            if windows_npy is None:
                raise SoundharvestError(
                    f"{weights}: context {t} (stride {stride}): give windows_npy, the notes' "
                    f"{span}-frame windows (eval_windows)"
                )
            windows = load_npy(windows_npy)
            if windows.ndim != 3 or windows.shape[0] != n_notes or windows.shape[1] < span:
                raise SoundharvestError(
                    f"{windows_npy}: shape {windows.shape}, expected ({n_notes}, >= {span}, "
                    "bins); re-run eval_windows"
                )
            frames = windows[:, :span:stride]
        codes = enc.encode(frames)
        if pooled:
            codes = pool_codes(codes, note_of, n_notes)
    codes = np.asarray(codes, dtype=np.float32)
    save_npy(out_npy, codes)
    log.info("%s: %d codes of %d dimensions", model, *codes.shape)
    return codes


def labelings_of(notes: pd.DataFrame, names: Sequence[str]) -> dict[str, np.ndarray]:
    return {name: notes[name].astype(str).to_numpy() for name in names}


def sweep_chunk_file(
    codes_npy: Pathlike,
    notes_tsv: Pathlike,
    out_tsv: Pathlike,
    start: int,
    stop: int,
    labelings: Sequence[str],
    n_init: int = 3,
    seed: int = 0,
) -> pd.DataFrame:
    """k-means for k = start..stop (inclusive), clipped to k < number of points."""
    from . import kmeans as _kmeans

    codes = np.asarray(load_npy(codes_npy), dtype=np.float32)
    notes = read_notes(notes_tsv)
    top = min(stop, len(codes) - 1)
    ks = list(range(start, top + 1))
    if ks:
        table = _kmeans.sweep(codes, ks, labelings_of(notes, labelings), seed=seed, n_init=n_init)
    else:
        log.info("k = %d..%d: beyond %d points, nothing to do", start, stop, len(codes))
        table = _kmeans.sweep(codes, [], labelings_of(notes, labelings), seed=seed, n_init=n_init)
    write_tsv(out_tsv, table)
    return table


def elbow_file(
    chunk_tsvs: Sequence[Pathlike],
    out_sweep: Pathlike,
    out_elbows: Pathlike,
    out_png: Pathlike,
    max_ks: Sequence[int],
    labelings: Sequence[str],
    title: str = "",
    out_elbow_png: Pathlike | None = None,
) -> pd.DataFrame:
    """Merge a model's sweep chunks, choose the elbow for each max_k, plot the inertia.

    With ``out_elbow_png``, also plot how the elbow and the metrics at it move when max_k runs
    over every swept value from 10 up (the thesis' figures 4.7-4.9): the elbow method's answer
    depends on where the curve is cut, and this shows by how much.
    """
    from . import elbow as _elbow
    from . import figures as _figures

    table = _elbow.merge_chunks(list(chunk_tsvs))
    write_tsv(out_sweep, table)
    elbows = _elbow.elbow_table(table, list(max_ks), list(labelings))
    write_tsv(out_elbows, elbows)
    _figures.plot_inertia(table, elbows, out_png, title=title)
    if out_elbow_png is not None:
        top = int(table["k"].max()) if len(table) else 0
        dense = _elbow.elbow_table(table, list(range(min(10, top), top + 1)), list(labelings))
        _figures.plot_elbow_vs_max_k(
            dense, out_elbow_png, labeling=labelings[0], title=f"{title}: elbow vs max_k"
        )
    return elbows


def metrics_figure_file(
    sweep_tsvs: Sequence[Pathlike], models: Sequence[str], out_png: Pathlike, labeling: str
) -> None:
    from . import figures as _figures

    sweeps = {m: pd.read_csv(p, sep="\t") for m, p in zip(models, sweep_tsvs, strict=True)}
    _figures.plot_metrics_vs_k(sweeps, ["purity", "ri", "nmi"], out_png, labeling=labeling)


def projection_file(
    codes_npy: Pathlike, notes_tsv: Pathlike, out_png: Pathlike, method: str, seed: int = 0
) -> None:
    from . import embed as _embed
    from . import figures as _figures

    codes = np.asarray(load_npy(codes_npy), dtype=np.float32)
    notes = read_notes(notes_tsv)
    xy = _embed.project_2d(codes, method, seed=seed)
    names = sorted(notes["family"].unique())
    labels = notes["family"].map({n: i for i, n in enumerate(names)}).to_numpy()
    model = Path(codes_npy).stem
    _figures.plot_projection(xy, labels, names, out_png, title=f"{model}: {method}")


def _row_at(table: pd.DataFrame, k: int) -> Mapping[str, Any] | None:
    hit = table[table["k"] == k]
    return None if hit.empty else hit.iloc[0]


def summary_file(
    sweep_tsvs: Mapping[tuple[str, str], Pathlike],
    elbow_tsvs: Mapping[tuple[str, str], Pathlike],
    out_tsv: Pathlike,
    n_families: int,
    labeling: str = "family",
    score_tsvs: Sequence[Pathlike] = (),
    instances: Mapping[str, tuple[str, int]] | None = None,
    by_model_tsv: Pathlike | None = None,
    supervision: Mapping[str, str] | None = None,
    probe_tsvs: Sequence[Pathlike] = (),
) -> pd.DataFrame:
    """One row per (kind, model): metrics at k = number of families and at each elbow, and,
    from ``score_tsvs`` (:func:`soundharvest.evaluate.scoring.score_eval_file`), the accuracy of the
    cluster -> label model on the evaluation notes.

    :param n_families: the number of evaluated families (``len(eval_set.families)``): the k
        of the ``<metric>@k=<n>`` columns.
    :param instances: model instance -> (configured model, training seed), for models trained
        with several seeds (e.g. ``"acai-s1" -> ("acai", 1)``); other models are their own
        group with no seed.
    :param by_model_tsv: where to write :func:`summarize_seeds` of the table (mean, standard
        deviation and number of seeds per configured model); None: not written.
    :param supervision: model (instance) -> what its training used beyond the audio
        (:func:`soundharvest.train.supervision`: ``none`` or ``weak``, the query labels); a
        ``supervision`` column when given (models not named in it, the baselines: ``none``).
    """
    instances = dict(instances or {})
    rows = []
    for (kind, model), path in sweep_tsvs.items():
        table = pd.read_csv(path, sep="\t")
        base, seed = instances.get(model, (model, None))
        row: dict[str, Any] = {
            "kind": kind, "model": model, "base_model": base, "seed": seed, "n_points": None
        }  # fmt: skip
        if supervision is not None:
            row["supervision"] = supervision.get(model, "none")
        at = _row_at(table, n_families)
        for metric in METRICS:
            col = f"{labeling}_{metric}"
            row[f"{metric}@k={n_families}"] = None if at is None else round(float(at[col]), 4)
        small = table[table["k"] <= 100]
        for metric in ("purity", "nmi", "ari"):
            col = f"{labeling}_{metric}"
            row[f"mean_{metric}@k<=100"] = (
                round(float(small[col].mean()), 4) if len(small) else None
            )
        elbows = pd.read_csv(elbow_tsvs[(kind, model)], sep="\t")
        for e in elbows.to_dict("records"):
            tag = f"elbow(max_k={int(e['max_k'])})"
            row[tag] = int(e["elbow_k"])
            for metric in ("purity", "nmi"):
                col = f"{labeling}_{metric}"
                if col in e:
                    row[f"{metric}@{tag}"] = round(float(e[col]), 4)
        rows.append(row)
    summary = pd.DataFrame(rows).drop(columns="n_points")
    if score_tsvs:
        scores = pd.concat([pd.read_csv(p, sep="\t") for p in score_tsvs], ignore_index=True)
        keep = ["kind", "model", "k", "accuracy", "balanced_accuracy", "closed_accuracy"]
        keep += [*FILE_COLUMNS, *CALIBRATION_COLUMNS]
        keep = [c for c in keep if c in scores]
        scores = scores[keep].rename(columns={"k": "predictor_k"})
        summary = summary.merge(scores, on=["kind", "model"], how="left")
    if probe_tsvs:
        probes = pd.concat([pd.read_csv(p, sep="\t") for p in probe_tsvs], ignore_index=True)
        probes = probes[["kind", "model", *PROBE_METRICS]]
        summary = summary.merge(probes, on=["kind", "model"], how="left")
    summary["seed"] = summary["seed"].astype("Int64")
    write_tsv(out_tsv, summary)
    if by_model_tsv is not None:
        write_tsv(by_model_tsv, summarize_seeds(summary))
    return summary


#: The predictor's calibration figures a score row carries (:mod:`soundharvest.calibrate`).
CALIBRATION_COLUMNS = (
    "ece", "ece_floor", "ece_p", "on_topic_rejected", "open_set_rejected", "open_set_handled",
    "synthetic_rejected", "calibration_clips",
)  # fmt: skip

#: Columns of :func:`summarize_seeds`: the issue's comparison across training seeds.
SEED_METRICS = ("purity", "nmi", "ari")

#: The linear probe's columns in the summary tables (:mod:`.probe`).
PROBE_METRICS = ("probe_accuracy", "probe_balanced_accuracy")


def summarize_seeds(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample standard deviation over training seeds, per (kind, configured model).

    Columns: ``kind, model, n_seeds`` (and ``supervision`` where the table has it), then
    ``<metric>`` and ``<metric>_std`` for purity, NMI and ARI at k = number of families, their
    means over k <= 100, the accuracy of the cluster -> label model (where scored: from the
    notes' codes and from their whole files, :data:`~.scoring.FILE_COLUMNS`) and of the
    linear probe (:data:`PROBE_METRICS`, where probed). A model
    with one seed (or a baseline) has std NaN: a spread needs at least two runs.
    """
    at = [c for c in summary.columns if c.startswith(tuple(f"{m}@k=" for m in SEED_METRICS))]
    at = [c for c in at if "<=" not in c]
    means = [f"mean_{m}@k<=100" for m in SEED_METRICS if f"mean_{m}@k<=100" in summary]
    scored = (
        "accuracy", "balanced_accuracy", "closed_accuracy", *FILE_COLUMNS, *PROBE_METRICS,
        *CALIBRATION_COLUMNS,
    )  # fmt: skip
    cols = at + means + [c for c in scored if c in summary]
    rows = []
    for (kind, base), grp in summary.groupby(["kind", "base_model"], sort=False):
        row: dict[str, Any] = {
            "kind": kind,
            "model": base,
            "n_seeds": int(grp["seed"].notna().sum()),
        }
        if "supervision" in grp:
            row["supervision"] = grp["supervision"].iloc[0]
        for c in cols:
            vals = pd.to_numeric(grp[c], errors="coerce").dropna()
            row[c] = round(float(vals.mean()), 4) if len(vals) else None
            row[f"{c}_std"] = round(float(vals.std(ddof=1)), 4) if len(vals) > 1 else None
        rows.append(row)
    return pd.DataFrame(rows)
