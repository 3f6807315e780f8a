"""The SID tree for the app, and the official ``sids.parquet`` layout.

Every prefix of every SID is a node: level ``l`` nodes are the distinct prefixes
``c_1..c_l``, named by the dash-joined codes (``"3-17"``), with their parent prefix
(``""`` for level 1), their own last code and the number of items below them. For
each categorical field of the dataset a node also carries its dominant known value
(``F_top``) and that value's share of the node's items (``F_share``; items with an
unknown value count in the denominator, so the share also shows coverage).

``sids.parquet`` holds ``item_id`` (string) and ``codebook1_id .. codebookL_id``
(int64), the layout of the official ReSID code.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..data.dataset import Dataset
from ..errors import DataError
from ..io import write_parquet

SID_COLUMN = "codebook{}_id"


def sid_columns(n_levels: int) -> list[str]:
    return [SID_COLUMN.format(l + 1) for l in range(n_levels)]


def sids_frame(item_ids, codes: np.ndarray) -> pd.DataFrame:
    """The official layout: ``item_id`` then ``codebook1_id .. codebookL_id``."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2 or len(codes) != len(item_ids):
        raise DataError(f"{len(item_ids)} item ids but codes of shape {codes.shape}")
    frame = pd.DataFrame(codes, columns=sid_columns(codes.shape[1]))
    frame.insert(0, "item_id", pd.Series(item_ids).astype(str).to_numpy())
    return frame


def write_sids(path: str | Path, item_ids, codes: np.ndarray) -> None:
    write_parquet(path, sids_frame(item_ids, codes))


def read_sids(path: str | Path, dataset: Dataset | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read ``sids.parquet`` back.

    Returns:
        ((n, L) int64 codes, (n,) item id strings). With ``dataset`` the rows follow
        the dataset's item order, and an item missing from either side is a DataError.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such SID file")
    frame = pd.read_parquet(path)
    n_levels = sum(1 for c in frame.columns if c.startswith("codebook") and c.endswith("_id"))
    expected = ["item_id", *sid_columns(n_levels)]
    if n_levels == 0 or list(frame.columns) != expected:
        raise DataError(f"{path}: expected columns item_id, codebook1_id .. codebookL_id, got {list(frame.columns)}")
    item_ids = frame["item_id"].astype(str).to_numpy()
    dup = pd.Series(item_ids).duplicated()
    if dup.any():
        raise DataError(f"{path}: item id {item_ids[dup.to_numpy()][0]!r} appears twice")
    codes = frame[expected[1:]].to_numpy(dtype=np.int64)
    if dataset is None:
        return codes, item_ids
    if len(frame) != dataset.n_items:
        raise DataError(f"{path}: {len(frame)} SIDs for the {dataset.n_items} items of dataset {dataset.name!r}")
    order = np.argsort(dataset.item_index(item_ids))
    return codes[order], item_ids[order]


def tree_frame(codes: np.ndarray, dataset: Dataset | None = None) -> pd.DataFrame:
    """Every node of the SID tree, level by level.

    Args:
        codes: (n_items, L) SIDs in the dataset's item order.
        dataset: when given, adds ``F_top`` / ``F_share`` for each categorical field ``F``.
    Returns:
        DataFrame with columns level, prefix, parent, code, n_items[, F_top, F_share ...],
        sorted by level then prefix codes.
    """
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2 or len(codes) == 0:
        raise DataError(f"codes: expected a non-empty (n_items, levels) array, got shape {codes.shape}")
    fields = []
    if dataset is not None:
        if dataset.n_items != len(codes):
            raise DataError(f"{len(codes)} SIDs for the {dataset.n_items} items of dataset {dataset.name!r}")
        fields = dataset.categorical_fields
    frames = []
    for level in range(1, codes.shape[1] + 1):
        prefixes, first, node, sizes = np.unique(codes[:, :level], axis=0, return_index=True,
                                                 return_inverse=True, return_counts=True)
        node = node.reshape(-1)
        names = _join(prefixes)
        frame = pd.DataFrame({
            "level": level,
            "prefix": names,
            "parent": _join(prefixes[:, :-1]) if level > 1 else [""] * len(prefixes),
            "code": prefixes[:, -1],
            "n_items": sizes.astype(np.int64),
        })
        for name in fields:
            top, count = _dominant(node, dataset.codes(name), len(prefixes))
            vocab = np.array([None, *dataset.vocabulary(name)], dtype=object)
            frame[f"{name}_top"] = vocab[top]
            frame[f"{name}_share"] = count / sizes
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _join(prefixes: np.ndarray) -> list[str]:
    return ["-".join(map(str, row)) for row in prefixes.tolist()]


def _dominant(node: np.ndarray, values: np.ndarray, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per node, the most frequent known value (code >= 1; 0 when none) and its count (ties: smallest code)."""
    known = values > 0
    top = np.zeros(n_nodes, dtype=np.int64)
    count = np.zeros(n_nodes, dtype=np.int64)
    if not known.any():
        return top, count
    pairs, pair_counts = np.unique(np.stack([node[known], values[known]], axis=1), axis=0, return_counts=True)
    # order by node, then count descending, then value: the first row of each node wins
    order = np.lexsort((pairs[:, 1], -pair_counts, pairs[:, 0]))
    pairs, pair_counts = pairs[order], pair_counts[order]
    first = np.r_[True, pairs[1:, 0] != pairs[:-1, 0]]
    top[pairs[first, 0]] = pairs[first, 1]
    count[pairs[first, 0]] = pair_counts[first]
    return top, count
