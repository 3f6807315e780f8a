"""RecBole atomic files: ``NAME.inter`` and ``NAME.item``.

Both are tab-separated with a typed header, e.g.
``user_id:token<TAB>item_id:token<TAB>rating:float<TAB>timestamp:float``.
Types: ``token`` (one value), ``token_seq`` (space-separated values), ``float``
and ``float_seq``.

- ``NAME.inter`` needs ``user_id`` and ``item_id``; each user's interactions are
  ordered by ``timestamp`` when there is one (stable: ties keep file order), else
  kept in file order. Users keep the order of their first interaction in the file.
- ``NAME.item`` needs ``item_id``; items keep its order. Item fields:
  a text column (``title``, ``description``, ``movie_title`` ...) is text whatever
  its type; ``token`` is categorical; ``token_seq`` is multi-valued; ``float`` and
  ``float_seq`` columns (prices, ratings, ranks) are numbers, not fields, and are
  left out.

Empty cells are missing values. RecBole's ``NAME.user`` file, if present, is not read.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError
from ..dataset import Dataset, FieldKind
from .common import build_items, find_named, id_lookup, is_text_name, make_dataset, require_dir, require_file

TYPES = ("token", "token_seq", "float", "float_seq")
_KIND_OF_TYPE: dict[str, FieldKind] = {"token": "categorical", "token_seq": "multi"}


def read_recbole(source_dir: str | Path, name: str | None = None) -> Dataset:
    """Read RecBole atomic files (``NAME.inter`` + ``NAME.item``) into a Dataset."""
    source = require_dir(Path(source_dir))
    name, inter_path = find_named(source, ".inter", name, "recbole")
    item_path = require_file(source / f"{name}.item")

    item_types, item_cols, item_lines = read_atomic(item_path, required=("item_id",))
    columns, kinds = {}, {}
    for col, typ in item_types.items():
        if col == "item_id" or typ.startswith("float"):
            continue
        kinds[col] = "text" if is_text_name(col) else _KIND_OF_TYPE[typ]
        values = item_cols[col]
        columns[col] = [v.split() for v in values] if kinds[col] == "multi" else values
    items, fields = build_items(item_cols["item_id"], columns, str(item_path), kinds=kinds, lines=item_lines)

    inter_types, inter, inter_lines = read_atomic(inter_path, required=("user_id", "item_id"))
    lookup = id_lookup(items["item_id"].tolist())
    item_index = np.empty(len(inter_lines), dtype=np.int64)
    for row, iid in enumerate(inter["item_id"]):
        idx = lookup.get(iid)
        if idx is None:
            raise DataError(f"{inter_path} line {inter_lines[row]}: item id {iid!r} is not in the item file {item_path}")
        item_index[row] = idx
    times = None
    if "timestamp" in inter_types:
        times = np.empty(len(inter_lines), dtype=np.float64)
        for row, value in enumerate(inter["timestamp"]):
            try:
                times[row] = float(value)
            except ValueError:
                raise DataError(f"{inter_path} line {inter_lines[row]}: timestamp {value!r} is not a number") from None

    user_ids, user_of_row = np.unique(np.asarray(inter["user_id"], dtype=object).astype(str), return_inverse=True)
    first_row = np.full(len(user_ids), len(user_of_row))
    np.minimum.at(first_row, user_of_row, np.arange(len(user_of_row)))
    user_order = np.argsort(first_row, kind="stable")
    rank = np.empty_like(user_order)
    rank[user_order] = np.arange(len(user_order))
    # rows grouped by user (in order of first appearance), then by time, ties in file order
    keys = (rank[user_of_row],) if times is None else (times, rank[user_of_row])
    order = np.lexsort(keys)
    bounds = np.r_[0, np.cumsum(np.bincount(rank[user_of_row], minlength=len(user_ids)))]
    sequences = [item_index[order[a:b]] for a, b in zip(bounds[:-1], bounds[1:])]
    timestamps = None if times is None else [times[order[a:b]] for a, b in zip(bounds[:-1], bounds[1:])]
    return make_dataset(name, items, fields, user_ids[user_order], sequences, timestamps, "recbole", source)


def read_atomic(path: Path, required: tuple[str, ...]) -> tuple[dict[str, str], dict[str, list[str]], list[int]]:
    """Parse one atomic file.

    Returns:
        types: column name -> RecBole type, in header order.
        columns: column name -> cell strings (one per data row).
        lines: (n_rows,) the file line of each data row.
    """
    with open(path, encoding="utf-8") as fh:
        header = fh.readline().rstrip("\r\n")
        types = _parse_header(path, header)
        for col in required:
            if col not in types:
                have = ", ".join(types)
                raise DataError(f"{path} line 1: required column {col!r} is missing (columns: {have})")
        names = list(types)
        columns: dict[str, list[str]] = {c: [] for c in names}
        lines: list[int] = []
        for lineno, line in enumerate(fh, 2):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            cells = line.split("\t")
            if len(cells) != len(names):
                raise DataError(f"{path} line {lineno}: malformed line, {len(cells)} tab-separated values "
                                f"where the header has {len(names)}")
            for col, cell in zip(names, cells):
                columns[col].append(cell)
            lines.append(lineno)
    if not lines:
        raise DataError(f"{path}: file is empty (a header but no rows)")
    for col in required:
        for row, cell in enumerate(columns[col]):
            if not cell.strip():
                raise DataError(f"{path} line {lines[row]}: empty {col}")
    return types, columns, lines


def _parse_header(path: Path, header: str) -> dict[str, str]:
    if not header.strip():
        raise DataError(f"{path} line 1: missing header (expected e.g. 'user_id:token<TAB>item_id:token')")
    types: dict[str, str] = {}
    for cell in header.split("\t"):
        col, sep, typ = cell.strip().partition(":")
        if not sep or not col:
            raise DataError(f"{path} line 1: header column {cell!r} is not 'name:type'")
        if typ not in TYPES:
            raise DataError(f"{path} line 1: column {col!r} has unknown type {typ!r} (known: {', '.join(TYPES)})")
        if col in types:
            raise DataError(f"{path} line 1: duplicate column {col!r}")
        types[col] = typ
    return types
