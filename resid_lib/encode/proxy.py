"""Embedding-quality proxy metrics (resid-method.md, E-stage).

Both score held-out windows (history = a user's training prefix, target = the
validation item, right-aligned so the target is the last position) by ranking all
items against the encoder's output at the target:

- **Metric 1** (collaborative): Recall@K of the target item when *all* of the
  target's fields are masked, i.e. predicted from the history alone.
- **Metric 2** (discriminative): Recall@K of the target item when *only* its
  item-id field is masked, i.e. recovered from its other fields plus the history.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from .. import distributed
from ..data.split import EvalSet
from ..metrics import hit_ranks, top_k


class TargetScorer(Protocol):
    """A model that scores every item for the (masked) last position of a window."""

    n_fields: int
    item_field: int

    def target_scores(self, windows: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        """Scores of all items for each window's target.

        Args:
            windows: (n, L) int64 item indices, right-aligned, PAD = -1; column L-1 is the target.
            target_mask: (n, J) bool, True where the target's field is masked.

        Returns:
            (n, n_items) float scores.
        """


def eval_windows(eval_set: EvalSet, max_len: int) -> np.ndarray:
    """(n, max_len) int64: the last ``max_len - 1`` history items, then the target in the last column."""
    history = eval_set.padded_histories(max_len - 1)
    return np.concatenate([history, eval_set.targets[:, None]], axis=1)


@torch.no_grad()
def masked_recall(
    scorer: TargetScorer,
    windows: np.ndarray,
    target_mask: np.ndarray,
    *,
    k: int = 10,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
) -> float:
    """Recall@k of each window's target item (its last column) with the given target fields masked.

    In a distributed run every rank scores its shard of the windows and the hit
    counts are summed over ranks (a collective: every rank must call it).

    Args:
        windows: (n, L) int64 right-aligned windows, target in the last column.
        target_mask: (J,) or (n, J) bool, which target fields are hidden from the model.
    """
    n = len(windows)
    if n == 0:
        return 0.0
    target_mask = np.array(np.broadcast_to(np.asarray(target_mask, dtype=bool), (n, scorer.n_fields)))
    mine = distributed.shard(n)
    hits = 0
    for start in range(mine.start, mine.stop, batch_size):
        part = slice(start, min(start + batch_size, mine.stop))
        w = torch.as_tensor(windows[part], device=device)
        m = torch.as_tensor(target_mask[part], device=device)
        ranked = top_k(scorer.target_scores(w, m), k)
        hits += int((hit_ranks(ranked, windows[part, -1]) > 0).sum())
    return sum(distributed.all_gather_objects(hits)) / n


def proxy_metrics(
    scorer: TargetScorer,
    eval_set: EvalSet,
    *,
    max_len: int,
    k: int = 10,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """``{"metric1": .., "metric2": ..}`` on ``eval_set`` (see the module docstring)."""
    windows = eval_windows(eval_set, max_len)
    all_fields = np.ones(scorer.n_fields, dtype=bool)
    item_only = np.zeros(scorer.n_fields, dtype=bool)
    item_only[scorer.item_field] = True
    return {
        "metric1": masked_recall(scorer, windows, all_fields, k=k, batch_size=batch_size, device=device),
        "metric2": masked_recall(scorer, windows, item_only, k=k, batch_size=batch_size, device=device),
    }
