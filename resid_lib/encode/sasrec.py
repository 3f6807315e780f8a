"""SASRec (Kang & McAuley, 2018) with full-softmax cross-entropy, and SASRec* with item fields.

Causal self-attention over a user's most recent ``max_len`` items; the output at
every position is scored against all items (tied output = item vectors) and trained
with cross-entropy on the next item, the strong modern variant of SASRec.
``SASRecFeatures`` fuses the item's categorical field embeddings into each item
vector (input and output alike).
"""
from __future__ import annotations

import numpy as np

from ..data.split import pad_right_aligned
from .seqrec import SequentialRecommender, to_tokens


class SASRec(SequentialRecommender):
    """Next-item prediction at every position of each user's training prefix."""

    method = "sasrec"
    causal = True
    extra_items = 1  # inputs are items 1..L, targets items 2..L+1

    def _epoch_examples(self, examples: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Inputs = items 1..L as tokens, targets = items 2..L+1 (the next item at each position)."""
        inputs = to_tokens(examples[:, :-1])
        targets = np.where(inputs == 0, -1, examples[:, 1:])
        return inputs, targets

    def _inference_tokens(self, histories: list[np.ndarray]) -> np.ndarray:
        return to_tokens(pad_right_aligned(histories, self.settings.max_len))


class SASRecFeatures(SASRec):
    """SASRec* : item vectors fuse the item-id embedding with its categorical field embeddings."""

    method = "sasrec_features"
    uses_features = True
