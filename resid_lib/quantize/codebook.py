"""Helpers shared by the codebook quantizers (PQ, residual and hierarchical k-means)."""
from __future__ import annotations

import hashlib

import numpy as np
import torch


def as_tensor(X: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """A float32 tensor on ``device`` (no copy when it already is one)."""
    return torch.as_tensor(X, dtype=torch.float32).to(device)


def nearest_code(X: torch.Tensor, codebook: torch.Tensor, chunk_size: int = 16384) -> torch.Tensor:
    """Index of the nearest codeword (squared Euclidean) for every row.

    Args:
        X: (n, d); codebook: (k, d).
    Returns:
        (n,) int64.
    """
    cc = (codebook * codebook).sum(1)
    out = [(cc - 2 * X[s:s + chunk_size] @ codebook.T).argmin(1) for s in range(0, len(X), chunk_size)]
    return torch.cat(out)


def digest(X: np.ndarray) -> str:
    """Identity of a matrix's contents and shape, to recognise the fitted matrix when it is encoded."""
    return hashlib.sha1(np.ascontiguousarray(X).view(np.uint8).data).hexdigest() + str(X.shape)
