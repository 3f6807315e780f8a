"""Residual k-means (RQ-KMeans, as in GRID and OneRec).

Level 1 clusters the embeddings into ``codebook_size`` centroids; level ``l`` clusters
the residuals ``r_l = x - sum_{k<l} C_k[c_k]`` left by the levels before it. Nothing is
trained: every codebook is a k-means of residuals. ``balanced=True`` uses exactly
balanced k-means per level (OneRec's variant), which spreads items evenly over the
codes of every level.

Encoding the fitted matrix returns the fitted assignment (balanced k-means assigns by
capacity, not always to the nearest centroid); any other rows are encoded greedily,
nearest codeword level by level. The reconstruction is ``sum_l C_l[c_l]``.
"""
from __future__ import annotations

import numpy as np
import torch

from ..device import resolve_device
from ..errors import ConfigError, DataError
from .base import Quantizer
from .chunks import chunk_rows, nearest, row_chunks
from .codebook import digest
from .kmeans import balanced_kmeans, kmeans


class ResidualKMeans(Quantizer):
    """``levels`` codebooks of ``codebook_size`` centroids, each a k-means of the previous residuals."""

    name = "rqkmeans"

    def __init__(
        self,
        *,
        levels: int = 3,
        codebook_size: int = 256,
        balanced: bool = False,
        n_iter: int = 30,
        seed: int = 0,
        device: str = "auto",
    ):
        super().__init__(seed=seed, device=device)
        if levels < 1 or codebook_size < 1:
            raise ConfigError(f"rqkmeans: levels and codebook_size must be positive, got {levels}, {codebook_size}")
        self.levels = levels
        self.codebook_size = codebook_size
        self.balanced = balanced
        self.n_iter = n_iter

    @property
    def codebook_sizes_(self) -> tuple[int, ...]:
        """Codes per level (before the stage's dedup level, when codes collide)."""
        return (self.codebook_size,) * self.levels

    def _fit(self, X: np.ndarray) -> None:
        if len(X) < self.codebook_size:
            raise DataError(f"rqkmeans: {len(X)} items are fewer than the {self.codebook_size} codes per level; "
                            "lower quantize.codebook_size")
        cluster = balanced_kmeans if self.balanced else kmeans
        residual = torch.tensor(X, device=resolve_device(self.device))  # the one copy, updated in place
        rows = chunk_rows(X.shape[1])
        books, codes = [], []
        for level in range(self.levels):
            centroids, labels = cluster(residual, self.codebook_size, n_iter=self.n_iter, seed=self.seed + level)
            for part in row_chunks(len(X), rows):
                residual[part] -= centroids[labels[part]]
            books.append(centroids.cpu())
            codes.append(labels.cpu())
        self.codebooks_ = books
        self.codes_ = torch.stack(codes, dim=1).numpy()
        self.digest_ = digest(X)

    def _encode(self, X: np.ndarray) -> np.ndarray:
        if digest(X) == self.digest_:
            return self.codes_.copy()
        if X.shape[1] != self.codebooks_[0].shape[1]:
            raise DataError(f"rqkmeans: fitted on {self.codebooks_[0].shape[1]} dimensions, got {X.shape[1]}")
        codes = np.empty((len(X), self.levels), dtype=np.int64)
        for part in row_chunks(len(X), chunk_rows(max(X.shape[1], self.codebook_size))):
            residual = torch.from_numpy(X[part]).clone()
            for level, book in enumerate(self.codebooks_):
                labels = nearest(residual, book)
                residual -= book[labels]
                codes[part, level] = labels.numpy()
        return codes

    def reconstruct(self, X) -> np.ndarray:
        """(n, d): the sum of every level's chosen centroid."""
        codes = torch.from_numpy(self.encode(X))
        out = np.empty((len(codes), self.codebooks_[0].shape[1]), dtype=np.float32)
        for part in row_chunks(len(codes), chunk_rows(out.shape[1])):
            out[part] = sum(book[codes[part, l]] for l, book in enumerate(self.codebooks_)).numpy()
        return out
