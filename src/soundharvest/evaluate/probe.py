"""The literature's linear probe: how linearly separable the families are in a frozen code space.

Published numbers for instrument-family recognition on NSynth (BYOL-A, M2D, COLA, ...) are
linear probes on frozen embeddings, not k-means purity. This module gives the same kind of
number for every model and baseline: the codes are standardised (mean and scale fitted on the
training folds only), a multinomial logistic regression is fitted on them, and a stratified
k-fold cross-validation with a fixed seed predicts every note once, out of fold. Accuracy and
balanced accuracy are computed on those pooled out-of-fold predictions; the sample standard
deviation of the per-fold values says how much they move.

A fixed, small recipe, not the published protocol (those train on NSynth's own splits of
eleven families; here folds run over the evaluated notes, of 4 or 8 families, so chance is
1/4 or 1/8, not 1/11): compare with the published numbers as an order of magnitude, and
between the models here exactly.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from ..io import Pathlike, SoundharvestError, load_npy, write_tsv

log = logging.getLogger("soundharvest.evaluate")

#: The columns of a probe table (one row per model and kind), in order.
COLUMNS = (
    "kind",
    "model",
    "n_notes",
    "n_classes",
    "folds",
    "C",
    "probe_accuracy",
    "probe_accuracy_fold_std",
    "probe_balanced_accuracy",
    "probe_balanced_accuracy_fold_std",
    "chance_balanced",
    "converged",
)


def linear_probe(
    codes: np.ndarray,
    labels: Sequence[str],
    folds: int = 5,
    seed: int = 0,
    C: float = 1.0,
    max_iter: int = 2000,
) -> dict[str, Any]:
    """Cross-validated linear probe of ``labels`` from ``codes``.

    :param codes: (n notes, dimensions), one code per note.
    :param labels: the target of every note (the family).
    :param folds: stratified folds (every fold holds each class in proportion); at most the
        size of the smallest class.
    :param seed: shuffles the notes into folds and seeds the solver.
    :param C: inverse L2 regularisation strength of the logistic regression.
    :param max_iter: iterations of the lbfgs solver per fold.
    :return: ``accuracy``, ``balanced_accuracy`` (of the pooled out-of-fold predictions),
        their ``*_fold_std`` (sample std of the per-fold values), ``predictions`` (one per
        note), ``n_classes``, ``folds`` and ``converged`` (every fold's solver converged).
    :raises SoundharvestError: when there are fewer than two classes, or a class has fewer
        notes than ``folds``.
    """
    x = np.asarray(codes, dtype=np.float64)
    y = np.asarray([str(v) for v in labels])
    if x.ndim != 2 or len(x) != len(y):
        raise SoundharvestError(
            f"probe: codes of shape {x.shape} do not match {len(y)} labels (one code per note)"
        )
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise SoundharvestError(f"probe: the notes have {len(classes)} class(es), need two")
    if folds < 2 or counts.min() < folds:
        smallest = classes[int(np.argmin(counts))]
        raise SoundharvestError(
            f"probe: class {smallest!r} has {counts.min()} notes, fewer than probe.folds = "
            f"{folds}; lower probe.folds (at least 2) or render more notes per family"
        )
    if not np.isfinite(x).all():
        raise SoundharvestError("probe: the codes hold NaN or infinite values")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    predictions = np.empty(len(y), dtype=object)
    fold_acc, fold_bal = [], []
    converged = True
    for train, test in splitter.split(x, y):
        scaler = StandardScaler().fit(x[train])  # the training folds only: no test statistics
        model = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(scaler.transform(x[train]), y[train])
        converged &= not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        pred = model.predict(scaler.transform(x[test]))
        predictions[test] = pred
        fold_acc.append(accuracy_score(y[test], pred))
        fold_bal.append(balanced_accuracy_score(y[test], pred))
    if not converged:
        log.warning(
            "probe: the solver did not converge in %d iterations (probe.max_iter)", max_iter
        )
    return {
        "accuracy": float(accuracy_score(y, predictions.astype(str))),
        "balanced_accuracy": float(balanced_accuracy_score(y, predictions.astype(str))),
        "accuracy_fold_std": float(np.std(fold_acc, ddof=1)),
        "balanced_accuracy_fold_std": float(np.std(fold_bal, ddof=1)),
        "predictions": predictions.astype(str),
        "n_classes": int(len(classes)),
        "folds": int(folds),
        "converged": bool(converged),
    }


def probe_file(
    codes_npy: Pathlike,
    notes_tsv: Pathlike,
    out_tsv: Pathlike,
    kind: str,
    model: str,
    folds: int = 5,
    seed: int = 0,
    C: float = 1.0,
    max_iter: int = 2000,
    target: str = "family",
) -> pd.DataFrame:
    """Probe one model's note codes (``results/embed/<kind>/<model>.npy``) for ``target`` (a
    column of ``results/eval_frames/<kind>.notes.tsv``) and write one row (:data:`COLUMNS`)."""
    from .pipeline import read_notes

    codes = np.asarray(load_npy(codes_npy), dtype=np.float32)
    notes = read_notes(notes_tsv)
    if target not in notes:
        raise SoundharvestError(f"{notes_tsv}: no column {target!r}; re-run eval_frames")
    if len(notes) != len(codes):
        raise SoundharvestError(
            f"{codes_npy}: {len(codes)} codes for the {len(notes)} notes of {notes_tsv}; "
            "re-run embed"
        )
    out = linear_probe(codes, notes[target], folds=folds, seed=seed, C=C, max_iter=max_iter)
    row = {
        "kind": kind,
        "model": model,
        "n_notes": len(codes),
        "n_classes": out["n_classes"],
        "folds": out["folds"],
        "C": C,
        "probe_accuracy": round(out["accuracy"], 4),
        "probe_accuracy_fold_std": round(out["accuracy_fold_std"], 4),
        "probe_balanced_accuracy": round(out["balanced_accuracy"], 4),
        "probe_balanced_accuracy_fold_std": round(out["balanced_accuracy_fold_std"], 4),
        "chance_balanced": round(1.0 / out["n_classes"], 4),
        "converged": out["converged"],
    }
    table = pd.DataFrame([row], columns=list(COLUMNS))
    write_tsv(out_tsv, table)
    log.info(
        "probe %s/%s: accuracy %.3f (fold std %.3f), balanced %.3f on %d notes, %d classes",
        kind,
        model,
        out["accuracy"],
        out["accuracy_fold_std"],
        out["balanced_accuracy"],
        len(codes),
        out["n_classes"],
    )
    return table
