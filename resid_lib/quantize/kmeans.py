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

import math

import numpy as np
import torch

from ..errors import ConfigError, DataError

#: nearest clusters tried first when a row looks for its cheapest other cluster
_CANDIDATES = 8
#: price steps allowed per assignment before giving up (never reached in practice)
_MAX_PRICE_STEPS = 1_000_000
#: price tolerance of the first Lloyd iteration, as a fraction of the mean best/second-best gap
_EPS_START = 0.5
#: the price tolerance shrinks by this factor per Lloyd iteration ...
_EPS_FACTOR = 4.0
#: ... down to this fraction of the gap
_EPS_FINAL = 0.02
#: Lloyd stops once the squared centroid shift is below this times the mean per-dimension variance ...
_TOL = 1e-4
#: ... or the within-cluster sum of squares improved by less than this fraction
_RTOL = 1e-4
STEPS=[]
DEBUG=False
import time
T0=0
SSE=[]


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


def balanced_sizes(n: int, k: int) -> tuple[int, int]:
    """``(q, r)`` with ``n = q k + r``: r clusters hold q + 1 points, the others q."""
    return n // k, n % k


def within_sse(X: torch.Tensor, centroids: torch.Tensor, labels: torch.Tensor) -> float:
    """Within-cluster sum of squared distances. X (n, d), centroids (k, d), labels (n,)."""
    return float(((X.double() - centroids.double()[labels]) ** 2).sum())


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
    """Greedy k-means++ seeding. X (P, m, d) centered, xx (P, m) squared norms -> (P, k, d)."""
    P, m, d = X.shape
    lengths = valid.sum(1)
    batch = torch.arange(P, device=X.device)
    n_trials = 2 + int(math.log(k))
    first = torch.as_tensor(rng.random(P), dtype=torch.float64, device=X.device)
    first = torch.clamp((first * lengths).long(), max=m - 1)
    C = torch.empty(P, k, d, dtype=X.dtype, device=X.device)
    C[:, 0] = X[batch, first]
    closest = torch.clamp(xx - 2 * torch.einsum("pmd,pd->pm", X, C[:, 0]) + xx[batch, first][:, None], min=0) * valid
    for c in range(1, k):
        cum = torch.cumsum(closest.double(), dim=1)
        u = torch.as_tensor(rng.random((P, n_trials)), dtype=torch.float64, device=X.device) * cum[:, -1:]
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
    """Lloyd iterations on a padded batch. X (P, m, d) -> centroids (P, k, d), labels (P, m).

    Stops early once, in every problem, the squared centroid shift is below ``_TOL`` times its
    mean per-dimension variance (the scikit-learn criterion) or the within-cluster sum of
    squares improved by less than ``_RTOL`` of itself.
    """
    if n_iter < 1:
        raise ConfigError(f"k-means: n_iter must be >= 1, got {n_iter}")
    out_dtype = X.dtype if X.dtype.is_floating_point else torch.float32
    X = X.float()
    P, m, d = X.shape
    device = X.device
    if lengths is None:
        lengths = torch.full((P,), m, dtype=torch.long, device=device)
    padded = bool((lengths < m).any())
    valid = torch.arange(m, device=device)[None, :] < lengths[:, None]  # (P, m)
    if padded:
        X = X * valid[:, :, None]
    mean = X.sum(1) / lengths[:, None]  # (P, d)
    X = X - mean[:, None, :]
    if padded:
        X = X * valid[:, :, None]
    xx = (X * X).sum(-1)  # (P, m)
    chunk = chunk_size or _auto_chunk(m, k, d, P)
    rng = np.random.default_rng(seed)

    C = _kmeanspp(X, xx, valid, k, rng)
    flat = valid.reshape(-1).nonzero().squeeze(1) if padded else None  # valid rows of the flat batch
    prob = flat // m if padded else torch.arange(P, device=device).repeat_interleave(m)
    Xv = X.reshape(P * m, d)[flat] if padded else X.reshape(P * m, d)
    spread = (xx.sum(1) / lengths).double()  # mean squared norm = total variance, per problem
    tol = _TOL * spread / d
    prices = torch.zeros(P, k, dtype=torch.float64, device=device)
    base = xx.sum(1).double()  # sse = base + sum of the chosen D entries
    prev_sse = torch.full_like(base, float("inf"))
    for it in range(n_iter):
        D = _distances(X, C, chunk).reshape(P * m, k)
        if padded:
            D = D[flat]
        if balanced:
            # the price tolerance shrinks over the iterations: early assignments need not be exact
            rel_eps = max(_EPS_FINAL, _EPS_START / _EPS_FACTOR**it)
            labels, prices = _balanced_assign(D, prob, lengths, prices, rel_eps)
        else:
            labels = D.argmin(1)
        new_C = _centroids(Xv, prob, labels, P, k)
        if not balanced:
            new_C = _reseed_empty(Xv, prob, labels, new_C, P, k)
        shift = ((new_C - C) ** 2).sum((1, 2)).double()
        C = new_C
        sse = base.index_add(0, prob, D.gather(1, labels[:, None]).squeeze(1).double())
        SSE.append(float(sse.sum()))
        if DEBUG: print('iter', it, 'steps', STEPS[-1] if balanced else 0, 'sse', float(sse.sum()), 'time', time.time()-T0, flush=True)
        stalled = prev_sse - sse <= _RTOL * sse
        prev_sse = sse
        if bool(((shift <= tol) | stalled).all()) and (not balanced or rel_eps <= _EPS_FINAL):
            break
    if padded:
        full = torch.full((P * m,), -1, dtype=torch.long, device=device)
        full[flat] = labels
        labels = full
    C = C + mean[:, None, :]
    return C.to(out_dtype), labels.reshape(P, m)


def _centroids(Xv: torch.Tensor, prob: torch.Tensor, labels: torch.Tensor, P: int, k: int) -> torch.Tensor:
    """Cluster means. Xv (N, d) valid rows, prob/labels (N,) -> (P, k, d); empty clusters get 0."""
    key = prob * k + labels
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
    market.clear()
    return market.labels, prices


class _Market:
    """State of one balanced assignment: rows, clusters with capacities, and cluster prices.

    Each row keeps ``cur`` (price-adjusted cost in its cluster) and ``alt_idx``/``alt_val``
    (its cheapest other cluster). Raising a price can only make other rows' ``alt_val`` too
    low, never too high, so rows whose next-best cluster was raised are only flagged
    ``stale`` and recomputed when their value matters. Recomputing looks at the row's
    ``_CANDIDATES`` nearest clusters first; the answer is exact when it beats the bound
    "next nearest distance + lowest price", else the full row is scanned.
    """

    def __init__(self, D: torch.Tensor, prob: torch.Tensor, lengths: torch.Tensor, prices: torch.Tensor, rel_eps: float):
        P, k = prices.shape
        self.D, self.prob, self.prices, self.k = D, prob, prices, k
        top = (D + prices[prob]).topk(2, dim=1, largest=False)
        self.labels, self.cur = top.indices[:, 0].contiguous(), top.values[:, 0].contiguous()
        self.alt_idx, self.alt_val = top.indices[:, 1].contiguous(), top.values[:, 1].contiguous()
        del top
        gap = torch.zeros(P, dtype=torch.float64, device=D.device).index_add_(0, prob, self.alt_val - self.cur)
        self.eps = rel_eps * gap / lengths + 1e-12  # (P,)
        self.group = prob * k + self.labels  # (N,) flat cluster id of every row
        self.sizes = torch.bincount(self.group, minlength=P * k)  # (P * k,)
        self.caps = _capacities(self.sizes.reshape(P, k), lengths).reshape(-1)
        self.stale = torch.zeros_like(self.labels, dtype=torch.bool)
        t = min(k, _CANDIDATES)
        near = D.topk(min(k, t + 1), dim=1, largest=False)
        self.cand_idx, self.cand_d = near.indices[:, :t].contiguous(), near.values[:, :t].contiguous()
        self.beyond = near.values[:, t] if k > t else torch.full_like(D[:, 0], float("inf"))

    def refresh(self, rows: torch.Tensor) -> None:
        """Recompute the cheapest other cluster of ``rows`` at the current prices."""
        if rows.numel() == 0:
            return
        prices = self.prices[self.prob[rows]]  # (r, k)
        idx = self.cand_idx[rows]
        c = self.cand_d[rows] + prices.gather(1, idx)
        c[idx == self.labels[rows, None]] = float("inf")
        val, pos = c.min(1)
        best = idx.gather(1, pos[:, None]).squeeze(1)
        unsure = (val > self.beyond[rows] + prices.min(1).values).nonzero().squeeze(1)
        if unsure.numel():
            full = self.D[rows[unsure]] + prices[unsure]
            full[torch.arange(unsure.numel(), device=full.device), self.labels[rows[unsure]]] = float("inf")
            val[unsure], best[unsure] = full.min(1)
        self.alt_val[rows], self.alt_idx[rows] = val, best
        self.stale[rows] = False

    def clear(self) -> None:
        """Raise prices of over-full clusters until every cluster is exactly at capacity.

        Every step raises the price of every over-full cluster past the switching cost
        ``alt_val - cur`` of its ``excess``-th cheapest member (plus ``eps``, halfway to the
        next member), and those members move to their cheapest other cluster at the new
        prices unless that one rose too and staying became cheaper. Every row stays within
        ``eps`` of its cheapest cluster and prices only rise, so the loop ends eps-optimal.
        """
        k, device = self.k, self.D.device
        for _ in range(_MAX_PRICE_STEPS):
            over = self.sizes - self.caps  # (P * k,)
            if int(over.max()) <= 0:
                STEPS.append(_)
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

    def _cheapest_members(self, over: torch.Tensor):
        """Members of over-full clusters sorted by (cluster, switching cost), all fresh.

        Returns members, their switching costs, their flat cluster ids and each cluster's
        first position in that order (P * k,).
        """
        members = (over[self.group] > 0).nonzero().squeeze(1)
        self.refresh(members[self.stale[members]])
        key = self.group[members]
        delta = self.alt_val[members] - self.cur[members]
        span = 2 * float(delta.abs().max()) + 1
        order = (key * span + delta).argsort()
        counts = torch.bincount(key, minlength=over.numel())
        return members[order], delta[order], key[order], torch.cumsum(counts, 0) - counts


def _capacities(sizes: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(P, k) capacities: the r most demanded clusters (largest ``sizes``) of each problem hold q + 1."""
    P, k = sizes.shape
    q, r = lengths // k, lengths % k
    rank = torch.empty_like(sizes)
    order = sizes.argsort(dim=1, descending=True, stable=True)
    rank.scatter_(1, order, torch.arange(k, device=sizes.device).expand(P, k).contiguous())
    return q[:, None] + (rank < r[:, None]).long()
