"""Recall@K and NDCG@K under full ranking, on per-user ranked item lists.

With one relevant item per user (leave-one-out), Recall@K is 1 when the target is
among the top K and NDCG@K is ``1 / log2(rank + 1)`` for a hit at 1-based ``rank``
and 0 otherwise; both are averaged over users.
"""
from __future__ import annotations

import numpy as np
import torch

from .errors import ConfigError

DEFAULT_KS = (5, 10)


def hit_ranks(ranked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(n,) 1-based rank of each target in its ranked list, 0 where absent.

    Args:
        ranked: (n, L) item indices, best first.
        targets: (n,) target item index per user.
    """
    ranked = np.asarray(ranked)
    targets = np.asarray(targets)
    if ranked.ndim != 2 or ranked.shape[0] != targets.shape[0]:
        raise ConfigError(f"ranked lists {ranked.shape} and targets {targets.shape} do not match")
    hits = ranked == targets[:, None]
    return np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)


def recall_at_k(ranked: np.ndarray, targets: np.ndarray, k: int) -> float:
    ranks = hit_ranks(_check_k(ranked, k)[:, :k], targets)
    return float((ranks > 0).mean()) if len(ranks) else 0.0


def ndcg_at_k(ranked: np.ndarray, targets: np.ndarray, k: int) -> float:
    ranks = hit_ranks(_check_k(ranked, k)[:, :k], targets)
    if not len(ranks):
        return 0.0
    gains = np.zeros(len(ranks))
    hit = ranks > 0
    gains[hit] = 1.0 / np.log2(ranks[hit] + 1.0)
    return float(gains.mean())


def evaluate_rankings(ranked: np.ndarray, targets: np.ndarray, ks=DEFAULT_KS) -> dict[str, float]:
    """``{"recall@5": .., "recall@10": .., "ndcg@5": .., "ndcg@10": ..}`` for the given ks."""
    out = {}
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(ranked, targets, k)
    for k in ks:
        out[f"ndcg@{k}"] = ndcg_at_k(ranked, targets, k)
    return out


def recall_by_target_count(ranked: np.ndarray, targets: np.ndarray, counts: np.ndarray, k: int = 10,
                           edges=(1, 5, 20)) -> list[dict]:
    """Recall@K per bucket of the targets' training counts (how popular the target was).

    Args:
        ranked: (n, L) item indices, best first.
        targets: (n,) target item index per user.
        counts: (n_items,) training occurrences of each item.
        edges: increasing bucket starts after 0; ``(1, 5, 20)`` gives 0, 1-4, 5-19, 20+.

    Returns one ``{"bucket", "users", "share", "recall@K"}`` row per bucket, empty
    buckets included with recall 0.
    """
    ranks = hit_ranks(_check_k(ranked, k)[:, :k], targets)
    edges = [int(e) for e in edges]
    if not edges or edges[0] < 1 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ConfigError(f"bucket edges must be increasing integers >= 1, got {edges}")
    target_counts = np.asarray(counts)[np.asarray(targets)]
    starts = [0, *edges]
    rows = []
    for i, lo in enumerate(starts):
        hi = starts[i + 1] if i + 1 < len(starts) else None
        inside = (target_counts >= lo) & (target_counts < hi if hi is not None else True)
        label = f"{lo}+" if hi is None else (str(lo) if hi == lo + 1 else f"{lo}-{hi - 1}")
        n = int(inside.sum())
        rows.append({"bucket": label, "users": n, "share": n / max(len(ranks), 1),
                     f"recall@{k}": float((ranks[inside] > 0).mean()) if n else 0.0})
    return rows


def top_k(scores: torch.Tensor, k: int) -> np.ndarray:
    """(n, k) item indices of the highest scores per row (full ranking over all items)."""
    k = min(k, scores.shape[1])
    return torch.topk(scores, k, dim=1).indices.cpu().numpy()


def _check_k(ranked: np.ndarray, k: int) -> np.ndarray:
    ranked = np.asarray(ranked)
    if k < 1:
        raise ConfigError(f"K must be positive, got {k}")
    if ranked.ndim != 2 or ranked.shape[1] < k:
        raise ConfigError(f"need ranked lists of length >= {k}, got shape {ranked.shape}")
    return ranked
