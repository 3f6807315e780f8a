"""Training of the generative recommender, with model selection and exact resume.

Each epoch shuffles the sliding-window examples with ``epoch_rng(seed, epoch)``
and reseeds torch (dropout) from the same generator, so an epoch depends only on
the state at its start. After every epoch a :class:`~resid_lib.train.Checkpoint`
holds model, optimizer, schedule, early-stopping state, the best weights so far
and the history; resuming from it continues exactly as the uninterrupted run.
Every ``eval_every`` epochs (and after the last one) the model ranks a seeded
sample of ``eval_users`` validation users by constrained beam search; the epoch
with the best validation Recall@10 is kept.

Data-parallel training follows ``resid_lib.distributed``: every rank draws each
global batch of ``batch_size`` windows and trains on its share of the rows; the
validation users are split across ranks and the rankings gathered.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import distributed
from ..data.split import EvalSet
from ..errors import DataError
from ..train import (Checkpoint, EarlyStopping, cosine_schedule, epoch_rng, length_grouped_batches, progress,
                     report_epoch, seed_dropout, state_dict_cpu)
from .config import GenerateConfig
from .data import SIDTokenizer, training_windows
from .model import SIDGenerator
from .precision import autocast
from .recommend import evaluate
from .trie import SIDTrie

MONITOR = "valid_recall@10"


@dataclass
class TrainOutcome:
    """The trained model (best validation epoch's weights) and the per-epoch log."""

    model: SIDGenerator
    trie: SIDTrie
    tokenizer: SIDTokenizer
    best_epoch: int
    history: list[dict]


class GeneratorTrainer:
    """Trains a :class:`SIDGenerator` on sliding windows of the users' training prefixes.

    Args:
        config: the ``generate`` section.
        sids: (n_items, L) unique SIDs, row = item index.
        train_sequences: per user, the training prefix (item indices).
        valid: validation histories and targets (model selection only).
        seed: seed of initialisation, shuffling and dropout.
        device: where to train.
        checkpoint: file written after every epoch (and read by ``fit(resume=True)``).
        show_progress: progress bars on or off.
        on_epoch_end: called with each epoch's history row after its checkpoint was written.
    """

    def __init__(self, config: GenerateConfig, sids: np.ndarray, train_sequences: list[np.ndarray], valid: EvalSet, *,
                 seed: int = 0, device: torch.device | str = "cpu", checkpoint: str | Path | None = None,
                 show_progress: bool = True, on_epoch_end: Callable[[dict], None] | None = None):
        self.config = config
        self.trie = SIDTrie(sids)
        self.windows = training_windows(train_sequences, config.max_items)
        if len(self.windows) == 0:
            raise DataError("no training examples: every user's training prefix has fewer than 2 items")
        self.valid = valid.subset(config.eval_users, seed) if config.eval_users else valid
        if len(self.valid) == 0:
            raise DataError("no validation users for model selection (all sequences are shorter than the split needs)")
        self.seed = seed
        self.device = torch.device(device)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.show_progress = show_progress
        self.on_epoch_end = on_epoch_end

    def build_model(self) -> SIDGenerator:
        c = self.config
        torch.manual_seed(self.seed)
        return SIDGenerator(self.trie.level_sizes, d_model=c.d_model, n_heads=c.n_heads, d_ff=c.d_ff,
                            encoder_layers=c.encoder_layers, decoder_layers=c.decoder_layers,
                            dropout=c.dropout).to(self.device)

    def fit(self, resume: bool = False) -> TrainOutcome:
        """Train for ``config.epochs`` (or until early stopping); with ``resume`` continue from the checkpoint."""
        c = self.config
        model = self.build_model()
        tokenizer = SIDTokenizer(self.trie.sids.cpu().numpy(), model.layout)
        optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay, betas=(0.9, 0.98))
        steps_per_epoch = math.ceil(len(self.windows) / c.batch_size)
        scheduler = cosine_schedule(optimizer, c.epochs * steps_per_epoch, c.warmup_steps)
        stopper = EarlyStopping(patience=c.patience, mode="max")
        best_state, history, start = None, [], 0
        saved = Checkpoint.load(self.checkpoint) if resume and self.checkpoint is not None else None
        if saved is not None:
            model.load_state_dict(saved.model)
            optimizer.load_state_dict(saved.optimizer)
            scheduler.load_state_dict(saved.scheduler)
            stopper.load_state_dict(saved.stopper)
            best_state, history, start = saved.best_model, saved.history, saved.epoch
        step = distributed.loss_step(model)
        lengths = (self.windows[:, :-1] >= 0).sum(axis=1)
        for epoch in range(start + 1, c.epochs + 1):
            if stopper.should_stop:
                break
            t0 = time.perf_counter()
            loss = self._train_epoch(step, optimizer, scheduler, tokenizer, lengths, epoch)
            row = {"epoch": epoch, "loss": loss, MONITOR: float("nan")}
            if epoch % c.eval_every == 0 or epoch == c.epochs:
                metrics, _ = evaluate(model, self.trie, tokenizer, self.valid, max_items=c.max_items, beams=c.beams,
                                      top_k=c.top_k, batch_size=c.decode_batch_size, precision=c.precision,
                                      progress=self.show_progress, desc=f"valid epoch {epoch}")
                row[MONITOR] = metrics["recall@10"]
                if stopper.step(metrics["recall@10"], epoch):
                    best_state = state_dict_cpu(model)
            row["seconds"] = round(time.perf_counter() - t0, 3)
            history.append(row)
            report_epoch(row, c.epochs, stopper.best_epoch, enabled=self.show_progress)
            if self.checkpoint is not None:
                Checkpoint(epoch=epoch, model=state_dict_cpu(model), optimizer=optimizer.state_dict(),
                           scheduler=scheduler.state_dict(), stopper=stopper.state_dict(), best_model=best_state,
                           history=history).save(self.checkpoint)
                distributed.barrier()  # no rank starts the next epoch before rank 0 saved this one
            if self.on_epoch_end is not None:
                self.on_epoch_end(row)
        model.load_state_dict(best_state)
        model.eval()
        return TrainOutcome(model=model, trie=self.trie, tokenizer=tokenizer, best_epoch=stopper.best_epoch,
                            history=history)

    def _train_epoch(self, step: torch.nn.Module, optimizer, scheduler, tokenizer: SIDTokenizer,
                     lengths: np.ndarray, epoch: int) -> float:
        """One pass over all windows; returns the mean training loss.

        ``step`` is :func:`resid_lib.distributed.loss_step` of the model; each rank
        trains on its share of every global batch, its loss weighted by its share of
        the rows.
        """
        rng = epoch_rng(self.seed, epoch)
        seed_dropout(rng)
        batches = length_grouped_batches(lengths, self.config.batch_size, rng)
        step.train()
        total, count = 0.0, 0
        bar = progress(batches, desc=f"train epoch {epoch}/{self.config.epochs}", enabled=self.show_progress)
        for idx in bar:
            rows, weight = distributed.batch_share(np.ones(len(idx)))
            window = self.windows[idx[rows]]
            src = tokenizer.histories(window[:, :-1]).to(self.device)
            target = tokenizer.targets(window[:, -1]).to(self.device)
            with autocast(self.device, self.config.precision):
                loss = step(src, target) * weight
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.grad_clip:
                torch.nn.utils.clip_grad_norm_(step.parameters(), self.config.grad_clip)
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(idx)
            count += len(idx)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        return distributed.mean_over_ranks(total / count)
