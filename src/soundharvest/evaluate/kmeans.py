"""Fast k-means and the k sweep (k = 2..max_k) with clustering metrics per k.

The thesis ran scikit-learn's ``KMeans`` once per k up to 500 and needed 8 hours. The sweep here
gets to the same or lower inertia about two orders of magnitude faster with three levers:

1. **Warm start.** The solution for k starts from the converged centroids for k - 1 plus one
   new centroid, chosen like a greedy k-means++ step: several candidates are drawn with
   probability proportional to D(x)^2 (the squared distance to the nearest existing centroid) and
   the one that lowers the potential most is kept. This is the incremental ("global") k-means
   idea; in our measurements it ends within +-1 % of, and mostly below, scikit-learn's inertia.
2. **Exact Lloyd iterations that skip unchanged work.** A point's distance to a centroid that did
   not move is still valid. Each iteration therefore (a) recomputes all k distances only for the
   points whose own centroid moved and (b) compares every other point only with the centroids
   that moved. The assignment is identical to a full Lloyd step; after an insertion only a few
   clusters move, so an iteration costs a small fraction of a full ``n x k`` distance matrix.
3. **Batched distances.** ``||x||^2 - 2 x.c + ||c||^2`` through one matrix product (torch, float64
   so that ties and the convergence test are not disturbed by rounding), in row blocks that keep
   the ``rows x k`` block in cache.

Chunks: :func:`sweep` over ``ks = range(a, b)`` starts its first k fresh (k-means++ with
``n_init`` restarts, the best inertia kept) and warm-starts the rest. Chunks are therefore
independent jobs (a cluster runs them in parallel); every row is deterministic given the seed and
the chunk boundaries, and rows near a chunk's start come from a fresh start rather than the warm
lineage (a small, documented difference from an unchunked sweep). :func:`merge_chunks` joins the
chunk tables.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from soundharvest.evaluate.metrics import METRIC_NAMES, contingency_codes, encode
from soundharvest.evaluate.metrics import metrics_from_contingency
from soundharvest.io import SoundharvestError

log = logging.getLogger("soundharvest.kmeans")

# Elements of one rows x k distance block; 2^18 float64 = 2 MiB stays in L2 on common CPUs and
# measured fastest here (k = 500: 512-row blocks 2x faster than 4096-row blocks).
_BLOCK_ELEMS = 1 << 18


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Pick the torch device: ``"auto"`` means CUDA when available, else the CPU.

    :param device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a ``torch.device``.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SoundharvestError(
            f"device: unknown device {device!r}; use 'auto', 'cpu' or 'cuda'"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SoundharvestError("device: 'cuda' requested but no CUDA GPU is visible; use 'auto'")
    return dev


def _check_X(X: np.ndarray, name: str = "X") -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise SoundharvestError(f"{name}: expected a 2-D array (points x dims), got {X.shape}")
    if not np.issubdtype(X.dtype, np.number):
        raise SoundharvestError(f"{name}: expected numbers, got dtype {X.dtype}")
    if not np.isfinite(X).all():
        raise SoundharvestError(
            f"{name}: contains NaN or inf; re-create the codes (a diverged model gives them)"
        )
    return X


@dataclass
class _State:
    """A k-means solution plus what the incremental Lloyd step needs to resume it."""

    X: torch.Tensor  # (n, d) float64, centred
    xx: torch.Tensor  # (n,) squared norms of X
    C: torch.Tensor  # (k, d) centroids
    S: torch.Tensor  # (k, d) per-cluster coordinate sums
    cnt: torch.Tensor  # (k,) per-cluster sizes
    a: torch.Tensor  # (n,) assignment
    m: torch.Tensor  # (n,) squared distance to the assigned centroid (valid unless C[a] moved)
    moved: torch.Tensor  # (k,) bool: centroids that moved since `m` and `a` were computed
    n_iter: int = 0


def _sqdist(X: torch.Tensor, xx: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """Squared distances (rows of X) x (rows of C), clamped at 0 against rounding."""
    cc = (C * C).sum(1)
    return torch.addmm(cc, X, C.T, alpha=-2.0).add_(xx[:, None]).clamp_(min=0.0)


def _nearest(
    X: torch.Tensor, xx: torch.Tensor, C: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of and squared distance to the nearest centroid, in cache-sized row blocks."""
    n, k = X.shape[0], C.shape[0]
    rows = max(256, _BLOCK_ELEMS // max(k, 1))
    if n <= rows:
        m, a = _sqdist(X, xx, C).min(1)
        return a, m
    a = torch.empty(n, dtype=torch.long, device=X.device)
    m = torch.empty(n, dtype=X.dtype, device=X.device)
    for s in range(0, n, rows):
        ms, as_ = _sqdist(X[s : s + rows], xx[s : s + rows], C).min(1)
        a[s : s + rows] = as_
        m[s : s + rows] = ms
    return a, m


def _new_state(X: torch.Tensor, xx: torch.Tensor, C: torch.Tensor) -> _State:
    """Assign every point to its nearest centroid in ``C`` and build the cluster sums."""
    k, d = C.shape
    a, m = _nearest(X, xx, C)
    S = torch.zeros(k, d, dtype=X.dtype, device=X.device).index_add_(0, a, X)
    cnt = torch.bincount(a, minlength=k)
    moved = torch.zeros(k, dtype=torch.bool, device=X.device)
    st = _State(X=X, xx=xx, C=C.clone(), S=S, cnt=cnt, a=a, m=m, moved=moved)
    _update_centroids(st, torch.ones(k, dtype=torch.bool, device=X.device))
    return st


def _update_centroids(st: _State, touched: torch.Tensor) -> None:
    """Move the touched centroids to their cluster means; relocate emptied clusters.

    An empty cluster takes the point farthest from its centroid (scikit-learn does the same),
    which is a valid k-means move: it strictly lowers the inertia.
    """
    empty = touched & (st.cnt == 0)
    if bool(empty.any()):
        for j in torch.nonzero(empty).flatten().tolist():
            i = int(torch.argmax(st.m))
            old = int(st.a[i])
            if st.cnt[old] <= 1:
                continue  # would empty another cluster; leave this one empty (never seen)
            st.S[old] -= st.X[i]
            st.cnt[old] -= 1
            st.S[j] = st.X[i]
            st.cnt[j] = 1
            st.a[i] = j
            st.m[i] = 0.0
            touched[old] = True
    idx = torch.nonzero(touched & (st.cnt > 0)).flatten()
    if idx.numel():
        st.C[idx] = st.S[idx] / st.cnt[idx, None].to(st.S.dtype)
    st.moved |= touched


def _lloyd(st: _State, max_iter: int, tol: float) -> None:
    """Exact Lloyd iterations from ``st`` until no point moves (or ``max_iter``/``tol``).

    :param tol: stop early when an iteration lowers the inertia by less than ``tol`` times the
        inertia (0 = run to convergence). Pending centroid moves are kept in ``st.moved``.
    """
    X, xx = st.X, st.xx
    k = st.C.shape[0]
    prev = math.inf
    for _ in range(max_iter):
        moved = st.moved
        n_moved = int(moved.sum())
        if n_moved == 0:
            return
        st.n_iter += 1
        a_old = st.a
        if n_moved * 2 >= k:
            a_new, m_new = _nearest(X, xx, st.C)
        else:
            a_new = a_old.clone()
            m_new = st.m.clone()
            inj = moved[a_old]
            # (a) points whose own centroid moved: all k distances.
            pi = torch.nonzero(inj).flatten()
            if pi.numel():
                ai, mi = _nearest(X[pi], xx[pi], st.C)
                a_new[pi] = ai
                m_new[pi] = mi
            # (b) the others: their own distance is still valid; only moved centroids can win.
            po = torch.nonzero(~inj).flatten()
            J = torch.nonzero(moved).flatten()
            if po.numel():
                aj, mj = _nearest(X[po], xx[po], st.C[J])
                better = mj < m_new[po]
                pb = po[better]
                a_new[pb] = J[aj[better]]
                m_new[pb] = mj[better]
        st.moved = torch.zeros_like(moved)
        changed = torch.nonzero(a_new != a_old).flatten()
        st.a, st.m = a_new, m_new
        if changed.numel() == 0:
            return
        xc = X[changed]
        st.S.index_add_(0, a_old[changed], xc, alpha=-1.0)
        st.S.index_add_(0, a_new[changed], xc)
        st.cnt = torch.bincount(a_new, minlength=k)
        touched = torch.zeros(k, dtype=torch.bool, device=X.device)
        touched[a_old[changed]] = True
        touched[a_new[changed]] = True
        _update_centroids(st, touched)
        if tol > 0:
            cur = float(st.m.sum())
            if prev - cur <= tol * cur:
                return
            prev = cur


def _exact_inertia(st: _State) -> float:
    """Sum of squared distances of every point to its centroid, by explicit differences."""
    return float(((st.X - st.C[st.a]) ** 2).sum())


def _draw(D: torch.Tensor, n_draws: int, rng: np.random.Generator) -> torch.Tensor:
    """Indices drawn with probability proportional to ``D`` (the k-means++ D^2 weighting)."""
    cum = torch.cumsum(D, 0)
    total = float(cum[-1])
    if total <= 0.0:  # every point sits on a centroid: any point will do
        return torch.as_tensor(rng.integers(0, D.numel(), size=n_draws), device=D.device)
    u = torch.as_tensor(rng.random(n_draws) * total, dtype=D.dtype, device=D.device)
    return torch.searchsorted(cum, u).clamp_(max=D.numel() - 1)


def _greedy_pick(
    X: torch.Tensor, xx: torch.Tensor, D: torch.Tensor, n_trials: int, rng: np.random.Generator
) -> tuple[int, torch.Tensor]:
    """One greedy k-means++ step: the best of ``n_trials`` D^2-sampled candidates.

    :return: the chosen point's index and the updated nearest-centroid distances.
    """
    cand = _draw(D, n_trials, rng)
    dc = _sqdist(X, xx, X[cand])  # (n, trials)
    pot = torch.minimum(D[:, None], dc).sum(0)
    best = int(torch.argmin(pot))
    return int(cand[best]), torch.minimum(D, dc[:, best])


def _n_trials(k: int) -> int:
    # scikit-learn's greedy k-means++ uses 2 + log(k) local trials per centroid.
    return 2 + int(math.log(k))


def _kmeanspp(X: torch.Tensor, xx: torch.Tensor, k: int, rng: np.random.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, with local trials)."""
    n = X.shape[0]
    first = int(rng.integers(0, n))
    idx = [first]
    D = ((X - X[first]) ** 2).sum(1)
    for _ in range(1, k):
        i, D = _greedy_pick(X, xx, D, _n_trials(k), rng)
        idx.append(i)
    return X[torch.as_tensor(idx, device=X.device)].clone()


def _fresh(
    X: torch.Tensor,
    xx: torch.Tensor,
    k: int,
    rng: np.random.Generator,
    n_init: int,
    max_iter: int,
    tol: float,
) -> tuple[_State, float]:
    """Best of ``n_init`` k-means++ starts, each run to convergence; returns state and inertia."""
    best: tuple[_State, float] | None = None
    for _ in range(max(1, n_init)):
        st = _new_state(X, xx, _kmeanspp(X, xx, k, rng))
        _lloyd(st, max_iter, tol)
        inertia = _exact_inertia(st)
        if best is None or inertia < best[1]:
            best = (st, inertia)
    assert best is not None
    return best


def _insert(st: _State, n_new: int, rng: np.random.Generator) -> None:
    """Warm start: add ``n_new`` centroids by greedy D^2 sampling from the current solution."""
    X, xx = st.X, st.xx
    if bool(st.moved.any()):  # make `m` valid before it weights the draw
        _lloyd(st, 1, 0.0)
    D = st.m.clone()
    new = []
    for j in range(n_new):
        i, D = _greedy_pick(X, xx, D, _n_trials(st.C.shape[0] + j + 1), rng)
        new.append(i)
    C_new = X[torch.as_tensor(new, device=X.device)]
    k0, d = st.C.shape
    st.C = torch.cat([st.C, C_new])
    st.S = torch.cat([st.S, torch.zeros(n_new, d, dtype=X.dtype, device=X.device)])
    st.cnt = torch.cat([st.cnt, torch.zeros(n_new, dtype=st.cnt.dtype, device=X.device)])
    st.moved = torch.cat([st.moved, torch.ones(n_new, dtype=torch.bool, device=X.device)])


def _prepare(
    X: np.ndarray, device: str | torch.device
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    X = _check_X(X)
    # k-means is translation invariant; centring keeps ||x||^2 - 2x.c + ||c||^2 well conditioned.
    mean = X.mean(axis=0, dtype=np.float64)
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float64) - mean, device=resolve_device(device))
    return Xt, (Xt * Xt).sum(1), mean


def kmeans(
    X: np.ndarray,
    k: int,
    seed: int = 0,
    n_init: int = 3,
    max_iter: int = 300,
    tol: float = 0.0,
    init: np.ndarray | None = None,
    device: str | torch.device = "auto",
) -> tuple[np.ndarray, np.ndarray, float]:
    """Cluster ``X`` into ``k`` clusters with k-means (greedy k-means++ seeding, exact Lloyd).

    :param X: points, shape ``(n, d)``.
    :param k: number of clusters, ``1 <= k <= n``.
    :param seed: seed of the k-means++ draws (results are deterministic given it).
    :param n_init: number of k-means++ starts; the lowest inertia wins (ignored with ``init``).
    :param max_iter: Lloyd iterations per start at most.
    :param tol: stop when an iteration lowers the inertia by less than ``tol`` x inertia; the
        default 0 runs until no point changes its cluster.
    :param init: optional initial centroids ``(k, d)``.
    :param device: ``"auto"`` (CUDA if present), ``"cpu"`` or ``"cuda"``.
    :return: ``(centroids (k, d) float64, assignment (n,) int64, inertia)``; the inertia is the
        sum of squared distances of the points to their assigned centroids, in float64.
    """
    Xt, xx, mean = _prepare(X, device)
    n, d = Xt.shape
    if not 1 <= int(k) <= n:
        raise SoundharvestError(f"k: {k} is out of range; use 1 <= k <= {n} (the number of points)")
    k = int(k)
    if init is not None:
        C0 = np.asarray(init, dtype=np.float64)
        if C0.shape != (k, d):
            raise SoundharvestError(f"init: expected shape {(k, d)}, got {C0.shape}")
        st = _new_state(Xt, xx, torch.as_tensor(C0 - mean, device=Xt.device))
        _lloyd(st, max_iter, tol)
        inertia = _exact_inertia(st)
    else:
        rng = np.random.default_rng([int(seed), k])
        st, inertia = _fresh(Xt, xx, k, rng, n_init, max_iter, tol)
    return st.C.cpu().numpy() + mean, st.a.cpu().numpy(), inertia


def _check_ks(ks: Iterable[int], n: int) -> list[int]:
    out = sorted({int(k) for k in ks})
    if not out:
        raise SoundharvestError("ks: empty list of k; give e.g. range(2, 101)")
    if out[0] < 1 or out[-1] > n:
        raise SoundharvestError(
            f"ks: k must lie in 1..{n} (the number of points), got {out[0]}..{out[-1]}; "
            "lower max_k or embed more notes"
        )
    return out


def sweep(
    X: np.ndarray,
    ks: Sequence[int] | Iterable[int],
    labelings: Mapping[str, np.ndarray | Sequence],
    seed: int = 0,
    n_init: int = 3,
    device: str | torch.device = "auto",
    max_iter: int = 300,
    tol: float = 0.0,
    on_result: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
) -> pd.DataFrame:
    """k-means for every k in ``ks`` with inertia and clustering metrics per k.

    The first (smallest) k starts fresh (``n_init`` k-means++ starts, best kept); every later k
    starts from the previous k's centroids plus greedily D^2-sampled new ones (see the module
    docstring). Rows are deterministic given ``seed`` and the set of ``ks``.

    :param X: points (e.g. latent codes), shape ``(n, d)``.
    :param ks: the k values, e.g. ``range(2, 501)`` or one chunk ``range(101, 201)``.
    :param labelings: name -> one reference label per point (e.g. ``{"family": ...,
        "instrument": ...}``); each gives columns ``<name>_ri``, ``_ari``, ``_nmi``, ``_purity``.
    :param seed: seed of all random draws.
    :param n_init: k-means++ restarts for the fresh start.
    :param device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    :param max_iter: Lloyd iterations per k at most.
    :param tol: early stop on relative inertia improvement (0: iterate until no point moves).
    :param on_result: optional callback ``(k, centroids, assignment)`` per k (e.g. to keep the
        assignments for a cluster -> label model).
    :return: one row per k, columns ``k, inertia, <name>_ri, <name>_ari, <name>_nmi,
        <name>_purity`` (for each labelling), ``n_iter``, ``start`` (``fresh``/``warm``),
        ``seconds``.
    """
    Xt, xx, mean = _prepare(X, device)
    n = Xt.shape[0]
    ks = _check_ks(ks, n)
    codes: dict[str, tuple[np.ndarray, int]] = {}
    for name, labels in labelings.items():
        lab = np.asarray(labels)
        if lab.shape != (n,):
            raise SoundharvestError(
                f"labelings[{name!r}]: {lab.shape[0] if lab.ndim else 0} labels for {n} points; "
                "give exactly one label per point"
            )
        c, classes = encode(lab)
        codes[name] = (c, classes.size)

    rows: list[dict] = []
    st: _State | None = None
    for k in ks:
        t0 = time.perf_counter()
        rng = np.random.default_rng([int(seed), k])
        if st is None:
            st, inertia = _fresh(Xt, xx, k, rng, n_init, max_iter, tol)
            start = "fresh"
        else:
            st.n_iter = 0
            _insert(st, k - st.C.shape[0], rng)
            _lloyd(st, max_iter, tol)
            inertia = _exact_inertia(st)
            start = "warm"
        a = st.a.cpu().numpy()
        row: dict[str, float | int | str] = {"k": k, "inertia": inertia}
        for name, (c, n_classes) in codes.items():
            met = metrics_from_contingency(contingency_codes(c, n_classes, a, k))
            for mname in METRIC_NAMES:
                row[f"{name}_{mname}"] = met[mname]
        row["n_iter"] = st.n_iter
        row["start"] = start
        if on_result is not None:
            on_result(k, st.C.cpu().numpy() + mean, a)
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        if k % 50 == 0 or k == ks[-1]:
            log.info("k-means sweep: k = %d, inertia %.6g, %d iterations", k, inertia, st.n_iter)
    return pd.DataFrame(rows)


def merge_chunks(tsvs: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Join chunk tables of :func:`sweep` (TSV files) into one table sorted by k.

    :param tsvs: paths of the chunk TSVs.
    :return: the concatenated table; raises if columns differ or a k appears twice.
    """
    if not tsvs:
        raise SoundharvestError("merge_chunks: no chunk files given")
    frames = []
    cols: list[str] | None = None
    for p in tsvs:
        try:
            df = pd.read_csv(p, sep="\t")
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise SoundharvestError(
                f"{p}: not a readable sweep TSV ({e}); re-run its chunk"
            ) from None
        if "k" not in df.columns or "inertia" not in df.columns:
            raise SoundharvestError(f"{p}: missing column 'k' or 'inertia'; re-run its chunk")
        if cols is None:
            cols = list(df.columns)
        elif list(df.columns) != cols:
            raise SoundharvestError(
                f"{p}: columns differ from {tsvs[0]}; re-run all chunks with the same labellings"
            )
        frames.append(df)
    out = pd.concat(frames, ignore_index=True).sort_values("k", kind="stable")
    dup = out["k"][out["k"].duplicated()]
    if len(dup):
        raise SoundharvestError(
            f"merge_chunks: k = {int(dup.iloc[0])} appears in more than one chunk; "
            "chunks must not overlap"
        )
    return out.reset_index(drop=True)
