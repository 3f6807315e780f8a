"""G-stage settings (section ``generate``).

Defaults follow the paper's generative recommender: a T5-style encoder-decoder
with 4 + 4 layers, d=128, FFN 512, 4 heads, dropout 0.1, AdamW (lr 5e-3, weight
decay 1e-5) with a cosine schedule, and beam search with 50 beams. ``batch_size``
defaults to 256 so a CPU run makes progress; the GPU preset uses the paper's 2048.
``precision: auto`` trains and decodes with bfloat16 matrix products (weights and
optimizer state stay float32) on GPUs and CPUs with native bfloat16 support, and in
float32 elsewhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError, check_model_settings


@dataclass
class GenerateConfig:
    """Model size, training budget and decoding of the generative recommender."""

    max_items: int = 20          # most recent history items fed to the encoder
    d_model: int = 128
    n_heads: int = 4
    d_ff: int = 512
    encoder_layers: int = 4
    decoder_layers: int = 4
    dropout: float = 0.1
    epochs: int = 50
    batch_size: int = 256
    lr: float = 5e-3
    weight_decay: float = 1e-5
    warmup_steps: int = 500      # linear warm-up, then cosine decay to zero at the last epoch
    grad_clip: float = 1.0       # max global gradient norm (0 = no clipping)
    eval_every: int = 2          # epochs between validation evaluations (the last epoch is always evaluated)
    eval_users: int = 2000       # validation users sampled for model selection (0 = all)
    patience: int = 5            # evaluations without a better validation Recall@10 before stopping (0 = never)
    beams: int = 50
    top_k: int = 10              # ranked items kept per user (predictions.parquet); beams must be >= top_k
    decode_batch_size: int = 64   # users decoded together (small batches stay in CPU caches; GPU presets raise it)
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # bf16 = bf16 matmuls, fp32 weights; auto = bf16 where fast

    def __post_init__(self) -> None:
        positive = ("max_items", "d_model", "n_heads", "d_ff", "encoder_layers", "decoder_layers", "epochs",
                    "batch_size", "eval_every", "beams", "top_k", "decode_batch_size")
        check_model_settings("generate", self, positive)
        for name in ("warmup_steps", "eval_users", "patience", "grad_clip"):
            if getattr(self, name) < 0:
                raise ConfigError(f"generate.{name} must not be negative, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"generate.lr must be positive, got {self.lr}")
        if self.beams < self.top_k:
            raise ConfigError(
                f"generate.beams ({self.beams}) is narrower than generate.top_k ({self.top_k}): "
                f"beam search returns at most one item per beam; raise beams or lower top_k"
            )
