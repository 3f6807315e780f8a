"""FAMAE: Field-Aware Masked Auto-Encoding (resid-method.md, E-stage).

Items are described by J categorical fields, the item id first. A window of at
most ``max_len`` items (right-aligned, target last) becomes one token per position:
the sum of the item's J field embeddings plus a learned position embedding. At the
target only, K ~ Uniform{1..J} fields chosen uniformly without replacement are
replaced by learned per-field mask vectors. A bidirectional pre-norm Transformer
encodes the window; its output ``h_T`` at the target predicts every masked field
with tied logits ``sqrt(d) * cos(h_T, e_v)`` over that field's vocabulary.

The item representation handed to the Q-stage is the concatenation of the item's J
field embeddings, shape (n_items, J * d).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import distributed
from ..data.dataset import Dataset
from ..data.split import EvalSet, LeaveOneOut, sliding_windows
from ..errors import ConfigError, DataError, RunDirError
from ..io import torch_save
from ..train import (Checkpoint, EarlyStopping, cosine_schedule, epoch_rng, progress, report_epoch,
                     seed_dropout, state_dict_cpu)
from .attention import AttentionSample, capture_attention
from .base import Encoder, check_training_settings
from .config import EncodeConfig, FamaeConfig
from .proxy import proxy_metrics

ITEM_FIELD = "item_id"


# --------------------------------------------------------------------------- fields
def resolve_fields(dataset: Dataset, requested: list[str] | None) -> list[str]:
    """The modelled fields, item id first: ``requested`` checked, or item_id + every categorical field."""
    categorical = dataset.categorical_fields
    if requested is None:
        if not categorical:
            raise DataError(
                f"dataset {dataset.name!r} has no categorical fields; FAMAE needs item_id plus at least one "
                "categorical field (use encode.method=sasrec or text for id-only or text-only data)"
            )
        return [ITEM_FIELD, *categorical]
    seen: set[str] = set()
    for name in requested:
        if name in seen:
            raise ConfigError(f"encode.famae.fields lists {name!r} twice")
        seen.add(name)
        if name == ITEM_FIELD or name in categorical:
            continue
        if name in {f.name for f in dataset.fields}:
            raise ConfigError(f"encode.famae.fields: {name!r} is a {dataset.field(name).kind} field; FAMAE models "
                              f"categorical fields only ({', '.join(categorical) or 'none'})")
        raise ConfigError(f"encode.famae.fields: unknown field {name!r} (categorical fields of dataset "
                          f"{dataset.name!r}: {', '.join(categorical) or 'none'})")
    if ITEM_FIELD not in seen:
        raise ConfigError(f"encode.famae.fields must include {ITEM_FIELD!r}")
    others = [n for n in requested if n != ITEM_FIELD]
    if not others:
        raise ConfigError("encode.famae.fields: FAMAE needs at least one categorical field besides item_id")
    return [ITEM_FIELD, *others]


def field_code_table(dataset: Dataset, fields: list[str]) -> np.ndarray:
    """(n_items, J) int64 value codes: the item index for item_id, ``dataset.codes`` (0 = unknown) otherwise."""
    columns = [np.arange(dataset.n_items, dtype=np.int64) if f == ITEM_FIELD else dataset.codes(f) for f in fields]
    return np.stack(columns, axis=1)


def field_weights(fields: list[str], weights: dict[str, float]) -> list[float]:
    """Loss weight alpha_k per field (default 1), checked against the modelled fields."""
    for name, value in weights.items():
        if name not in fields:
            raise ConfigError(f"encode.famae.field_weights: {name!r} is not a modelled field ({', '.join(fields)})")
        if not value >= 0:
            raise ConfigError(f"encode.famae.field_weights.{name} must be >= 0, got {value}")
    alphas = [float(weights.get(f, 1.0)) for f in fields]
    if not any(alphas):
        raise ConfigError("encode.famae.field_weights: at least one field needs a positive weight")
    return alphas


def draw_field_masks(rng: np.random.Generator, n: int, n_fields: int) -> np.ndarray:
    """(n, J) bool target masks: K ~ Uniform{1..J} per row, then K fields uniformly without replacement."""
    k = rng.integers(1, n_fields + 1, size=n)
    ranks = rng.random((n, n_fields)).argsort(axis=1).argsort(axis=1)
    return ranks < k[:, None]


# ---------------------------------------------------------------------------- model
# Windows are mostly PAD (short histories, right-aligned), so tokens travel *packed*:
# (N, d) holds the N valid tokens of a (B, L) batch row by row, and only the attention
# core sees the padded (B, L) layout. Token-wise work (projections, FFN, dropout)
# scales with N instead of B * L; PAD positions never influence a valid token.
def last_rows(valid: torch.Tensor) -> torch.Tensor:
    """(B,) packed row of each window's last token; ``valid`` (B, L) with the last column always True."""
    return valid.sum(dim=1).cumsum(dim=0) - 1


def scatter_padded(packed: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(N, D) packed tokens -> (B, L, D) with zeros at PAD positions."""
    out = packed.new_zeros(*valid.shape, packed.shape[-1])
    out[valid] = packed
    return out


class SelfAttention(nn.Module):
    """Multi-head attention of each token over the valid tokens of its own window."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, h: torch.Tensor, valid: torch.Tensor, last: torch.Tensor | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend over each window.

        Args:
            h: (N, d) packed tokens of a (B, L) batch.
            valid: (B, L) bool, True where a token is present.
            last: (B,) packed rows of the windows' last tokens; when given, only they query.

        Returns:
            (N, d), or (B, d) with ``last``; with ``need_weights`` also the weights (B, H, Lq, L).
        """
        b, d = valid.shape[0], h.shape[1]
        heads = lambda t: t.view(b, t.shape[1], self.n_heads, -1).transpose(1, 2)  # noqa: E731
        k, v = (heads(t) for t in scatter_padded(self.key_value(h), valid).chunk(2, dim=-1))
        q = heads(self.query(h[last])[:, None] if last is not None else scatter_padded(self.query(h), valid))
        allowed = valid[:, None, None, :]
        p = self.dropout if self.training else 0.0
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            weights = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
            out = F.dropout(weights, p, self.training) @ v
        else:
            weights = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)
        out = out.transpose(1, 2).reshape(b, -1, d)
        return self.out(out[:, 0] if last is not None else out[valid]), weights


class Block(nn.Module):
    """Pre-norm Transformer layer: x + Attn(LN(x)), then x + FFN(LN(x)) with a ReLU FFN."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, n_heads, dropout)
        self.ffn = nn.Sequential(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, last: torch.Tensor | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Packed (N, d) -> (N, d), or (B, d) for the windows' last tokens only (``last`` given)."""
        a, weights = self.attn(self.norm1(x), valid, last, need_weights)
        x = (x if last is None else x[last]) + self.drop(a)
        return x + self.drop(self.ffn(self.norm2(x))), weights


class FamaeModel(nn.Module):
    """Field embeddings, per-field mask vectors, position embeddings and the bidirectional encoder.

    Args:
        item_codes: (n_items, J) int64 value code of every field for every item; column 0 is item_id.
        vocab_sizes: J vocabulary sizes (item_id: n_items; categorical: values + unknown).
    """

    item_field = 0

    def __init__(self, item_codes: torch.Tensor, vocab_sizes: list[int], *, max_len: int, d_model: int,
                 n_layers: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.register_buffer("item_codes", item_codes.long())
        self.n_fields, self.max_len, self.d_model = len(vocab_sizes), max_len, d_model
        self.field_emb = nn.ModuleList(nn.Embedding(v, d_model) for v in vocab_sizes)
        self.mask_emb = nn.Parameter(torch.empty(self.n_fields, d_model))
        self.pos_emb = nn.Embedding(max_len, d_model)
        for table in [*self.field_emb, self.pos_emb]:
            nn.init.normal_(table.weight, std=0.02)
        nn.init.normal_(self.mask_emb, std=0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)

    def tokens(self, windows: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        """Packed (N, d) input tokens: sum of field embeddings (masked ones replaced at the target) + position.

        Args:
            windows: (B, L) item indices, right-aligned, PAD -1, L <= max_len; the last column is the target.
            target_mask: (B, J) bool, the target's fields to replace by their mask vectors.
        """
        valid = windows >= 0
        rows, cols = valid.nonzero(as_tuple=True)
        codes = self.item_codes[windows[rows, cols]]  # (N, J)
        masked = torch.zeros_like(codes, dtype=torch.bool)
        masked[last_rows(valid)] = target_mask
        x = sum(torch.where(masked[:, k, None], self.mask_emb[k], emb(codes[:, k]))
                for k, emb in enumerate(self.field_emb))
        return x + self.pos_emb(cols + (self.max_len - windows.shape[1]))

    def encode_target(self, windows: torch.Tensor, target_mask: torch.Tensor,
                      need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``h_T`` (B, d) at the last position and, with ``need_weights``, its attention (B, layers, H, L)."""
        valid = windows >= 0
        last = last_rows(valid)
        x = self.drop(self.tokens(windows, target_mask))
        rows = []
        for i, block in enumerate(self.blocks):
            x, w = block(x, valid, last if i == len(self.blocks) - 1 else None, need_weights)
            if need_weights:
                rows.append(w[:, :, -1])
        return self.norm(x), (torch.stack(rows, dim=1) if need_weights else None)

    def field_logits(self, h: torch.Tensor, field: int, values: torch.Tensor | None = None) -> torch.Tensor:
        """``sqrt(d) * cos(h, e_v)``: (B, V) over the field's vocabulary, or (B, n) for ``values`` (n,)."""
        table = self.field_emb[field].weight if values is None else self.field_emb[field](values)
        return math.sqrt(self.d_model) * F.normalize(h, dim=-1) @ F.normalize(table, dim=-1).T

    def loss(self, windows: torch.Tensor, target_mask: torch.Tensor, alphas: list[float],
             negatives: list[tuple[torch.Tensor, torch.Tensor] | None] | None = None) -> torch.Tensor:
        """Mean over masked (window, field) pairs of ``alpha_k * CE``.

        Args:
            windows: (B, L) training windows, target last.
            target_mask: (B, J) bool masked target fields.
            alphas: J loss weights.
            negatives: per field None (full softmax) or (values (n,), log_q (V,)) for a sampled
                softmax with logQ correction, the true value always a candidate.
        """
        h = self.encode_target(windows, target_mask)[0]
        truth = self.item_codes[windows[:, -1]]  # (B, J)
        total = h.new_zeros(())
        for k in range(self.n_fields):
            rows = target_mask[:, k].nonzero().squeeze(1)
            if alphas[k] == 0 or len(rows) == 0:
                continue
            hk, yk = h[rows], truth[rows, k]
            sample = negatives[k] if negatives else None
            if sample is None:
                ce = F.cross_entropy(self.field_logits(hk, k), yk, reduction="sum")
            else:
                values, log_q = sample
                true_logit = math.sqrt(self.d_model) * F.cosine_similarity(hk, self.field_emb[k](yk), dim=-1)
                neg_logits = self.field_logits(hk, k, values) - log_q[values]
                neg_logits = neg_logits.masked_fill(values[None, :] == yk[:, None], float("-inf"))
                logits = torch.cat([(true_logit - log_q[yk])[:, None], neg_logits], dim=1)
                ce = -logits.log_softmax(dim=1)[:, 0].sum()
            total = total + alphas[k] * ce
        return total / target_mask.sum().clamp(min=1)

    def target_scores(self, windows: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        """(B, n_items) tied item-id logits of the target (see ``resid_lib.encode.proxy``)."""
        return self.field_logits(self.encode_target(windows, target_mask)[0], self.item_field)

    def target_attention(self, windows: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        """(B, n_layers, n_heads, L) attention of the target position over the window."""
        return self.encode_target(windows, target_mask, need_weights=True)[1]

    def item_representations(self) -> torch.Tensor:
        """(n_items, J * d): each item's J field embeddings, concatenated in field order."""
        return torch.cat([emb(self.item_codes[:, k]) for k, emb in enumerate(self.field_emb)], dim=1)


class NegativeSampler:
    """Shared negatives per batch for the sampled softmax of fields with large vocabularies.

    A field gets sampled negatives only when its vocabulary exceeds ``n_negatives + 1``;
    ``popularity`` draws values in proportion to their training frequency (+1 smoothing).
    """

    def __init__(self, vocab_sizes: list[int], n_negatives: int, *, kind: str, value_counts: list[np.ndarray],
                 device: torch.device):
        self.n_negatives = n_negatives
        self.probs: list[np.ndarray | None] = []
        self.log_q: list[torch.Tensor | None] = []
        for v, counts in zip(vocab_sizes, value_counts):
            if v <= n_negatives + 1:
                self.probs.append(None)
                self.log_q.append(None)
                continue
            p = np.full(v, 1.0 / v) if kind == "uniform" else (counts + 1.0) / (counts + 1.0).sum()
            self.probs.append(p)
            self.log_q.append(torch.as_tensor(np.log(p), dtype=torch.float32, device=device))
        self.device = device

    def draw(self, rng: np.random.Generator) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
        out: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        for p, log_q in zip(self.probs, self.log_q):
            if p is None:
                out.append(None)
                continue
            values = rng.choice(len(p), size=self.n_negatives, p=p)
            out.append((torch.as_tensor(values, device=self.device), log_q))
        return out


# -------------------------------------------------------------------------- trainer
class FamaeEncoder(Encoder):
    """Trains :class:`FamaeModel` on sliding windows of the training prefixes, early-stopped on a proxy metric."""

    method = "famae"

    def __init__(self, cfg: EncodeConfig, *, seed: int, device: torch.device, progress: bool = True):
        super().__init__(cfg, seed=seed, device=device, progress=progress)
        self.model: FamaeModel | None = None
        self.fields: list[str] = []
        self.best: dict = {}

    @property
    def famae(self) -> FamaeConfig:
        return self.cfg.famae

    def fit(self, dataset: Dataset, split: LeaveOneOut, *, workdir: Path | None = None,
            resume: bool = False) -> "FamaeEncoder":
        cfg = self.cfg
        check_training_settings(cfg)
        if self.famae.sampled_negatives < 0:
            raise ConfigError(f"encode.famae.sampled_negatives must be >= 0, got {self.famae.sampled_negatives}")
        self.history = []
        self.fields = resolve_fields(dataset, self.famae.fields)
        alphas = field_weights(self.fields, self.famae.field_weights)
        codes = field_code_table(dataset, self.fields)
        vocab_sizes = [dataset.n_items] + [dataset.cardinality(f) for f in self.fields[1:]]
        windows = sliding_windows(split.train, cfg.max_len)
        if len(windows) == 0:
            raise DataError(f"dataset {dataset.name!r}: no training windows "
                            "(every training prefix has fewer than 2 items)")
        valid = split.valid.subset(cfg.eval_users, self.seed) if cfg.eval_users else split.valid

        torch.manual_seed(self.seed)
        model = FamaeModel(torch.as_tensor(codes), vocab_sizes, max_len=cfg.max_len, d_model=cfg.d_model,
                           n_layers=cfg.n_layers, n_heads=cfg.n_heads, d_ff=cfg.d_ff, dropout=cfg.dropout)
        model.to(self.device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps_per_epoch = math.ceil(len(windows) / cfg.batch_size)
        scheduler = cosine_schedule(optimizer, cfg.epochs * steps_per_epoch)
        stopper = EarlyStopping(patience=cfg.patience)
        sampler = None
        if self.famae.sampled_negatives:
            train_items = np.concatenate(split.train)
            counts = [np.bincount(codes[train_items, k], minlength=v) for k, v in enumerate(vocab_sizes)]
            sampler = NegativeSampler(vocab_sizes, self.famae.sampled_negatives, kind=self.famae.negative_sampling,
                                      value_counts=counts, device=self.device)

        ckpt_path = Path(workdir) / "checkpoint.pt" if workdir is not None else None
        start_epoch, best_state = 0, None
        if resume and ckpt_path is not None and (ckpt := Checkpoint.load(ckpt_path)) is not None:
            try:
                model.load_state_dict(ckpt.model)
            except RuntimeError as exc:
                raise RunDirError(f"{ckpt_path} does not match this model ({exc}); start a new run") from None
            optimizer.load_state_dict(ckpt.optimizer)
            scheduler.load_state_dict(ckpt.scheduler)
            stopper.load_state_dict(ckpt.stopper)
            best_state, self.history, start_epoch = ckpt.best_model, list(ckpt.history), ckpt.epoch

        step = distributed.loss_step(model)
        windows_t = torch.as_tensor(windows, device=self.device)
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            if stopper.should_stop:
                break
            t0 = time.perf_counter()
            loss = self._train_epoch(step, optimizer, scheduler, windows_t, alphas, sampler, epoch)
            seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            model.eval()
            scores = proxy_metrics(model, valid, max_len=cfg.max_len, device=self.device)
            self.history.append({"epoch": epoch, "loss": loss, **scores, "seconds": round(seconds, 3),
                                 "eval_seconds": round(time.perf_counter() - t0, 3)})
            if stopper.step(self._monitored(scores), epoch):
                best_state = state_dict_cpu(model)
            report_epoch(self.history[-1], cfg.epochs, stopper.best_epoch, enabled=self.progress)
            if ckpt_path is not None:
                Checkpoint(epoch=epoch, model=state_dict_cpu(model), optimizer=optimizer.state_dict(),
                           scheduler=scheduler.state_dict(), stopper=stopper.state_dict(), best_model=best_state,
                           history=self.history).save(ckpt_path)
                distributed.barrier()  # no rank starts the next epoch before rank 0 saved this one

        model.load_state_dict(best_state)
        model.eval()
        self.model = model
        best_row = next(r for r in self.history if r["epoch"] == stopper.best_epoch)
        self.best = {"best_epoch": stopper.best_epoch, "metric1": best_row["metric1"], "metric2": best_row["metric2"]}
        return self

    def _train_epoch(self, step: nn.Module, optimizer: torch.optim.Optimizer, scheduler, windows: torch.Tensor,
                     alphas: list[float], sampler: NegativeSampler | None, epoch: int) -> float:
        """One pass over the shuffled windows (``epoch`` counts from 1); returns the mean training loss.

        ``step`` is :func:`resid_lib.distributed.loss_step` of the model. Every rank draws
        the permutation, masks and negatives of each global batch of ``batch_size``
        windows and computes the loss on its share of the rows, weighted so that the
        averaged gradient is that of the mean over the global batch's masked fields.
        """
        rng = epoch_rng(self.seed, epoch)
        seed_dropout(rng)
        order = torch.as_tensor(rng.permutation(len(windows)), device=self.device)
        batch = self.cfg.batch_size
        n_batches = math.ceil(len(windows) / batch)
        step.train()
        total = torch.zeros((), device=self.device)
        bar = progress(range(n_batches), desc=f"famae epoch {epoch}/{self.cfg.epochs}", enabled=self.progress)
        for b in bar:
            idx = order[b * batch:(b + 1) * batch]
            masks = draw_field_masks(rng, len(idx), len(alphas))  # (B, J) for the global batch
            negatives = sampler.draw(rng) if sampler else None
            rows, weight = distributed.batch_share(masks.sum(axis=1))
            loss = step(windows[idx[rows]], torch.as_tensor(masks[rows], device=self.device), alphas,
                        negatives) * weight
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.detach() * len(idx)
        return distributed.mean_over_ranks(float(total) / len(windows))

    def _monitored(self, scores: dict[str, float]) -> float:
        which = self.famae.early_stop_metric
        return scores["metric1"] + scores["metric2"] if which == "sum" else scores[which]

    def _trained(self) -> FamaeModel:
        if self.model is None:
            raise ConfigError("FAMAE encoder is not trained yet: call fit() first")
        return self.model

    @torch.no_grad()
    def item_embeddings(self) -> np.ndarray:
        """(n_items, J * d) float32: concatenated field embeddings, fields in ``self.fields`` order."""
        return self._trained().item_representations().float().cpu().numpy()

    def metrics(self) -> dict:
        return {"method": self.method, **self.best, "fields": self.fields,
                "epochs": len(self.history), "dim": len(self.fields) * self.cfg.d_model}

    def attention_sample(self, eval_set: EvalSet) -> AttentionSample | None:
        if self.famae.attention_users <= 0 or len(eval_set) == 0:
            return None
        return capture_attention(self._trained(), eval_set, n_users=self.famae.attention_users,
                                 max_len=self.cfg.max_len, seed=self.seed, device=self.device)

    def save(self, path: Path) -> None:
        model = self._trained()
        torch_save(path, {"method": self.method, "fields": self.fields, "config": asdict(self.cfg),
                          "vocab_sizes": [e.num_embeddings for e in model.field_emb],
                          "state_dict": state_dict_cpu(model)})
