"""Per-parent work of the tree quantizers, spread over the ranks of a process group.

GAOQ's aligned levels and hierarchical k-means cluster every parent's items on their own,
GAOQ then matches every parent's children to the anchors and numbers every prefix group's
items. That work is independent per parent, so when :func:`resid_lib.distributed.active`
every rank takes a contiguous share of the parents (:func:`resid_lib.distributed.shard`)
and the results are gathered in parent order; in a single process the one share is all of
them. Each parent's k-means is seeded by ``(seed, level, parent)`` and is independent of the
other parents (see :mod:`~resid_lib.quantize.kmeans`), so every split gives exactly the codes
of a single process. Work that cannot be split (the level-1 clustering, learned anchors)
runs on rank 0 alone and its result is handed to every rank, so all ranks agree on it even
where a GPU's sums are not reproducible.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from .. import distributed
from .kmeans import group_rows, kmeans_groups


def over_ranks(n: int, work: Callable[[slice], Any]) -> list[Any]:
    """``work(share)`` on this rank's contiguous share of ``range(n)``; every rank's result, in rank order."""
    return distributed.all_gather_objects(work(distributed.shard(n)))


def on_first_rank(work: Callable[[], Any]) -> Any:
    """``work()`` run on rank 0 only; its result (picklable, e.g. numpy arrays) on every rank."""
    return distributed.broadcast_object(work() if distributed.is_main() else None)


def cluster_children(
    X: torch.Tensor, parent: torch.Tensor, n_parents: int, b: int, *, balanced: bool, seed: int, level: int, n_iter: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split every parent's items into b clusters (exactly balanced or plain k-means).

    Args:
        X: (n, d) items; parent: (n,) int64 parent of every item, ``0..n_parents-1``, each
            parent holding at least b items.
    Returns:
        centroids (n_parents, b, d) on X's device, child (n,) int64 cluster of every item
        within its parent (``0..b-1``).
    """
    index, _ = group_rows(parent, n_parents)

    def work(share: slice) -> tuple[np.ndarray, np.ndarray]:
        if share.start == share.stop:
            return np.empty((0, b, X.shape[1]), dtype=np.float32), np.empty(0, dtype=np.int64)
        seeds = [(seed, level, p) for p in range(share.start, share.stop)]
        centroids, labels = kmeans_groups(X, index[share], b, balanced=balanced, n_iter=n_iter, seed=seeds)
        return centroids.cpu().numpy(), labels[labels >= 0].cpu().numpy()

    parts = over_ranks(n_parents, work)
    centroids = torch.from_numpy(np.concatenate([c for c, _ in parts])).to(X.device)
    child = torch.empty_like(parent)
    child[index[index >= 0]] = torch.from_numpy(np.concatenate([labels for _, labels in parts])).to(X.device)
    return centroids, child
