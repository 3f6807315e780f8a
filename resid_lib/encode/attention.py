"""Attention capture: where the target position looks in the history.

For a seeded sample of validation users, the target (last) position of each
window, with all of its fields masked, is run through the encoder and every
layer's and head's attention row of that position is kept. The run directory
stores it as ``encode/attention.npz`` (layout in ``resid_lib.rundir``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..data.split import PAD, EvalSet
from ..errors import RunDirError
from ..io import atomic_path
from .proxy import eval_windows


class AttentionModel(Protocol):
    n_fields: int

    def target_attention(self, windows: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        """(n, n_layers, n_heads, L) attention of each window's last position over the window."""


@dataclass(frozen=True)
class AttentionSample:
    """Attention of the target position for a sample of users.

    Attributes:
        weights: (n, n_layers, n_heads, L) float32; each row sums to 1 over non-PAD positions.
        items: (n, L) int64 window item indices, right-aligned, PAD = -1; column L-1 is the target.
        users: (n,) int64 user positions in the dataset.
    """

    weights: np.ndarray
    items: np.ndarray
    users: np.ndarray

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, weights=self.weights, items=self.items, users=self.users)

    @classmethod
    def load(cls, path: str | Path) -> "AttentionSample":
        path = Path(path)
        if not path.is_file():
            raise RunDirError(f"{path}: no attention sample "
                              "(only FAMAE runs with encode.famae.attention_users > 0 write one)")
        with np.load(path) as data:
            return cls(weights=data["weights"], items=data["items"], users=data["users"])

    def recency_profile(self) -> np.ndarray:
        """(n_layers, n_heads, L) mean attention at each distance from the target.

        Index 0 is the target itself, index t the item t steps before it; positions
        that are PAD in a window do not count towards that distance's mean (NaN where
        no window reaches that far).
        """
        by_distance = self.weights[..., ::-1]  # (n, layers, heads, L), distance 0 first
        present = (self.items[:, ::-1] != PAD)[:, None, None, :]
        counts = present.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, (by_distance * present).sum(axis=0) / counts, np.nan)


@torch.no_grad()
def capture_attention(
    model: AttentionModel,
    eval_set: EvalSet,
    *,
    n_users: int,
    max_len: int,
    seed: int,
    device: torch.device | str = "cpu",
    batch_size: int = 512,
) -> AttentionSample:
    """Attention of the fully masked target position for ``n_users`` seeded validation users."""
    sample = eval_set.subset(n_users, seed)
    windows = eval_windows(sample, max_len)
    mask = torch.ones(1, model.n_fields, dtype=torch.bool, device=device)
    parts = []
    for start in range(0, len(windows), batch_size):
        w = torch.as_tensor(windows[start:start + batch_size], device=device)
        parts.append(model.target_attention(w, mask.expand(len(w), -1)).float().cpu().numpy())
    weights = np.concatenate(parts) if parts else np.zeros((0, 0, 0, max_len), dtype=np.float32)
    return AttentionSample(weights=weights.astype(np.float32), items=windows, users=sample.users.astype(np.int64))
