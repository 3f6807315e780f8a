"""A prefix trie of the Semantic IDs that exist, in a compact tensor form.

Depth ``l`` of the trie holds the distinct SID prefixes of length ``l`` (depth 0 is
the empty prefix, one root node). Each depth is stored as

- ``prefixes[l]``: (n_nodes_l, l) int64, the prefixes in lexicographic order
  (node id = row);
- ``children[l]``: (n_nodes_l, size_l) int64, the node id at depth ``l + 1``
  reached by appending code ``c`` to node ``n``, or ``-1`` where that prefix does
  not exist. At the last depth the "node" reached is the item index itself.

A constrained decoder therefore needs one gather per level: the allowed codes of
a batch of prefixes are ``children[l][nodes] >= 0`` and the next nodes are
``children[l][nodes, codes]``. Memory is at most ``n_items * size_l`` entries per
level.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError


class SIDTrie:
    """Prefix trie of ``sids`` (n_items, L); row ``i`` is the SID of item ``i``."""

    def __init__(self, sids: np.ndarray):
        sids = check_sids(sids)
        self.n_items, self.n_levels = sids.shape
        self.level_sizes: tuple[int, ...] = tuple(int(s) for s in sids.max(axis=0) + 1)
        self.sids = torch.from_numpy(sids)
        self.prefixes: list[torch.Tensor] = []
        self.children: list[torch.Tensor] = []
        node = np.zeros(self.n_items, dtype=np.int64)  # each item's node at the current depth
        n_nodes = 1
        for level, size in enumerate(self.level_sizes):
            key = node * size + sids[:, level]
            if level == self.n_levels - 1:
                child, n_next = np.arange(self.n_items, dtype=np.int64), self.n_items
            else:
                uniq, child = np.unique(key, return_inverse=True)
                n_next = len(uniq)
            table = np.full(n_nodes * size, -1, dtype=np.int64)
            table[key] = child
            self.children.append(torch.from_numpy(table.reshape(n_nodes, size)))
            _, first = np.unique(node, return_index=True)  # one member item per node
            self.prefixes.append(torch.from_numpy(sids[first, :level].copy()))
            node, n_nodes = child.reshape(-1), n_next

    def __repr__(self) -> str:
        nodes = [len(p) for p in self.prefixes]
        return f"SIDTrie(items={self.n_items}, levels={self.n_levels}, sizes={self.level_sizes}, nodes={nodes})"

    @property
    def device(self) -> torch.device:
        return self.sids.device

    def to(self, device: torch.device | str) -> "SIDTrie":
        """Move the tables to ``device`` (in place) and return the trie."""
        self.sids = self.sids.to(device)
        self.prefixes = [p.to(device) for p in self.prefixes]
        self.children = [c.to(device) for c in self.children]
        return self

    def n_nodes(self, level: int) -> int:
        """Number of distinct prefixes of length ``level``."""
        return len(self.prefixes[level])

    def allowed(self, level: int, nodes: torch.Tensor) -> torch.Tensor:
        """(*nodes.shape, size_level) bool: which codes extend each prefix node to an existing prefix."""
        return self.children[level][nodes] >= 0

    def advance(self, level: int, nodes: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Nodes at depth ``level + 1`` (items at the last level) after appending ``codes``; -1 if none."""
        return self.children[level][nodes, codes]

    def lookup(self, codes: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(n,) item index of each full SID in ``codes`` (n, L), or -1 where no item has it."""
        codes = torch.as_tensor(codes, dtype=torch.int64, device=self.device)
        if codes.ndim != 2 or codes.shape[1] != self.n_levels:
            raise DataError(f"expected SIDs of shape (n, {self.n_levels}), got {tuple(codes.shape)}")
        node = torch.zeros(len(codes), dtype=torch.int64, device=self.device)
        for level, size in enumerate(self.level_sizes):
            code = codes[:, level]
            ok = (node >= 0) & (code >= 0) & (code < size)
            nxt = self.children[level][node.clamp(min=0), code.clamp(0, size - 1)]
            node = torch.where(ok, nxt, torch.full_like(node, -1))
        return node


def check_sids(sids) -> np.ndarray:
    """Return SIDs as a (n_items, L) int64 array; DataError on bad shape, negative codes or duplicates."""
    sids = np.asarray(sids)
    if sids.ndim != 2 or sids.shape[0] == 0 or sids.shape[1] == 0:
        raise DataError(f"SIDs: expected a non-empty (n_items, levels) array, got shape {sids.shape}")
    if not np.issubdtype(sids.dtype, np.integer):
        raise DataError(f"SIDs: expected integer codes, got dtype {sids.dtype}")
    sids = sids.astype(np.int64, copy=False)
    if (sids < 0).any():
        row = int(np.flatnonzero((sids < 0).any(axis=1))[0])
        raise DataError(f"SIDs: negative code in row {row}: {sids[row].tolist()}")
    _, first, counts = np.unique(sids, axis=0, return_index=True, return_counts=True)
    if (counts > 1).any():
        dup = sids[first[np.flatnonzero(counts > 1)[0]]]
        rows = np.flatnonzero((sids == dup).all(axis=1))
        raise DataError(
            f"SIDs are not unique: {int((counts > 1).sum())} SID(s) name several items, e.g. {dup.tolist()} "
            f"is shared by rows {rows[:5].tolist()}; deduplicate them in the Q-stage (an extra level)"
        )
    return np.ascontiguousarray(sids)
