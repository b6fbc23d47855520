"""Scoring a predictor on labelled notes: family accuracy, the closed set, confusion matrices.

Rule ``score_eval`` (:func:`score_eval_file`): each eval note's code goes through the model's
label model (:mod:`soundharvest.labelmodel`) and the label -> NSynth family map.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..io import Pathlike, SoundharvestError, atomic_path, load_npy, read_json, write_tsv

log = logging.getLogger("soundharvest.evaluate.scoring")

#: Name of the predicted family of a cluster whose label has no NSynth family.
NO_FAMILY = "(none)"


def family_scores(
    true: Sequence[str], pred: Sequence[str], families: Sequence[str] | None = None
) -> tuple[dict[str, float], pd.DataFrame]:
    """Accuracy, balanced accuracy (mean per-family recall) and the confusion matrix.

    :param true: true family per note; ``pred`` the predicted family (or :data:`NO_FAMILY`).
    :param families: row order of the matrix (default: the sorted true families).
    :return: ``(scores, confusion)``; the confusion has one row per true family and one column
        per predicted value (true families first, then any other predicted value).
    """
    t = np.asarray(true, dtype=str)
    p = np.asarray(pred, dtype=str)
    rows = list(families) if families is not None else sorted(set(t))
    cols = rows + sorted(set(p) - set(rows))
    conf = pd.crosstab(pd.Categorical(t, rows), pd.Categorical(p, cols), dropna=False)
    conf.index.name, conf.columns.name = "true", "predicted"
    conf = conf.reindex(index=rows, columns=cols, fill_value=0)
    n = len(t)
    correct = int((t == p).sum())
    recalls = [float(conf.loc[f, f] / conf.loc[f].sum()) for f in rows if conf.loc[f].sum() > 0]
    scores = {
        "n_notes": n,
        "accuracy": correct / n if n else float("nan"),
        "balanced_accuracy": float(np.mean(recalls)) if recalls else float("nan"),
        # What always guessing the most common family scores: the floor accuracy must beat.
        "majority_baseline": float(conf.sum(axis=1).max() / n) if n else float("nan"),
        "chance_balanced": 1.0 / len(rows) if rows else float("nan"),
    }
    return scores, conf


def plot_confusion(
    conf: pd.DataFrame,
    path: Pathlike,
    title: str = "",
    closed: pd.DataFrame | None = None,
    closed_title: str = "",
) -> None:
    """Write a confusion matrix (rows: true, columns: predicted; cells: counts, colour: row
    share) as a PNG; with ``closed``, the closed-set prediction's matrix beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(conf, title)] + ([(closed, closed_title)] if closed is not None else [])
    width = sum(1.2 + 0.7 * c.shape[1] for c, _ in panels)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(width, 1.0 + 0.6 * conf.shape[0]), squeeze=False
    )
    for ax, (c, t) in zip(axes[0], panels, strict=True):
        m = c.to_numpy(dtype=float)
        share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center",
                        color="white" if share[i, j] > 0.5 else "black", fontsize=8)  # fmt: skip
        ax.set_xticks(range(m.shape[1]), c.columns, rotation=45, ha="right")
        ax.set_yticks(range(m.shape[0]), c.index)
        ax.set_xlabel("predicted family")
        ax.set_ylabel("true family")
        ax.set_title(t, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _closed_set(
    clusters: Any, codes: np.ndarray, fam: Mapping[str, str | None], true: Sequence[str]
) -> tuple[float, int, pd.DataFrame | None]:
    """The closed-set prediction: only outputs named after a label of an evaluated family
    compete. ``(accuracy (NaN: no such output), outputs competing, confusion or None)``."""
    evaluated = set(true)
    allowed = [i for i, lab in enumerate(clusters.labels) if fam[lab] in evaluated]
    # How many outputs compete in the closed set: clusters named after an allowed label, or
    # (the weak recogniser's head) the allowed labels themselves.
    names_of = np.asarray([clusters.labels.index(n) for n in clusters.cluster_names])
    keep = np.flatnonzero(np.isin(names_of, allowed))
    if not len(keep):
        return float("nan"), 0, None  # no cluster is named after an evaluated family
    closed = np.array([fam[clusters.labels[i]] for i in clusters.closed_predict(codes, allowed)])
    _, closed_conf = family_scores(true, closed)  # rows and columns: evaluated families
    return float(np.mean(closed == np.asarray(true))), int(len(keep)), closed_conf


def _load_predictor(predictor_dir: Pathlike) -> tuple[Path, dict[str, Any], Any]:
    """A predictor directory, its metadata and its label model, checked."""
    from ..predict import META_NAME, PREDICTOR_FORMAT, load_label_model

    d = Path(predictor_dir)
    meta = read_json(d / META_NAME) if (d / META_NAME).is_file() else None
    if not isinstance(meta, dict) or meta.get("format") != PREDICTOR_FORMAT:
        raise SoundharvestError(f"{d}: not a predictor directory (no valid {META_NAME})")
    return d, meta, load_label_model(d, meta)


def _read_codes(
    codes_npy: Pathlike, notes_tsv: Pathlike, dim: int, d: Path
) -> tuple[np.ndarray, pd.DataFrame]:
    """The notes' codes and table, checked: one code per note, of the label model's ``dim``."""
    codes = np.asarray(load_npy(codes_npy), dtype=np.float32)
    notes = pd.read_csv(notes_tsv, sep="\t", dtype={"note_str": str, "family": str})
    if len(notes) != len(codes):
        raise SoundharvestError(
            f"{codes_npy}: {len(codes)} codes for {len(notes)} notes in {notes_tsv}; re-run embed"
        )
    if codes.ndim != 2 or codes.shape[1] != dim:
        raise SoundharvestError(
            f"{codes_npy}: codes of {codes.shape[1] if codes.ndim == 2 else '?'} dimensions, "
            f"the label model in {d} reads {dim}; use the codes of the same model and kind"
        )
    return codes, notes


def _write_scores(
    row: Mapping[str, Any],
    conf: pd.DataFrame,
    closed_conf: pd.DataFrame | None,
    out_tsv: Pathlike,
    out_confusion_png: Pathlike,
    out_confusion_tsv: Pathlike | None,
    out_closed_confusion_tsv: Pathlike | None,
) -> None:
    """Write the scores' row, the confusion matrices (the optional TSVs) and their figure."""
    write_tsv(out_tsv, pd.DataFrame([row]))
    if out_confusion_tsv is not None:
        write_tsv(out_confusion_tsv, conf.reset_index())
    if out_closed_confusion_tsv is not None:
        empty = pd.DataFrame(columns=["true"])
        table = closed_conf.reset_index() if closed_conf is not None else empty
        write_tsv(out_closed_confusion_tsv, table)
    plot_confusion(
        conf,
        out_confusion_png,
        f"{row['model']} ({row['kind']}), k = {row['k']}: accuracy {row['accuracy']:.1%}, "
        f"balanced {row['balanced_accuracy']:.1%}",
        closed=closed_conf,
        closed_title=f"closed set ({row['closed_clusters']} clusters): "
        f"accuracy {row['closed_accuracy']:.1%}",
    )


def score_eval_file(
    codes_npy: Pathlike,
    notes_tsv: Pathlike,
    predictor_dir: Pathlike,
    label_families_tsv: Pathlike,
    out_tsv: Pathlike,
    out_confusion_png: Pathlike,
    out_confusion_tsv: Pathlike | None = None,
    out_closed_confusion_tsv: Pathlike | None = None,
    calibration_json: Pathlike | None = None,
) -> dict[str, Any]:
    """Rule ``score_eval``: the family of every eval note through the label -> family map.

    Each note's code (``results/embed/<kind>/<model>.npy``, from the same model; for ``raw`` the
    frames) goes to its nearest named cluster; the cluster's label maps to an NSynth family
    (``resources/label_families.tsv``; a label without a family predicts :data:`NO_FAMILY`,
    always wrong). ``closed_accuracy`` makes the same prediction among the clusters named after
    a label of one of the evaluated families only (a closed-set choice among the families the
    notes come from; ``closed_clusters`` says how many competed).

    :param codes_npy: the notes' codes, one row per row of ``notes_tsv``.
    :param notes_tsv: the eval_frames table (``note_str``, ``family``, ...).
    :param predictor_dir: the model's predictor directory.
    :param label_families_tsv: label -> NSynth family table.
    :param out_tsv: one row: kind, model, k, n_notes, accuracy, balanced_accuracy, baselines.
    :param out_confusion_png: the confusion matrices' figure (open set; closed set beside it).
    :param out_confusion_tsv: optional confusion matrix as TSV.
    :param out_closed_confusion_tsv: optional confusion matrix of the closed-set prediction
        (where ``closed_accuracy``'s errors go; only the ``true`` header when no cluster is
        named after an evaluated family).
    :param calibration_json: the predictor's ``calibration.json``: its figures (ECE, open-set
        rejection) join the row.
    :return: the row as a dict.
    """
    from ..calibrate import read_calibration
    from .nsynth import families_of, load_label_families

    d, meta, clusters = _load_predictor(predictor_dir)
    codes, notes = _read_codes(codes_npy, notes_tsv, clusters.dim, d)
    fam = families_of(clusters.labels, load_label_families(label_families_tsv))
    ids, _ = clusters.predict(codes)
    pred = [fam[clusters.labels[i]] or NO_FAMILY for i in ids]
    true = notes["family"].astype(str).tolist()
    scores, conf = family_scores(true, pred)
    reachable = {f for f in fam.values() if f}
    # Closed set: only clusters named after a label of an evaluated family compete (a choice
    # among the families the notes come from, as a classifier on them would make).
    closed_acc, n_closed, closed_conf = _closed_set(clusters, codes, fam, true)
    row = {
        "kind": meta["features"]["kind"],
        "model": meta.get("model", d.name),
        "k": clusters.k,
        "k_choice": meta.get("k_choice", ""),
        **scores,
        "closed_accuracy": closed_acc,
        "closed_clusters": n_closed,
        # Notes whose family no label maps to can never be right: say how many there are.
        "n_unreachable": int(sum(t not in reachable for t in true)),
    }
    for key in (
        "accuracy", "balanced_accuracy", "majority_baseline", "chance_balanced", "closed_accuracy"
    ):  # fmt: skip
        row[key] = round(float(row[key]), 4)
    cal = read_calibration(calibration_json) if calibration_json is not None else None
    if cal is not None:
        for key in ("temperature", "threshold", "distance_threshold", "ece",
                    "on_topic_rejected", "open_set_rejected", "open_set_handled",
                    "synthetic_rejected"):  # fmt: skip
            row[key] = cal.get(key)
    _write_scores(
        row, conf, closed_conf, out_tsv, out_confusion_png, out_confusion_tsv,
        out_closed_confusion_tsv,
    )  # fmt: skip
    log.info(
        "score_eval %s/%s: accuracy %.3f, balanced %.3f on %d notes",
        row["kind"],
        row["model"],
        row["accuracy"],
        row["balanced_accuracy"],
        row["n_notes"],
    )
    return row
