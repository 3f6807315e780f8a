"""GAOQ (resid_lib.quantize.gaoq) and its anchors (resid_lib.quantize.anchors)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from resid_lib.errors import ConfigError, DataError
from resid_lib.quantize.anchors import learned_anchors, match_codes, random_anchors, separated_anchors
from resid_lib.quantize.base import Quantizer
from resid_lib.quantize.gaoq import GAOQ
from resid_lib.quantize.kmeans import kmeans


def shared_direction_data(
    n_parents: int = 4, n_dirs: int = 4, per_child: int = 12, d: int = 16, wobble: float = 0.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items = parent center + 4 * (shared direction j, wobbled per parent) + noise.

    Returns X (n, d) float32, parent (n,), direction (n,).
    """
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_parents, d)) * 30
    dirs = np.linalg.qr(rng.standard_normal((d, n_dirs)))[0].T  # (n_dirs, d) orthonormal
    X, parent, direction = [], [], []
    for p in range(n_parents):
        for j in range(n_dirs):
            v = dirs[j] + wobble * rng.standard_normal(d) / np.sqrt(d)
            v /= np.linalg.norm(v)
            X.append(centers[p] + 4 * v + 0.3 * rng.standard_normal((per_child, d)))
            parent += [p] * per_child
            direction += [j] * per_child
    return np.concatenate(X).astype(np.float32), np.array(parent), np.array(direction)


def direction_codes(codes: np.ndarray, parent: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """(n_parents, n_dirs): the single code each parent's children along direction j received."""
    table = np.full((parent.max() + 1, direction.max() + 1), -1)
    for p in range(table.shape[0]):
        for j in range(table.shape[1]):
            got = np.unique(codes[(parent == p) & (direction == j)])
            assert len(got) == 1, "a child mixes two directions"
            table[p, j] = got[0]
    return table


def consistent(table: np.ndarray) -> bool:
    return bool((table == table[0]).all())


@pytest.mark.parametrize("anchors,wobble", [("random", 0.0), ("learned", 0.4)])
def test_same_direction_gets_the_same_level2_code_under_every_parent(anchors, wobble):
    X, parent, direction = shared_direction_data(wobble=wobble)
    codes = GAOQ(branching=[4, 4], anchors=anchors, seed=0).fit_encode(X)
    # level 1 recovers the parents
    assert direction_codes(codes[:, 0], np.zeros_like(parent), parent).shape == (1, 4)
    table = direction_codes(codes[:, 1], parent, direction)
    assert consistent(table)
    assert len(set(table[0])) == 4


def test_local_indices_do_not_align_directions():
    """Per-parent k-means numbers the same direction differently (hierarchical k-means, Q2)."""
    X, parent, direction = shared_direction_data()
    local = np.empty(len(X), dtype=np.int64)
    for p in range(4):
        rows = np.flatnonzero(parent == p)
        _, labels = kmeans(torch.from_numpy(X[rows]), 4, seed=p)
        local[rows] = labels.numpy()
    assert not consistent(direction_codes(local, parent, direction))


def test_sids_unique_levels_and_timings():
    X, _, _ = shared_direction_data(n_parents=3, n_dirs=5, per_child=7, d=12, seed=1)
    q = GAOQ(branching=[3, 4], seed=0)
    codes = q.fit_encode(X)
    assert codes.shape == (len(X), 3) and codes.dtype == np.int64
    assert len(np.unique(codes, axis=0)) == len(X)
    assert q.n_collisions_ == 0
    assert q.branching_[:2] == [3, 4] and q.branching_[2] == np.bincount(codes[:, 0] * 4 + codes[:, 1]).max()
    assert set(q.level_seconds_) == {"level1", "level2", "level3"}
    for level in range(3):
        assert codes[:, level].min() >= 0 and codes[:, level].max() < q.branching_[level]


def test_same_seed_same_sids():
    X, _, _ = shared_direction_data(seed=2, wobble=0.5)
    a = GAOQ(branching=[4, 4], anchors="learned", seed=3).fit_encode(X)
    b = GAOQ(branching=[4, 4], anchors="learned", seed=3).fit_encode(X)
    np.testing.assert_array_equal(a, b)


def test_four_levels_and_auto_branching():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 10)).astype(np.float32)
    q = GAOQ(levels=4, branching=[3, 3, 2], seed=0)
    codes = q.fit_encode(X)
    assert codes.shape == (600, 4) and len(np.unique(codes, axis=0)) == 600
    assert len(q.anchors_) == 2
    auto = GAOQ(seed=0)
    assert auto.resolve_branching(3000) == [14, 14]
    assert auto.resolve_branching(193_383) == [114, 114]


def test_more_anchors_than_children_and_more_than_dimensions():
    X, _, _ = shared_direction_data(n_dirs=3, d=4, per_child=6, seed=4)
    q = GAOQ(branching=[4, 3], n_anchors=6, seed=0)  # 6 anchors > 4 dimensions: near-orthogonal
    codes = q.fit_encode(X)
    assert q.anchors_[0].shape == (6, 4)
    assert codes[:, 1].max() < 6 and len(np.unique(codes, axis=0)) == len(X)
    # children of one parent never share an anchor
    for c1 in range(4):
        level2 = codes[codes[:, 0] == c1, 1]
        assert len(np.unique(level2)) == 3


def test_encode_returns_fitted_codes_for_training_rows_and_nearest_for_new_rows():
    X, _, _ = shared_direction_data(seed=5)
    q = GAOQ(branching=[4, 4], seed=0)
    codes = q.fit_encode(X)
    perm = np.random.default_rng(0).permutation(len(X))[:20]
    np.testing.assert_array_equal(q.encode(X[perm]), codes[perm])
    new = q.encode(X[:5] + 0.01)
    assert new.shape == (5, 3)
    np.testing.assert_array_equal(new[:, :2], codes[:5, :2])  # well inside their clusters
    with pytest.raises(DataError, match="dimensions"):
        q.encode(X[:, :8])


def test_save_load_round_trip(tmp_path):
    X, _, _ = shared_direction_data(seed=6)
    q = GAOQ(branching=[4, 4], anchors="learned", seed=1)
    codes = q.fit_encode(X)
    q.save(tmp_path / "gaoq.pt")
    loaded = Quantizer.load(tmp_path / "gaoq.pt")
    assert isinstance(loaded, GAOQ)
    np.testing.assert_array_equal(loaded.encode(X), codes)
    np.testing.assert_array_equal(loaded.encode(X[:3] + 0.01), q.encode(X[:3] + 0.01))


def test_bad_input_errors():
    X, _, _ = shared_direction_data(n_parents=2, n_dirs=2, per_child=5, d=6)  # 20 items
    bad = X.copy()
    bad[7, 2] = np.nan
    with pytest.raises(DataError, match="NaN or Inf"):
        GAOQ(branching=[2, 2]).fit(bad)
    with pytest.raises(DataError, match="fewer than the 32 level-1 clusters"):
        GAOQ(branching=[32, 2]).fit(X)
    with pytest.raises(ConfigError, match=r"branching\[1\]=12 does not fit"):
        GAOQ(branching=[2, 12]).fit(X)
    with pytest.raises(ConfigError, match="anchor_fallback"):
        GAOQ(branching=[2, 8], anchor_fallback=False).fit(X)  # 8 anchors > 6 dimensions
    with pytest.raises(ConfigError, match="last level"):
        GAOQ(branching=[2, 1], anchor_fallback=False).fit(X)  # prefix groups of 10 > 6 dimensions
    with pytest.raises(ConfigError, match="smaller than its branching"):
        GAOQ(branching=[2, 4], n_anchors=3).fit(X)
    with pytest.raises(ConfigError, match="levels"):
        GAOQ(levels=1)
    with pytest.raises(ConfigError, match="branching"):
        GAOQ(levels=3, branching=[4])
    with pytest.raises(ConfigError, match="anchors"):
        GAOQ(anchors="pca")


def test_random_anchors_are_orthonormal_and_seeded():
    a = random_anchors(16, 10, seed=0)
    np.testing.assert_allclose(a @ a.T, np.eye(10), atol=1e-5)
    np.testing.assert_array_equal(a, random_anchors(16, 10, seed=0))
    assert not np.allclose(a, random_anchors(16, 10, seed=1))
    with pytest.raises(ConfigError):
        random_anchors(4, 6)


def test_separated_anchors_spread_further_than_random_directions():
    a = separated_anchors(3, 12, seed=0)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    cos = a @ a.T
    worst = cos[~np.eye(12, dtype=bool)].max()
    rand = np.random.default_rng(0).standard_normal((12, 3))
    rand /= np.linalg.norm(rand, axis=1, keepdims=True)
    assert worst < 0.6 < (rand @ rand.T)[~np.eye(12, dtype=bool)].max()  # icosahedron: 1/sqrt(5) = 0.447


def test_match_codes_is_an_injective_max_cosine_matching():
    anchors = torch.eye(4)
    residuals = torch.tensor([[[0.0, 2, 0, 0], [3.0, 0, 0, 0], [0, 0, 0, -1.0]]])  # (1, 3, 4)
    np.testing.assert_array_equal(match_codes(residuals, anchors), [[1, 0, 2]])


def test_learned_anchors_point_along_the_shared_directions():
    rng = np.random.default_rng(0)
    dirs = np.linalg.qr(rng.standard_normal((32, 5)))[0].T  # (5, 32)
    residuals = np.stack([dirs[rng.permutation(5)] + 0.3 * rng.standard_normal((5, 32)) / np.sqrt(32) for _ in range(20)])
    anchors = learned_anchors(torch.from_numpy(residuals).float(), 5, seed=0)
    np.testing.assert_allclose(anchors @ anchors.T, np.eye(5), atol=1e-4)
    assert (np.abs(anchors @ dirs.T).max(1) > 0.9).all()  # each anchor sits on one shared direction
