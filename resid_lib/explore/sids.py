"""Semantic IDs joined with item fields: prefixes, item search and SID paths.

A *prefix* is a tuple of leading codes, ``(3, 17)``, written ``"3-17"`` as in
``tree.parquet``; the empty prefix is the whole catalog.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError
from ..quantize.tree import sid_columns

Prefix = tuple[int, ...]


def format_prefix(prefix: Prefix) -> str:
    return "-".join(str(int(c)) for c in prefix)


def parse_prefix(text: str) -> Prefix:
    """``"3-17"`` -> ``(3, 17)``; blank -> ``()``; DataError on anything else."""
    text = text.strip().strip("-")
    if not text:
        return ()
    parts = [p.strip() for p in text.replace(",", "-").replace(" ", "-").split("-") if p.strip()]
    if not all(p.isdigit() for p in parts):
        raise DataError(f"prefix {text!r}: expected codes separated by '-', e.g. 3-17")
    return tuple(int(p) for p in parts)


def sid_table(codes: np.ndarray, item_ids: np.ndarray, items: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per item: ``item_index, item_id, sid``, the ``codebookK_id`` columns, then the item's fields.

    Args:
        codes: (n, L) int64 SIDs, row ``i`` for item index ``i``.
        item_ids: (n,) item ids in the same order.
        items: the dataset's items table in the same order, or None when the dataset
            is unavailable (rows then carry no fields). Multi-valued fields become
            comma-separated text.
    """
    codes = np.asarray(codes, dtype=np.int64)
    table = pd.DataFrame({"item_index": np.arange(len(codes), dtype=np.int64),
                          "item_id": np.asarray(item_ids).astype(str), "sid": format_codes(codes)})
    for k, col in enumerate(sid_columns(codes.shape[1])):
        table[col] = codes[:, k]
    if items is not None:
        if len(items) != len(codes):
            raise DataError(f"{len(codes)} SIDs for a catalog of {len(items)} items")
        for name in items.columns.drop("item_id"):
            values = items[name].to_numpy()
            if any(isinstance(v, (list, np.ndarray)) for v in values[:100]):
                values = np.array([", ".join(map(str, v)) if v is not None else "" for v in values], dtype=object)
            table[name] = values
    return table


def code_columns(table: pd.DataFrame) -> list[str]:
    """The ``codebookK_id`` columns of a SID table, in level order."""
    n = sum(1 for c in table.columns if c.startswith("codebook") and c.endswith("_id"))
    return sid_columns(n)


def format_codes(codes: np.ndarray) -> np.ndarray:
    """(n, L) int codes -> (n,) strings ``"3-17-0"``."""
    codes = np.asarray(codes)
    out = codes[:, 0].astype(str).astype(object)
    for k in range(1, codes.shape[1]):
        out = out + "-" + codes[:, k].astype(str)
    return out


def prefix_mask(table: pd.DataFrame, prefix: Prefix) -> np.ndarray:
    """(n,) bool: rows whose SID starts with ``prefix``."""
    cols = code_columns(table)
    if len(prefix) > len(cols):
        raise DataError(f"prefix {format_prefix(prefix)} is longer than the {len(cols)} SID levels")
    mask = np.ones(len(table), dtype=bool)
    for col, code in zip(cols, prefix):
        mask &= table[col].to_numpy() == code
    return mask


def prefix_items(table: pd.DataFrame, prefix: Prefix) -> pd.DataFrame:
    """The items under ``prefix``, ordered by SID."""
    return table[prefix_mask(table, prefix)].sort_values(code_columns(table), kind="stable")


def child_codes(table: pd.DataFrame, prefix: Prefix) -> pd.DataFrame:
    """``code, n_items`` of the codes that follow ``prefix`` (empty at the last level)."""
    cols = code_columns(table)
    if len(prefix) >= len(cols):
        return pd.DataFrame({"code": pd.Series(dtype=np.int64), "n_items": pd.Series(dtype=np.int64)})
    under = table.loc[prefix_mask(table, prefix), cols[len(prefix)]]
    counts = under.value_counts().sort_index()
    return pd.DataFrame({"code": counts.index.to_numpy(np.int64), "n_items": counts.to_numpy(np.int64)})


def search_items(table: pd.DataFrame, query: str, *, limit: int = 50) -> pd.DataFrame:
    """Items whose id equals ``query`` (case-insensitive), else whose id or any field contains it."""
    query = query.strip()
    if not query:
        return table.iloc[0:0]
    q = query.lower()
    ids = table["item_id"].str.lower()
    exact = table[ids == q]
    if len(exact):
        return exact
    searchable = [c for c in table.columns if c not in ("item_index", "sid") and not c.startswith("codebook")]
    hit = np.zeros(len(table), dtype=bool)
    for col in searchable:
        hit |= table[col].astype(str).str.lower().str.contains(q, regex=False, na=False).to_numpy()
    return table[hit].head(limit)


def sid_path(tree: pd.DataFrame, codes: Prefix, fields: list[str]) -> pd.DataFrame:
    """The nodes on an item's path from level 1 to its leaf, with each node's dominant field values.

    Columns: ``level, prefix, n_items`` and per field ``F`` the text ``"value (share)"``.
    """
    rows = []
    by_prefix = tree.set_index("prefix")
    for level in range(1, len(codes) + 1):
        key = format_prefix(codes[:level])
        row = {"level": level, "prefix": key}
        if key in by_prefix.index:
            node = by_prefix.loc[key]
            row["n_items"] = int(node["n_items"])
            for f in fields:
                row[f] = _dominant_text(node.get(f"{f}_top"), node.get(f"{f}_share"))
        rows.append(row)
    return pd.DataFrame(rows)


def compare_sids(table_a: pd.DataFrame, table_b: pd.DataFrame, item_index: np.ndarray) -> pd.DataFrame:
    """``item_id, sid_a, sid_b`` for the given item indices (rows of both tables joined on item_index)."""
    a = table_a.set_index("item_index").loc[item_index, ["item_id", "sid"]]
    b = table_b.set_index("item_index")["sid"].reindex(item_index)
    return pd.DataFrame({"item_id": a["item_id"].to_numpy(), "sid_a": a["sid"].to_numpy(),
                         "sid_b": b.fillna("-").to_numpy()})


def prefix_spread(table: pd.DataFrame, item_index: np.ndarray) -> pd.DataFrame:
    """How many distinct prefixes per level the given items occupy in ``table``'s SIDs.

    Columns: ``level, prefixes, largest_share`` (share of the items in the most common prefix).
    """
    cols = code_columns(table)
    codes = table.set_index("item_index").loc[item_index, cols].to_numpy(np.int64)
    rows = []
    for level in range(1, len(cols) + 1):
        _, counts = np.unique(codes[:, :level], axis=0, return_counts=True)
        rows.append({"level": level, "prefixes": len(counts), "largest_share": counts.max() / max(1, len(codes))})
    return pd.DataFrame(rows)


def _dominant_text(top, share) -> str:
    if top is None or (isinstance(top, float) and np.isnan(top)):
        return "-"
    if share is None or (isinstance(share, float) and np.isnan(share)):
        return str(top)
    return f"{top} ({float(share):.0%})"
