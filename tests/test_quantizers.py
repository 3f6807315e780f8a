"""The quantizer protocol, the baselines' defining properties, and bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from resid_lib.errors import ConfigError, DataError, WorkbenchError
from resid_lib.quantize import QUANTIZERS, make_quantizer
from resid_lib.quantize.base import Quantizer
from resid_lib.quantize.config import QuantizeConfig
from resid_lib.quantize.diagnostics import directional_coherence
from resid_lib.quantize.hkmeans import HierarchicalKMeans, rank_within_groups
from resid_lib.quantize.kmeans import group_rows
from resid_lib.quantize.pq import ProductQuantizer
from resid_lib.quantize.rqkmeans import ResidualKMeans
from resid_lib.quantize.rqvae import RQVAE
from resid_lib.quantize.stage import unique_sids

SMALL = {
    "gaoq": dict(branching=[4, 5]),
    "hkmeans": dict(branching=[4, 5]),
    "rqkmeans": dict(codebook_size=8),
    "pq": dict(levels=4, codebook_size=8),
    "rqvae": dict(codebook_size=8, epochs=6, hidden_dims=[32], latent_dim=8, batch_size=600),
}
LEVELS = {"gaoq": 3, "hkmeans": 3, "rqkmeans": 3, "pq": 4, "rqvae": 3}


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=3.0, size=(12, 32))
    return (centers[rng.integers(0, 12, 600)] + rng.normal(size=(600, 32))).astype(np.float32)


def test_registry_lists_every_method():
    assert set(QUANTIZERS) == {"gaoq", "rqvae", "hkmeans", "rqkmeans", "pq"}
    assert all(issubclass(q, Quantizer) and q.name == name for name, q in QUANTIZERS.items())


@pytest.mark.parametrize("method", sorted(SMALL))
def test_protocol(method, X, tmp_path):
    q = make_quantizer(method, seed=3, device="cpu", **SMALL[method])
    codes = q.fit_encode(X)
    assert codes.shape == (len(X), LEVELS[method]) and codes.dtype == np.int64
    sids, collided = unique_sids(codes)
    assert len(np.unique(sids, axis=0)) == len(X)
    assert sids.shape[1] == codes.shape[1] + (collided > 0)
    again = make_quantizer(method, seed=3, device="cpu", **SMALL[method]).fit_encode(X)
    np.testing.assert_array_equal(codes, again)
    q.save(tmp_path / "q.pt")
    loaded = Quantizer.load(tmp_path / "q.pt")
    assert type(loaded) is type(q)
    np.testing.assert_array_equal(loaded.encode(X), codes)


def test_make_quantizer_from_config_passes_only_the_methods_settings():
    cfg = QuantizeConfig(method="rqkmeans", codebook_size=16, levels=2, branching=[3, 4])
    q = make_quantizer(cfg, seed=1)
    assert isinstance(q, ResidualKMeans) and q.codebook_size == 16 and q.levels == 2 and q.balanced is False
    hk = make_quantizer(QuantizeConfig(method="hkmeans", branching=[3, 4]))
    assert hk.balanced is True and hk.branching == [3, 4]
    with pytest.raises(ConfigError, match="known: gaoq, hkmeans, pq, rqkmeans, rqvae"):
        make_quantizer("vq")
    with pytest.raises(ConfigError, match="no setting 'epochs'"):
        make_quantizer("pq", epochs=3)


def test_hkmeans_is_exactly_balanced_with_local_indices(X):
    codes = HierarchicalKMeans(branching=[4, 5], seed=0).fit_encode(X)
    sizes = np.bincount(codes[:, 0])
    assert sizes.max() - sizes.min() <= 1
    children = np.bincount(codes[:, 0] * 5 + codes[:, 1])
    assert len(children) == 20 and children.max() - children.min() <= 1
    # last level: 0..size-1 within each prefix, ordered by distance to the prefix mean
    for prefix in range(20):
        rows = np.flatnonzero(codes[:, 0] * 5 + codes[:, 1] == prefix)
        assert sorted(codes[rows, 2]) == list(range(len(rows)))
        dist = ((X[rows] - X[rows].mean(0)) ** 2).sum(1)
        assert np.all(np.diff(dist[np.argsort(codes[rows, 2])]) >= -1e-5)


def _shared_direction_data(seed: int, n_parents=8, n_dirs=4, per_child=20, d=32):
    """Parents far apart; under every parent the children sit along the same shared directions."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=20.0, size=(n_parents, d))
    dirs = np.linalg.qr(rng.normal(size=(d, n_dirs)))[0].T * 4.0
    parent = np.repeat(np.arange(n_parents), n_dirs * per_child)
    direction = np.tile(np.repeat(np.arange(n_dirs), per_child), n_parents)
    X = centers[parent] + dirs[direction] + rng.normal(scale=0.3, size=(len(parent), d))
    return X.astype(np.float32), direction


@pytest.mark.parametrize("seed", [0, 1])
def test_gaoq_aligns_shared_directions_where_local_indices_do_not(seed):
    X, direction = _shared_direction_data(seed)
    codes_per_direction = lambda codes: np.mean([len(np.unique(codes[direction == j, 1])) for j in range(4)])
    learned = make_quantizer("gaoq", branching=[8, 4], anchors="learned", seed=seed).fit_encode(X)
    paper = make_quantizer("gaoq", branching=[8, 4], seed=seed).fit_encode(X)
    local = make_quantizer("hkmeans", branching=[8, 4], seed=seed).fit_encode(X)
    assert codes_per_direction(learned) == 1.0  # one code per shared direction under all 8 parents
    assert codes_per_direction(local) > 3.0  # local indices scatter a direction over the codes
    # random anchors align most parents (they are fragile in high dimensions; the caveat)
    assert directional_coherence(X, learned) > 0.9
    assert directional_coherence(X, paper) > 0.4 > 0.1 > directional_coherence(X, local)


def test_rqkmeans_balanced_levels_and_greedy_encoding(X):
    q = ResidualKMeans(codebook_size=8, balanced=True, seed=0).fit(X)
    codes = q.encode(X)
    for level in range(3):
        sizes = np.bincount(codes[:, level], minlength=8)
        assert sizes.max() - sizes.min() <= 1
    new = X[:50] + 0.01  # not the fitted matrix: greedy nearest codeword, level by level
    residual = new.astype(np.float64)
    expected = []
    for book in q.codebooks_:
        book = book.numpy().astype(np.float64)
        labels = ((residual[:, None, :] - book[None]) ** 2).sum(-1).argmin(1)
        residual = residual - book[labels]
        expected.append(labels)
    np.testing.assert_array_equal(q.encode(new), np.stack(expected, 1))
    recon = q.reconstruct(new)
    np.testing.assert_allclose(recon, new - residual, rtol=1e-4, atol=1e-4)


def test_pq_codes_are_per_subspace_nearest_codewords(X):
    q = ProductQuantizer(levels=3, codebook_size=8, seed=0).fit(X)
    assert q.bounds_ == [0, 11, 21, 32]
    codes = q.encode(X)
    for m, (a, b) in enumerate(zip(q.bounds_[:-1], q.bounds_[1:])):
        book = q.codebooks_[m].numpy()
        np.testing.assert_array_equal(codes[:, m], ((X[:, None, a:b] - book[None]) ** 2).sum(-1).argmin(1))
    recon = q.reconstruct(X)
    np.testing.assert_allclose(recon[:, 11:21], q.codebooks_[1].numpy()[codes[:, 1]])


def test_group_helpers_match_a_python_reference():
    rng = np.random.default_rng(1)
    groups = torch.as_tensor(rng.integers(0, 5, 40))
    dist = torch.as_tensor(rng.random(40))
    index, lengths = group_rows(groups, 6)
    assert lengths.tolist() == np.bincount(groups.numpy(), minlength=6).tolist()
    for g in range(6):
        assert index[g][index[g] >= 0].tolist() == np.flatnonzero(groups.numpy() == g).tolist()
    rank = rank_within_groups(groups, dist).numpy()
    for g in range(5):
        rows = np.flatnonzero(groups.numpy() == g)
        assert rank[rows].tolist() == np.argsort(np.argsort(dist.numpy()[rows], kind="stable"), kind="stable").tolist()


def test_hkmeans_routes_new_rows_to_nearest_centroids(X):
    q = HierarchicalKMeans(branching=[4, 5], seed=0).fit(X)
    new = X[:40] + 0.05
    codes = q.encode(new)
    c1 = q.centroids_[0].numpy()
    expected1 = ((new[:, None] - c1[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(codes[:, 0], expected1)
    for i in range(len(new)):
        children = q.centroids_[1][expected1[i]].numpy()
        assert codes[i, 1] == ((children - new[i]) ** 2).sum(-1).argmin()
    assert len(np.unique(codes, axis=0)) == len(new)


def test_rqvae_resumes_exactly_from_its_checkpoint(X, tmp_path, monkeypatch):
    settings = dict(codebook_size=8, epochs=12, hidden_dims=[32], latent_dim=8, batch_size=300, seed=5, device="cpu")
    full = RQVAE(**settings).fit(X)
    path = tmp_path / "ckpt.pt"
    from resid_lib.quantize import rqvae

    original = rqvae.Checkpoint.save

    def save_then_stop(self, where):
        original(self, where)
        raise KeyboardInterrupt

    monkeypatch.setattr(rqvae.Checkpoint, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        RQVAE(checkpoint=path, **settings).fit(X)  # stops after the epoch-10 checkpoint
    monkeypatch.setattr(rqvae.Checkpoint, "save", original)
    resumed = RQVAE(checkpoint=path, **settings).fit(X)
    for key, value in full.model_state_.items():
        torch.testing.assert_close(resumed.model_state_[key], value)
    np.testing.assert_array_equal(resumed.encode(X), full.encode(X))
    assert full.reconstruct(X).shape == X.shape


@pytest.mark.parametrize("method", sorted(SMALL))
def test_nan_and_inf_rows_are_rejected(method, X):
    bad = X.copy()
    bad[7, 3] = np.nan
    with pytest.raises(DataError, match="first: row 7"):
        make_quantizer(method, **SMALL[method]).fit(bad)
    bad[7, 3] = np.inf
    with pytest.raises(DataError, match="NaN or Inf"):
        make_quantizer(method, **SMALL[method]).fit(bad)


@pytest.mark.parametrize("method, settings", [
    ("rqkmeans", dict(codebook_size=64)),
    ("pq", dict(codebook_size=64)),
    ("rqvae", dict(codebook_size=64)),
    ("hkmeans", dict(branching=[64, 2])),
    ("gaoq", dict(branching=[64, 2])),
])
def test_fewer_items_than_clusters_is_a_clear_error(method, settings, X):
    with pytest.raises(WorkbenchError, match="fewer|too many|cannot"):
        make_quantizer(method, **settings).fit(X[:40])


@pytest.mark.parametrize("method", ["hkmeans", "gaoq"])
def test_branching_that_cannot_fit_is_rejected(method, X):
    with pytest.raises(WorkbenchError):
        make_quantizer(method, branching=[10, 10]).fit(X[:90])
    with pytest.raises(WorkbenchError):
        make_quantizer(method, branching=[4, 5, 6]).fit(X)  # three numbers for three levels


def test_pq_needs_a_dimension_per_subspace(X):
    with pytest.raises(DataError, match="subspaces cannot split 32 dimensions"):
        ProductQuantizer(levels=33, codebook_size=4).fit(X)
