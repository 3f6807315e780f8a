"""Training examples and batches for the generative recommender.

A training example is a sliding window over one user's training prefix (the
TIGER / ReSID recipe): up to ``max_items`` history items and the next item as
target. Windows are kept as item indices (PAD = -1) and turned into SID tokens
batch by batch, so memory stays at ``(n_windows, max_items + 1)`` integers.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data.split import PAD as ITEM_PAD
from ..data.split import pad_right_aligned, sliding_windows
from .model import PAD, TokenLayout


class SIDTokenizer:
    """Turns item indices into SID tokens of a :class:`TokenLayout`.

    Args:
        sids: (n_items, L) int64 codes, row = item index.
        layout: the model's token layout.
    """

    def __init__(self, sids: np.ndarray, layout: TokenLayout):
        self.sids = torch.as_tensor(np.asarray(sids, dtype=np.int64))
        self.item_tokens = layout.tokens(self.sids)  # (n_items, L)
        self.n_levels = self.sids.shape[1]

    def histories(self, items: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(n, T) right-aligned item indices (PAD -1) -> (n, S) tokens, S = L x the longest history.

        Leading columns that are padding in every row are dropped.
        """
        items = torch.as_tensor(items, dtype=torch.int64)
        present = items != ITEM_PAD
        longest = int(present.sum(dim=1).max()) if len(items) else 0
        items, present = items[:, items.shape[1] - longest:], present[:, items.shape[1] - longest:]
        tokens = self.item_tokens[items.clamp(min=0)].masked_fill(~present[..., None], PAD)
        return tokens.flatten(1)

    def targets(self, items: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(n,) item indices -> (n, L) codes."""
        return self.sids[torch.as_tensor(items, dtype=torch.int64)]


def training_windows(train_sequences: list[np.ndarray], max_items: int) -> np.ndarray:
    """(n_windows, max_items + 1) int64: every history (up to ``max_items``) + next item of every training prefix."""
    return sliding_windows(train_sequences, max_items + 1, min_len=2)


def history_matrix(histories: list[np.ndarray], max_items: int) -> np.ndarray:
    """(n, max_items) int64: the most recent ``max_items`` items of each history, right-aligned, PAD -1."""
    return pad_right_aligned(histories, max_items)
