"""The report's first screen: the models' table, the best model named, its confusion matrix.

Snakemake's HTML report opens on the workflow description beside the rule graph. The
description (``workflow/report/workflow.rst``) includes the HTML fragment that
:func:`overview_file` writes, so that the first thing a user sees is the result they ran for:

- one row per configured model and feature kind (``summary_by_model.tsv``), with the metric
  columns that table carries, read by name: every ``probe_*`` column when present, NMI and
  purity at k = the number of families, and the cluster -> label model's accuracies; a mean
  over training seeds shows its spread (``± std``) where the table has one;
- the best model, by the first of :data:`RANKING` the table has, and how it compares with the
  best baseline (the raw features or their PCA);
- the confusion matrix of that model's cluster -> label model (of its best seed), embedded.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .io import Pathlike, SoundharvestError, read_tsv, write_text

#: Models that are not trained: the bars a trained model has to clear.
BASELINES = ("raw", "pca")

#: What "best" means: the first of these columns the summary has (``{k}``: number of families).
RANKING = ("probe_accuracy", "accuracy", "nmi@k={k}", "purity@k={k}")

#: Shown after the ``probe_*`` columns, in this order, where present.
SHOWN = (
    "nmi@k={k}", "purity@k={k}", "accuracy", "balanced_accuracy", "closed_accuracy",
    # What `soundharvest predict` answers on the notes' whole files (evaluate.scoring).
    "file_accuracy", "file_closed_accuracy", "file_rejected",
    # How honest the predictor is (soundharvest.calibrate): calibration error on held-out
    # clips, and the shares of off-topic + synthetic and of on-topic clips it rejects.
    # ece_floor: what a perfectly calibrated predictor would show on as many clips, ece_p how
    # often it would show at least this ECE, and calibration_clips how many held-out clips
    # these figures rest on.
    "ece", "ece_floor", "ece_p", "open_set_rejected", "open_set_handled", "on_topic_rejected",
    "calibration_clips",
)  # fmt: skip

#: Snakemake's report centres its first screen vertically, which cuts off the top of a
#: description taller than the window, and keeps it narrow (max-w-lg): start it at the top and
#: give the table room. Scoped with :has() to the screen that holds this fragment.
_STYLE = """<style>
div.h-screen.overflow-auto:has(#soundharvest-overview) { align-items: flex-start; }
.prose:has(#soundharvest-overview) { max-width: 62rem; }
#summary-table { font-size: 0.85em; }
#best-confusion img { max-width: 100%; }
</style>"""


def _n_families(columns) -> int | None:
    for c in columns:
        if c.startswith("nmi@k=") and c[len("nmi@k=") :].isdigit():
            return int(c[len("nmi@k=") :])
    return None


def metric_columns(columns) -> list[str]:
    """The metric columns of the first screen, in order, among ``columns``."""
    columns = list(columns)
    k = _n_families(columns)
    probe = [c for c in columns if c.startswith("probe_") and not c.endswith("_std")]
    rest = [c.format(k=k) for c in SHOWN]
    return probe + [c for c in rest if c in columns and c not in probe]


def ranking_column(columns) -> str:
    """The column the best model is chosen by (see :data:`RANKING`)."""
    columns = list(columns)
    k = _n_families(columns)
    for c in RANKING:
        if c.format(k=k) in columns:
            return c.format(k=k)
    raise SoundharvestError(
        f"summary: none of the columns {', '.join(RANKING)} is present; re-run the summary rule"
    )


def _number(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _cell(row: Mapping[str, Any], col: str) -> str:
    x = _number(row.get(col))
    if x is None:
        return "–"
    std = _number(row.get(f"{col}_std"))
    return f"{x:.3f} ± {std:.3f}" if std is not None else f"{x:.3f}"


def _read(path: Pathlike, what: str) -> pd.DataFrame:
    frame = read_tsv(path, what, "re-run the summary rule")
    missing = {"kind", "model"} - set(frame.columns)
    if missing:
        raise SoundharvestError(
            f"{path}: not a {what} (missing column {', '.join(sorted(missing))}); "
            "re-run the summary rule"
        )
    frame["kind"] = frame["kind"].astype(str)
    frame["model"] = frame["model"].astype(str)
    return frame


def best_model(
    by_model: pd.DataFrame, confusion: Mapping[tuple[str, str], Pathlike], summary: pd.DataFrame
) -> dict[str, Any] | None:
    """The best (kind, model) by :func:`ranking_column` among those with a confusion figure.

    :return: ``{"kind", "model", "instance", "metric", "value", "figure"}`` or ``None`` when no
        row has a value; ``instance`` is the model's best seed (its own name with one seed).
    """
    metric = ranking_column(by_model.columns)
    best = None
    for row in by_model.to_dict("records"):
        value = _number(row.get(metric))
        if value is None:
            continue
        kind, model = row["kind"], row["model"]
        instances = summary[
            (summary["kind"] == kind)
            & (summary.get("base_model", summary["model"]).astype(str) == model)
        ]
        candidates = []
        for inst in instances.to_dict("records") or [{"model": model, metric: value}]:
            if (kind, str(inst["model"])) in confusion:
                candidates.append((_number(inst.get(metric)) or -math.inf, str(inst["model"])))
        if (kind, model) in confusion and not candidates:
            candidates.append((value, model))
        if not candidates:
            continue  # no confusion figure (the PCA baseline): not a candidate for the screen
        if best is None or value > best["value"]:
            instance = max(candidates)[1]
            best = {
                "kind": kind,
                "model": model,
                "instance": instance,
                "metric": metric,
                "value": value,
                "figure": confusion[(kind, instance)],
            }
    return best


def overview_html(
    summary_tsv: Pathlike,
    by_model_tsv: Pathlike,
    confusion: Mapping[tuple[str, str], Pathlike],
) -> str:
    """The first screen as an HTML fragment (see the module doc).

    :param summary_tsv: ``summary.tsv`` (one row per model instance and kind).
    :param by_model_tsv: ``summary_by_model.tsv`` (one row per configured model and kind).
    :param confusion: (kind, model instance) -> its confusion-matrix PNG.
    """
    summary = _read(summary_tsv, "summary table")
    by_model = _read(by_model_tsv, "summary by model")
    metrics = metric_columns(by_model.columns)
    rank = ranking_column(by_model.columns)
    by_model = by_model.assign(_rank=pd.to_numeric(by_model[rank], errors="coerce"))
    by_model = by_model.sort_values("_rank", ascending=False, na_position="last", kind="stable")
    best = best_model(by_model, confusion, summary)
    e = html.escape

    parts = [_STYLE, '<div id="soundharvest-overview">', "<h2>Result</h2>"]
    if best is None:
        parts.append(f'<p id="best-model">No model has a value of {e(rank)} yet.</p>')
    else:
        trained = by_model[~by_model["model"].isin(BASELINES)]
        baselines = by_model[by_model["model"].isin(BASELINES)]
        line = (
            f"Best model: <strong>{e(best['model'])}</strong> on {e(best['kind'])} features, "
            f"{e(rank)} {best['value']:.3f}"
        )
        if best["model"] in BASELINES:
            top = trained["_rank"].max() if len(trained) else float("nan")
            line += (
                f": a baseline; no trained model beats it (the best trained one: {top:.3f})"
                if math.isfinite(top)
                else ": a baseline"
            )
        elif len(baselines) and baselines["_rank"].notna().any():
            b = baselines.loc[baselines["_rank"].idxmax()]
            line += (
                f" (best baseline: {e(str(b['model']))} on {e(str(b['kind']))}, {b['_rank']:.3f})"
            )
        parts.append(f'<p id="best-model">{line}.</p>')

    head = ["model", "kind"] + (
        ["seeds"] if "n_seeds" in by_model and (by_model["n_seeds"] > 1).any() else []
    )
    parts.append('<table id="summary-table" class="docutils">')
    parts.append(
        "<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head + metrics) + "</tr></thead><tbody>"
    )
    for row in by_model.to_dict("records"):
        name = e(row["model"]) + (" <em>(baseline)</em>" if row["model"] in BASELINES else "")
        if best is not None and (row["kind"], row["model"]) == (best["kind"], best["model"]):
            name = f"<strong>{name}</strong>"
        cells = [name, e(row["kind"])]
        if "seeds" in head:
            cells.append(str(int(row["n_seeds"])))
        cells += [_cell(row, c) for c in metrics]
        parts.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    parts.append("</tbody></table>")

    if best is not None:
        data = base64.b64encode(Path(best["figure"]).read_bytes()).decode("ascii")
        caption = (
            f"Confusion matrix of {e(best['instance'])}'s cluster -> label model on the "
            f"evaluation notes ({e(best['kind'])} features)."
        )
        parts.append(
            f'<figure id="best-confusion"><img alt="{caption}" '
            f'src="data:image/png;base64,{data}"/><figcaption>{caption}</figcaption></figure>'
        )
    parts.append(
        "<p>Every table and figure is in the menu (0. Summary holds the full tables); the rule "
        "graph beside this shows how they were made.</p></div>"
    )
    return "\n".join(parts) + "\n"


def overview_file(
    summary_tsv: Pathlike,
    by_model_tsv: Pathlike,
    confusion: Mapping[tuple[str, str], Pathlike],
    out_html: Pathlike,
) -> str:
    """Write :func:`overview_html` atomically to ``out_html``; return it."""
    text = overview_html(summary_tsv, by_model_tsv, confusion)
    write_text(out_html, text)
    return text
