"""Scoring a predictor on labelled notes: family accuracy, the closed set, confusion matrices.

Rule ``score_eval`` (:func:`score_eval_file`): each eval note's code goes through the model's
label model (:mod:`soundharvest.labelmodel`) and the label -> NSynth family map. That code is
the thesis' datapoint, the note's loudest frame (or the window that starts there). What a user
gets from ``soundharvest predict`` on the same note's file is another answer: every voiced
frame's log-probabilities averaged, calibrated, and ``unknown`` or ``silent`` where the
predictor says so. :func:`file_answers` gives that answer for every note (``file_*`` columns).
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


def _evaluated_labels(
    labels: Sequence[str], fam: Mapping[str, str | None], true: Sequence[str]
) -> list[int]:
    """Ids of the labels whose family is one the notes come from: the closed set's choices."""
    evaluated = set(true)
    return [i for i, lab in enumerate(labels) if fam[lab] in evaluated]


def _closed_set(
    clusters: Any, codes: np.ndarray, fam: Mapping[str, str | None], true: Sequence[str]
) -> tuple[float, int, pd.DataFrame | None]:
    """The closed-set prediction: only outputs named after a label of an evaluated family
    compete. ``(accuracy (NaN: no such output), outputs competing, confusion or None)``."""
    allowed = _evaluated_labels(clusters.labels, fam, true)
    # How many outputs compete in the closed set: clusters named after an allowed label, or
    # (the weak recogniser's head) the allowed labels themselves.
    names_of = np.asarray([clusters.labels.index(n) for n in clusters.cluster_names])
    keep = np.flatnonzero(np.isin(names_of, allowed))
    if not len(keep):
        return float("nan"), 0, None  # no cluster is named after an evaluated family
    closed = np.array([fam[clusters.labels[i]] for i in clusters.closed_predict(codes, allowed)])
    _, closed_conf = family_scores(true, closed)  # rows and columns: evaluated families
    return float(np.mean(closed == np.asarray(true))), int(len(keep)), closed_conf


#: Columns the whole-file answers add to a score row (:func:`file_answers`).
FILE_COLUMNS = ("file_accuracy", "file_closed_accuracy", "file_rejected")


def file_answers(
    predictor: Any, nsynth_dir: Pathlike, notes: pd.DataFrame, fam: Mapping[str, str | None]
) -> pd.DataFrame:
    """What ``soundharvest predict`` answers on every note's file, and its closed-set choice.

    :param predictor: a loaded :class:`soundharvest.predict.Predictor` (calibrated or not).
    :param nsynth_dir: the NSynth-format directory the notes' audio is in.
    :param notes: the eval_frames table (``note_str``, ``family``).
    :param fam: label -> NSynth family (None: no family).
    :return: one row per note: ``note_str``, ``family``, ``answer`` (a label, ``unknown`` or
        ``silent``), ``answer_family`` (the answer's family; :data:`NO_FAMILY` for a label
        without one, the answer itself for ``unknown``/``silent``), ``label`` (the most
        probable label), ``confidence`` and ``closed_family``: the family of the label with the
        highest mean log-probability among the labels of the evaluated families (the closed
        set, as ``closed_accuracy``; empty for a silent note).
    """
    from ..calibrate import SILENT, UNKNOWN
    from ..progress import Progress
    from .nsynth import load_note

    allowed = np.array(_evaluated_labels(predictor.labels, fam, notes["family"].astype(str)))
    rows = []
    progress = Progress(len(notes), "score_eval: answer every note's file", log)
    for key, family in zip(notes["note_str"], notes["family"], strict=True):
        samples = load_note(nsynth_dir, str(key))
        scored = predictor.score_samples(samples, str(Path(nsynth_dir) / "audio" / f"{key}.wav"))
        progress.step()
        mean = scored["logits"]
        verdict = predictor.answer(mean, scored["distance"])
        answer = verdict["answer"]
        closed = ""
        if mean is not None and len(allowed):
            closed = fam[predictor.labels[int(allowed[np.argmax(mean[allowed])])]] or ""
        rows.append(
            {
                "note_str": key,
                "family": family,
                "answer": answer,
                "answer_family": answer
                if answer in (UNKNOWN, SILENT)
                else (fam[answer] or NO_FAMILY),
                "label": verdict["label"] or "",
                "confidence": verdict["confidence"],
                "closed_family": closed,
            }
        )
    progress.finish()
    return pd.DataFrame(rows)


def file_scores(answers: pd.DataFrame) -> dict[str, float]:
    """The ``file_*`` columns of :func:`file_answers`' table: the share of notes whose answer
    is their family (``unknown`` and ``silent`` count as wrong), the same for the closed-set
    choice, and the share answered ``unknown`` or ``silent``."""
    from ..calibrate import SILENT, UNKNOWN

    if not len(answers):
        return dict.fromkeys(FILE_COLUMNS, float("nan"))
    true = answers["family"].astype(str)
    return {
        "file_accuracy": round(float((answers["answer_family"] == true).mean()), 4),
        "file_closed_accuracy": round(float((answers["closed_family"] == true).mean()), 4),
        "file_rejected": round(float(answers["answer"].isin([UNKNOWN, SILENT]).mean()), 4),
    }


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
    nsynth_dir: Pathlike | None = None,
    out_answers_tsv: Pathlike | None = None,
    device: str = "cpu",
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
    :param nsynth_dir: the notes' NSynth-format directory: with it, :func:`file_answers` (what
        ``soundharvest predict`` says on every note's file, with the predictor's calibration
        when it has one) adds :data:`FILE_COLUMNS` to the row.
    :param out_answers_tsv: where to write :func:`file_answers`' table (needs ``nsynth_dir``).
    :param device: where the predictor's encoder runs on the notes' files (``auto``: CUDA if
        present).
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
        for key in ("temperature", "threshold", "distance_threshold", "ece", "ece_floor",
                    "ece_p", "on_topic_rejected", "open_set_rejected", "open_set_handled",
                    "synthetic_rejected"):  # fmt: skip
            row[key] = cal.get(key)
        # How many held-out clips those figures (and the thresholds) rest on: an ECE or a
        # rejection share of 6 clips says little.
        row["calibration_clips"] = cal.get("n_test")
    if nsynth_dir is not None:
        from ..predict import Predictor

        answers = file_answers(Predictor.load(d, device=device), nsynth_dir, notes, fam)
        row |= file_scores(answers)
        if out_answers_tsv is not None:
            write_tsv(out_answers_tsv, answers)
    _write_scores(
        row, conf, closed_conf, out_tsv, out_confusion_png, out_confusion_tsv,
        out_closed_confusion_tsv,
    )  # fmt: skip
    log.info(
        "score_eval %s/%s: accuracy %.3f, balanced %.3f on %d notes%s",
        row["kind"],
        row["model"],
        row["accuracy"],
        row["balanced_accuracy"],
        row["n_notes"],
        f"; whole files: accuracy {row['file_accuracy']:.3f}, closed "
        f"{row['file_closed_accuracy']:.3f}, {row['file_rejected']:.1%} unknown or silent"
        if "file_accuracy" in row
        else "",
    )
    return row
