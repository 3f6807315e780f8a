"""Trie-constrained beam search, batched over users and beams.

Every level is one tensor step for the whole batch: the decoder scores the next
code for all (user, beam) pairs, codes that would leave the trie of existing SIDs
are masked to ``-inf``, and each user keeps the ``beams`` best extensions of all
its beams (one ``topk`` over beams x codes). The encoder runs once per user and
its keys/values are shared by that user's beams. After the last level each beam
is an item, ranked by ``log p(sid | history)`` summed over levels.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError
from .model import BOS, SIDGenerator
from .trie import SIDTrie


@dataclass
class BeamResult:
    """Per user, the top-K items found, best first.

    Attributes:
        items: (B, K) int64 item indices, -1 where fewer than K items were reachable.
        scores: (B, K) float log-likelihood of each item's SID, -inf where empty.
        codes: (B, K, L) int64 the decoded SIDs.
    """

    items: torch.Tensor
    scores: torch.Tensor
    codes: torch.Tensor


@torch.no_grad()
def beam_search(model: SIDGenerator, trie: SIDTrie, src: torch.Tensor, *, beams: int = 50, top_k: int = 10) -> BeamResult:
    """Rank items for a batch of histories ``src`` (B, S) tokens by constrained beam search.

    With ``beams`` at least the number of items the search is exhaustive: the result
    is the exact ranking of all items by sequence log-likelihood.
    """
    if beams < top_k:
        raise ConfigError(f"beam width {beams} is narrower than top_k {top_k}: each beam yields one item")
    if trie.n_levels != model.n_levels or any(t > m for t, m in zip(trie.level_sizes, model.layout.level_sizes)):
        raise ConfigError(f"SID trie with level sizes {trie.level_sizes} does not fit a model made for {model.layout.level_sizes}")
    batch = src.shape[0]
    state = model.start_decoding(model.encode(src))
    nodes = torch.zeros(batch, 1, dtype=torch.int64, device=src.device)  # the root prefix
    scores = torch.zeros(batch, 1, device=src.device)
    codes = torch.zeros(batch, 1, 0, dtype=torch.int64, device=src.device)
    tokens = torch.full((batch, 1), BOS, dtype=torch.int64, device=src.device)
    for level in range(model.n_levels):
        log_probs = model.decode_step(state, tokens)[..., :trie.level_sizes[level]]  # (B, W, size)
        size = log_probs.shape[-1]
        alive = nodes >= 0
        allowed = trie.allowed(level, nodes.clamp(min=0)) & alive[..., None]
        candidates = (scores[..., None] + log_probs).masked_fill(~allowed, float("-inf")).flatten(1)
        scores, flat = candidates.topk(min(beams, candidates.shape[1]), dim=1)  # sorted, best first
        parent, code = flat // size, flat % size
        nodes = trie.advance(level, nodes.gather(1, parent).clamp(min=0), code)
        nodes = torch.where(torch.isfinite(scores), nodes, torch.full_like(nodes, -1))
        codes = torch.cat([codes.gather(1, parent[..., None].expand(-1, -1, level)), code[..., None]], dim=2)
        if level + 1 < model.n_levels:
            state.reorder(parent)
            tokens = model.layout.level_tokens(level, code)
    missing = top_k - nodes.shape[1]  # a catalog smaller than top_k
    if missing > 0:
        nodes = torch.cat([nodes, nodes.new_full((batch, missing), -1)], dim=1)
        scores = torch.cat([scores, scores.new_full((batch, missing), float("-inf"))], dim=1)
        codes = torch.cat([codes, codes.new_full((batch, missing, codes.shape[2]), -1)], dim=1)
    return BeamResult(items=nodes[:, :top_k], scores=scores[:, :top_k], codes=codes[:, :top_k])
