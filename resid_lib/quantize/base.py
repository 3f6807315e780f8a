"""The one protocol every quantizer follows, and the shared dedup step.

``Q(**kwargs).fit(X)`` then ``encode(X) -> (n_items, n_levels) int64``; a fitted
quantizer reports its ``codebook_sizes_``, the number of codes of each of those levels.
Codes that collide (two items with the same tuple) get an extra last level numbering the
items within each colliding group (``0, 1, 2, ...``), so final SIDs are unique; the
quantizers whose last level already makes SIDs unique (GAOQ, hierarchical k-means) never
get one.
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..io import torch_save
from .chunks import chunk_rows, row_chunks


def check_embeddings(X: Any, *, name: str = "embeddings") -> np.ndarray:
    """Return ``X`` as a 2-D float32 array; DataError on wrong shape, NaN or Inf (naming the first bad row)."""
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{name}: expected a non-empty 2-D array (n_items, dim), got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number):
        raise DataError(f"{name}: expected numbers, got dtype {X.dtype}")
    X = X.astype(np.float32, copy=False)
    rows = [np.flatnonzero(~np.isfinite(X[part]).all(axis=1)) + part.start
            for part in row_chunks(len(X), chunk_rows(X.shape[1]))]
    rows = np.concatenate(rows)
    if len(rows):
        raise DataError(f"{name}: {len(rows)} row(s) contain NaN or Inf (first: row {rows[0]}); clean or drop them first")
    return X


def dedup_codes(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """Append a level that makes every row unique.

    Args:
        codes: (n, L) int64.
    Returns:
        ((n, L+1) int64 codes, number of items that shared their tuple with another item).
        The extra level is the item's rank within its group of identical tuples (0 for unique rows).
    """
    codes = np.asarray(codes, dtype=np.int64)
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    rank = np.empty(len(codes), dtype=np.int64)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    rank[order] = np.arange(len(codes)) - np.repeat(starts, counts)
    collided = int(counts[counts > 1].sum())
    return np.concatenate([codes, rank[:, None]], axis=1), collided


class Quantizer(abc.ABC):
    """Base class: subclasses implement ``_fit`` and ``_encode`` and list their fitted state."""

    #: short name used in configs (``quantize.method``)
    name: str = ""

    def __init__(self, *, seed: int = 0, device: str = "auto"):
        self.seed = seed
        self.device = device
        self.fitted_ = False
        self.n_collisions_: int = 0

    def fit(self, X) -> "Quantizer":
        X = check_embeddings(X)
        self._fit(X)
        self.fitted_ = True
        return self

    def encode(self, X) -> np.ndarray:
        """(n_items, n_levels) int64 codes for the rows of ``X``."""
        if not self.fitted_:
            raise ConfigError(f"{type(self).__name__} is not fitted; call fit(X) first")
        return np.asarray(self._encode(check_embeddings(X)), dtype=np.int64)

    def fit_encode(self, X) -> np.ndarray:
        return self.fit(X).encode(X)

    @property
    @abc.abstractmethod
    def codebook_sizes_(self) -> tuple[int, ...]:
        """Codes per level of the fitted quantizer's codes (one entry per column ``encode`` returns)."""

    @abc.abstractmethod
    def _fit(self, X: np.ndarray) -> None: ...

    @abc.abstractmethod
    def _encode(self, X: np.ndarray) -> np.ndarray: ...

    def get_state(self) -> dict:
        """Constructor arguments and fitted attributes (names ending in ``_``)."""
        return {k: v for k, v in self.__dict__.items()}

    def save(self, path: str | Path) -> None:
        torch_save(path, {"class": type(self).__name__, "state": self.get_state()})

    @classmethod
    def load(cls, path: str | Path) -> "Quantizer":
        blob = torch.load(path, map_location="cpu", weights_only=False)
        from . import QUANTIZERS

        klass = next((q for q in QUANTIZERS.values() if q.__name__ == blob["class"]), None)
        if klass is None:
            raise DataError(f"{path}: unknown quantizer class {blob['class']!r}")
        obj = klass.__new__(klass)
        obj.__dict__.update(blob["state"])
        return obj
