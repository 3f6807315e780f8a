"""Plain, exactly balanced and per-group k-means (resid_lib.quantize.kmeans)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from resid_lib.errors import ConfigError, DataError
from resid_lib.quantize.kmeans import (
    balanced_assignment,
    balanced_kmeans,
    balanced_sizes,
    group_rows,
    kmeans,
    kmeans_groups,
    within_sse,
)


def blobs(n: int, d: int = 8, centers: int = 5, seed: int = 0, spread: float = 4.0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centers, d)) * spread
    return torch.from_numpy((c[rng.integers(0, centers, n)] + rng.standard_normal((n, d))).astype(np.float32))


def assert_balanced(labels: torch.Tensor, n: int, k: int) -> None:
    sizes = torch.bincount(labels, minlength=k)
    q, r = balanced_sizes(n, k)
    assert len(sizes) == k
    assert int(sizes.sum()) == n
    assert sorted(sizes.tolist()) == [q] * (k - r) + [q + 1] * r


@pytest.mark.parametrize("n,k", [(10, 1), (10, 10), (11, 3), (97, 8), (100, 7), (250, 16), (1000, 3)])
def test_balanced_kmeans_sizes_differ_by_at_most_one(n, k):
    X = blobs(n, seed=n + k)
    centroids, labels = balanced_kmeans(X, k, seed=1)
    assert centroids.shape == (k, X.shape[1]) and labels.shape == (n,) and labels.dtype == torch.int64
    assert_balanced(labels, n, k)


def test_balanced_kmeans_centroids_are_means_of_their_clusters():
    X = blobs(300, seed=3)
    centroids, labels = balanced_kmeans(X, 6)
    for j in range(6):
        torch.testing.assert_close(centroids[j], X[labels == j].mean(0), atol=1e-4, rtol=1e-4)


def test_balanced_kmeans_on_balanced_blobs_finds_the_blobs():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((4, 6)) * 10
    truth = np.repeat(np.arange(4), 50)
    X = torch.from_numpy((centers[truth] + rng.standard_normal((200, 6))).astype(np.float32))
    _, labels = balanced_kmeans(X, 4, seed=0)
    # every found cluster is exactly one true blob
    for j in range(4):
        assert len(np.unique(truth[labels.numpy() == j])) == 1


def test_same_seed_same_result_and_float64_input():
    X = blobs(400, seed=5)
    a = balanced_kmeans(X, 7, seed=3)
    b = balanced_kmeans(X, 7, seed=3)
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])
    c, labels = balanced_kmeans(X.double(), 7, seed=3)
    assert c.dtype == torch.float64
    assert_balanced(labels, 400, 7)


def reference_balanced_cost(cost: np.ndarray) -> float:
    """Optimal cost with sizes in {q, q+1}: each column expanded into q+1 slots, the first q mandatory."""
    n, k = cost.shape
    q, r = divmod(n, k)
    big = cost.max() * n + 1.0
    slots = [cost - big] * q + ([cost] if r else [])
    expanded = np.concatenate(slots, axis=1)  # (n, k * (q + [r > 0]))
    rows, cols = linear_sum_assignment(expanded)
    return float(cost[rows, cols % k].sum())


@pytest.mark.parametrize("seed", range(6))
def test_balanced_assignment_matches_slow_reference(seed):
    """The fast price method against a Hungarian solve of the expanded capacity matrix."""
    rng = np.random.default_rng(seed)
    n, k = 24, 4  # divisible: the capacities are fixed, so the optimum is unique in cost
    X, C = rng.standard_normal((n, 3)), rng.standard_normal((k, 3))
    cost = ((X[:, None, :] - C[None]) ** 2).sum(-1)
    labels = balanced_assignment(torch.from_numpy(cost), tolerance=1e-9).numpy()
    assert_balanced(torch.from_numpy(labels), n, k)
    ours = cost[np.arange(n), labels].sum()
    assert ours == pytest.approx(reference_balanced_cost(cost), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("n,k", [(23, 4), (31, 6), (40, 7)])
def test_balanced_assignment_with_remainder_is_near_optimal(n, k):
    rng = np.random.default_rng(n)
    cost = rng.random((n, k)) * 10
    labels = balanced_assignment(torch.from_numpy(cost), tolerance=1e-9)
    assert_balanced(labels, n, k)
    ours = cost[np.arange(n), labels.numpy()].sum()
    best = reference_balanced_cost(cost)
    assert best - 1e-9 <= ours <= best * 1.02


def test_default_tolerance_stays_close_to_optimal():
    rng = np.random.default_rng(7)
    cost = rng.random((60, 5)) * 3
    labels = balanced_assignment(torch.from_numpy(cost))
    assert_balanced(labels, 60, 5)
    assert cost[np.arange(60), labels.numpy()].sum() <= reference_balanced_cost(cost) * 1.01


def test_balanced_sse_close_to_unconstrained_on_balanced_data():
    """On data whose natural clusters are equal-sized, balance costs (almost) nothing."""
    rng = np.random.default_rng(1)
    centers = rng.standard_normal((8, 16)) * 6
    X = torch.from_numpy((centers[np.repeat(np.arange(8), 60)] + rng.standard_normal((480, 16))).astype(np.float32))
    cb, lb = balanced_kmeans(X, 8, seed=0)
    cp, lp = kmeans(X, 8, seed=0)
    assert within_sse(X, cb, lb) <= within_sse(X, cp, lp) * 1.001


def test_plain_kmeans_has_no_empty_clusters_and_lowers_sse():
    X = blobs(500, centers=3, seed=2)  # fewer blobs than clusters
    centroids, labels = kmeans(X, 10, seed=0)
    assert torch.bincount(labels, minlength=10).min() >= 1
    one, _ = kmeans(X, 1)
    assert within_sse(X, centroids, labels) < within_sse(X, one, torch.zeros(500, dtype=torch.long))


def test_grouped_balanced_kmeans_handles_uneven_groups():
    rng = np.random.default_rng(4)
    sizes, d, k = [40, 39, 17, 4, 25], 6, 4
    groups = torch.from_numpy(rng.permutation(np.repeat(np.arange(len(sizes)), sizes)))
    X = torch.from_numpy(rng.standard_normal((len(groups), d)).astype(np.float32))
    index, lengths = group_rows(groups, len(sizes))
    assert lengths.tolist() == sizes
    centroids, labels = kmeans_groups(X, index, k, balanced=True, seed=0)
    assert centroids.shape == (len(sizes), k, d) and labels.shape == index.shape
    for p, n in enumerate(sizes):
        assert (labels[p, n:] == -1).all()
        assert_balanced(labels[p, :n], n, k)
        rows = X[index[p, :n]]
        for j in range(k):
            torch.testing.assert_close(centroids[p, j], rows[labels[p, :n] == j].mean(0), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("n_iter", [1, 2, 5, 30])
def test_every_group_returns_exact_balance_whenever_it_stops(n_iter):
    """Iterations before a group's last may leave a few rows over capacity; the labels it
    returns never do, whether it converged early, ran out of iterations or started on a sample."""
    rng = np.random.default_rng(n_iter)
    sizes, d, k = [1000, 700, 333], 16, 48  # ~15-20 rows per cluster: the auction's end game matters
    groups = torch.from_numpy(np.repeat(np.arange(len(sizes)), sizes))
    X = blobs(len(groups), d=d, centers=40, seed=n_iter, spread=2.0)
    index, _ = group_rows(groups, len(sizes))
    centroids, labels = kmeans_groups(X, index, k, balanced=True, n_iter=n_iter, seed=[int(rng.integers(99)), 1, 2])
    for p, n in enumerate(sizes):
        assert_balanced(labels[p, :n], n, k)
        rows = X[index[p, :n]]
        for j in range(k):
            torch.testing.assert_close(centroids[p, j], rows[labels[p, :n] == j].mean(0), atol=1e-4, rtol=1e-4)
    _, sampled = balanced_kmeans(X[:900], 4, n_iter=n_iter)  # 900 > 128 x 4 rows: starts on a sample
    assert_balanced(sampled, 900, 4)


def test_group_is_not_disturbed_by_its_neighbours():
    """A group finds the same partition as alone, whatever the other groups hold."""
    X = blobs(60, centers=3, seed=8, spread=10.0)
    index = torch.arange(60).reshape(2, 30)
    _, alone = kmeans_groups(X, index[:1], 3, balanced=True, seed=0)
    other = X.clone()
    other[30:] = other[30:] * 100 + 7
    _, together = kmeans_groups(other, index, 3, balanced=True, seed=0)
    pairs = set(zip(alone[0].tolist(), together[0].tolist()))
    assert len(pairs) == 3  # the same partition, possibly numbered differently


def test_plain_grouped_kmeans():
    X = blobs(60, seed=9)
    index, _ = group_rows(torch.tensor([0] * 30 + [1] * 20 + [2] * 10), 3)
    centroids, labels = kmeans_groups(X, index, 4, seed=0)
    assert centroids.shape == (3, 4, 8)
    assert (labels[1, 20:] == -1).all() and (labels[2, :10] >= 0).all() and (labels[2, 10:] == -1).all()


def test_bad_inputs_raise_clear_errors():
    X = blobs(20)
    with pytest.raises(DataError, match="fewer than the 30 clusters"):
        balanced_kmeans(X, 30)
    with pytest.raises(DataError, match="NaN or Inf"):
        bad = X.clone()
        bad[3, 1] = float("inf")
        kmeans(bad, 2)
    with pytest.raises(ConfigError, match="positive integer"):
        balanced_kmeans(X, 0)
    with pytest.raises(DataError, match="group 1 has 3 items"):
        kmeans_groups(X, group_rows(torch.tensor([0] * 17 + [1] * 3), 2)[0], 5, balanced=True)
    with pytest.raises(DataError, match="2-D"):
        kmeans(X[0], 2)
    with pytest.raises(ConfigError, match="n_iter"):
        kmeans(X, 2, n_iter=0)
