"""The Q-stage at scale: chunked work gives the codes of unchunked work, per-parent work split
over two processes gives the codes of one, and no temporary holds a large share of the data."""
from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from resid_lib import distributed
from resid_lib.quantize import chunks, kmeans as kmeans_module, make_quantizer
from resid_lib.quantize.kmeans import balanced_kmeans, group_rows, kmeans_groups

SMALL = {
    "gaoq": dict(branching=[4, 5]),
    "hkmeans": dict(branching=[4, 5]),
    "rqkmeans": dict(codebook_size=8, balanced=True),
    "pq": dict(levels=4, codebook_size=8),
    "rqvae": dict(codebook_size=8, epochs=3, hidden_dims=[32], latent_dim=8, batch_size=600),
}


def blobs(n: int = 600, d: int = 32, centers: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(scale=3.0, size=(centers, d))
    return (c[rng.integers(0, centers, n)] + rng.normal(size=(n, d))).astype(np.float32)


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Every row chunk one tile of 64 rows, every batch of k-means problems a single problem."""
    def apply():
        monkeypatch.setattr(chunks, "CHUNK_FLOATS", 1)
        monkeypatch.setattr(kmeans_module, "_BATCH_FLOATS", 1)
    return apply


@pytest.mark.parametrize("method", sorted(SMALL))
def test_tiny_chunks_give_identical_codes(method, tiny_chunks):
    X = blobs()
    new = X[:100] + 0.3 * blobs(100, seed=1)
    whole = make_quantizer(method, seed=3, device="cpu", **SMALL[method]).fit(X)
    codes, new_codes = whole.encode(X), whole.encode(new)
    tiny_chunks()
    if method == "rqvae":  # training is not chunked; its encoding is
        np.testing.assert_array_equal(whole.encode(X), codes)
        np.testing.assert_array_equal(whole.encode(new), new_codes)
        return
    chunked = make_quantizer(method, seed=3, device="cpu", **SMALL[method]).fit(X)
    np.testing.assert_array_equal(chunked.encode(X), codes)
    np.testing.assert_array_equal(chunked.encode(new), new_codes)
    assert chunked.codebook_sizes_ == whole.codebook_sizes_


def test_tiny_chunks_give_identical_balanced_kmeans_on_a_sample(tiny_chunks):
    """Large enough that k-means starts on a sample (more than 128 rows per cluster)."""
    X = torch.from_numpy(blobs(3000, d=24, centers=20, seed=2))
    centroids, labels = balanced_kmeans(X, 6, seed=4)
    tiny_chunks()
    chunked = balanced_kmeans(X, 6, seed=4)
    assert torch.equal(chunked[1], labels) and torch.equal(chunked[0], centroids)


@pytest.mark.parametrize("balanced", [True, False])
def test_a_group_is_solved_as_if_alone(balanced):
    """kmeans_groups: each group's result depends only on its rows and its seed."""
    X = torch.from_numpy(blobs(900, d=16, seed=3))
    groups = torch.from_numpy(np.random.default_rng(0).integers(0, 3, 900))
    index, _ = group_rows(groups, 3)
    seeds = [(7, 2, p) for p in range(3)]
    centroids, labels = kmeans_groups(X, index, 5, balanced=balanced, seed=seeds)
    for p in range(3):
        alone_c, alone_l = kmeans_groups(X, index[p : p + 1], 5, balanced=balanced, seed=seeds[p : p + 1])
        assert torch.equal(alone_c[0], centroids[p]) and torch.equal(alone_l[0], labels[p, : alone_l.shape[1]])


def test_codebook_sizes_cover_every_level():
    X = blobs()
    for method, settings in SMALL.items():
        q = make_quantizer(method, seed=0, device="cpu", **settings).fit(X)
        codes = q.encode(X)
        sizes = q.codebook_sizes_
        assert isinstance(sizes, tuple) and len(sizes) == codes.shape[1]
        assert (codes.max(axis=0) < np.array(sizes)).all()


# ------------------------------------------------------------------ two processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fit_on_rank(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    assert distributed.init() and distributed.active()
    try:
        X = blobs(seed=5)
        for method in ("gaoq", "hkmeans"):
            codes = make_quantizer(method, seed=1, device="cpu", **SMALL[method]).fit_encode(X)
            np.save(os.path.join(out_dir, f"{method}{rank}.npy"), codes)
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_give_the_codes_of_one(tmp_path):
    mp.spawn(_fit_on_rank, args=(_free_port(), str(tmp_path)), nprocs=2)
    X = blobs(seed=5)
    for method in ("gaoq", "hkmeans"):
        single = make_quantizer(method, seed=1, device="cpu", **SMALL[method]).fit_encode(X)
        for rank in range(2):
            np.testing.assert_array_equal(np.load(tmp_path / f"{method}{rank}.npy"), single)


# ------------------------------------------------------------------ memory


class LargestAllocation(TorchDispatchMode):
    """Largest number of elements of a floating tensor an operation allocated (views excluded)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.untyped_storage().data_ptr() not in inputs:
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("method", ["gaoq", "hkmeans"])
def test_no_temporary_near_the_size_of_the_data(method, monkeypatch):
    """With small budgets, fitting and encoding new rows never allocate a quarter of the data at once
    (the largest allocation is a k-means++ sample of 128 rows per cluster, an eighth here)."""
    monkeypatch.setattr(chunks, "CHUNK_FLOATS", 2**16)
    monkeypatch.setattr(kmeans_module, "_BATCH_FLOATS", 1)
    X = blobs(4096, d=256, centers=30, seed=6)
    with LargestAllocation() as probe:
        q = make_quantizer(method, seed=0, device="cpu", branching=[4, 4], n_iter=3).fit(X)
        q.encode(X[:1000] + 0.01)
    assert probe.largest <= X.size // 4, f"a temporary of {probe.largest} floats; the data holds {X.size}"
