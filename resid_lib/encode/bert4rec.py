"""BERT4Rec (Sun et al., 2019): bidirectional Transformer trained with the Cloze task.

Training masks each item of a user's most recent ``max_len`` training items with
probability ``mask_prob`` (at least one per sequence) and predicts the masked items
with full-softmax cross-entropy over all items. At inference a [MASK] token is
appended after the history and its output ranks the next item. ``BERT4RecFeatures``
fuses the item's categorical field embeddings into each item vector.
"""
from __future__ import annotations

import numpy as np

from ..data.split import PAD, pad_right_aligned
from .seqrec import SequentialRecommender, to_tokens


def cloze_mask(windows: np.ndarray, mask_prob: float, rng: np.random.Generator) -> np.ndarray:
    """(n, L) bool: positions to mask; each non-padding position with ``mask_prob``, at least one per row.

    Args:
        windows: (n, L) item indices, PAD (-1) where empty; every row has an item.
    """
    valid = windows != PAD
    mask = (rng.random(windows.shape) < mask_prob) & valid
    empty = np.flatnonzero(~mask.any(axis=1))
    if len(empty):
        # one uniformly chosen non-padding position in each row that drew no mask
        counts = valid[empty].sum(axis=1)
        pick = (rng.random(len(empty)) * counts).astype(np.int64)
        first = valid.shape[1] - counts
        mask[empty, first + pick] = True
    return mask


class BERT4Rec(SequentialRecommender):
    """Masked item prediction over the last ``max_len`` items of each training prefix."""

    method = "bert4rec"
    causal = False

    def _epoch_examples(self, examples: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Inputs with masked positions replaced by [MASK]; targets = the masked items (PAD elsewhere)."""
        mask = cloze_mask(examples, self.settings.mask_prob, rng)
        inputs = np.where(mask, self.n_items + 1, to_tokens(examples))
        targets = np.where(mask, examples, PAD)
        return inputs, targets

    def _inference_tokens(self, histories: list[np.ndarray]) -> np.ndarray:
        """The last max_len - 1 history items followed by [MASK]."""
        tokens = to_tokens(pad_right_aligned(histories, self.settings.max_len - 1))
        return np.concatenate([tokens, np.full((len(tokens), 1), self.n_items + 1)], axis=1)


class BERT4RecFeatures(BERT4Rec):
    """BERT4Rec* : item vectors fuse the item-id embedding with its categorical field embeddings."""

    method = "bert4rec_features"
    uses_features = True
