"""The generative recommender: a T5-style encoder-decoder over Semantic-ID tokens.

Vocabulary: ``PAD = 0``, ``BOS = 1`` (the decoder's start token), then one token
range per SID level: code ``c`` of level ``l`` is token ``2 + offset_l + c`` with
``offset_l = size_0 + .. + size_{l-1}``. All SIDs have the same length L, so no
end-of-sequence token is needed.

Input: the history's SIDs flattened oldest to newest, ``(batch, items * L)`` tokens
with PAD on the left. Output: the next item's L codes, one level per decoder
position; position ``l`` is scored by a softmax over level ``l``'s codes only, so
``log p(sid) = sum_l log p(c_l | c_<l, history)``.

Architecture (T5): pre-norm residual blocks with RMSNorm, ReLU feed-forward, a
final norm after each stack, an untied output projection. Dropout is applied to
the token embeddings and to the output of every residual branch (the original
Transformer's placement); T5 also drops attention weights and the feed-forward
hidden layer, left out here because drawing those large random masks dominates
training time on CPU. Positions are T5 relative position biases:
relative distances are put into log-spaced buckets, one learned scalar per head
and bucket is added to the attention logits; each stack computes its bias once
and every layer reuses it (bidirectional buckets in the encoder, causal ones in
the decoder, none in cross-attention).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..io import torch_save

PAD = 0
BOS = 1
N_SPECIAL = 2
NEG = -1e9  # additive attention mask for positions that must not be attended


class TokenLayout:
    """Maps (level, code) to token ids and back; see the module docstring."""

    def __init__(self, level_sizes: tuple[int, ...] | list[int]):
        self.level_sizes = tuple(int(s) for s in level_sizes)
        self.offsets = tuple(int(o) for o in np.r_[0, np.cumsum(self.level_sizes)[:-1]] + N_SPECIAL)
        self.vocab_size = N_SPECIAL + sum(self.level_sizes)

    @property
    def n_levels(self) -> int:
        return len(self.level_sizes)

    def tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """(..., T) codes of levels 0..T-1 (T <= L) -> (..., T) token ids."""
        offsets = torch.tensor(self.offsets[:codes.shape[-1]], dtype=codes.dtype, device=codes.device)
        return codes + offsets

    def level_tokens(self, level: int, codes: torch.Tensor) -> torch.Tensor:
        """Token ids of codes that all belong to ``level``."""
        return codes + self.offsets[level]

    def level_slice(self, level: int) -> slice:
        return slice(self.offsets[level], self.offsets[level] + self.level_sizes[level])


# ---------------------------------------------------------------- positions
def relative_bucket(relative: torch.Tensor, *, bidirectional: bool, num_buckets: int, max_distance: int) -> torch.Tensor:
    """T5 bucket of each relative distance ``key_pos - query_pos`` (int64 tensor of any shape).

    Small distances get a bucket each, larger ones share log-spaced buckets up to
    ``max_distance``; bidirectional buckets keep keys before and after the query apart.
    """
    bucket = torch.zeros_like(relative)
    distance = -relative  # how far back the key lies
    if bidirectional:
        num_buckets //= 2
        bucket = bucket + (distance < 0).long() * num_buckets
        distance = distance.abs()
    else:
        distance = distance.clamp(min=0)
    exact = num_buckets // 2
    log_ratio = torch.log(distance.clamp(min=1).float() / exact) / math.log(max_distance / exact)
    far = (exact + (log_ratio * (num_buckets - exact)).long()).clamp(max=num_buckets - 1)
    return bucket + torch.where(distance < exact, distance, far)


class RelativePositionBias(nn.Module):
    """Learned per-head bias of each (query, key) pair's relative-distance bucket."""

    def __init__(self, n_heads: int, *, bidirectional: bool, num_buckets: int = 32, max_distance: int = 128):
        super().__init__()
        self.bidirectional, self.num_buckets, self.max_distance = bidirectional, num_buckets, max_distance
        self.bias = nn.Embedding(num_buckets, n_heads)

    def forward(self, query_pos: torch.Tensor, key_pos: torch.Tensor) -> torch.Tensor:
        """(1, heads, Q, K) bias for query positions (Q,) and key positions (K,)."""
        bucket = relative_bucket(key_pos[None, :] - query_pos[:, None], bidirectional=self.bidirectional,
                                 num_buckets=self.num_buckets, max_distance=self.max_distance)
        return self.bias(bucket).permute(2, 0, 1).unsqueeze(0)


# ------------------------------------------------------------------ blocks
class Attention(nn.Module):
    """Multi-head attention with separate projections, so keys/values can be cached."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.q = nn.Linear(d_model, d_model, bias=False)
        self.k = nn.Linear(d_model, d_model, bias=False)
        self.v = nn.Linear(d_model, d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, d) -> (B, heads, N, d_head)."""
        return x.unflatten(-1, (self.n_heads, self.d_head)).transpose(1, 2)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected keys and values of ``x`` (B, N, d), each (B, heads, N, d_head)."""
        return self.split(self.k(x)), self.split(self.v(x))

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Queries from ``x`` (B, Q, d) attend to ``k, v`` (B, heads, K, d_head); ``bias`` broadcasts to (B, heads, Q, K).

        Written out (softmax in float32) rather than fused: for the short sequences of SID
        histories and beams this is faster on CPU than the fused kernels, and as fast on GPU.
        """
        q = self.split(self.q(x))
        scores = (q @ k.transpose(-1, -2)) * self.d_head ** -0.5 + bias
        weights = torch.softmax(scores.float(), dim=-1).to(v.dtype)
        return self.out((weights @ v).transpose(1, 2).flatten(-2))

    def forward_single(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """One query per sequence, ``x`` (N, 1, d), over a few keys ``k, v`` (N, heads, T, d_head).

        Same result as :meth:`forward` (inference); elementwise products instead of N x heads tiny
        matrix products, which is much faster for the many short sequences of beam decoding.
        """
        q = self.split(self.q(x))  # (N, heads, 1, d_head)
        scores = (q * k).sum(-1) * self.d_head ** -0.5 + bias.squeeze(2)  # (N, heads, T)
        weights = torch.softmax(scores.float(), dim=-1).to(v.dtype)
        y = (weights[..., None] * v).sum(2)  # (N, heads, d_head)
        return self.out(y.flatten(-2)[:, None, :])


class FeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.up = nn.Linear(d_model, d_ff, bias=False)
        self.down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.relu(self.up(x), inplace=True))  # in place: the pre-activation is not needed again


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.norm_attn, self.attn = nn.RMSNorm(d_model), Attention(d_model, n_heads)
        self.norm_ff, self.ff = nn.RMSNorm(d_model), FeedForward(d_model, d_ff)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        h = self.norm_attn(x)
        x = x + self.drop(self.attn(h, *self.attn.keys_values(h), bias))
        return x + self.drop(self.ff(self.norm_ff(x)))


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.norm_self, self.self_attn = nn.RMSNorm(d_model), Attention(d_model, n_heads)
        self.norm_cross, self.cross_attn = nn.RMSNorm(d_model), Attention(d_model, n_heads)
        self.norm_ff, self.ff = nn.RMSNorm(d_model), FeedForward(d_model, d_ff)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, self_bias: torch.Tensor, memory_kv: tuple[torch.Tensor, torch.Tensor],
                memory_bias: torch.Tensor) -> torch.Tensor:
        """Teacher-forced pass over the whole target, ``x`` (B, T, d)."""
        h = self.norm_self(x)
        x = x + self.drop(self.self_attn(h, *self.self_attn.keys_values(h), self_bias))
        x = x + self.drop(self.cross_attn(self.norm_cross(x), *memory_kv, memory_bias))
        return x + self.drop(self.ff(self.norm_ff(x)))

    def step(self, x: torch.Tensor, self_bias: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None,
             memory_kv: tuple[torch.Tensor, torch.Tensor], memory_bias: torch.Tensor):
        """One decoding position for W beams per user (inference: no dropout).

        Args:
            x: (B, W, d) the newest token of each beam.
            self_bias: (1, heads, 1, t + 1) position bias of the new position over positions 0..t.
            past: cached self-attention keys and values, each (B * W, heads, t, d_head), or None at t = 0.
            memory_kv: the encoder's keys and values for this layer, each (B, heads, S, d_head); the W
                beams of a user are that user's queries, so the encoder output is never copied per beam.
            memory_bias: (B, 1, 1, S) padding mask of the encoder output.
        Returns:
            ((B, W, d) output, updated (keys, values) cache).
        """
        b, w, d = x.shape
        h = self.norm_self(x).reshape(b * w, 1, d)
        k, v = self.self_attn.keys_values(h)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        x = x + self.self_attn.forward_single(h, k, v, self_bias).reshape(b, w, d)
        x = x + self.cross_attn(self.norm_cross(x), *memory_kv, memory_bias)
        return x + self.ff(self.norm_ff(x)), (k, v)


# ------------------------------------------------------------------- model
@dataclass
class Memory:
    """Encoded histories: states (B, S, d) and the additive padding mask (B, 1, 1, S)."""

    states: torch.Tensor
    bias: torch.Tensor


@dataclass
class DecodeState:
    """What incremental decoding carries from one level to the next."""

    memory_kv: list[tuple[torch.Tensor, torch.Tensor]]  # per decoder layer, each (B, heads, S, d_head)
    memory_bias: torch.Tensor                           # (B, 1, 1, S)
    past: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per layer, each (B * W, heads, t, d_head)
    length: int = 0                                     # decoder positions consumed so far
    beams: int = 1

    def reorder(self, parent: torch.Tensor) -> None:
        """Keep the caches of the beams each new beam came from; ``parent`` (B, W_new) indexes the old beams."""
        b, w_new = parent.shape
        rows = (parent + torch.arange(b, device=parent.device)[:, None] * self.beams).flatten()
        self.past = [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in self.past]
        self.beams = w_new


class SIDGenerator(nn.Module):
    """T5-style encoder-decoder that reads a history of SIDs and writes the next item's SID."""

    def __init__(self, level_sizes: tuple[int, ...] | list[int], *, d_model: int = 128, n_heads: int = 4,
                 d_ff: int = 512, encoder_layers: int = 4, decoder_layers: int = 4, dropout: float = 0.1,
                 num_buckets: int = 32, max_distance: int = 128):
        super().__init__()
        self.hparams = dict(level_sizes=list(level_sizes), d_model=d_model, n_heads=n_heads, d_ff=d_ff,
                            encoder_layers=encoder_layers, decoder_layers=decoder_layers, dropout=dropout,
                            num_buckets=num_buckets, max_distance=max_distance)
        self.layout = TokenLayout(level_sizes)
        self.embed = nn.Embedding(self.layout.vocab_size, d_model, padding_idx=PAD)
        self.embed_drop = nn.Dropout(dropout)
        self.encoder_bias = RelativePositionBias(n_heads, bidirectional=True, num_buckets=num_buckets, max_distance=max_distance)
        self.decoder_bias = RelativePositionBias(n_heads, bidirectional=False, num_buckets=num_buckets, max_distance=max_distance)
        self.encoder = nn.ModuleList(EncoderLayer(d_model, n_heads, d_ff, dropout) for _ in range(encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(d_model, n_heads, d_ff, dropout) for _ in range(decoder_layers))
        self.encoder_norm, self.decoder_norm = nn.RMSNorm(d_model), nn.RMSNorm(d_model)
        self.head = nn.Linear(d_model, self.layout.vocab_size, bias=False)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=module.in_features ** -0.5)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=1.0)
            if module.padding_idx is not None:
                nn.init.zeros_(module.weight[module.padding_idx])

    @property
    def n_levels(self) -> int:
        return self.layout.n_levels

    # ------------------------------------------------------------ encoder
    def encode(self, src: torch.Tensor) -> Memory:
        """Encode history tokens ``src`` (B, S) (PAD = 0) into a :class:`Memory`."""
        pad_bias = (src == PAD).to(self.embed.weight.dtype)[:, None, None, :] * NEG
        pos = torch.arange(src.shape[1], device=src.device)
        bias = self.encoder_bias(pos, pos) + pad_bias
        x = self.embed_drop(self.embed(src))
        for layer in self.encoder:
            x = layer(x, bias)
        return Memory(self.encoder_norm(x), pad_bias)

    # ---------------------------------------------------- teacher forcing
    def level_logits(self, hidden: torch.Tensor, level: int) -> torch.Tensor:
        """(..., size_level) logits over level ``level``'s codes from decoder states (..., d)."""
        return F.linear(hidden, self.head.weight[self.layout.level_slice(level)])

    def decoder_states(self, memory: Memory, codes: torch.Tensor) -> torch.Tensor:
        """(B, T, d) decoder outputs; position ``l`` has seen BOS and codes ``< l`` of ``codes`` (B, T <= L)."""
        tokens = self.layout.tokens(codes)
        inp = torch.cat([torch.full_like(tokens[:, :1], BOS), tokens[:, :-1]], dim=1)
        t = inp.shape[1]
        pos = torch.arange(t, device=inp.device)
        causal = torch.full((t, t), NEG, device=inp.device).triu(1)
        self_bias = self.decoder_bias(pos, pos) + causal
        x = self.embed_drop(self.embed(inp))
        for layer in self.decoder:
            x = layer(x, self_bias, layer.cross_attn.keys_values(memory.states), memory.bias)
        return self.decoder_norm(x)

    def forward(self, src: torch.Tensor, codes: torch.Tensor) -> list[torch.Tensor]:
        """Per level ``l``, logits (B, size_l) of the target's code ``l`` given its earlier codes."""
        h = self.decoder_states(self.encode(src), codes)
        return [self.level_logits(h[:, level], level) for level in range(self.n_levels)]

    def loss(self, src: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy over the L target codes ``codes`` (B, L)."""
        logits = self(src, codes)
        return sum(F.cross_entropy(lg, codes[:, level]) for level, lg in enumerate(logits)) / self.n_levels

    @torch.no_grad()
    def sequence_log_prob(self, src: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """(B,) ``log p(codes | src)`` summed over levels, by teacher forcing."""
        logits = self(src, codes)
        return sum(F.log_softmax(lg, -1).gather(1, codes[:, level:level + 1]).squeeze(1)
                   for level, lg in enumerate(logits))

    # --------------------------------------------------- incremental decoding
    def start_decoding(self, memory: Memory) -> DecodeState:
        """Project the encoder output once per user for every decoder layer's cross-attention."""
        kv = [layer.cross_attn.keys_values(memory.states) for layer in self.decoder]
        return DecodeState(memory_kv=kv, memory_bias=memory.bias)

    def decode_step(self, state: DecodeState, tokens: torch.Tensor) -> torch.Tensor:
        """Feed the newest token of each beam, ``tokens`` (B, W), and return (B, W, size_t) log-probs of level t.

        ``t = state.length`` is the level being predicted; W must equal ``state.beams``.
        """
        t = state.length
        pos = torch.arange(t + 1, device=tokens.device)
        self_bias = self.decoder_bias(pos[t:], pos)
        x = self.embed(tokens)
        past = []
        for i, layer in enumerate(self.decoder):
            x, kv = layer.step(x, self_bias, state.past[i] if state.past else None, state.memory_kv[i], state.memory_bias)
            past.append(kv)
        state.past, state.length = past, t + 1
        return F.log_softmax(self.level_logits(self.decoder_norm(x), t).float(), dim=-1)

    # --------------------------------------------------------- persistence
    def save(self, path: str | Path, **extra) -> None:
        """Write hyper-parameters, weights and any ``extra`` entries atomically."""
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        torch_save(path, {"hparams": self.hparams, "state_dict": state, **extra})

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> "SIDGenerator":
        blob = torch.load(path, map_location=map_location, weights_only=False)
        model = cls(**blob["hparams"])
        model.load_state_dict(blob["state_dict"])
        return model
