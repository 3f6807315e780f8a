"""Q-stage settings (section ``quantize``).

Each key is a keyword argument of the quantizers that use it (``make_quantizer``
passes a quantizer exactly the keys its constructor takes), so an ablation swaps
``method`` and keeps the rest. ``None`` means "the method's own default".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

QuantizeMethod = Literal["gaoq", "rqvae", "hkmeans", "rqkmeans", "pq"]


@dataclass
class QuantizeConfig:
    """Settings of every quantizer; see each quantizer's docstring for the details.

    Attributes:
        method: which quantizer runs.
        levels: code positions per SID (gaoq, hkmeans: including the derived last level;
            rqvae, rqkmeans: residual levels; pq: subspaces).
        branching: gaoq / hkmeans children per node for levels 1..levels-1, or "auto"
            (the paper's rule: b1 x b2 about 10-20 times smaller than the item count).
        anchors: gaoq level anchors: "random" (the paper's orthonormal QR anchors) or "learned".
        n_anchors: gaoq anchors per aligned level (>= branching; None: equal to it).
        anchor_fallback: gaoq may use near-orthogonal anchors when more are needed than dimensions.
        codebook_size: rqvae / rqkmeans / pq codes per level.
        balanced: exactly balanced k-means (None: hkmeans yes, rqkmeans no).
        n_iter: Lloyd iterations of every k-means.
        latent_dim, hidden_dims, epochs, batch_size, lr, beta: RQ-VAE (TIGER) training.
    """

    method: QuantizeMethod = "gaoq"
    levels: int = 3
    branching: list[int] | Literal["auto"] = "auto"
    anchors: Literal["random", "learned"] = "random"
    n_anchors: int | list[int] | None = None
    anchor_fallback: bool = True
    codebook_size: int = 256
    balanced: bool | None = None
    n_iter: int = 30
    latent_dim: int = 32
    hidden_dims: list[int] = field(default_factory=lambda: [512, 256, 128])
    epochs: int = 100
    batch_size: int = 1024
    lr: float = 1e-3
    beta: float = 0.25
