"""GAOQ: Globally Aligned Orthogonal Quantization (the ReSID Q-stage).

Non-parametric; see ``docs/resid-method.md`` (Q-stage) for the method. With ``levels = L``:

1. Level 1: exactly balanced k-means of all items into ``b1`` clusters; code = cluster index.
2. Aligned levels ``l = 2 .. L-1``: every node of level ``l-1`` (a parent) is split by
   balanced k-means into ``b_l`` children, many parents at once and, in a process group,
   the parents spread over the ranks (:mod:`~resid_lib.quantize.spread`; parent ``p``'s
   k-means is seeded by ``(seed, l, p)``, so the codes do not depend on the split). Each
   child centroid is centered on its parent, ``r_j = mu_j - mu_parent``, and matched to the
   level's shared anchors (``g_l >= b_l`` unit vectors) by the Hungarian algorithm on cosine
   similarity; a child's code is its anchor's index, so a code points the same way under
   every parent.
3. Last level: items sharing a prefix ``(c_1 .. c_{L-1})`` are told apart by matching their
   residuals (item minus its level ``L-1`` centroid) to an orthonormal codebook whose size is
   the largest prefix group, again with the Hungarian algorithm: codes are unique within the
   prefix, hence every SID is unique.

Memory stays proportional to the data: items are read in row chunks
(:mod:`~resid_lib.quantize.chunks`), never copied whole.

Encoding is defined for the fitted catalog: ``encode`` returns the fitted codes for rows that
are (bit for bit) training rows. Other rows get, level by level, the code of the nearest
centroid among the children of their prefix, and on the last level the codebook entry with
the largest cosine to their residual; such codes need not be unique.
"""
from __future__ import annotations

import time
from typing import Literal

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from ..device import resolve_device
from ..errors import ConfigError, DataError
from ..train import progress
from .anchors import learned_anchors, make_anchors, match_codes
from .base import Quantizer
from .chunks import chunk_rows, nearest, nearest_child, row_chunks, tile_mm
from .kmeans import balanced_kmeans
from .spread import cluster_children, on_first_rank, over_ranks

#: ``branching="auto"``: the aligned levels multiply to about n_items / this (the paper's 10-20x)
AUTO_ITEMS_PER_PREFIX = 15


class GAOQ(Quantizer):
    """Globally aligned orthogonal quantization.

    Args:
        levels: number of code levels L >= 2 (the paper: 3).
        branching: the L-1 branching factors of the clustered levels, or ``"auto"``: equal
            factors whose product is about ``n_items / 15`` (the paper's rule, b1*b2 10 to 20
            times smaller than the item count). The last level's size is derived.
        anchors: ``"random"`` (the paper's QR-orthonormal anchors) or ``"learned"`` (directions
            learned from the level's centered children, see
            :func:`~resid_lib.quantize.anchors.learned_anchors`).
        n_anchors: anchors per aligned level, g >= b (default g = b); one int for all aligned
            levels or a list with one per aligned level.
        anchor_fallback: allow near-orthogonal anchors when more anchors (or a larger last
            level) than dimensions are needed; without it that is a ConfigError.
        n_iter: Lloyd iterations per k-means.
        seed: seeds every k-means and anchor draw.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``.
        progress: show a progress bar over the levels.

    Fitted attributes:
        codes_: (n_items, L) int64 SIDs of the training rows, unique.
        branching_: the L-1 branching factors used plus the derived last-level size.
        centroids_: per clustered level l = 1 .. L-1, (n_nodes_l, d) float32 node centroids;
            nodes of level l >= 2 are ordered parent-major (node = parent * b_l + child).
        node_codes_: per clustered level, (n_nodes_l,) int64 code of every node.
        anchors_: per aligned level, (g_l, d) float32 unit anchors.
        codebook_: (B_L, d) float32 last-level codebook.
        level_seconds_: wall time per level ({"level1": s, ...}).
        n_collisions_: items sharing a SID before dedup; 0 by construction.
    """

    name = "gaoq"

    def __init__(
        self,
        *,
        levels: int = 3,
        branching: list[int] | Literal["auto"] = "auto",
        anchors: Literal["random", "learned"] = "random",
        n_anchors: int | list[int] | None = None,
        anchor_fallback: bool = True,
        n_iter: int = 30,
        seed: int = 0,
        device: str = "auto",
        progress: bool = False,
    ):
        super().__init__(seed=seed, device=device)
        if not isinstance(levels, int) or levels < 2:
            raise ConfigError(f"GAOQ: levels must be an integer >= 2, got {levels!r}")
        if branching != "auto":
            if not isinstance(branching, (list, tuple)) or len(branching) != levels - 1:
                raise ConfigError(
                    f"GAOQ: branching must be 'auto' or a list of {levels - 1} integers (one per level "
                    f"before the derived last level), got {branching!r}"
                )
            if not all(isinstance(b, (int, np.integer)) and b >= 1 for b in branching):
                raise ConfigError(f"GAOQ: branching factors must be positive integers, got {list(branching)}")
            branching = [int(b) for b in branching]
        if anchors not in ("random", "learned"):
            raise ConfigError(f"GAOQ: anchors must be 'random' or 'learned', got {anchors!r}")
        if isinstance(n_anchors, (list, tuple)) and len(n_anchors) != levels - 2:
            raise ConfigError(f"GAOQ: n_anchors needs one value per aligned level ({levels - 2}), got {n_anchors!r}")
        self.levels = levels
        self.branching = branching
        self.anchors = anchors
        self.n_anchors = n_anchors
        self.anchor_fallback = anchor_fallback
        self.n_iter = n_iter
        self.progress = progress

    # ------------------------------------------------------------------ settings

    def resolve_branching(self, n_items: int) -> list[int]:
        """The L-1 branching factors for ``n_items`` items (``auto`` applies the paper's rule)."""
        if self.branching != "auto":
            return list(self.branching)
        b = max(2, round((n_items / AUTO_ITEMS_PER_PREFIX) ** (1 / (self.levels - 1))))
        return [b] * (self.levels - 1)

    @property
    def codebook_sizes_(self) -> tuple[int, ...]:
        """Codes per level of the fitted SIDs: b_1, the anchor count g_l of every aligned level,
        and the derived last level (no dedup level: the SIDs are unique by construction)."""
        return (self.branching_[0], *(len(a) for a in self.anchors_), self.branching_[-1])

    def _resolve_anchor_counts(self, branching: list[int]) -> list[int]:
        aligned = branching[1:]
        if self.n_anchors is None:
            counts = list(aligned)
        elif isinstance(self.n_anchors, (list, tuple)):
            counts = [int(g) for g in self.n_anchors]
        else:
            counts = [int(self.n_anchors)] * len(aligned)
        for level, (g, b) in enumerate(zip(counts, aligned), start=2):
            if g < b:
                raise ConfigError(f"GAOQ: n_anchors={g} at level {level} is smaller than its branching {b}; need g >= b")
        return counts

    def _check_fit(self, n: int, d: int, branching: list[int], anchor_counts: list[int]) -> None:
        """Fail before any work when the settings cannot fit n items of dimension d."""
        if branching[0] > n:
            raise DataError(f"GAOQ: {n} items are fewer than the {branching[0]} level-1 clusters (branching[0])")
        smallest = n // branching[0]
        for level, b in enumerate(branching[1:], start=2):
            if b > smallest:
                raise ConfigError(
                    f"GAOQ: branching[{level - 1}]={b} does not fit: the smallest level-{level - 1} cluster "
                    f"holds only {smallest} items (n_items={n}, branching={branching})"
                )
            smallest //= b
        for level, g in enumerate(anchor_counts, start=2):
            if g > d and not self.anchor_fallback:
                raise ConfigError(
                    f"GAOQ: level {level} needs {g} anchors (n_anchors) but the embeddings have only {d} "
                    "dimensions; set anchor_fallback=True for near-orthogonal anchors or use fewer anchors"
                )

    # ------------------------------------------------------------------ fitting

    def _fit(self, X: np.ndarray) -> None:
        n, d = X.shape
        branching = self.resolve_branching(n)
        anchor_counts = self._resolve_anchor_counts(branching)
        self._check_fit(n, d, branching, anchor_counts)
        device = resolve_device(self.device)
        Xt = torch.from_numpy(X).to(device)
        codes = np.empty((n, self.levels), dtype=np.int64)
        self.centroids_, self.node_codes_, self.anchors_ = [], [], []
        self.level_seconds_ = {}
        steps = progress(range(1, self.levels + 1), desc="GAOQ levels", enabled=self.progress)
        node = None  # (n,) node of every item at the current level
        for level in steps:
            start = time.perf_counter()
            if level == 1:
                centroids, labels = on_first_rank(lambda: self._fit_first_level(Xt, branching[0]))
                node = torch.from_numpy(labels).to(device)
                self.centroids_.append(centroids)
                self.node_codes_.append(np.arange(branching[0], dtype=np.int64))
                codes[:, 0] = labels
            elif level < self.levels:
                node, level_codes = self._fit_aligned_level(Xt, node, level, branching[level - 1], anchor_counts[level - 2])
                codes[:, level - 1] = level_codes
            else:
                self.codebook_, codes[:, -1] = self._fit_last_level(Xt, node, d)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            self.level_seconds_[f"level{level}"] = time.perf_counter() - start
        if len(np.unique(codes, axis=0)) != n:
            raise RuntimeError("GAOQ produced duplicate SIDs; the last level must make them unique")
        self.branching_ = branching + [int(self.codebook_.shape[0])]
        self.codes_ = codes
        self.n_collisions_ = 0
        self.row_hashes_ = _row_hashes(X)

    def _fit_first_level(self, X: torch.Tensor, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Balanced k-means of all items: (b, d) centroids, (n,) labels."""
        centroids, labels = balanced_kmeans(X, b, n_iter=self.n_iter, seed=self.seed)
        return centroids.cpu().numpy(), labels.cpu().numpy()

    def _fit_aligned_level(
        self, X: torch.Tensor, parent: torch.Tensor, level: int, b: int, g: int
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Split every node of the previous level into b children and align their codes.

        Args:
            X: (n, d) items; parent: (n,) node index of every item at level - 1.
        Returns:
            (n,) node index of every item at this level (parent * b + child), (n,) item codes.
        """
        parents = torch.from_numpy(self.centroids_[-1]).to(X.device)
        n_parents, d = parents.shape
        centroids, child = cluster_children(X, parent, n_parents, b, balanced=True, seed=self.seed, level=level,
                                            n_iter=self.n_iter)
        residuals = centroids - parents[:, None, :]  # (P, b, d)
        seed = self.seed + 1000 * level
        if self.anchors == "learned":
            anchors = on_first_rank(lambda: learned_anchors(residuals, g, seed=seed, allow_fallback=self.anchor_fallback))
        else:
            anchors = make_anchors(d, g, seed=seed, allow_fallback=self.anchor_fallback, setting=f"level {level} anchors")
        unit_anchors = torch.from_numpy(anchors).to(X.device)
        child_codes = np.concatenate(over_ranks(n_parents, lambda share: match_codes(residuals[share], unit_anchors)))
        node = parent * b + child
        self.centroids_.append(centroids.reshape(n_parents * b, d).cpu().numpy())
        self.node_codes_.append(child_codes.reshape(-1))
        self.anchors_.append(anchors)
        return node, self.node_codes_[-1][node.cpu().numpy()]

    def _fit_last_level(self, X: torch.Tensor, node: torch.Tensor, d: int) -> tuple[np.ndarray, np.ndarray]:
        """Codebook (B, d) of the derived last level and (n,) item codes, unique within every prefix.

        The prefix groups are spread over the ranks; each solves its groups' assignments.
        """
        node_np = node.cpu().numpy()
        sizes = np.bincount(node_np)
        size = int(sizes.max())
        codebook = make_anchors(d, size, seed=self.seed + 1000 * self.levels, allow_fallback=self.anchor_fallback,
                                setting=f"last level (size {size}, the largest prefix group)")
        book = torch.from_numpy(codebook).to(X.device)
        centroids = torch.from_numpy(self.centroids_[-1]).to(X.device)
        order = np.argsort(node_np, kind="stable")
        bounds = np.r_[0, np.cumsum(sizes)]

        def work(share: slice) -> np.ndarray:
            first = bounds[share.start]
            cos = _residual_cosines(X, node, centroids, book, order[first : bounds[share.stop]])
            codes = np.empty(len(cos), dtype=np.int64)
            for g in range(share.start, share.stop):
                start, stop = bounds[g] - first, bounds[g + 1] - first
                if stop - start == 1:
                    codes[start] = int(np.argmax(cos[start]))
                elif stop > start:
                    rows, cols = linear_sum_assignment(cos[start:stop], maximize=True)
                    codes[start + rows] = cols
            return codes

        codes = np.empty(len(node_np), dtype=np.int64)
        codes[order] = np.concatenate(over_ranks(len(sizes), work))
        return codebook, codes

    # ------------------------------------------------------------------ encoding

    def _encode(self, X: np.ndarray) -> np.ndarray:
        d = self.centroids_[0].shape[1]
        if X.shape[1] != d:
            raise DataError(f"GAOQ: embeddings have {X.shape[1]} dimensions, the quantizer was fitted on {d}")
        hashes = _row_hashes(X)
        if np.array_equal(hashes, self.row_hashes_):
            return self.codes_.copy()
        codes = self._encode_nearest(X)
        sorter = np.argsort(self.row_hashes_, kind="stable")
        pos = np.minimum(np.searchsorted(self.row_hashes_, hashes, sorter=sorter), len(sorter) - 1)
        known = self.row_hashes_[sorter[pos]] == hashes
        codes[known] = self.codes_[sorter[pos[known]]]
        return codes

    def _encode_nearest(self, X: np.ndarray) -> np.ndarray:
        """Codes of new rows: nearest child centroid under their prefix at every level."""
        x = torch.from_numpy(X)
        out = np.empty((len(X), self.levels), dtype=np.int64)
        node = nearest(x, torch.from_numpy(self.centroids_[0]))
        out[:, 0] = self.node_codes_[0][node.numpy()]
        for level in range(2, self.levels):
            b = self.branching_[level - 1]
            children = torch.from_numpy(self.centroids_[level - 1]).reshape(-1, b, X.shape[1])
            node = node * b + nearest_child(x, node, children)
            out[:, level - 1] = self.node_codes_[level - 1][node.numpy()]
        last = torch.from_numpy(self.centroids_[-1])
        book = torch.from_numpy(self.codebook_)
        for part in row_chunks(len(X), chunk_rows(max(X.shape[1], len(book)))):
            residual = torch.nn.functional.normalize(x[part] - last[node[part]], dim=1)
            out[part, -1] = tile_mm(residual, book).argmax(1).numpy()
        return out


def _residual_cosines(
    X: torch.Tensor, node: torch.Tensor, centroids: torch.Tensor, book: torch.Tensor, items: np.ndarray
) -> np.ndarray:
    """(len(items), B) cosine between every item's residual (item minus its node's centroid) and
    every codebook row, in row chunks. X (n, d), node (n,), centroids (n_nodes, d), book (B, d)."""
    out = np.empty((len(items), book.shape[0]), dtype=np.float32)
    items_t = torch.from_numpy(items).to(X.device)
    for part in row_chunks(len(items), chunk_rows(max(X.shape[1], book.shape[0]))):
        rows = items_t[part]
        residual = torch.nn.functional.normalize(X[rows] - centroids[node[rows]], dim=1)
        out[part] = tile_mm(residual, book).cpu().numpy()
    return out


def _row_hashes(X: np.ndarray) -> np.ndarray:
    """(n,) uint64 fingerprint of every row's float32 bits (a random linear hash mod 2^64), in row chunks."""
    weights = np.random.default_rng(20260202).integers(1, 2**63, size=X.shape[1], dtype=np.uint64) | np.uint64(1)
    out = np.zeros(len(X), dtype=np.uint64)
    for part in row_chunks(len(X), chunk_rows(128)):  # uint64 temporaries of 64 columns
        words = np.ascontiguousarray(X[part], dtype=np.float32).view(np.uint32)
        for start in range(0, X.shape[1], 64):
            out[part] += (words[:, start : start + 64].astype(np.uint64) * weights[start : start + 64]).sum(1, dtype=np.uint64)
    return out
