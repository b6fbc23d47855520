"""The label-noise report: which search results were off-topic, and which queries were poor.

Every training clip of a label is passed through the model's predictor (encoder + named
clusters, :mod:`soundharvest.predict`): label_clusters encodes the training frames once, fits
its clusters on a sample of those codes and writes how each clip's frames vote
(:func:`clip_votes`); this module turns the votes into the report. A clip's *disagreement* is the share of its frames whose
nearest cluster is named after another label; a clip whose disagreement exceeds the threshold
(default 0.5: most of its frames sound like another label) is *flagged*. Per label and per query
the report gives the share of flagged clips, so a user sees which search results were off-topic
and which queries gave poor results (the thesis found "organ" poor and "organ music" good).

On the ``demo`` source every clip's truth is known (``<downloads>/<video_id>/truth.json``,
field ``off_topic``): :func:`score_noise_against_truth` measures the precision and recall of the
flagged clips.

File-to-file entry points: :func:`label_noise_file` (from the votes), :func:`score_noise_against_truth`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .dataset import npy_stem
from .io import Pathlike, SoundharvestError, read_json, write_tsv

log = logging.getLogger("soundharvest.noise")

#: Columns of the per-clip report, in order.
CLIP_COLUMNS = [
    "label",
    "rank",
    "video_id",
    "title",
    "query",
    "query_ids",
    "n_frames",
    "own_share",
    "disagreement",
    "top_other",
    "top_other_share",
    "flagged",
]

#: Columns of the per-query summary.
QUERY_COLUMNS = [
    "label",
    "query_id",
    "query",
    "n_clips",
    "n_flagged",
    "flagged_share",
    "mean_disagreement",
    "clusters_named",
]

#: Rows encoded per block (bounded memory whatever a label's size).
BLOCK_ROWS = 65536


def clip_disagreement(
    frame_labels: np.ndarray, own: int, n_labels: int
) -> tuple[float, float, int, float]:
    """Own share, disagreement, most common other label and its share of one clip's frames.

    :param frame_labels: predicted label id of each frame.
    :param own: the clip's (query) label id.
    :param n_labels: number of labels.
    :return: ``(own_share, disagreement = 1 - own_share, top other label id or -1, its share)``;
        NaN shares for a clip without frames. Ties go to the lowest label id.
    """
    n = len(frame_labels)
    if n == 0:
        return float("nan"), float("nan"), -1, float("nan")
    counts = np.bincount(np.asarray(frame_labels, dtype=np.int64), minlength=n_labels)
    own_share = counts[own] / n
    others = counts.copy()
    others[own] = -1
    top = int(np.argmax(others))
    if others[top] <= 0:
        return float(own_share), float(1.0 - own_share), -1, 0.0
    return float(own_share), float(1.0 - own_share), top, float(counts[top] / n)


#: Columns of the per-clip votes :func:`clip_votes` writes (label_clusters' one pass).
VOTE_COLUMNS = [
    "label",
    "video_id",
    "n_frames",
    "own_share",
    "disagreement",
    "top_other",
    "top_other_share",
]


def clip_votes(
    label_model: Any,
    sources: Sequence[Pathlike],
    clips: Any,
    codes: np.ndarray | None = None,
) -> pd.DataFrame:
    """How every training clip's frames vote: the share named after its own label and the
    most common other label (:func:`clip_disagreement`), clip by clip, block by block.

    :param label_model: the predictor's label model (named clusters or the head).
    :param sources: the concatenate-stage ``<label>.npy`` files (the label is the file name).
    :param clips: the same files as :class:`~soundharvest.loader.ClipPositives`.
    :param codes: the code of every frame by global row (:func:`soundharvest.sampling.
        encode_sources`); ``None`` for the identity encoder, whose codes are the frames.
    :return: :data:`VOTE_COLUMNS`, one row per clip, in the files' order.
    """
    names = list(label_model.labels)
    label_id = {n: i for i, n in enumerate(names)}
    spans, vids = clips.clip_spans, np.asarray(clips.clip_video_ids, dtype=object)
    rows = []
    for i, path in enumerate(Path(p) for p in sources):
        label = npy_stem(path)
        if label not in label_id:
            raise SoundharvestError(
                f"{path}: label {label!r} is not one of the predictor's labels ({', '.join(names)})"
            )
        inside = clips.clip_files == i  # a clip without frames too
        for (a, b), vid in zip(spans[inside], vids[inside], strict=True):
            votes = np.empty(b - a, dtype=np.int64)
            for c in range(a, b, BLOCK_ROWS):
                d = min(c + BLOCK_ROWS, b)
                block = codes[c:d] if codes is not None else clips.span(c, d)
                votes[c - a : d - a], _ = label_model.predict(np.asarray(block, np.float32))
            own_s, dis, top, top_s = clip_disagreement(votes, label_id[label], len(names))
            rows.append([label, vid, int(b - a), own_s, dis, names[top] if top >= 0 else "", top_s])
    return pd.DataFrame(rows, columns=VOTE_COLUMNS)


def query_texts(catalog: pd.DataFrame, queries: Mapping[str, Sequence[str]] | None) -> dict:
    """``(label, query_id) -> query text``: from the config's queries when given, else from the
    catalog's ``query`` column (a query that never ranked a clip first stays unnamed)."""
    from .acquire.search import query_id

    out: dict[tuple[str, str], str] = {}
    for row in catalog[["label", "query"]].drop_duplicates().itertuples(index=False):
        if row.query:
            out[(row.label, query_id(row.query))] = row.query
    for label, qs in (queries or {}).items():
        for q in qs:
            out[(label, query_id(q))] = q
    return out


def read_votes(path: Pathlike) -> pd.DataFrame:
    """The per-clip votes label_clusters wrote (:data:`VOTE_COLUMNS`), checked."""
    try:
        votes = pd.read_csv(
            path, sep="\t", dtype={"label": str, "video_id": str, "top_other": str},
            keep_default_na=False, na_values={c: ["", "nan", "NaN"] for c in VOTE_COLUMNS[2:]},
        )  # fmt: skip
    except FileNotFoundError:
        raise SoundharvestError(f"{path}: file not found; run the label_clusters stage") from None
    missing = [c for c in VOTE_COLUMNS if c not in votes.columns]
    if missing:
        raise SoundharvestError(
            f"{path}: column(s) {', '.join(missing)} missing; re-run the label_clusters stage"
        )
    votes["top_other"] = votes["top_other"].fillna("")
    return votes


def label_noise_file(
    votes_tsv: Pathlike,
    predictor_dir: Pathlike,
    catalog_csv: Pathlike,
    out_tsv: Pathlike,
    out_queries_tsv: Pathlike,
    threshold: float = 0.5,
    queries: Mapping[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """Rule ``label_noise``: every training clip's disagreement with its label, and per query.

    The clips' votes come from label_clusters' one pass over the training codes
    (:func:`clip_votes`): nothing is encoded here, so a changed threshold or catalog costs a
    table join.

    :param votes_tsv: label_clusters' per-clip votes (:data:`VOTE_COLUMNS`).
    :param predictor_dir: the model's predictor directory (its ``meta.json`` names the
        clusters).
    :param catalog_csv: the catalog (title, query, query_ids and rank of each label's clips).
    :param out_tsv: per clip: :data:`CLIP_COLUMNS`, by label, most disagreeing first.
    :param out_queries_tsv: per label and query: :data:`QUERY_COLUMNS` (query ``*`` = all of the
        label's clips), by label, then worst query first.
    :param threshold: a clip is flagged when its disagreement is above this share (0.5: most
        of its frames fall in clusters named after other labels).
    :param queries: the config's ``labels`` section (label -> query texts) to name every query.
    :return: the per-clip table.
    """
    from .acquire.catalog import read_catalog
    from .predict import META_NAME

    if not 0.0 <= float(threshold) < 1.0:
        raise SoundharvestError(f"label_noise.threshold = {threshold!r}: use a share in [0, 1)")
    meta_p = Path(predictor_dir) / META_NAME
    if not meta_p.is_file():
        raise SoundharvestError(f"{meta_p}: not found; run the label_clusters stage")
    meta = read_json(meta_p)
    votes = read_votes(votes_tsv)
    catalog = read_catalog(catalog_csv)
    info = catalog.drop_duplicates(["label", "video_id"]).set_index(["label", "video_id"])
    keys = pd.MultiIndex.from_frame(votes[["label", "video_id"]])
    clips = votes.copy()
    for col, fill in (("rank", ""), ("title", ""), ("query", ""), ("query_ids", "")):
        clips[col] = info[col].reindex(keys).fillna(fill).to_numpy() if len(votes) else []
    for col in ("own_share", "disagreement", "top_other_share"):
        clips[col] = clips[col].astype(float).round(4)
    clips["flagged"] = (votes["n_frames"] > 0) & (votes["disagreement"].astype(float) > threshold)
    clips = (
        clips[CLIP_COLUMNS]
        .sort_values(
            ["label", "disagreement"], ascending=[True, False], kind="stable", na_position="last"
        )
        .reset_index(drop=True)
    )
    write_tsv(out_tsv, clips)
    names = meta.get("cluster_names") or []
    named = {n: names.count(n) for n in meta.get("labels") or []}
    per_query = query_table(clips, query_texts(catalog, queries), named)
    write_tsv(out_queries_tsv, per_query)
    for r in per_query[per_query["query_id"] == "*"].itertuples(index=False):
        log.info("label %s: %d of %d clips flagged", r.label, r.n_flagged, r.n_clips)
    return clips


def query_table(
    clips: pd.DataFrame,
    texts: Mapping[tuple[str, str], str],
    clusters_named: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """Per label and query (query ``*``: all the label's clips): clips, flagged, mean
    disagreement. A clip found by several queries counts for each of them.

    ``clusters_named`` (label -> clusters named after it) goes into its own column: a label
    that names no cluster has every clip flagged, which says the label is not separable at this
    k (raise ``k``), not that its queries were poor.
    """
    rows = []
    for label, group in clips.groupby("label", sort=True):
        have = group[group["n_frames"] > 0]
        parts: list[tuple[str, pd.DataFrame]] = [("*", have)]
        qids = sorted({q for s in have["query_ids"].astype(str) for q in s.split(",") if q})
        for q in qids:
            mask = have["query_ids"].astype(str).map(lambda s, q=q: q in s.split(","))
            parts.append((q, have[mask]))
        for qid, g in parts:
            n, k = len(g), int(g["flagged"].sum())
            rows.append(
                {
                    "label": label,
                    "query_id": qid,
                    "query": "(all)" if qid == "*" else texts.get((label, qid), ""),
                    "n_clips": n,
                    "n_flagged": k,
                    "flagged_share": round(k / n, 4) if n else float("nan"),
                    "mean_disagreement": round(float(g["disagreement"].mean()), 4)
                    if n
                    else float("nan"),
                    "clusters_named": (clusters_named or {}).get(label, ""),
                }
            )
    table = pd.DataFrame(rows, columns=QUERY_COLUMNS)
    if len(table):
        table["_all"] = table["query_id"] != "*"
        table = table.sort_values(
            ["label", "_all", "flagged_share"], ascending=[True, True, False], kind="stable"
        ).drop(columns="_all")
    return table.reset_index(drop=True)


def precision_recall(flagged: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Precision and recall of boolean flags against boolean truth (NaN where undefined)."""
    f = np.asarray(flagged, dtype=bool)
    t = np.asarray(truth, dtype=bool)
    tp = int((f & t).sum())
    return {
        "n_clips": int(len(f)),
        "n_off_topic": int(t.sum()),
        "n_flagged": int(f.sum()),
        "true_positives": tp,
        "precision": round(tp / f.sum(), 4) if f.sum() else float("nan"),
        "recall": round(tp / t.sum(), 4) if t.sum() else float("nan"),
    }


def score_noise_against_truth(
    report_tsv: Pathlike, downloads_dir: Pathlike, out_tsv: Pathlike
) -> pd.DataFrame:
    """Rule ``label_noise_truth`` (demo source only): precision and recall of the flagged clips.

    :param report_tsv: the per-clip table of :func:`label_noise_file`.
    :param downloads_dir: the demo's download store, ``<downloads>/demo``, holding
        ``<video_id>/truth.json`` (field ``off_topic``, and ``off_topic_kind``).
    :param out_tsv: one row for all clips (``kind`` = ``all``), then one per off-topic kind
        (recall of that kind; precision over all flags is not split), and per label.
    :return: that table.
    """
    clips = pd.read_csv(report_tsv, sep="\t", dtype={"video_id": str, "label": str})
    clips = clips[clips["n_frames"] > 0]
    off, kinds, missing = [], [], []
    for vid in clips["video_id"]:
        p = Path(downloads_dir) / vid / "truth.json"
        if not p.is_file():
            missing.append(vid)
            off.append(False)
            kinds.append("")
            continue
        t = read_json(p)
        if not isinstance(t, dict) or "off_topic" not in t:
            raise SoundharvestError(f"{p}: field 'off_topic' missing; re-render the demo clip")
        off.append(bool(t["off_topic"]))
        kinds.append(str(t.get("off_topic_kind") or ""))
    if missing and len(missing) == len(clips):
        raise SoundharvestError(
            f"{downloads_dir}: no truth.json for any clip of {report_tsv}; the truth exists only "
            "for the demo source (point downloads_dir at <downloads>/demo)"
        )
    if missing:
        log.warning("%d clip(s) without truth.json, scored as on-topic", len(missing))
    clips = clips.assign(off_topic=off, off_topic_kind=kinds)
    flagged = clips["flagged"].astype(str).str.lower().isin(["true", "1"]).to_numpy()
    truth = clips["off_topic"].to_numpy(dtype=bool)
    rows = [{"group": "all", **precision_recall(flagged, truth)}]
    for kind in sorted(k for k in set(kinds) if k):
        m = (clips["off_topic_kind"] == kind).to_numpy()
        pr = precision_recall(flagged[m], truth[m])
        pr["precision"] = float("nan")  # a flag is not of a kind: precision is over all flags
        rows.append({"group": f"kind:{kind}", **pr})
    for label in sorted(clips["label"].unique()):
        m = (clips["label"] == label).to_numpy()
        rows.append({"group": f"label:{label}", **precision_recall(flagged[m], truth[m])})
    table = pd.DataFrame(rows)
    table.insert(1, "n_missing_truth", [len(missing)] + [""] * (len(table) - 1))
    write_tsv(out_tsv, table)
    r = rows[0]
    log.info(
        "label noise vs truth: precision %s, recall %s (%d flagged, %d off-topic of %d clips)",
        r["precision"],
        r["recall"],
        r["n_flagged"],
        r["n_off_topic"],
        r["n_clips"],
    )
    return table
