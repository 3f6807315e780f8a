"""Helpers shared by the codebook quantizers (PQ, residual and hierarchical k-means)."""
from __future__ import annotations

import hashlib

import numpy as np
import torch


def as_tensor(X: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """A float32 tensor on ``device`` (no copy when it already is one)."""
    return torch.as_tensor(X, dtype=torch.float32).to(device)


def digest(X: np.ndarray) -> str:
    """Identity of a matrix's contents and shape, to recognise the fitted matrix when it is encoded."""
    return hashlib.sha1(np.ascontiguousarray(X).view(np.uint8).data).hexdigest() + str(X.shape)
