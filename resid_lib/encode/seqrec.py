"""Shared machinery of the sequential recommenders (SASRec, BERT4Rec and their ``*`` variants).

Token ids inside the models: ``0`` = padding, ``1..n_items`` = items (item index + 1),
``n_items + 1`` = the [MASK] token (BERT4Rec). Sequences are right-aligned (newest item
in the last column) and positions are counted from the right end, so a batch cropped
to its longest sequence keeps every item's position embedding.

The output layer is tied: scores are dot products with the item vectors that also
form the input, i.e. the item-id embedding, or for the feature variants the fused
vector (item-id embedding combined with the item's categorical field embeddings).
Those item vectors are what :meth:`SequentialRecommender.item_embeddings` hands to
the Q-stage.

Training follows ``resid_lib.train``: epochs count from 1, each epoch's shuffling and
masking come from ``epoch_rng(seed, epoch - 1)`` and dropout from a torch seed drawn
from it, a checkpoint is written at every epoch end, and model selection uses validation
Recall@10 with early stopping, so ``--resume`` reproduces an uninterrupted run exactly.
Data-parallel training follows ``resid_lib.distributed``: every rank builds each global
batch of ``batch_size`` rows and trains on its share of them.
"""
from __future__ import annotations

import math
import time
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import distributed
from ..data.dataset import Dataset
from ..data.split import PAD, EvalSet, LeaveOneOut, pad_right_aligned
from ..errors import ConfigError, DataError, check_model_settings
from ..io import torch_save
from ..metrics import top_k
from ..train import (Checkpoint, EarlyStopping, cosine_schedule, epoch_rng, length_grouped_batches, progress,
                     report_epoch, seed_dropout, state_dict_cpu)
from .base import Recommender
from .config import EncodeConfig

SCORE_BATCH = 1024
"""Users scored at once during evaluation."""
BUCKET_POOL = 50
"""Batches per pool of similar-length training rows (see :func:`resid_lib.train.length_grouped_batches`)."""


@dataclass(frozen=True)
class SeqRecSettings:
    """The effective settings of one sequential recommender (``encode.seqrec`` over ``encode``)."""

    max_len: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    dropout: float
    lr: float
    weight_decay: float
    batch_size: int
    epochs: int
    patience: int
    eval_users: int
    feature_fields: list[str] | None
    fusion: Literal["sum", "concat"]
    mask_prob: float

    @classmethod
    def from_config(cls, cfg: EncodeConfig) -> "SeqRecSettings":
        """Resolve: a ``seqrec`` key that is set wins over the shared key of the same name."""
        seq = cfg.seqrec
        shared = ("max_len", "d_model", "n_layers", "n_heads", "d_ff", "dropout", "lr", "weight_decay",
                  "batch_size", "epochs", "patience")
        values = {k: getattr(seq, k) if getattr(seq, k) is not None else getattr(cfg, k) for k in shared}
        settings = cls(**values, eval_users=cfg.eval_users, feature_fields=seq.feature_fields,
                       fusion=seq.fusion, mask_prob=seq.mask_prob)
        settings.check()
        return settings

    def check(self) -> None:
        if self.max_len < 2:
            raise ConfigError(f"encode.seqrec.max_len must be at least 2 (one history item and a target), got {self.max_len}")
        check_model_settings("encode.seqrec", self, ("d_model", "n_layers", "n_heads", "d_ff", "batch_size", "epochs"))
        if not 0.0 < self.mask_prob < 1.0:
            raise ConfigError(f"encode.seqrec.mask_prob must be in (0, 1), got {self.mask_prob}")
        if self.lr <= 0:
            raise ConfigError(f"encode.seqrec.lr must be positive, got {self.lr}")
        if self.patience < 0:
            raise ConfigError(f"encode.seqrec.patience must be >= 0 (0 = no early stopping), got {self.patience}")
        if self.eval_users < 0:
            raise ConfigError(f"encode.eval_users must be >= 0 (0 = all), got {self.eval_users}")


def feature_codes(dataset: Dataset, fields: list[str] | None) -> tuple[list[str], np.ndarray]:
    """The categorical fields to fuse and their codes, (n_fields, n_items) int64 (0 = unknown)."""
    available = dataset.categorical_fields
    if fields is None:
        fields = available
        if not fields:
            raise DataError(f"dataset {dataset.name!r} has no categorical fields to fuse; "
                            "use the method without '_features'")
    for name in fields:
        if name not in available:
            raise ConfigError(f"encode.seqrec.feature_fields: {name!r} is not a categorical field of dataset "
                              f"{dataset.name!r} (categorical fields: {', '.join(available) or 'none'})")
    if not fields:
        raise ConfigError("encode.seqrec.feature_fields is empty; use the method without '_features'")
    return list(fields), np.stack([dataset.codes(name) for name in fields])


class ItemEmbedding(nn.Module):
    """Item vectors, optionally fused with the item's categorical field embeddings.

    Args:
        n_items: catalog size.
        d: vector size.
        field_codes: (n_fields, n_items) int64 field codes (0 = unknown), or None for item id only.
        field_sizes: vocabulary size (unknown included) of every fused field.
        fusion: ``sum`` adds the field embeddings to the id embedding; ``concat`` maps the
            concatenation ``[id, field_1, ..]`` (d * (1 + n_fields)) linearly to d.
        with_mask: add a learned [MASK] token (BERT4Rec).
    """

    def __init__(self, n_items: int, d: int, *, field_codes: np.ndarray | None = None,
                 field_sizes: list[int] | None = None, fusion: Literal["sum", "concat"] = "sum",
                 with_mask: bool = False):
        super().__init__()
        self.ids = nn.Embedding(n_items, d)
        self.mask_token = nn.Parameter(torch.zeros(1, d)) if with_mask else None
        self.fields = nn.ModuleList(nn.Embedding(size, d) for size in (field_sizes or []))
        codes = torch.as_tensor(field_codes if field_codes is not None else np.zeros((0, n_items)), dtype=torch.long)
        self.register_buffer("field_codes", codes, persistent=False)
        self.fuse = nn.Linear(d * (1 + len(self.fields)), d) if fusion == "concat" and len(self.fields) else None
        for table in [self.ids, *self.fields]:
            nn.init.trunc_normal_(table.weight, std=0.02)
        if self.mask_token is not None:
            nn.init.trunc_normal_(self.mask_token, std=0.02)

    def item_vectors(self) -> torch.Tensor:
        """(n_items, d) the vector of every item (fused for the feature variants)."""
        if not len(self.fields):
            return self.ids.weight
        parts = [self.ids.weight] + [table(codes) for table, codes in zip(self.fields, self.field_codes)]
        if self.fuse is not None:
            return self.fuse(torch.cat(parts, dim=-1))
        return torch.stack(parts).sum(0)

    def token_table(self, items: torch.Tensor) -> torch.Tensor:
        """(n_tokens, d): a zero padding row, the item vectors ``items``, then the [MASK] vector if any."""
        rows = [items.new_zeros(1, items.shape[1]), items]
        if self.mask_token is not None:
            rows.append(self.mask_token)
        return torch.cat(rows, dim=0)


class SequenceTransformer(nn.Module):
    """Item embedding + learned positions + pre-norm Transformer blocks + final LayerNorm.

    ``causal`` makes position t attend to positions <= t only (SASRec); otherwise
    attention is bidirectional over the non-padding positions (BERT4Rec).
    """

    def __init__(self, items: ItemEmbedding, *, max_len: int, d: int, n_layers: int, n_heads: int,
                 d_ff: int, dropout: float, causal: bool):
        super().__init__()
        self.items = items
        self.max_len = max_len
        self.n_heads = n_heads
        self.causal = causal
        self.positions = nn.Embedding(max_len, d)
        nn.init.trunc_normal_(self.positions.weight, std=0.02)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(d, n_heads, d_ff, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)

    def attention_mask(self, tokens: torch.Tensor) -> torch.Tensor:
        """(batch * heads, L, L) bool, True where attention is blocked.

        Keys at padding positions are blocked (plus later keys when causal); every
        position may attend to itself, so padding rows never become all-blocked.
        """
        length = tokens.shape[1]
        allowed = (tokens != 0)[:, None, :].expand(-1, length, -1)
        if self.causal:
            allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=tokens.device).tril()
        allowed = allowed | torch.eye(length, dtype=torch.bool, device=tokens.device)
        return (~allowed).repeat_interleave(self.n_heads, dim=0)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode right-aligned token sequences.

        Args:
            tokens: (batch, L) token ids, L <= max_len, padding (0) on the left.

        Returns:
            hidden (batch, L, d) and the item vectors (n_items, d) used as output weights.
        """
        items = self.items.item_vectors()
        length = tokens.shape[1]
        x = F.embedding(tokens, self.items.token_table(items))
        x = x + self.positions.weight[self.max_len - length:]
        hidden = self.blocks(self.dropout(x), mask=self.attention_mask(tokens))
        return self.norm(hidden), items

    def loss(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean full-softmax cross-entropy over the labelled positions.

        Args:
            tokens: (batch, L) input token ids, padding (0) on the left.
            labels: (batch, L) target item indices, PAD (-1) where a position has no loss.
        """
        hidden, items = self(tokens)
        where = labels != PAD
        return F.cross_entropy(hidden[where] @ items.T, labels[where])


def to_tokens(windows: np.ndarray) -> np.ndarray:
    """Item indices with ``PAD`` (-1) to token ids (padding 0, item i -> i + 1)."""
    return np.where(windows == PAD, 0, windows + 1)


def crop_left(*arrays: np.ndarray) -> list[np.ndarray]:
    """Drop the leading columns that are padding in every row of the first array."""
    filled = (arrays[0] != 0).any(axis=0)
    start = int(np.argmax(filled)) if filled.any() else arrays[0].shape[1] - 1
    return [a[:, start:] for a in arrays]


class SequentialRecommender(Recommender):
    """A Transformer next-item recommender whose item vectors are the E-stage output.

    Subclasses set ``causal``, ``uses_features`` and ``extra_items`` and define each epoch's
    training examples (:meth:`_epoch_examples`) and the inference input (:meth:`_inference_tokens`).
    """

    causal: bool = True
    uses_features: bool = False
    extra_items: int = 0
    """Items per training example beyond ``max_len``."""

    def __init__(self, cfg: EncodeConfig, *, seed: int, device: torch.device, progress: bool = True):
        super().__init__(cfg, seed=seed, device=device, progress=progress)
        self.settings = SeqRecSettings.from_config(cfg)
        self.model: SequenceTransformer | None = None
        self.n_items = 0
        self.fields: list[str] = []
        self.best_epoch = -1
        self.valid_metrics: dict[str, float] = {}
        self.test_metrics: dict[str, float] = {}

    # ------------------------------------------------------------ training
    def build(self, dataset: Dataset) -> SequenceTransformer:
        """A freshly initialised model for ``dataset`` (seeded by ``self.seed``)."""
        s = self.settings
        codes, sizes = None, None
        if self.uses_features:
            self.fields, codes = feature_codes(dataset, s.feature_fields)
            sizes = [dataset.cardinality(name) for name in self.fields]
        torch.manual_seed(self.seed)
        items = ItemEmbedding(dataset.n_items, s.d_model, field_codes=codes, field_sizes=sizes, fusion=s.fusion,
                              with_mask=not self.causal)
        model = SequenceTransformer(items, max_len=s.max_len, d=s.d_model, n_layers=s.n_layers,
                                    n_heads=s.n_heads, d_ff=s.d_ff, dropout=s.dropout, causal=self.causal)
        return model.to(self.device)

    def fit(self, dataset: Dataset, split: LeaveOneOut, *, workdir: Path | None = None,
            resume: bool = False) -> "SequentialRecommender":
        """Train with validation Recall@10 model selection, then score valid and test with the best model."""
        s = self.settings
        self.n_items = dataset.n_items
        self.history = []
        self.model = self.build(dataset)
        examples = self._prepare(split.train)
        steps_per_epoch = math.ceil(len(examples) / s.batch_size)
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=s.lr, weight_decay=s.weight_decay,
                                      betas=(0.9, 0.98))
        scheduler = cosine_schedule(optimizer, s.epochs * steps_per_epoch)
        stopper = EarlyStopping(patience=s.patience, mode="max")
        monitor = split.valid.subset(s.eval_users, seed=self.seed) if s.eval_users > 0 else split.valid
        ckpt_path = workdir / "checkpoint.pt" if workdir is not None else None
        best_state = state_dict_cpu(self.model)
        done, finished = 0, False
        if resume and ckpt_path is not None and (ckpt := Checkpoint.load(ckpt_path)) is not None:
            self.model.load_state_dict(ckpt.model)
            optimizer.load_state_dict(ckpt.optimizer)
            scheduler.load_state_dict(ckpt.scheduler)
            stopper.load_state_dict(ckpt.stopper)
            best_state, self.history = ckpt.best_model, list(ckpt.history)
            done, finished = ckpt.epoch, ckpt.extra.get("finished", False)

        step = distributed.loss_step(self.model)
        for epoch in range(done + 1, s.epochs + 1 if not finished else done + 1):
            t0 = time.perf_counter()
            loss = self._run_epoch(step, examples, epoch, optimizer, scheduler)
            valid = self.evaluate(monitor)
            row = {"epoch": epoch, "loss": loss, "seconds": round(time.perf_counter() - t0, 3),
                   "valid_recall@10": valid["recall@10"], "valid_ndcg@10": valid["ndcg@10"]}
            self.history.append(row)
            if stopper.step(valid["recall@10"], epoch):
                best_state = state_dict_cpu(self.model)
            report_epoch(row, s.epochs, stopper.best_epoch, enabled=self.progress)
            finished = stopper.should_stop or epoch == s.epochs
            if ckpt_path is not None:
                Checkpoint(epoch=epoch, model=state_dict_cpu(self.model), optimizer=optimizer.state_dict(),
                           scheduler=scheduler.state_dict(), stopper=stopper.state_dict(), best_model=best_state,
                           history=self.history, extra={"finished": finished}).save(ckpt_path)
                distributed.barrier()  # no rank starts the next epoch before rank 0 saved this one
            if finished:
                break

        self.model.load_state_dict(best_state)
        self.best_epoch = stopper.best_epoch
        self.valid_metrics = self.evaluate(split.valid)
        self.test_metrics = self.evaluate(split.test)
        return self

    def _run_epoch(self, step: nn.Module, examples: np.ndarray, epoch: int, optimizer: torch.optim.Optimizer,
                   scheduler) -> float:
        """One pass over the training examples (``epoch`` counts from 1); returns the mean loss.

        ``step`` is :func:`resid_lib.distributed.loss_step` of the model. Every rank builds
        each global batch and computes the loss on its share of the rows, weighted so
        that the averaged gradient is that of the mean over the global batch's labelled
        positions.
        """
        rng = epoch_rng(self.seed, epoch - 1)  # keyed by the 0-based index: the draws of earlier versions
        seed_dropout(rng)
        step.train()
        total, count = 0.0, 0
        batches = self._epoch_batches(examples, rng)
        n_batches = math.ceil(len(examples) / self.settings.batch_size)
        for inputs, targets in progress(batches, desc=f"{self.method} epoch {epoch}/{self.settings.epochs}",
                                        enabled=self.progress, total=n_batches):
            rows, weight = distributed.batch_share((targets != PAD).sum(axis=1))
            inputs, targets = crop_left(inputs[rows], targets[rows])
            loss = step(torch.as_tensor(inputs, device=self.device),
                        torch.as_tensor(targets, device=self.device)) * weight
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item()
            count += 1
        return distributed.mean_over_ranks(total / max(1, count))

    def _epoch_batches(self, examples: np.ndarray, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(inputs, targets) batches of one epoch: token ids and target item indices (PAD = no loss)."""
        inputs, targets = self._epoch_examples(examples, rng)
        for rows in length_grouped_batches((inputs != 0).sum(axis=1), self.settings.batch_size, rng, BUCKET_POOL):
            yield inputs[rows], targets[rows]

    def _prepare(self, train: list[np.ndarray]) -> np.ndarray:
        """(n_users_with_2+_items, max_len + extra_items): each training prefix's most recent items,
        right-aligned (PAD -1), built once."""
        usable = [seq for seq in train if len(seq) >= 2]
        if not usable:
            raise DataError(f"{self.method}: no user has two or more training items; nothing to learn from")
        return pad_right_aligned(usable, self.settings.max_len + self.extra_items)

    @abstractmethod
    def _epoch_examples(self, examples: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One epoch's (inputs (n, L) token ids, targets (n, L) item indices with PAD where no loss)."""

    @abstractmethod
    def _inference_tokens(self, histories: list[np.ndarray]) -> np.ndarray:
        """(n, L) token ids whose last position's output scores the next item."""

    # ---------------------------------------------------------- inference
    @torch.no_grad()
    def scores(self, histories: list[np.ndarray]) -> Iterator[torch.Tensor]:
        """Batches of (batch, n_items) next-item scores for the given histories."""
        self._require_model()
        self.model.eval()
        tokens = self._inference_tokens(histories)
        for lo in range(0, len(tokens), SCORE_BATCH):
            batch = crop_left(tokens[lo:lo + SCORE_BATCH])[0]
            hidden, items = self.model(torch.as_tensor(batch, device=self.device))
            yield hidden[:, -1] @ items.T

    def recommend(self, eval_set: EvalSet, k: int) -> np.ndarray:
        """(n, k) item indices ranked over all items, best first."""
        if len(eval_set) == 0:
            return np.zeros((0, k), dtype=np.int64)
        # score users sorted by history length so that each batch crops to few columns
        order = np.argsort([len(h) for h in eval_set.histories], kind="stable")
        ranked = np.concatenate([top_k(s, k) for s in self.scores([eval_set.histories[i] for i in order])])
        out = np.empty_like(ranked)
        out[order] = ranked
        return out

    # ------------------------------------------------------------ outputs
    @torch.no_grad()
    def item_embeddings(self) -> np.ndarray:
        """(n_items, d_model) float32: the output item vectors (fused for the feature variants)."""
        self._require_model()
        self.model.eval()
        return self.model.items.item_vectors().detach().cpu().numpy().astype(np.float32)

    def metrics(self) -> dict:
        return {"method": self.method, "best_epoch": self.best_epoch, "valid": self.valid_metrics,
                "test": self.test_metrics}

    def save(self, path: Path) -> None:
        """``model.pt``: the best model's weights with the settings and fused fields."""
        self._require_model()
        torch_save(path, {"method": self.method, "settings": self.settings.__dict__, "fields": self.fields,
                          "n_items": self.n_items, "model": state_dict_cpu(self.model)})

    def _require_model(self) -> None:
        if self.model is None:
            raise ConfigError(f"{self.method}: call fit() before using the model")
