"""Training utilities shared by every trained model (encoders, RQ-VAE, generator).

The recipe that makes ``--resume`` reproduce an uninterrupted run exactly:

- shuffle each epoch with ``epoch_rng(seed, epoch)`` (order depends on the epoch only)
  and reseed torch's dropout from it with :func:`seed_dropout`;
- at the end of every epoch save a :class:`Checkpoint` holding model, optimizer,
  scheduler, early-stopping state, the epoch and the torch RNG state;
- on resume, load it, restore the RNG state and continue at the next epoch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from . import distributed
from .io import torch_save


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The Generator for one epoch's shuffling and masking draws."""
    return np.random.default_rng([seed, epoch])


def seed_dropout(rng: np.random.Generator) -> None:
    """Reseed torch from an epoch's generator, offset by the process rank.

    An epoch's dropout then depends on (seed, epoch, rank) only: a resumed run
    repeats it, and data-parallel ranks draw different masks for their rows.
    """
    torch.manual_seed(int(rng.integers(2**62)) + distributed.rank())


def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                           pool_batches: int = 32) -> list[np.ndarray]:
    """Shuffled mini-batches of row indices whose rows have similar lengths.

    Rows are shuffled, cut into pools of ``pool_batches`` batches, sorted by length
    inside each pool and batched; the batch order is then shuffled. Batches of short
    sequences crop to a few columns, which saves most of the work on sparse data.

    Args:
        lengths: (n,) non-padding length of every row.
    """
    order = rng.permutation(len(lengths))
    pool = batch_size * pool_batches
    batches = []
    for lo in range(0, len(order), pool):
        part = order[lo:lo + pool]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0):
    """Linear warm-up then cosine decay to zero over ``total_steps`` optimizer steps."""
    total_steps = max(1, total_steps)

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class EarlyStopping:
    """Stop when the monitored value has not improved for ``patience`` evaluations."""

    patience: int = 3
    mode: str = "max"
    best: float | None = None
    best_epoch: int = -1
    bad_epochs: int = 0

    def step(self, value: float, epoch: int) -> bool:
        """Record one evaluation; True when it is a new best."""
        better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
        if better:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]


@dataclass
class Checkpoint:
    """Everything needed to continue training after an interruption."""

    epoch: int
    model: dict
    optimizer: dict
    scheduler: dict | None = None
    stopper: dict | None = None
    best_model: dict | None = None
    history: list[dict] = field(default_factory=list)
    rng: Any = None
    extra: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        self.rng = torch.get_rng_state()
        torch_save(path, self.__dict__)

    @classmethod
    def load(cls, path: str | Path) -> "Checkpoint | None":
        path = Path(path)
        if not path.is_file():
            return None
        state = torch.load(path, map_location="cpu", weights_only=False)
        ckpt = cls(**state)
        if ckpt.rng is not None:
            torch.set_rng_state(ckpt.rng)
        return ckpt


def progress(iterable: Iterable, *, desc: str, enabled: bool = True, total: int | None = None, leave: bool = False):
    """A tqdm progress bar, or the bare iterable when progress is off or on a non-zero rank."""
    if not enabled or not distributed.is_main():
        return iterable
    return tqdm(iterable, desc=desc, total=total, leave=leave, dynamic_ncols=True)


def epoch_line(row: dict, epochs: int, best_epoch: int) -> str:
    """One line for an epoch's history row, e.g. ``epoch 4/16: loss 2.1861, valid_recall@10 0.0515 (best), 576 s``.

    Every numeric field except ``epoch`` and the timings is shown; fields that are NaN (not evaluated) are left out.
    """
    parts = [f"{key} {value:.4f}" for key, value in row.items()
             if key not in ("epoch", "seconds", "eval_seconds") and isinstance(value, (int, float))
             and not math.isnan(value)]
    best = " (best)" if row["epoch"] == best_epoch else ""
    return f"epoch {row['epoch']}/{epochs}: {', '.join(parts)}{best}, {row['seconds']:.0f} s"


def report_epoch(row: dict, epochs: int, best_epoch: int, *, enabled: bool = True) -> None:
    """Print :func:`epoch_line` above any progress bars (main rank only, and only when progress is on)."""
    if enabled and distributed.is_main():
        tqdm.write(epoch_line(row, epochs, best_epoch))


def state_dict_cpu(model: torch.nn.Module) -> dict:
    """A detached CPU copy of a model's parameters (for keeping the best epoch)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
