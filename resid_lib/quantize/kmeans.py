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
transportation problem ``min sum_i D[i, c(i)]`` subject to those capacities with a
price (dual-variable) method: every point sits in the cluster minimising
``D[i, j] + p[j]``; while some cluster is over capacity, raise its price by exactly
the amount that pushes out its excess (the points with the smallest switching cost
``min_{l != j}(D[i, l] + p[l]) - (D[i, j] + p[j])`` move to their next-best
cluster). Prices only rise on over-full clusters, so the process ends with every
cluster at capacity and every point in a cluster of minimal price-adjusted cost,
which by complementary slackness is an optimal balanced assignment (up to a
tolerance of ``1e-6`` of the data's spread per point). Prices are warm-started
across Lloyd iterations, so later iterations need few price steps.
The ``r`` clusters that get ``q + 1`` points are the ``r`` most demanded ones
(largest unconstrained sizes at the current prices).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import ConfigError, DataError

#: price steps allowed per assignment before giving up (never reached in practice)
_MAX_PRICE_STEPS = 1_000_000
#: relative price tolerance; the balanced objective is within ``n * _EPS * spread`` of optimal
_EPS = 1e-6


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
    """Lloyd iterations on a padded batch. X (P, m, d) -> centroids (P, k, d), labels (P, m)."""
    if n_iter < 1:
        raise ConfigError(f"k-means: n_iter must be >= 1, got {n_iter}")
    out_dtype = X.dtype if X.dtype.is_floating_point else torch.float32
    X = X.float()
    P, m, d = X.shape
    device = X.device
    if lengths is None:
        lengths = torch.full((P,), m, dtype=torch.long, device=device)
    valid = torch.arange(m, device=device)[None, :] < lengths[:, None]  # (P, m)
    validf = valid.to(X.dtype)
    mean = (X * validf[:, :, None]).sum(1) / lengths[:, None].to(X.dtype)  # (P, d)
    X = (X - mean[:, None, :]) * validf[:, :, None]
    xx = (X * X).sum(-1)  # (P, m)
    chunk = chunk_size or _auto_chunk(m, k, d, P)
    rng = np.random.default_rng(seed)

    C = _kmeanspp(X, xx, valid, k, rng)
    flat = valid.reshape(-1).nonzero().squeeze(1)  # valid rows of the flattened batch
    prob = flat // m  # problem of every valid row
    prices = torch.zeros(P, k, dtype=torch.float64, device=device)
    spread = (xx.sum(1) / lengths.to(X.dtype)).double()  # mean squared norm per problem
    eps = _EPS * spread + 1e-30
    labels = torch.full((flat.numel(),), -1, dtype=torch.long, device=device)
    for _ in range(n_iter):
        D = _distances(X, C, chunk).reshape(P * m, k)[flat]  # (N, k)
        if balanced:
            new, prices = _balanced_assign(D, prob, lengths, prices, eps)
        else:
            new = D.argmin(1)
        changed = not torch.equal(new, labels)
        labels = new
        C = _centroids(X.reshape(P * m, d)[flat], prob, labels, P, k)
        if not balanced:
            C = _reseed_empty(X.reshape(P * m, d)[flat], prob, labels, C, P, k)
        if not changed:
            break
    full = torch.full((P * m,), -1, dtype=torch.long, device=device)
    full[flat] = labels
    C = C + mean[:, None, :]
    return C.to(out_dtype), full.reshape(P, m)


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
    D: torch.Tensor, prob: torch.Tensor, lengths: torch.Tensor, prices: torch.Tensor, eps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimal exactly-balanced assignment by price raising (see the module docstring).

    Args:
        D: (N, k) costs of the valid rows of all problems.
        prob: (N,) problem index of every row.
        lengths: (P,) rows per problem.
        prices: (P, k) float64 warm-start prices.
        eps: (P,) float64 price tolerance.
    Returns:
        labels (N,) with every problem's cluster sizes equal to its capacities, and the final prices.
    """
    P, k = prices.shape
    N = D.shape[0]
    device = D.device
    D = D.double()
    rows = torch.arange(N, device=device)
    cost = D + prices[prob]
    top = cost.topk(min(2, k), dim=1, largest=False)
    labels = top.indices[:, 0].clone()
    if k == 1:
        return labels, prices
    cur = top.values[:, 0].clone()
    alt_val, alt_idx = top.values[:, 1].clone(), top.indices[:, 1].clone()
    del cost, top

    # capacities: the r most demanded clusters of each problem hold q + 1 points
    sizes = torch.bincount(prob * k + labels, minlength=P * k).reshape(P, k)
    q, r = lengths // k, lengths % k
    demand_rank = torch.empty_like(sizes)
    demand_rank.scatter_(1, sizes.argsort(dim=1, descending=True, stable=True), torch.arange(k, device=device).expand(P, k))
    caps = q[:, None] + (demand_rank < r[:, None]).long()

    batch = torch.arange(P, device=device)
    for _ in range(_MAX_PRICE_STEPS):
        excess, j = (sizes - caps).max(1)  # the most over-full cluster of every problem
        if int(excess.max()) <= 0:
            return labels, prices
        active = excess > 0
        target = torch.where(active, j, -1)[prob]  # (N,) chosen cluster of each row's problem, -1 if none
        members = (labels == target).nonzero().squeeze(1)
        delta = alt_val[members] - cur[members]
        pid = prob[members]
        order = delta.argsort(stable=True)
        order = order[pid[order].argsort(stable=True)]
        members, delta, pid = members[order], delta[order], pid[order]
        counts = torch.bincount(pid, minlength=P)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(members.numel(), device=device) - starts[pid]
        move = rank < excess[pid]
        # raise the price halfway to the first point that stays (at least eps past the last leaver)
        last = delta[(starts + excess - 1).clamp(min=0)[active]]
        nxt = delta[(starts + excess)[active]]
        inc = last + torch.maximum(eps[active], (nxt - last) / 2)
        prices[batch[active], j[active]] += inc
        step = torch.zeros(P, dtype=torch.float64, device=device)
        step[active] = inc
        stay = members[~move]
        cur[stay] += step[prob[stay]]
        movers = members[move]
        old = labels[movers]
        labels[movers] = alt_idx[movers]
        cur[movers] = alt_val[movers]
        sizes.index_put_((prob[movers], old), torch.full_like(old, -1), accumulate=True)
        sizes.index_put_((prob[movers], labels[movers]), torch.ones_like(old), accumulate=True)
        # rows whose second choice was the raised cluster, and the movers, need a new second choice
        stale = alt_idx == target
        stale[movers] = True
        stale = stale.nonzero().squeeze(1)
        c = D[stale] + prices[prob[stale]]
        c[rows[: stale.numel()], labels[stale]] = float("inf")
        alt_val[stale], alt_idx[stale] = c.min(1)
    raise RuntimeError("balanced assignment did not converge")  # pragma: no cover
