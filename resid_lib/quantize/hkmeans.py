"""Hierarchical k-means with local indices (ablation Q2).

The same tree as GAOQ without the global alignment: level 1 clusters all items into
``b_1`` clusters; at every further aligned level each parent clusters its own items
into ``b_l`` children and numbers them ``0..b_l-1`` in its clustering's own order, so
"code 1" means an unrelated direction under every parent. With ``balanced=True`` (the
default) every clustering is exactly balanced, as in GAOQ, so the local numbering is
the only difference. The last level is derived, its size the largest prefix group as
in GAOQ, but numbered locally too: the items sharing a prefix get ``0, 1, ...`` by
increasing distance to their prefix group's centroid. ``levels`` and ``branching``
mean what they mean for GAOQ (``branching`` lists ``b_1..b_{L-1}``, or "auto").

Per-parent clusterings are seeded by ``(seed, level, parent)`` and spread over the ranks of
a process group (:mod:`~resid_lib.quantize.spread`); items are read in row chunks.

Encoding the fitted matrix returns the fitted assignment (balanced clusters are filled
by capacity, not strictly by nearest centroid); other rows descend the tree to their
nearest centroids and are numbered within their prefix group among the rows encoded.
"""
from __future__ import annotations

import numpy as np
import torch

from ..device import resolve_device
from ..errors import ConfigError, DataError
from .base import Quantizer
from .chunks import chunk_rows, nearest, nearest_child, row_chunks
from .codebook import as_tensor, digest
from .gaoq import GAOQ
from .kmeans import balanced_kmeans, kmeans
from .spread import cluster_children, on_first_rank


def rank_within_groups(groups: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
    """(n,) position of every row within its group when the group is sorted by ``distance`` (ties: row order)."""
    order = torch.argsort(distance, stable=True)
    order = order[torch.argsort(groups[order], stable=True)]
    counts = torch.bincount(groups)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(groups)
    rank[order] = torch.arange(len(groups), device=groups.device) - starts[groups[order]]
    return rank


class HierarchicalKMeans(Quantizer):
    """Tree of (balanced) k-means clusterings with per-parent local child indices."""

    name = "hkmeans"

    def __init__(
        self,
        *,
        levels: int = 3,
        branching: list[int] | str = "auto",
        balanced: bool = True,
        n_iter: int = 30,
        seed: int = 0,
        device: str = "auto",
    ):
        super().__init__(seed=seed, device=device)
        if not isinstance(levels, int) or levels < 2:
            raise ConfigError(f"hkmeans: levels must be an integer >= 2 (clusters plus the derived last level), got {levels!r}")
        if branching != "auto" and (not isinstance(branching, (list, tuple)) or len(branching) != levels - 1
                                    or not all(isinstance(b, (int, np.integer)) and b >= 2 for b in branching)):
            raise ConfigError(f"hkmeans: branching must be 'auto' or {levels - 1} integers >= 2 (one per level "
                              f"before the derived last level), got {branching!r}")
        self.levels = levels
        self.branching = branching
        self.balanced = balanced
        self.n_iter = n_iter

    @property
    def codebook_sizes_(self) -> tuple[int, ...]:
        """Codes per level: the branching factors and the derived last level (SIDs are unique)."""
        return (*self.branching_, self.last_size_)

    def _fit(self, X: np.ndarray) -> None:
        n = len(X)
        self.branching_ = GAOQ(levels=self.levels, branching=self.branching).resolve_branching(n)
        device = resolve_device(self.device)
        data = as_tensor(X, device)
        cluster = balanced_kmeans if self.balanced else kmeans

        def first_level() -> tuple[np.ndarray, np.ndarray]:
            centroids, labels = cluster(data, self.branching_[0], n_iter=self.n_iter, seed=self.seed)
            return centroids.cpu().numpy(), labels.cpu().numpy()

        centroids, labels = on_first_rank(first_level)
        labels = torch.from_numpy(labels).to(device)
        self.centroids_ = [torch.from_numpy(centroids)]  # level l: (n_parents, b_l, d), level 1 as (b_1, d)
        codes = [labels]
        parent = labels
        n_parents = self.branching_[0]
        for level, b in enumerate(self.branching_[1:], start=2):
            lengths = torch.bincount(parent, minlength=n_parents)
            if int(lengths.min()) < b:
                p = int(lengths.argmin())
                raise DataError(f"hkmeans: a level-{level - 1} cluster holds {int(lengths[p])} items, fewer than its "
                                f"{b} children; lower quantize.branching or use balanced k-means")
            centroids, labels = cluster_children(data, parent, n_parents, b, balanced=self.balanced, seed=self.seed,
                                                 level=level, n_iter=self.n_iter)
            self.centroids_.append(centroids.cpu())
            codes.append(labels)
            parent = parent * b + labels
            n_parents *= b
        codes.append(self._last_level(data, parent, n_parents))
        self.codes_ = torch.stack(codes, dim=1).cpu().numpy()
        self.last_size_ = int(self.codes_[:, -1].max()) + 1
        self.digest_ = digest(X)

    @staticmethod
    def _last_level(data: torch.Tensor, group: torch.Tensor, n_groups: int) -> torch.Tensor:
        """Rank of every item within its prefix group by distance to the group's mean (row chunks)."""
        rows = chunk_rows(data.shape[1])
        sums = torch.zeros(n_groups, data.shape[1], dtype=data.dtype, device=data.device)
        for part in row_chunks(len(data), rows):
            sums.index_add_(0, group[part], data[part])
        means = sums / torch.bincount(group, minlength=n_groups).clamp(min=1)[:, None].to(data.dtype)
        distance = torch.empty(len(data), dtype=data.dtype, device=data.device)
        for part in row_chunks(len(data), rows):
            distance[part] = ((data[part] - means[group[part]]) ** 2).sum(1)
        return rank_within_groups(group, distance)

    def _encode(self, X: np.ndarray) -> np.ndarray:
        if digest(X) == self.digest_:
            return self.codes_.copy()
        if X.shape[1] != self.centroids_[0].shape[1]:
            raise DataError(f"hkmeans: fitted on {self.centroids_[0].shape[1]} dimensions, got {X.shape[1]}")
        data = torch.from_numpy(X)
        labels = nearest(data, self.centroids_[0])
        codes, parent = [labels], labels
        for centroids, b in zip(self.centroids_[1:], self.branching_[1:]):
            labels = nearest_child(data, parent, centroids)
            codes.append(labels)
            parent = parent * b + labels
        _, group = torch.unique(parent, return_inverse=True)
        codes.append(self._last_level(data, group, int(group.max()) + 1))
        return torch.stack(codes, dim=1).numpy()
