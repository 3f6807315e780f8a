"""K-means in torch: plain, exactly balanced, and over many independent problems at once.

All variants share one Lloyd engine that solves ``P`` independent problems, each a set of
rows of one ``(n, d)`` matrix (a single problem is ``P = 1``), so the same code runs on CPU
and GPU and the per-parent clusterings of GAOQ run together instead of in a Python loop.

Independent problems. A problem's result depends only on its rows and its seed, never on
which problems share its batch, how the work is chunked, or which process solves it: every
problem draws from its own numpy Generator (seeded with ``seed``, or its own entry of a
list of seeds, so CPU and GPU pick the same points), stops on its own convergence test, and
every reduction over its rows runs in row order. The engine solves problems in batches of
bounded size (``_BATCH_FLOATS``) and computes distances in row chunks
(:mod:`~resid_lib.quantize.chunks`), so memory stays proportional to the data. The one
``(rows, k)`` matrix kept whole is a batch's cost matrix for the balanced assignment.

Initialisation is k-means++ (greedy with ``2 + ln k`` candidates per step, the best
reduction of the potential wins, when clusters will be large). Problems with more than
``_SAMPLE_ROWS_PER_CLUSTER`` rows per cluster are first clustered on a uniform sample of
that size, whose centroids and cluster prices start the iterations on all rows.

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

Only the labels a problem returns need exact balance. The auction's end game (a few units
bouncing between full clusters, settled by shortest paths) is the slow part, so the
iterations before a problem's last keep the auction's near-balanced result (at most
``_END_GAME * k`` rows over capacity); once a problem meets its stopping test (or reaches
``n_iter``) it runs one more iteration with the exact assignment, whose labels and centroids
it returns. The iterations on a sample, of which only centroids and prices are kept, are
never exact.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, Sequence

import numpy as np
import torch

from ..device import single_thread_on_cpu
from ..errors import ConfigError, DataError
from .chunks import ROW_TILE, chunk_rows, row_chunks

#: cheapest clusters (at least; k / 8 for large k) tried first when a row looks for its next best
_CANDIDATES = 8
#: problems with more rows than this per cluster are first clustered on a sample of that size
_SAMPLE_ROWS_PER_CLUSTER = 128
#: k-means++ tries several candidates per seed only when clusters average this many rows
_GREEDY_MIN_ROWS = 32
#: batches with at most this many multiply-adds per distance pass run single-threaded on CPU
_SMALL_WORK = 2**30
#: a batch of problems holds at most this many floats of centered rows plus costs (rows x (d + k));
#: small batches finish sooner, as a batch's auction takes as many steps as its slowest problem
_BATCH_FLOATS = 2**23
#: the auction hands over to shortest paths once this many steps did not lower a problem's excess ...
_STALL_STEPS = 3
#: ... and the excess is at most this fraction of its clusters (the end game, not a price war)
_END_GAME = 0.25

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

#: one problem's seed: an int or a tuple of ints (numpy SeedSequence entropy)
Seed = int | Sequence[int]


def kmeans(
    X: torch.Tensor, k: int, *, balanced: bool = False, n_iter: int = 30, seed: Seed = 0,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """K-means (k-means++ init), exactly balanced with ``balanced=True``. X (n, d) -> centroids (k, d), labels (n,) int64."""
    X = _check_single(X, k)
    index = torch.arange(X.shape[0], device=X.device)[None, :]
    centroids, labels = _lloyd(X, index, k, balanced=balanced, n_iter=n_iter, seed=[seed], chunk_size=chunk_size)
    return centroids[0], labels[0, : X.shape[0]]


def balanced_kmeans(
    X: torch.Tensor, k: int, *, n_iter: int = 30, seed: Seed = 0, chunk_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exactly balanced: cluster sizes differ by at most one. X (n, d) -> centroids (k, d), labels (n,)."""
    return kmeans(X, k, balanced=True, n_iter=n_iter, seed=seed, chunk_size=chunk_size)


def kmeans_groups(
    X: torch.Tensor,
    index: torch.Tensor,
    k: int,
    *,
    balanced: bool = False,
    n_iter: int = 30,
    seed: Seed | Sequence[Seed] = 0,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """K-means (exactly balanced with ``balanced=True``) of every group of rows of X on its own.

    No copy of X is made: the groups' rows are gathered chunk by chunk.

    Args:
        X: (n, d) rows.
        index: (G, m) int64 rows of X in each group, valid entries first, -1 after them
            (:func:`group_rows` builds it); every group needs at least k rows.
        seed: one seed for every group, or a list with one per group (an int or a tuple of
            ints each); a group's result depends only on its rows and its seed.
    Returns:
        centroids (G, k, d), labels (G, m) int64 cluster of every entry of ``index`` (-1 on padding).
    """
    if not isinstance(X, torch.Tensor) or X.ndim != 2 or X.shape[1] == 0:
        raise DataError(f"k-means: expected a 2-D tensor (n, d), got {getattr(X, 'shape', type(X))}")
    index = torch.as_tensor(index, dtype=torch.long, device=X.device)
    lengths = (index >= 0).sum(1)
    _check_lengths(lengths, k)
    _check_finite(X, index[index >= 0])
    centroids, labels = _lloyd(X, index, k, balanced=balanced, n_iter=n_iter, seed=seed, chunk_size=chunk_size)
    return centroids, labels[:, : index.shape[1]]


def group_rows(groups: torch.Tensor, n_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded row indices per group.

    Args:
        groups: (n,) int64 group of every row, values in ``0..n_groups-1``.
    Returns:
        index (n_groups, m_max) int64 (rows in increasing order, padding -1) and lengths (n_groups,).
    """
    lengths = torch.bincount(groups, minlength=n_groups)
    order = torch.argsort(groups, stable=True)
    starts = torch.cumsum(lengths, 0) - lengths
    rank = torch.arange(len(groups), device=groups.device) - starts[groups[order]]
    index = torch.full((n_groups, int(lengths.max())), -1, dtype=torch.long, device=groups.device)
    index[groups[order], rank] = order
    return index, lengths


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
    labels, _ = _balanced_assign(cost, prob, lengths, prices, tolerance, torch.ones(1, dtype=torch.bool, device=cost.device))
    return labels


def balanced_sizes(n: int, k: int) -> tuple[int, int]:
    """``(q, r)`` with ``n = q k + r``: r clusters hold q + 1 points, the others q."""
    return n // k, n % k


def within_sse(X: torch.Tensor, centroids: torch.Tensor, labels: torch.Tensor) -> float:
    """Within-cluster sum of squared distances. X (n, d), centroids (k, d), labels (n,)."""
    total = 0.0
    C = centroids.double()
    for rows in row_chunks(X.shape[0], chunk_rows(X.shape[1])):
        total += float(((X[rows].double() - C[labels[rows]]) ** 2).sum())
    return total


# ------------------------------------------------------------------ validation


def _check_k(n: int, k: int, where: str) -> None:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k-means: number of clusters must be a positive integer, got {k!r}")
    if n < k:
        raise DataError(f"k-means: {where} has {n} items, fewer than the {k} clusters requested")


def _check_lengths(lengths: torch.Tensor, k: int) -> None:
    p = int(lengths.argmin())
    _check_k(int(lengths[p]), k, f"group {p}")


def _check_finite(X: torch.Tensor, rows: torch.Tensor | None = None) -> None:
    """DataError when a row of X (or of ``X[rows]``) holds NaN or Inf; checked in row chunks."""
    n = X.shape[0] if rows is None else rows.shape[0]
    for part in row_chunks(n, chunk_rows(X.shape[1])):
        if not bool(torch.isfinite(X[part] if rows is None else X[rows[part]]).all()):
            raise DataError("k-means: the input contains NaN or Inf")


def _check_single(X: torch.Tensor, k: int) -> torch.Tensor:
    if not isinstance(X, torch.Tensor):
        X = torch.as_tensor(np.asarray(X))
    if X.ndim != 2 or X.shape[1] == 0:
        raise DataError(f"k-means: expected a 2-D tensor (n, d), got shape {tuple(X.shape)}")
    _check_k(X.shape[0], k, "the input")
    _check_finite(X)
    return X


def _problem_seeds(seed: Seed | Sequence[Seed], P: int) -> list[Seed]:
    if isinstance(seed, (int, np.integer)):
        return [int(seed)] * P
    seeds = list(seed)
    if len(seeds) != P:
        raise ConfigError(f"k-means: {len(seeds)} seeds for {P} problems")
    return seeds


# ------------------------------------------------------------------ engine


def _lloyd(
    X: torch.Tensor,
    index: torch.Tensor,
    k: int,
    *,
    balanced: bool,
    n_iter: int,
    seed: Seed | Sequence[Seed],
    chunk_size: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """K-means of P problems, each the rows ``X[index[p, :lengths[p]]]`` (valid entries first, then -1).

    Problems are grouped by how they start (on a sample or not, greedy k-means++ or not) and
    solved in batches of consecutive problems holding at most ``_BATCH_FLOATS`` floats; as every
    problem is independent of its batch, the grouping changes nothing but the memory peak.
    Returns centroids (P, k, d) in X's floating dtype, labels (P, m') with m' >= m, -1 on padding.
    """
    if n_iter < 1:
        raise ConfigError(f"k-means: n_iter must be >= 1, got {n_iter}")
    out_dtype = X.dtype if X.dtype.is_floating_point else torch.float32
    X = X.float()
    P, d = index.shape[0], X.shape[1]
    seeds = _problem_seeds(seed, P)
    index = torch.nn.functional.pad(index, (0, -index.shape[1] % ROW_TILE), value=-1)
    lengths = (index >= 0).sum(1)
    limit = _SAMPLE_ROWS_PER_CLUSTER * k
    sampled = lengths > limit
    greedy = lengths.clamp(max=limit) >= _GREEDY_MIN_ROWS * k
    centroids = torch.empty(P, k, d, dtype=torch.float32, device=X.device)
    labels = torch.full(index.shape, -1, dtype=torch.long, device=X.device)
    for mode in torch.unique(sampled.long() * 2 + greedy.long()).tolist():
        members = (sampled.long() * 2 + greedy.long() == mode).nonzero().squeeze(1)
        for batch in _batches(members, lengths, k + d):
            width = -(-int(lengths[batch].max()) // ROW_TILE) * ROW_TILE
            C, L = _solve(X, index[batch, :width], lengths[batch], k, balanced, n_iter,
                          [seeds[p] for p in batch.tolist()], bool(mode & 2), bool(mode & 1), chunk_size)
            centroids[batch] = C
            labels[batch, :width] = L
    return centroids.to(out_dtype), labels


def _batches(members: torch.Tensor, lengths: torch.Tensor, width: int) -> Iterator[torch.Tensor]:
    """Consecutive runs of ``members`` whose padded rows times ``width`` stay within ``_BATCH_FLOATS``."""
    rows = ((lengths[members] + ROW_TILE - 1) // ROW_TILE * ROW_TILE).tolist()
    start, longest = 0, 0
    for i, r in enumerate(rows):
        longest = max(longest, r)
        if i > start and (i - start + 1) * longest * width > _BATCH_FLOATS:
            yield members[start:i]
            start, longest = i, r
    yield members[start:]


def _solve(
    X: torch.Tensor,
    index: torch.Tensor,
    lengths: torch.Tensor,
    k: int,
    balanced: bool,
    n_iter: int,
    seeds: list[Seed],
    sampled: bool,
    greedy: bool,
    chunk_size: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of problems that start alike. -> centroids (P, k, d), labels (P, m).

    Every problem is centered on its mean (distances of centered rows lose less precision).
    A sampled problem is seeded and clustered on ``_SAMPLE_ROWS_PER_CLUSTER * k`` of its rows
    first; the iterations on all rows then start from those centroids and prices.
    """
    P, m = index.shape
    rngs = [np.random.default_rng(s) for s in seeds]
    work = P * m * k * X.shape[1]
    with single_thread_on_cpu(X.device) if work <= _SMALL_WORK else contextlib.nullcontext():
        mean = _means(X, index, lengths, chunk_size)
        trials = 2 + int(math.log(k)) if greedy else 1
        if sampled:
            limit = _SAMPLE_ROWS_PER_CLUSTER * k
            picks = [torch.as_tensor(rng.random(int(n)), device=X.device).argsort()[:limit] for rng, n in zip(rngs, lengths.tolist())]
            sample = _centered(X, torch.stack([index[p, rows] for p, rows in enumerate(picks)]), mean)
            sample_lengths = torch.full_like(lengths, limit)
            C = _kmeanspp(sample, sample_lengths, k, rngs, trials)
            own = torch.arange(P * limit, device=X.device).reshape(P, limit)
            C, _, prices = _iterate(sample.reshape(P * limit, -1), own, sample_lengths, None, C, None, k,
                                    balanced, n_iter, _EPS_START, chunk_size, exact=False)
            eps_start = _EPS_WARM
            del sample
        else:
            C = _kmeanspp(_centered(X, index, mean), lengths, k, rngs, trials)
            prices, eps_start = None, _EPS_START
        C, labels, _ = _iterate(X, index, lengths, mean, C, prices, k, balanced, n_iter, eps_start, chunk_size)
    return C + mean[:, None, :], labels


def _flat(index: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Valid rows of every problem, problem-major (N,), and the problem of each (N,)."""
    return index[index >= 0], torch.repeat_interleave(torch.arange(len(lengths), device=index.device), lengths)


def _rows(X: torch.Tensor, rows: torch.Tensor, prob: torch.Tensor, mean: torch.Tensor | None) -> torch.Tensor:
    """A fresh (r, d) copy of ``X[rows]`` less each row's problem mean (P, d) (None: as they are)."""
    x = X.index_select(0, rows)
    if mean is not None:
        x -= mean[0] if len(mean) == 1 else mean.index_select(0, prob)
    return x


def _means(X: torch.Tensor, index: torch.Tensor, lengths: torch.Tensor, chunk_size: int | None) -> torch.Tensor:
    """(P, d) float32 mean of every problem's rows, summed in float64 in row order."""
    rows, prob = _flat(index, lengths)
    sums = torch.zeros(len(lengths), X.shape[1], dtype=torch.float64, device=X.device)
    for part in row_chunks(len(rows), chunk_rows(X.shape[1], chunk_size)):
        sums.index_add_(0, prob[part], X.index_select(0, rows[part]).double())
    return (sums / lengths[:, None]).float()


def _centered(X: torch.Tensor, index: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """(P, m, d) copy of every problem's rows minus its mean, zero on padding."""
    P, m = index.shape
    out = torch.empty(P, m, X.shape[1], dtype=X.dtype, device=X.device)
    for part in row_chunks(P, max(1, chunk_rows(X.shape[1]) // m)):
        block = out[part]
        torch.index_select(X, 0, index[part].clamp(min=0).reshape(-1), out=block.view(-1, X.shape[1]))
        block -= mean[part, None, :]
        block.masked_fill_((index[part] < 0)[:, :, None], 0.0)
    return out


def _dots(X: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """X (P, m, d) . cand (P, t, d) -> (P, m, t); one candidate is padded to two (see ``chunks``)."""
    if cand.shape[1] == 1:
        return torch.bmm(X, torch.cat([cand, torch.zeros_like(cand)], 1).transpose(1, 2))[:, :, :1]
    return torch.bmm(X, cand.transpose(1, 2))


def _kmeanspp(X: torch.Tensor, lengths: torch.Tensor, k: int, rngs: list[np.random.Generator], trials: int) -> torch.Tensor:
    """k-means++ seeding of centered, zero-padded X (P, m, d) -> (P, k, d).

    Greedy (``trials`` > 1 candidates per seed, the one lowering the potential most wins) or
    plain (one candidate). Problem p draws ``1 + (k - 1) * trials`` uniforms from ``rngs[p]``.
    Runs single-threaded on CPU (a loop of k small steps).
    """
    P, m, d = X.shape
    device = X.device
    with single_thread_on_cpu(device):
        draws = torch.as_tensor(np.stack([rng.random(1 + (k - 1) * trials) for rng in rngs]), device=device)
        valid = torch.arange(m, device=device)[None, :] < lengths[:, None]
        xx = torch.linalg.vector_norm(X, dim=-1) ** 2  # (P, m), 0 on padding
        batch = torch.arange(P, device=device)
        first = torch.minimum((draws[:, 0] * lengths).long(), lengths - 1)
        C = torch.empty(P, k, d, dtype=X.dtype, device=device)
        C[:, 0] = X[batch, first]
        closest = torch.clamp(xx - 2 * _dots(X, C[:, :1])[:, :, 0] + xx[batch, first][:, None], min=0) * valid
        for c in range(1, k):
            cum = torch.cumsum(closest.double(), dim=1)
            u = draws[:, 1 + (c - 1) * trials : 1 + c * trials] * cum[:, -1:]
            cand = torch.minimum(torch.searchsorted(cum, u), lengths[:, None] - 1)  # (P, t)
            cx = X[batch[:, None], cand]  # (P, t, d)
            dist = xx[:, :, None] - 2 * _dots(X, cx) + xx[batch[:, None], cand][:, None, :]
            dist = torch.minimum(closest[:, :, None], torch.clamp(dist, min=0)) * valid[:, :, None]
            best = dist.sum(1).argmin(1) if trials > 1 else torch.zeros_like(batch)
            closest = dist[batch, :, best]
            C[:, c] = cx[batch, best]
    return C


def _iterate(
    X: torch.Tensor,
    index: torch.Tensor,
    lengths: torch.Tensor,
    mean: torch.Tensor | None,
    C: torch.Tensor,
    prices: torch.Tensor | None,
    k: int,
    balanced: bool,
    n_iter: int,
    eps_start: float,
    chunk_size: int | None,
    exact: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lloyd iterations from centroids C (P, k, d) on the rows ``X[index]`` minus ``mean`` (P, d)
    (None: X is centered).

    The price tolerance of the balanced assignment starts at ``eps_start`` and halves every
    iteration down to ``_EPS_FINAL``: early assignments need not be exact. A problem has
    converged once the tolerance is final and its squared centroid shift is below ``_TOL``
    times its mean per-dimension variance (the scikit-learn criterion) or its within-cluster
    sum of squares improved by less than ``_RTOL``; with ``exact`` it then runs one last
    iteration with an exactly balanced assignment (see the module docstring), and stops; the
    others go on without it.
    Returns centroids (P, k, d), labels (P, m) with -1 on padding, prices (P, k).
    """
    P, m = index.shape
    d, device = X.shape[1], X.device
    rows, prob = _flat(index, lengths)
    base = _sum_by_problem(X, rows, prob, mean, P, chunk_size)  # sse = base + the chosen entries of D
    tol = _TOL * base / lengths / d
    prices = torch.zeros(P, k, dtype=torch.float64, device=device) if prices is None else prices
    labels = torch.full_like(rows, -1)
    prev_sse = torch.full((P,), float("inf"), dtype=torch.float64, device=device)
    active = torch.ones(P, dtype=torch.bool, device=device)
    last = torch.zeros(P, dtype=torch.bool, device=device)  # the next iteration is the problem's last
    renumber = torch.empty(P, dtype=torch.long, device=device)
    for it in range(n_iter):
        act = active.nonzero().squeeze(1)
        mine = active[prob]
        renumber[act] = torch.arange(len(act), device=device)
        rows_a, prob_a, mean_a = rows[mine], renumber[prob[mine]], None if mean is None else mean[act]
        D = _distances(X, index[act], lengths[act], mean_a, C[act], chunk_size)
        rel_eps = max(_EPS_FINAL, eps_start / 2**it)
        if balanced:
            exact_a = last[act] | (exact and it == n_iter - 1)
            labels_a, prices[act] = _balanced_assign(D, prob_a, lengths[act], prices[act], rel_eps, exact_a)
        else:
            labels_a = D.argmin(1)
        new_C = _centroids(X, rows_a, prob_a, labels_a, mean_a, len(act), k, chunk_size)
        if not balanced:
            new_C = _reseed_empty(X, rows_a, prob_a, labels_a, mean_a, new_C, chunk_size)
        shift = ((new_C - C[act]) ** 2).sum(2).double().sum(1)
        chosen = D.gather(1, labels_a[:, None]).squeeze(1).double()
        sse = base[act] + torch.zeros_like(shift).index_add_(0, prob_a, chosen)
        del D
        C[act] = new_C
        labels[mine] = labels_a
        stalled = prev_sse[act] - sse <= _RTOL * sse
        prev_sse[act] = sse
        if rel_eps <= _EPS_FINAL:
            done = (shift <= tol[act]) | stalled
            if balanced and exact:
                active[act[last[act]]] = False
                last[act[done]] = True
            else:
                active[act[done]] = False
            if not bool(active.any()):
                break
    out = torch.full(index.shape, -1, dtype=torch.long, device=device)
    out[index >= 0] = labels
    return C, out, prices


def _sum_by_problem(
    X: torch.Tensor, rows: torch.Tensor, prob: torch.Tensor, mean: torch.Tensor | None, P: int, chunk_size: int | None
) -> torch.Tensor:
    """(P,) float64 sum of squared norms of every problem's centered rows, in row order."""
    total = torch.zeros(P, dtype=torch.float64, device=X.device)
    for part in row_chunks(len(rows), chunk_rows(X.shape[1], chunk_size)):
        x = _rows(X, rows[part], prob[part], mean)
        total.index_add_(0, prob[part], (torch.linalg.vector_norm(x, dim=1) ** 2).double())
    return total


def _distances(
    X: torch.Tensor, index: torch.Tensor, lengths: torch.Tensor, mean: torch.Tensor | None, C: torch.Tensor,
    chunk_size: int | None,
) -> torch.Tensor:
    """``||c||^2 - 2 x.c`` (the squared distance without the per-row ``||x||^2``) of every valid row.

    X (n, d) rows, index (P, m), mean (P, d) or None, C (P, k, d) -> (N, k), the valid rows
    problem-major. Computed on blocks of whole ``ROW_TILE`` row tiles of several problems.
    """
    P, m = index.shape
    k, d = C.shape[1], C.shape[2]
    cc = (C * C).sum(-1)[:, None, :]
    Ct = C.transpose(1, 2)
    starts = torch.cumsum(lengths, 0) - lengths
    block = chunk_rows(max(k, d), chunk_size)
    R = min(m, block)
    out = torch.empty(int(lengths.sum()), k, dtype=X.dtype, device=X.device)
    for part in row_chunks(P, max(1, block // R)):
        width = -(-int(lengths[part].max()) // ROW_TILE) * ROW_TILE
        for s in range(0, width, R):
            idx = index[part, s : min(width, s + R)]
            x = X.index_select(0, idx.clamp(min=0).reshape(-1)).view(*idx.shape, d)  # (p, r, d)
            if mean is not None:
                x -= mean[part, None, :]
            dist = torch.baddbmm(cc[part], x, Ct[part], beta=1.0, alpha=-2.0)
            ok = idx >= 0
            if part.stop - part.start == 1:
                n_ok = int(ok.sum())
                first = int(starts[part.start]) + s
                out[first : first + n_ok] = dist[0, :n_ok]
            else:
                pos = starts[part, None] + s + torch.arange(idx.shape[1], device=X.device)
                out[pos[ok]] = dist[ok]
    return out


def _centroids(
    X: torch.Tensor, rows: torch.Tensor, prob: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor | None,
    P: int, k: int, chunk_size: int | None,
) -> torch.Tensor:
    """Cluster means of the centered rows ``X[rows] - mean[prob]`` -> (P, k, d); empty clusters get 0.

    Summed in row order; ``index_add_`` runs single-threaded on CPU, where it is several times
    faster than threaded.
    """
    key = prob * k + labels
    sums = torch.zeros(P * k, X.shape[1], dtype=X.dtype, device=X.device)
    with single_thread_on_cpu(X.device):
        for part in row_chunks(len(rows), chunk_rows(X.shape[1], chunk_size)):
            sums.index_add_(0, key[part], _rows(X, rows[part], prob[part], mean))
    counts = torch.bincount(key, minlength=P * k).to(X.dtype)
    return (sums / counts.clamp(min=1)[:, None]).reshape(P, k, -1)


def _reseed_empty(
    X: torch.Tensor, rows: torch.Tensor, prob: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor | None,
    C: torch.Tensor, chunk_size: int | None,
) -> torch.Tensor:
    """Move every empty cluster onto the row farthest from its own centroid (plain k-means only)."""
    P, k, d = C.shape
    counts = torch.bincount(prob * k + labels, minlength=P * k).reshape(P, k)
    if bool((counts > 0).all()):
        return C
    far = torch.empty(len(rows), dtype=X.dtype, device=X.device)
    for part in row_chunks(len(rows), chunk_rows(d, chunk_size)):
        far[part] = ((_rows(X, rows[part], prob[part], mean) - C[prob[part], labels[part]]) ** 2).sum(1)
    for p in (counts == 0).any(1).nonzero().squeeze(1).tolist():
        mine = (prob == p).nonzero().squeeze(1)
        empties = (counts[p] == 0).nonzero().squeeze(1)
        picks = rows[mine[far[mine].topk(len(empties)).indices]]
        C[p, empties] = X[picks] - (0 if mean is None else mean[p])
    return C


def _balanced_assign(
    D: torch.Tensor, prob: torch.Tensor, lengths: torch.Tensor, prices: torch.Tensor, rel_eps: float,
    exact: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced, eps-optimal assignment by price raising (see the module docstring).

    Args:
        D: (N, k) costs of the valid rows of all problems.
        prob: (N,) problem index of every row.
        lengths: (P,) rows per problem.
        prices: (P, k) float64 warm-start prices (updated in place).
        rel_eps: price tolerance as a fraction of each problem's mean best/second-best gap.
        exact: (P,) bool, the problems whose sizes must equal their capacities; the others may
            keep up to ``_END_GAME * k`` rows over capacity (the auction's stalled end game).
    Returns:
        labels (N,) and the prices.
    """
    if prices.shape[1] == 1:
        return torch.zeros(D.shape[0], dtype=torch.long, device=D.device), prices
    market = _Market(D, prob, lengths, prices, rel_eps)
    with single_thread_on_cpu(D.device):
        market.clear(exact)
    return market.labels, prices


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
        self.t = min(k, max(_CANDIDATES, k // 8))
        N, device = len(D), D.device
        self.cand_idx = torch.empty(N, self.t, dtype=torch.long, device=device)
        self.cand_d = torch.empty(N, self.t, dtype=D.dtype, device=device)
        self.beyond, self.cur, self.alt_val = (torch.empty(N, dtype=torch.float64, device=device) for _ in range(3))
        self.labels, self.alt_idx = torch.empty(N, dtype=torch.long, device=device), torch.empty(N, dtype=torch.long, device=device)
        for part in row_chunks(N, chunk_rows(3 * k)):
            idx, dist, self.beyond[part] = self._shortlist(D[part], prob[part])
            cost, order = (dist.double() + _gather_prices(prices, prob[part], idx)).sort(1)
            self.cand_idx[part], self.cand_d[part] = idx.gather(1, order), dist.gather(1, order)
            self.labels[part], self.alt_idx[part] = self.cand_idx[part, 0], self.cand_idx[part, 1]
            self.cur[part], self.alt_val[part] = cost[:, 0], cost[:, 1]
        gap = torch.zeros(P, dtype=torch.float64, device=D.device).index_add_(0, prob, self.alt_val - self.cur)
        self.eps = rel_eps * gap / lengths + 1e-12  # (P,)
        self.group = prob * k + self.labels  # (N,) flat cluster id of every row
        self.sizes = torch.bincount(self.group, minlength=P * k)  # (P * k,)
        self.caps = _capacities(self.sizes.reshape(P, k), lengths).reshape(-1)
        self.stale = torch.zeros_like(self.labels, dtype=torch.bool)

    def _shortlist(self, D: torch.Tensor, prob: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The t cheapest clusters of rows D (r, k) at today's prices, their distances, and a lower
        bound on what any other cluster costs them now or later (prices only rise): the (t+1)-th
        cheapest cost, less a margin as the ranking is done in float32. -> (r, t), (r, t), (r,)."""
        t, k = self.t, self.k
        near = (D + _row_prices(self.prices, prob).to(D.dtype)).topk(min(k, t + 1), dim=1, largest=False).indices
        if k == t:
            return near, D.gather(1, near), torch.full((len(D),), float("inf"), dtype=torch.float64, device=D.device)
        beyond = (D.gather(1, near[:, t:]).double() + _gather_prices(self.prices, prob, near[:, t:])).squeeze(1)
        return near[:, :t], D.gather(1, near[:, :t]), beyond - 1e-6 * beyond.abs() - 1e-12

    def refresh(self, rows: torch.Tensor) -> None:
        """Recompute the cheapest other cluster of ``rows`` at the current prices."""
        if rows.numel() == 0:
            return
        prob, labels = self.prob[rows], self.labels[rows]
        idx = self.cand_idx[rows]  # (r, t)
        c = (self.cand_d[rows] + _gather_prices(self.prices, prob, idx)).masked_fill_(idx == labels[:, None], float("inf"))
        val, pos = c.min(1)
        best = idx.gather(1, pos[:, None]).squeeze(1)
        unsure = (val > self.beyond[rows]).nonzero().squeeze(1)
        for part in row_chunks(len(unsure), chunk_rows(3 * self.k)):
            # the candidates went stale: take the row's t cheapest clusters at today's prices
            mine = unsure[part]
            u = rows[mine]
            idx, dist, self.beyond[u] = self._shortlist(self.D.index_select(0, u), prob[mine])
            self.cand_idx[u], self.cand_d[u] = idx, dist
            cost = (dist + _gather_prices(self.prices, prob[mine], idx)).masked_fill_(idx == labels[mine, None], float("inf"))
            val[mine], pos = cost.min(1)
            best[mine] = idx.gather(1, pos[:, None]).squeeze(1)
        self.alt_val[rows], self.alt_idx[rows] = val, best
        self.stale[rows] = False

    def clear(self, exact: torch.Tensor) -> None:
        """Raise prices of over-full clusters until every cluster of the ``exact`` (P,) problems
        is exactly at capacity (the others stop where the end game would start).

        Every step raises the price of every over-full cluster past the switching cost
        ``alt_val - cur`` of its ``excess``-th cheapest member (plus ``eps``, halfway to the
        next member), and those members move to their cheapest other cluster at the new
        prices unless that one rose too and staying became cheaper. Every row stays within
        ``eps`` of its cheapest cluster and prices only rise, so the loop ends eps-optimal.
        Once ``_STALL_STEPS`` steps have not lowered a problem's excess while at most
        ``_END_GAME * k`` units are left (a few units bouncing between full clusters in small
        price steps, the auction's end game; a larger excess that stalls is a price war among
        many full clusters, which the rising prices settle), that problem waits, and the rest
        of every waiting exact problem is placed by :meth:`finish_by_shortest_paths`.
        """
        P, k, device = self.prices.shape[0], self.k, self.D.device
        history: list[torch.Tensor] = []  # (P,) excess of every problem before each of the last steps
        waiting = torch.zeros(P, dtype=torch.bool, device=device)
        end_game = max(1, int(_END_GAME * k))
        for _ in range(_MAX_PRICE_STEPS):
            over = self.sizes - self.caps  # (P * k,)
            excess = over.clamp(min=0).view(P, k).sum(1)
            history.append(excess)
            if len(history) > _STALL_STEPS:
                waiting |= (excess > 0) & (excess <= end_game) & (excess >= history.pop(0))
            moving = (excess > 0) & ~waiting
            if not bool(moving.any()):
                if bool((waiting & exact).any()):
                    self.finish_by_shortest_paths(exact)
                return
            over = torch.where(moving.repeat_interleave(k), over, over.clamp(max=0))
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

    def finish_by_shortest_paths(self, problems: torch.Tensor) -> None:
        """Place the remaining excess of ``problems`` (P,) bool along shortest paths in the
        cluster graph (exact, one unit per problem per round; the successive-shortest-path
        method for min-cost flow).

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
            act = ((over > 0).any(1) & problems).nonzero().squeeze(1)  # problems with excess
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
        flat cluster a, a row chunk at a time."""
        rows = torch.arange(len(self.D), device=self.D.device) if rows is None else rows
        for part in row_chunks(len(rows), chunk_rows(2 * self.k)):
            r = rows[part]
            d = self.D.index_select(0, r)
            diff = d - d.gather(1, self.labels[r][:, None])  # (r, k); 0 in the row's own column
            W0.scatter_reduce_(0, self.group[r][:, None].expand_as(diff), diff, reduce="amin")

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
    """Permutation sorting by (key, value), ties in row order (two stable sorts, exact)."""
    order = torch.argsort(value, stable=True)
    return order[torch.argsort(key[order], stable=True)]


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
