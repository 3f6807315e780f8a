"""K-means in torch: plain, exactly balanced, and batched over many independent problems.

All variants share one Lloyd engine that works on a padded batch ``(P, m, d)`` of
``P`` independent problems (a single problem is ``P = 1``), so the same code runs on
CPU and GPU and the per-parent clusterings of GAOQ run together instead of in a
Python loop.

Initialisation is greedy k-means++ (``2 + ln k`` candidates per step, the best
reduction of the potential wins). Random draws come from a numpy Generator seeded
with ``seed`` so CPU and GPU pick the same points.

Exact balance. With ``n = q k + r`` points, ``r`` clusters get ``q + 1`` points and
the rest ``q`` (sizes differ by at most one). The assignment step solves the
transportation problem ``min sum_i D[i, c(i)]`` under those capacities with a
price (dual-variable, auction-style) method on the ``(n, k)`` cost matrix:

- every point sits in the cluster minimising ``D[i, j] + p[j]``;
- while some clusters are over capacity, each raises its price just past the
  switching cost ``min_{l != j}(D[i, l] + p[l]) - (D[i, j] + p[j])`` of its
  ``excess``-th cheapest member (plus a tolerance ``eps``), and those members move
  to their next-best cluster at the new prices (unless that one rose too and
  staying became cheaper).

Prices only rise on over-full clusters, so the loop ends with every cluster exactly
at capacity and every point within ``eps`` of its cheapest price-adjusted cluster,
which by complementary slackness is within ``n * eps`` of the optimal balanced
assignment. ``eps`` is a fraction of the mean gap between the best and second-best
distance: large in the first Lloyd iteration (fast, the centroids are rough anyway)
and shrinking geometrically to ``_EPS_FINAL`` of the gap. Prices are warm-started
across Lloyd iterations. The ``r`` clusters that get ``q + 1`` points are the ``r``
most demanded ones (largest unconstrained sizes at the current prices).
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator

import numpy as np
import torch

from ..errors import ConfigError, DataError

#: cheapest clusters (at least; k / 8 for large k) tried first when a row looks for its next best
_CANDIDATES = 8
#: problems with more rows than this per cluster are first clustered on a sample of that size
_SAMPLE_ROWS_PER_CLUSTER = 128
#: k-means++ tries several candidates per seed only when clusters average this many rows
_GREEDY_MIN_ROWS = 32
#: problems with at most this many multiply-adds per distance pass run single-threaded on CPU
_SMALL_WORK = 2**30
#: the auction hands over to shortest paths once this many steps did not lower the excess
_STALL_STEPS = 3

#: price steps allowed per assignment before giving up (never reached in practice)
_MAX_PRICE_STEPS = 1_000_000
#: price tolerance of the first Lloyd iteration, as a fraction of the mean best/second-best gap
_EPS_START = 1.0
#: ... of the first iteration on all rows after clustering a sample
_EPS_WARM = 0.2
#: the price tolerance halves every Lloyd iteration down to this fraction of the gap
_EPS_FINAL = 0.05
#: Lloyd stops once the squared centroid shift is below this times the mean per-dimension variance ...
_TOL = 1e-4
#: ... or the within-cluster sum of squares improved by less than this fraction
_RTOL = 1e-3


def kmeans(
    X: torch.Tensor, k: int, *, n_iter: int = 30, seed: int = 0, chunk_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain k-means (k-means++ init). X (n, d) -> centroids (k, d), labels (n,) int64."""
    X = _check_single(X, k)
    centroids, labels = _lloyd(X[None], None, k, balanced=False, n_iter=n_iter, seed=seed, chunk_size=chunk_size)
    return centroids[0], labels[0]


def balanced_kmeans(
    X: torch.Tensor, k: int, *, n_iter: int = 30, seed: int = 0, chunk_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exactly balanced: cluster sizes differ by at most one. X (n, d) -> centroids (k, d), labels (n,)."""
    X = _check_single(X, k)
    centroids, labels = _lloyd(X[None], None, k, balanced=True, n_iter=n_iter, seed=seed, chunk_size=chunk_size)
    return centroids[0], labels[0]


def kmeans_batched(
    X: torch.Tensor,
    k: int,
    *,
    lengths: torch.Tensor | None = None,
    n_iter: int = 30,
    seed: int = 0,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain k-means on P independent problems at once.

    Args:
        X: (P, m, d) padded batch; problem p uses rows ``X[p, :lengths[p]]``.
        lengths: (P,) number of valid rows per problem (default: all m).
    Returns:
        centroids (P, k, d), labels (P, m) int64 with -1 on padding rows.
    """
    lengths = _check_batch(X, k, lengths)
    return _lloyd(X, lengths, k, balanced=False, n_iter=n_iter, seed=seed, chunk_size=chunk_size)


def balanced_kmeans_batched(
    X: torch.Tensor,
    k: int,
    *,
    lengths: torch.Tensor | None = None,
    n_iter: int = 30,
    seed: int = 0,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exactly balanced k-means on P independent problems at once (sizes within one per problem).

    Args:
        X: (P, m, d) padded batch; problem p uses rows ``X[p, :lengths[p]]``.
        lengths: (P,) number of valid rows per problem (default: all m); each must be >= k.
    Returns:
        centroids (P, k, d), labels (P, m) int64 with -1 on padding rows.
    """
    lengths = _check_batch(X, k, lengths)
    return _lloyd(X, lengths, k, balanced=True, n_iter=n_iter, seed=seed, chunk_size=chunk_size)


def balanced_assignment(cost: torch.Tensor, *, tolerance: float = _EPS_FINAL) -> torch.Tensor:
    """Assign n rows to k columns, sizes within one, minimising the total cost (the k-means
    assignment step; see the module docstring).

    Args:
        cost: (n, k) cost of every row in every column, n >= k.
        tolerance: price tolerance as a fraction of the mean gap between each row's best and
            second-best cost; the total is within ``n * tolerance * gap`` of the optimum for
            the chosen capacities (the ``n mod k`` most demanded columns take one row more).
    Returns:
        (n,) int64 column of every row.
    """
    if cost.ndim != 2:
        raise DataError(f"balanced assignment: expected an (n, k) cost matrix, got shape {tuple(cost.shape)}")
    n, k = cost.shape
    _check_k(n, k, "the cost matrix")
    prices = torch.zeros(1, k, dtype=torch.float64, device=cost.device)
    prob = torch.zeros(n, dtype=torch.long, device=cost.device)
    lengths = torch.tensor([n], device=cost.device)
    labels, _ = _balanced_assign(cost, prob, lengths, prices, tolerance)
    return labels


def balanced_sizes(n: int, k: int) -> tuple[int, int]:
    """``(q, r)`` with ``n = q k + r``: r clusters hold q + 1 points, the others q."""
    return n // k, n % k


def within_sse(X: torch.Tensor, centroids: torch.Tensor, labels: torch.Tensor) -> float:
    """Within-cluster sum of squared distances. X (n, d), centroids (k, d), labels (n,)."""
    total = 0.0
    for start in range(0, X.shape[0], 8192):
        rows = slice(start, start + 8192)
        total += float(((X[rows].double() - centroids.double()[labels[rows]]) ** 2).sum())
    return total


# ------------------------------------------------------------------ validation


def _check_k(n: int, k: int, where: str) -> None:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k-means: number of clusters must be a positive integer, got {k!r}")
    if n < k:
        raise DataError(f"k-means: {where} has {n} items, fewer than the {k} clusters requested")


def _check_single(X: torch.Tensor, k: int) -> torch.Tensor:
    if not isinstance(X, torch.Tensor):
        X = torch.as_tensor(np.asarray(X))
    if X.ndim != 2 or X.shape[1] == 0:
        raise DataError(f"k-means: expected a 2-D tensor (n, d), got shape {tuple(X.shape)}")
    _check_k(X.shape[0], k, "the input")
    if not torch.isfinite(X).all():
        raise DataError("k-means: the input contains NaN or Inf")
    return X


def _check_batch(X: torch.Tensor, k: int, lengths: torch.Tensor | None) -> torch.Tensor:
    if X.ndim != 3 or X.shape[2] == 0:
        raise DataError(f"k-means: expected a padded batch (P, m, d), got shape {tuple(X.shape)}")
    P, m, _ = X.shape
    if lengths is None:
        lengths = torch.full((P,), m, dtype=torch.long)
    lengths = torch.as_tensor(lengths, dtype=torch.long).to(X.device)
    if lengths.shape != (P,) or int(lengths.max()) > m:
        raise DataError(f"k-means: lengths must be (P,) = ({P},) values <= {m}")
    smallest = int(lengths.min())
    if smallest < k:
        p = int(lengths.argmin())
        _check_k(smallest, k, f"problem {p} of the batch")
    valid = torch.arange(m, device=X.device)[None, :] < lengths[:, None]
    if not torch.isfinite(X[valid]).all():
        raise DataError("k-means: the input contains NaN or Inf")
    return lengths


# ------------------------------------------------------------------ engine


def _auto_chunk(m: int, k: int, d: int, P: int) -> int:
    """Rows per distance block so one block's temporaries stay near 64M floats."""
    return max(1, min(m, (64 * 2**20) // max(1, P * max(k, d))))


def _squared_norms(X: torch.Tensor) -> torch.Tensor:
    """Squared norms over the last dimension, without a temporary the size of X."""
    return torch.linalg.vector_norm(X, dim=-1) ** 2


def _distances(X: torch.Tensor, C: torch.Tensor, chunk: int) -> torch.Tensor:
    """``||c||^2 - 2 x.c`` (the squared distance without the per-row ``||x||^2``).

    X (P, m, d), C (P, k, d) -> (P, m, k), computed in row blocks of ``chunk``.
    """
    P, m, _ = X.shape
    cc = (C * C).sum(-1)[:, None, :]
    Ct = C.transpose(1, 2)
    out = torch.empty(P, m, C.shape[1], dtype=X.dtype, device=X.device)
    for s in range(0, m, chunk):
        torch.baddbmm(cc, X[:, s : s + chunk], Ct, beta=1.0, alpha=-2.0, out=out[:, s : s + chunk])
    return out


def _kmeanspp(X: torch.Tensor, xx: torch.Tensor, valid: torch.Tensor, k: int, rng: np.random.Generator) -> torch.Tensor:
    """k-means++ seeding. X (P, m, d) centered, xx (P, m) squared norms -> (P, k, d).

    Greedy (``2 + ln k`` candidates per seed, the one lowering the potential most wins) when
    clusters will be large; plain (one candidate) when they average fewer than
    ``_GREEDY_MIN_ROWS`` rows, where extra candidates barely change the seeds. Runs
    single-threaded on CPU (a loop of k small steps).
    """
    P, m, d = X.shape
    n_trials = 2 + int(math.log(k)) if m >= _GREEDY_MIN_ROWS * k else 1
    with single_thread_on_cpu(X.device):
        return _kmeanspp_loop(X, xx, valid, k, rng, n_trials)


def _kmeanspp_loop(
    X: torch.Tensor, xx: torch.Tensor, valid: torch.Tensor, k: int, rng: np.random.Generator, n_trials: int
) -> torch.Tensor:
    P, m, d = X.shape
    device = X.device
    lengths = valid.sum(1)
    batch = torch.arange(P, device=device)
    first = torch.as_tensor(rng.random(P), dtype=torch.float64, device=device)
    first = torch.clamp((first * lengths).long(), max=m - 1)
    C = torch.empty(P, k, d, dtype=X.dtype, device=device)
    C[:, 0] = X[batch, first]
    closest = torch.clamp(xx - 2 * torch.einsum("pmd,pd->pm", X, C[:, 0]) + xx[batch, first][:, None], min=0) * valid
    for c in range(1, k):
        cum = torch.cumsum(closest.double(), dim=1)
        u = torch.as_tensor(rng.random((P, n_trials)), dtype=torch.float64, device=device) * cum[:, -1:]
        cand = torch.minimum(torch.searchsorted(cum, u), lengths[:, None] - 1)  # (P, t)
        cx = X[batch[:, None], cand]  # (P, t, d)
        dist = xx[:, :, None] - 2 * torch.bmm(X, cx.transpose(1, 2)) + xx[batch[:, None], cand][:, None, :]
        dist = torch.minimum(closest[:, :, None], torch.clamp(dist, min=0)) * valid[:, :, None]
        best = dist.sum(1).argmin(1)  # (P,)
        closest = dist[batch, :, best]
        C[:, c] = cx[batch, best]
    return C


def _lloyd(
    X: torch.Tensor,
    lengths: torch.Tensor | None,
    k: int,
    *,
    balanced: bool,
    n_iter: int,
    seed: int,
    chunk_size: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """K-means on a padded batch. X (P, m, d) -> centroids (P, k, d), labels (P, m) (-1 on padding).

    Large problems (more than ``_SAMPLE_ROWS_PER_CLUSTER`` rows per cluster) are first
    clustered on a uniform sample of that size; its centroids and cluster prices start the
    iterations on all rows, which then need few steps. Small problems run single-threaded on
    CPU (see :func:`single_thread_on_cpu`).
    """
    if n_iter < 1:
        raise ConfigError(f"k-means: n_iter must be >= 1, got {n_iter}")
    P, m, d = X.shape
    if P * m * k * d <= _SMALL_WORK:
        with single_thread_on_cpu(X.device):
            return _lloyd_run(X, lengths, k, balanced=balanced, n_iter=n_iter, seed=seed, chunk_size=chunk_size)
    return _lloyd_run(X, lengths, k, balanced=balanced, n_iter=n_iter, seed=seed, chunk_size=chunk_size)


def _lloyd_run(
    X: torch.Tensor,
    lengths: torch.Tensor | None,
    k: int,
    *,
    balanced: bool,
    n_iter: int,
    seed: int,
    chunk_size: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    out_dtype = X.dtype if X.dtype.is_floating_point else torch.float32
    X = X.float()
    P, m, d = X.shape
    device = X.device
    if lengths is None:
        lengths = torch.full((P,), m, dtype=torch.long, device=device)
    valid = torch.arange(m, device=device)[None, :] < lengths[:, None]  # (P, m)
    padded = bool((lengths < m).any())
    X = torch.where(valid[:, :, None], X, 0.0) if padded else X  # padding may hold anything
    mean = X.sum(1) / lengths[:, None]  # (P, d)
    X = X - mean[:, None, :]
    X = torch.where(valid[:, :, None], X, 0.0) if padded else X
    rng = np.random.default_rng(seed)
    chunk = chunk_size or _auto_chunk(m, k, d, P)

    limit = _SAMPLE_ROWS_PER_CLUSTER * k
    if m > limit:
        keys = torch.as_tensor(rng.random((P, m)), device=device) + (~valid).double()  # padding sorts last
        rows = keys.argsort(dim=1)[:, :limit]
        Xs = X[torch.arange(P, device=device)[:, None], rows]
        sample_lengths = lengths.clamp(max=limit)
        C = _kmeanspp(Xs, _squared_norms(Xs), valid[torch.arange(P, device=device)[:, None], rows], k, rng)
        C, _, prices = _iterate(Xs, sample_lengths, C, None, k, balanced, n_iter, _EPS_START, chunk)
        eps_start = _EPS_WARM
    else:
        C, prices, eps_start = _kmeanspp(X, _squared_norms(X), valid, k, rng), None, _EPS_START
    C, labels, _ = _iterate(X, lengths, C, prices, k, balanced, n_iter, eps_start, chunk)
    return (C + mean[:, None, :]).to(out_dtype), labels


def _iterate(
    X: torch.Tensor,
    lengths: torch.Tensor,
    C: torch.Tensor,
    prices: torch.Tensor | None,
    k: int,
    balanced: bool,
    n_iter: int,
    eps_start: float,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lloyd iterations from centroids C (P, k, d) on centered, zero-padded X (P, m, d).

    The price tolerance of the balanced assignment starts at ``eps_start`` and halves every
    iteration down to ``_EPS_FINAL``: early assignments need not be exact. Stops once the
    tolerance is final and the squared centroid shift (summed over the batch) is below
    ``_TOL`` times the mean per-dimension variance per problem (the scikit-learn criterion)
    or the within-cluster sum of squares of the batch improved by less than ``_RTOL``.
    Returns centroids (P, k, d), labels (P, m) with -1 on padding, prices (P, k).
    """
    P, m, d = X.shape
    device = X.device
    padded = bool((lengths < m).any())
    flat = (torch.arange(m, device=device)[None, :] < lengths[:, None]).reshape(-1).nonzero().squeeze(1)
    prob = flat // m  # problem of every valid row
    Xv = X.reshape(P * m, d).index_select(0, flat) if padded else X.reshape(P * m, d)
    base = float(_squared_norms(Xv).double().sum())  # sse = base + the chosen entries of D
    tol = _TOL * base / float(lengths.sum()) / d * P
    if prices is None:
        prices = torch.zeros(P, k, dtype=torch.float64, device=device)
    prev_sse = float("inf")
    for it in range(n_iter):
        D = _distances(X, C, chunk).reshape(P * m, k)
        D = D.index_select(0, flat) if padded else D
        rel_eps = max(_EPS_FINAL, eps_start / 2**it)
        if balanced:
            labels, prices = _balanced_assign(D, prob, lengths, prices, rel_eps)
        else:
            labels = D.argmin(1)
        new_C = _centroids(Xv, prob, labels, P, k)
        if not balanced:
            new_C = _reseed_empty(Xv, prob, labels, new_C, P, k)
        shift = float(((new_C - C) ** 2).sum())
        C = new_C
        sse = base + float(D.gather(1, labels[:, None]).double().sum())
        stalled = prev_sse - sse <= _RTOL * sse
        prev_sse = sse
        if rel_eps <= _EPS_FINAL and (shift <= tol or stalled):
            break
    batch_labels = torch.full((P * m,), -1, dtype=torch.long, device=device)
    batch_labels[flat] = labels
    return C, batch_labels.reshape(P, m), prices


def _centroids(Xv: torch.Tensor, prob: torch.Tensor, labels: torch.Tensor, P: int, k: int) -> torch.Tensor:
    """Cluster means. Xv (N, d) valid rows, prob/labels (N,) -> (P, k, d); empty clusters get 0.

    ``index_add_`` runs single-threaded on CPU, where it is several times faster than threaded.
    """
    key = prob * k + labels
    with single_thread_on_cpu(Xv.device):
        sums = torch.zeros(P * k, Xv.shape[1], dtype=Xv.dtype, device=Xv.device).index_add_(0, key, Xv)
    counts = torch.bincount(key, minlength=P * k).to(Xv.dtype)
    return (sums / counts.clamp(min=1)[:, None]).reshape(P, k, -1)


def _reseed_empty(
    Xv: torch.Tensor, prob: torch.Tensor, labels: torch.Tensor, C: torch.Tensor, P: int, k: int
) -> torch.Tensor:
    """Move every empty cluster onto the point farthest from its own centroid (plain k-means only)."""
    counts = torch.bincount(prob * k + labels, minlength=P * k).reshape(P, k)
    if bool((counts > 0).all()):
        return C
    far = ((Xv - C[prob, labels]) ** 2).sum(1)
    for p in (counts == 0).any(1).nonzero().squeeze(1).tolist():
        rows = (prob == p).nonzero().squeeze(1)
        empties = (counts[p] == 0).nonzero().squeeze(1)
        picks = rows[far[rows].topk(len(empties)).indices]
        C[p, empties] = Xv[picks]
    return C


def _balanced_assign(
    D: torch.Tensor, prob: torch.Tensor, lengths: torch.Tensor, prices: torch.Tensor, rel_eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exactly balanced, eps-optimal assignment by price raising (see the module docstring).

    Args:
        D: (N, k) costs of the valid rows of all problems.
        prob: (N,) problem index of every row.
        lengths: (P,) rows per problem.
        prices: (P, k) float64 warm-start prices (updated in place).
        rel_eps: price tolerance as a fraction of each problem's mean best/second-best gap.
    Returns:
        labels (N,) with every problem's cluster sizes equal to its capacities, and the prices.
    """
    if prices.shape[1] == 1:
        return torch.zeros(D.shape[0], dtype=torch.long, device=D.device), prices
    market = _Market(D, prob, lengths, prices, rel_eps)
    with single_thread_on_cpu(D.device):
        market.clear()
    return market.labels, prices


@contextlib.contextmanager
def single_thread_on_cpu(device: torch.device | str) -> Iterator[None]:
    """Run a loop of many small tensor operations single-threaded on CPU: per-operation
    thread synchronisation costs more than it saves there (far more on a busy machine)."""
    if torch.device(device).type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _Market:
    """State of one balanced assignment: rows, clusters with capacities, and cluster prices.

    Each row keeps ``cur`` (price-adjusted cost in its cluster) and ``alt_idx``/``alt_val``
    (its cheapest other cluster). Raising a price can only make other rows' ``alt_val`` too
    low, never too high, so rows whose next-best cluster was raised are only flagged
    ``stale`` and recomputed when their value matters. Recomputing looks at the row's
    ``t`` cheapest clusters when they were last listed; as prices only rise, the answer is
    exact when it does not exceed the then next cheapest cost, else the row's list is
    rebuilt from the full row.
    """

    def __init__(self, D: torch.Tensor, prob: torch.Tensor, lengths: torch.Tensor, prices: torch.Tensor, rel_eps: float):
        P, k = prices.shape
        self.D, self.prob, self.prices, self.k = D, prob, prices, k
        t = min(k, max(_CANDIDATES, k // 8))
        # candidates in float32 (the bound below keeps exactness), costs in float64
        near = (D + _row_prices(prices, prob).to(D.dtype)).topk(min(k, t + 1), dim=1, largest=False).indices
        self.cand_idx = near[:, :t].contiguous()
        self.cand_d = D.gather(1, self.cand_idx)
        cost = self.cand_d.double() + _gather_prices(prices, prob, self.cand_idx)
        cost, order = cost.sort(1)
        self.cand_idx, self.cand_d = self.cand_idx.gather(1, order), self.cand_d.gather(1, order)
        self.labels, self.cur = self.cand_idx[:, 0].clone(), cost[:, 0].contiguous()
        self.alt_idx, self.alt_val = self.cand_idx[:, 1].clone(), cost[:, 1].contiguous()
        # prices only rise, so a cluster outside a row's t cheapest now costs at least its (t+1)-th
        if k > t:
            beyond = near[:, t : t + 1]
            self.beyond = (D.gather(1, beyond).double() + _gather_prices(prices, prob, beyond)).squeeze(1)
            self.beyond -= 1e-6 * self.beyond.abs() + 1e-12  # float32 ranking may be off by rounding
        else:
            self.beyond = torch.full_like(self.cur, float("inf"))
        del near, cost
        gap = torch.zeros(P, dtype=torch.float64, device=D.device).index_add_(0, prob, self.alt_val - self.cur)
        self.eps = rel_eps * gap / lengths + 1e-12  # (P,)
        self.group = prob * k + self.labels  # (N,) flat cluster id of every row
        self.sizes = torch.bincount(self.group, minlength=P * k)  # (P * k,)
        self.caps = _capacities(self.sizes.reshape(P, k), lengths).reshape(-1)
        self.stale = torch.zeros_like(self.labels, dtype=torch.bool)

    def refresh(self, rows: torch.Tensor) -> None:
        """Recompute the cheapest other cluster of ``rows`` at the current prices."""
        if rows.numel() == 0:
            return
        prob, labels, flat_prices = self.prob[rows], self.labels[rows], self.prices.view(-1)
        idx = self.cand_idx[rows]  # (r, t)
        c = self.cand_d[rows] + flat_prices[prob[:, None] * self.k + idx]
        c[idx == labels[:, None]] = float("inf")
        val, pos = c.min(1)
        best = idx.gather(1, pos[:, None]).squeeze(1)
        unsure = (val > self.beyond[rows]).nonzero().squeeze(1)
        if unsure.numel():
            # the candidates went stale: take the row's t cheapest clusters at today's prices
            u = rows[unsure]
            t = self.cand_idx.shape[1]
            full = self.D.index_select(0, u) + _row_prices(self.prices, prob[unsure])
            near = full.topk(min(self.k, t + 1), dim=1, largest=False)
            self.cand_idx[u] = near.indices[:, :t]
            self.cand_d[u] = self.D[u[:, None], near.indices[:, :t]]
            if self.k > t:
                self.beyond[u] = near.values[:, t]
            cost = near.values[:, :t].masked_fill(near.indices[:, :t] == labels[unsure, None], float("inf"))
            val[unsure], pos = cost.min(1)
            best[unsure] = near.indices[:, :t].gather(1, pos[:, None]).squeeze(1)
        self.alt_val[rows], self.alt_idx[rows] = val, best
        self.stale[rows] = False

    def clear(self) -> None:
        """Raise prices of over-full clusters until every cluster is exactly at capacity.

        Every step raises the price of every over-full cluster past the switching cost
        ``alt_val - cur`` of its ``excess``-th cheapest member (plus ``eps``, halfway to the
        next member), and those members move to their cheapest other cluster at the new
        prices unless that one rose too and staying became cheaper. Every row stays within
        ``eps`` of its cheapest cluster and prices only rise, so the loop ends eps-optimal.
        Once ``_STALL_STEPS`` steps have not lowered the total excess (a few units bouncing
        between full clusters in small price steps, the auction's end game), the rest is
        placed by :meth:`finish_by_shortest_paths`.
        """
        k, device = self.k, self.D.device
        history: list[int] = []  # total excess before every step
        for _ in range(_MAX_PRICE_STEPS):
            over = self.sizes - self.caps  # (P * k,)
            history.append(int(over.clamp(min=0).sum()))
            if history[-1] == 0:
                return
            if len(history) > _STALL_STEPS and history[-1] >= history[-1 - _STALL_STEPS]:
                self.finish_by_shortest_paths()
                return
            members, delta, key, starts = self._cheapest_members(over)
            full = (over > 0).nonzero().squeeze(1)
            last = delta[starts[full] + over[full] - 1]
            nxt = delta[starts[full] + over[full]]  # exists: a cluster holds at least cap >= 1 more rows
            inc = torch.zeros_like(self.prices).view(-1)
            inc[full] = last + torch.maximum(self.eps[full // k], (nxt - last) / 2)
            self.prices.view(-1).add_(inc)
            self.cur[members] += inc[key]
            self.stale |= inc[self.prob * k + self.alt_idx] > 0
            # leavers go to their cheapest other cluster at the new prices, unless staying is cheaper
            leavers = members[torch.arange(members.numel(), device=device) - starts[key] < over[key]]
            self.refresh(leavers)
            go = self.alt_val[leavers] <= self.cur[leavers] + self.eps[self.prob[leavers]]
            movers = leavers[go]
            old = self.group[movers]
            self.labels[movers] = self.alt_idx[movers]
            self.group[movers] = self.prob[movers] * k + self.labels[movers]
            self.cur[movers] = self.alt_val[movers]
            self.stale[movers] = True
            self.sizes.index_add_(0, old, torch.full_like(old, -1))
            self.sizes.index_add_(0, self.group[movers], torch.ones_like(old))
        raise RuntimeError("balanced assignment did not converge")  # pragma: no cover

    def finish_by_shortest_paths(self) -> None:
        """Place the remaining excess along shortest paths in the cluster graph (exact, one unit
        per problem per round; the successive-shortest-path method for min-cost flow).

        Edge ``a -> b`` costs the cheapest price-adjusted move of one row from a to b,
        ``W[a, b] = min_{i in a} (D[i, b] - D[i, a]) + p[b] - p[a]`` (>= 0 up to eps). Per round
        and problem: Bellman-Ford distances ``dist`` from the over-full clusters, ``tau`` the
        distance of the nearest under-full cluster ``t``; raising every price by
        ``max(0, tau - dist)`` keeps all moves non-negative and makes the path to ``t``
        free, and one row (the cheapest) moves along each of its edges. The price-free part
        ``W0[a, b] = min_{i in a} (D[i, b] - D[i, a])`` only changes for clusters whose rows
        changed, so it is updated for the clusters on the paths only.
        """
        P, k, device = self.prices.shape[0], self.k, self.D.device
        W0 = torch.full((P * k, k), float("inf"), dtype=self.D.dtype, device=device)
        self._cheapest_moves(None, W0)
        self._index_members()
        no_move = torch.eye(k, dtype=torch.bool, device=device)
        while True:
            over = (self.sizes - self.caps).view(P, k)
            act = (over > 0).any(1).nonzero().squeeze(1)  # problems with excess
            if act.numel() == 0:
                return
            over, prices = over[act], self.prices[act]
            W = (W0.view(P, k, k)[act].double() + prices[:, None, :] - prices[:, :, None]).clamp(min=0)
            W.masked_fill_(no_move, float("inf"))
            dist = torch.where(over > 0, 0.0, float("inf")).to(torch.float64)
            pred = torch.full_like(over, -1)
            for _ in range(k):  # Bellman-Ford; paths have at most k - 1 edges
                via, arg = (dist[:, :, None] + W).min(1)
                better = via < dist
                if not bool(better.any()):
                    break
                dist = torch.where(better, via, dist)
                pred = torch.where(better, arg, pred)
            tau, target = torch.where(over < 0, dist, float("inf")).min(1)
            self.prices[act] += (tau[:, None] - dist).clamp(min=0)
            # walk every active problem's path back from its target; one row moves per edge
            batch = torch.arange(act.numel(), device=device)
            node = target
            moves, touched = [], []
            while True:
                walking = (node >= 0) & (pred[batch, node.clamp(min=0)] >= 0)
                if not bool(walking.any()):
                    break
                src = torch.where(walking, act * k + pred[batch, node.clamp(min=0)], -1)
                src_all = torch.full((P,), -1, dtype=torch.long, device=device)
                src_all[act] = src
                dst_all = torch.zeros(P, dtype=torch.long, device=device)
                dst_all[act] = node.clamp(min=0)
                rows = self._cheapest_row(src_all, dst_all)
                moves.append((rows, src[walking], act[walking] * k + node[walking]))
                touched += [moves[-1][1], moves[-1][2]]
                node = torch.where(walking, pred[batch, node.clamp(min=0)], -1)
            for rows, src, dst in moves:
                self.labels[rows] = dst % k
                self.group[rows] = dst
                self.sizes.index_add_(0, src, torch.full_like(src, -1))
                self.sizes.index_add_(0, dst, torch.ones_like(dst))
                self.moved = torch.cat([self.moved, rows])
            touched = torch.unique(torch.cat(touched))
            W0[touched] = float("inf")
            self._cheapest_moves(self._members_of(touched), W0)

    def _cheapest_moves(self, rows: torch.Tensor | None, W0: torch.Tensor) -> None:
        """Fold ``rows`` (None: all) into ``W0[a, b] = min (D[i, b] - D[i, a])`` over rows i of
        flat cluster a."""
        if rows is not None and rows.numel() == 0:
            return
        d = self.D if rows is None else self.D.index_select(0, rows)
        labels, group = (self.labels, self.group) if rows is None else (self.labels[rows], self.group[rows])
        diff = d - d.gather(1, labels[:, None])  # (r, k); 0 in the row's own column
        W0.scatter_reduce_(0, group[:, None].expand_as(diff), diff, reduce="amin")

    def _index_members(self) -> None:
        """Rows sorted by flat cluster (``by_cluster``, with ``first``/``count`` per cluster), and
        ``moved``, the rows that changed cluster since; together they list any cluster's rows
        without a pass over all rows (see :meth:`_members_of`)."""
        self.by_cluster = torch.argsort(self.group)
        self.count = torch.bincount(self.group, minlength=self.sizes.numel())
        self.first = torch.cumsum(self.count, 0) - self.count
        self.moved = self.group.new_empty(0)

    def _members_of(self, clusters: torch.Tensor) -> torch.Tensor:
        """Rows now in the flat ``clusters`` (distinct ids)."""
        count = self.count[clusters]
        offset = torch.arange(int(count.sum()), device=count.device) - (torch.cumsum(count, 0) - count).repeat_interleave(count)
        rows = torch.cat([self.by_cluster[self.first[clusters].repeat_interleave(count) + offset], self.moved.unique()])
        wanted = torch.zeros(self.sizes.numel(), dtype=torch.bool, device=rows.device)
        wanted[clusters] = True
        return rows[wanted[self.group[rows]]].unique()

    def _cheapest_row(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        """Per problem with ``src[p] >= 0``: the row of flat cluster ``src[p]`` that moves to local
        cluster ``dst[p]`` most cheaply (``argmin D[i, dst] - D[i, src]``). -> (active problems,)."""
        P = src.shape[0]
        rows = self._members_of(src[src >= 0])
        p = self.prob[rows]
        cost = self.D[rows, dst[p]] - self.D[rows, self.labels[rows]]
        best = torch.full((P,), float("inf"), dtype=cost.dtype, device=cost.device).scatter_reduce_(0, p, cost, reduce="amin")
        pick = torch.full((P,), -1, dtype=torch.long, device=cost.device)
        pick.scatter_reduce_(0, p, torch.where(cost == best[p], rows, -1), reduce="amax")
        return pick[src >= 0]

    def _cheapest_members(self, over: torch.Tensor):
        """Members of over-full clusters sorted by (cluster, switching cost).

        A stale switching cost is a lower bound of the true one, so only stale rows whose
        bound is below the ``excess + 1``-th cheapest fresh cost of their cluster can be among
        its ``excess + 1`` cheapest; those are refreshed, the rest keep their bounds.
        Returns members, their switching costs, their flat cluster ids and each cluster's
        first position in that order (P * k,).
        """
        members = (over[self.group] > 0).nonzero().squeeze(1)
        key = self.group[members]
        counts = torch.bincount(key, minlength=over.numel())
        starts = torch.cumsum(counts, 0) - counts
        stale = self.stale[members]
        delta = self.alt_val[members] - self.cur[members]
        if bool(stale.any()):
            fresh = torch.where(stale, delta.max() + 1, delta)  # stale rows sort after every fresh one
            full = (over > 0).nonzero().squeeze(1)
            threshold = torch.empty_like(self.prices).view(-1)
            threshold[full] = fresh[_segment_order(key, fresh)][starts[full] + over[full]]  # (excess+1)-th
            todo = stale & (delta < threshold[key])
            self.refresh(members[todo])
            delta = self.alt_val[members] - self.cur[members]
        order = _segment_order(key, delta)
        return members[order], delta[order], key[order], starts


def _segment_order(key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Permutation sorting by (key, value), as one sort on the composite ``key * span + value``."""
    span = 2 * float(value.abs().max()) + 2
    return (key * span + value).argsort()


def _gather_prices(prices: torch.Tensor, prob: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Prices of clusters ``idx`` (N, t) in each row's problem -> (N, t) float64."""
    if prices.shape[0] == 1:
        return prices[0][idx]
    return prices.view(-1)[prob[:, None] * prices.shape[1] + idx]


def _row_prices(prices: torch.Tensor, prob: torch.Tensor) -> torch.Tensor:
    """Prices (P, k) of each row's problem, (rows, k); a broadcastable (k,) row when P == 1."""
    return prices[0] if prices.shape[0] == 1 else prices.index_select(0, prob)


def _capacities(sizes: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(P, k) capacities: the r most demanded clusters (largest ``sizes``) of each problem hold q + 1."""
    P, k = sizes.shape
    q, r = lengths // k, lengths % k
    rank = torch.empty_like(sizes)
    order = sizes.argsort(dim=1, descending=True, stable=True)
    rank.scatter_(1, order, torch.arange(k, device=sizes.device).expand(P, k).contiguous())
    return q[:, None] + (rank < r[:, None]).long()
