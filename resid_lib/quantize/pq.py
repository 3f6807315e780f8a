"""Product quantization: unordered codes, one per subspace (as in VQ-Rec and RPG).

The ``d`` dimensions are split into ``levels`` contiguous subspaces of (nearly) equal
width; each subspace is clustered by k-means into ``codebook_size`` codewords on its
own. An item's code at position ``m`` is its nearest codeword in subspace ``m``, so the
positions are independent of each other (no prefix structure), and the
reconstruction is the concatenation of the chosen codewords.
"""
from __future__ import annotations

import numpy as np
import torch

from ..device import resolve_device
from ..errors import ConfigError, DataError
from .base import Quantizer
from .chunks import chunk_rows, nearest, row_chunks
from .codebook import as_tensor
from .kmeans import kmeans


class ProductQuantizer(Quantizer):
    """``levels`` subspaces x ``codebook_size`` codewords, k-means per subspace."""

    name = "pq"

    def __init__(self, *, levels: int = 4, codebook_size: int = 256, n_iter: int = 30, seed: int = 0, device: str = "auto"):
        super().__init__(seed=seed, device=device)
        if levels < 1 or codebook_size < 1:
            raise ConfigError(f"pq: levels (subspaces) and codebook_size must be positive, got {levels}, {codebook_size}")
        self.levels = levels
        self.codebook_size = codebook_size
        self.n_iter = n_iter

    @property
    def codebook_sizes_(self) -> tuple[int, ...]:
        """Codes per subspace (before the stage's dedup level, when codes collide)."""
        return (self.codebook_size,) * self.levels

    def _fit(self, X: np.ndarray) -> None:
        n, d = X.shape
        if self.levels > d:
            raise DataError(f"pq: {self.levels} subspaces cannot split {d} dimensions; lower quantize.levels")
        if n < self.codebook_size:
            raise DataError(f"pq: {n} items are fewer than the {self.codebook_size} codewords per subspace; "
                            "lower quantize.codebook_size")
        device = resolve_device(self.device)
        self.bounds_ = [int(b) for b in np.linspace(0, d, self.levels + 1).round()]
        data = as_tensor(X, device)
        self.codebooks_ = []
        for m, (a, b) in enumerate(zip(self.bounds_[:-1], self.bounds_[1:])):
            centroids, _ = kmeans(data[:, a:b], self.codebook_size, n_iter=self.n_iter, seed=self.seed + m)
            self.codebooks_.append(centroids.cpu())

    def _encode(self, X: np.ndarray) -> np.ndarray:
        if X.shape[1] != self.bounds_[-1]:
            raise DataError(f"pq: fitted on {self.bounds_[-1]} dimensions, got {X.shape[1]}")
        data = torch.from_numpy(X)
        spans = zip(self.bounds_[:-1], self.bounds_[1:])
        return torch.stack([nearest(data[:, a:b], book) for (a, b), book in zip(spans, self.codebooks_)], dim=1).numpy()

    def reconstruct(self, X) -> np.ndarray:
        """(n, d): the chosen codeword of every subspace, concatenated."""
        codes = self.encode(X)
        out = np.empty((len(codes), self.bounds_[-1]), dtype=np.float32)
        for part in row_chunks(len(codes), chunk_rows(out.shape[1])):
            for m, (a, b) in enumerate(zip(self.bounds_[:-1], self.bounds_[1:])):
                out[part, a:b] = self.codebooks_[m][codes[part, m]].numpy()
        return out
