"""Bounded memory for the Q-stage: row chunks sized from a budget, and distances that do not
depend on the chunking.

Everything that touches all items works through row chunks whose temporaries hold at most
``CHUNK_FLOATS`` floats (rows x width), so peak memory grows with the data, never with
``n * k * d`` (the one ``(rows, k)`` matrix kept whole is the balanced assignment's cost
matrix of a batch of k-means problems, see :mod:`~resid_lib.quantize.kmeans`).

Chunked and unchunked runs must give identical codes, so every matrix product that scores
rows runs on whole tiles of ``ROW_TILE`` rows (a short last tile is padded with zero rows):
BLAS libraries sum the products of a handful of rows (and of a single column) in another
order than those of many, and a row's score must not depend on which chunk it fell into.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

#: floats the temporaries of one row chunk may hold (rows x the widest temporary row)
CHUNK_FLOATS = 2**25
#: matrix products see whole tiles of this many rows and at least two columns
ROW_TILE = 64


def chunk_rows(width: int, chunk_size: int | None = None) -> int:
    """Rows per chunk: ``chunk_size`` if given, else as many as ``CHUNK_FLOATS`` allows for rows of
    ``width`` floats; always a positive multiple of ``ROW_TILE``."""
    rows = chunk_size or CHUNK_FLOATS // max(1, width)
    return max(1, -(-rows // ROW_TILE)) * ROW_TILE


def row_chunks(n: int, rows: int) -> Iterator[slice]:
    """Consecutive slices of ``range(n)``, ``rows`` long (the last may be shorter)."""
    for start in range(0, n, rows):
        yield slice(start, min(n, start + rows))


def pad_rows(x: torch.Tensor) -> torch.Tensor:
    """A fresh contiguous copy of x (r, ...) with zero rows appended up to whole ``ROW_TILE`` tiles
    (fresh memory, as BLAS libraries may also sum differently at another alignment)."""
    out = x.new_zeros((-(-x.shape[0] // ROW_TILE) * ROW_TILE, *x.shape[1:]))
    out[: x.shape[0]] = x
    return out


def tile_mm(x: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """``x @ W.T`` for x (r, d), W (k, d) -> (r, k), computed on whole tiles and at least two columns."""
    Wt = W.T if W.shape[0] > 1 else torch.cat([W, torch.zeros_like(W)]).T
    return (pad_rows(x) @ Wt)[: x.shape[0], : W.shape[0]]


def scores(x: torch.Tensor, C: torch.Tensor, cc: torch.Tensor | None = None) -> torch.Tensor:
    """``||c||^2 - 2 x.c``: the squared distance to every codeword less the row's own ``||x||^2``.

    Args:
        x: (r, d) rows; C: (k, d) codewords; cc: (k,) their squared norms (computed if None).
    Returns:
        (r, k), each row computed on a whole tile whatever r is.
    """
    if cc is None:
        cc = (C * C).sum(1)
    return cc - 2 * tile_mm(x, C)


def nearest(X: torch.Tensor | np.ndarray, C: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codeword (squared Euclidean) of every row, in row chunks.

    Args:
        X: (n, d); C: (k, d) on the device the work runs on.
    Returns:
        (n,) int64 on C's device.
    """
    X = torch.as_tensor(X)
    cc = (C * C).sum(1)
    rows = chunk_rows(max(C.shape[0], C.shape[1]))
    out = torch.empty(X.shape[0], dtype=torch.long, device=C.device)
    for part in row_chunks(X.shape[0], rows):
        out[part] = scores(X[part].to(C.device, C.dtype), C, cc).argmin(1)
    return out


def nearest_child(X: torch.Tensor | np.ndarray, node: torch.Tensor, children: torch.Tensor) -> torch.Tensor:
    """Nearest child of every row's own node (squared Euclidean), in row chunks.

    Args:
        X: (n, d) rows; node: (n,) int64 node of every row; children: (n_nodes, b, d) child centroids.
    Returns:
        (n,) int64 child index in ``0..b-1``, on children's device.
    """
    X = torch.as_tensor(X)
    node = node.to(children.device)
    b, d = children.shape[1:]
    out = torch.empty(X.shape[0], dtype=torch.long, device=children.device)
    for part in row_chunks(X.shape[0], chunk_rows(max(b, d))):
        x = X[part].to(children.device, children.dtype)
        nodes, inverse = torch.unique(node[part], return_inverse=True)
        order = torch.argsort(inverse, stable=True)
        bounds = torch.bincount(inverse, minlength=len(nodes)).cumsum(0).tolist()
        best = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
        start = 0
        for u, stop in enumerate(bounds):  # rows sharing a node score against its b children at once
            rows_u = order[start:stop]
            best[rows_u] = scores(x[rows_u], children[nodes[u]]).argmin(1)
            start = stop
        out[part] = best
    return out
