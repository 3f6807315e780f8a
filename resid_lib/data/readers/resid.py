"""The layout of the official ReSID data release (parquet files).

- ``item_feature*.parquet``: ``item_id`` plus one column per item feature
  (``store_id``, ``cate1_id``, ``cate2_id``, ``cate3_id`` ...). Integer and string
  columns are categorical, list columns multi-valued, ``title`` / ``description``
  text. A floating-point column whose values are all whole numbers is an id column
  with missing values (as pandas writes integers with nulls) and is categorical
  too (``3.0`` -> ``"3"``); other floating-point columns are numbers, not fields,
  and are left out.
- ``train*.parquet``, ``val*.parquet``, ``test*.parquet``: one row per training
  window / evaluation case with ``user_id``, ``history`` (list of item ids, oldest
  first), ``target`` (item id) and optionally ``timestamp`` (of the target).

Rebuilding each user's full chronological sequence. Every row says "after
``history`` came ``target``", so a user's rows sorted by time (timestamp, then
train < valid < test, then file order) list the user's items one target at a
time. The sequence is the history of the user's earliest row followed by the
targets of all the user's rows in that order. Then every row is checked against
it: its history must be exactly the items just before its target (histories may be
truncated to the most recent items); a row that disagrees is a DataError naming
the file and row. With one test row per user (history + target = the whole
sequence) and one valid row (the same minus the last item) this gives back the
test row's sequence; sliding training windows are consistent with it too.
Timestamps are those of the targets; items seen only in the earliest history have
no known time (NaN). Without a ``timestamp`` column there are no timestamps.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ...errors import DataError
from ..dataset import Dataset, FieldKind
from .common import build_items, is_text_name, make_dataset, require_dir, require_file

SPLITS = (("train", "train"), ("valid", "val"), ("test", "test"))
REQUIRED = ("user_id", "history", "target")


def read_resid(source_dir: str | Path, name: str | None = None) -> Dataset:
    """Read a ReSID release folder (item_feature + train/valid/test parquet) into a Dataset."""
    source = require_dir(Path(source_dir))
    item_path = _find(source, "item_feature")
    items, fields, item_keys = _read_items(item_path)

    parts = [_read_split(_find(source, prefix), item_keys, item_path) for _, prefix in SPLITS]
    has_time = [p["time"] is not None for p in parts]
    if any(has_time) and not all(has_time):
        missing = [SPLITS[i][0] for i, ok in enumerate(has_time) if not ok]
        raise DataError(f"{source}: 'timestamp' is missing from the {', '.join(missing)} file(s) but present in others")

    user = np.concatenate([p["user"] for p in parts])
    target = np.concatenate([p["target"] for p in parts])
    split_rank = np.concatenate([np.full(len(p["user"]), i) for i, p in enumerate(parts)])
    file_row = np.concatenate([np.arange(len(p["user"])) for p in parts])
    hist_len = np.concatenate([p["hist_len"] for p in parts])
    hist_vals = np.concatenate([p["hist_vals"] for p in parts])
    hist_start = np.r_[0, np.cumsum(hist_len)[:-1]]
    time = np.concatenate([p["time"] for p in parts]) if all(has_time) else None

    user_ids, first = np.unique(user, return_index=True)
    user_rank = np.empty(len(user_ids), dtype=np.int64)
    user_rank[np.argsort(first, kind="stable")] = np.arange(len(user_ids))
    urank = user_rank[np.searchsorted(user_ids, user)]
    keys = [file_row, split_rank] + ([time] if time is not None else []) + [urank]
    order = np.lexsort(keys)  # by user, time, split, file row

    # per user: the earliest row's history, then every row's target in order
    n_users = len(user_ids)
    rows_per_user = np.bincount(urank, minlength=n_users)
    row_bounds = np.r_[0, np.cumsum(rows_per_user)]
    earliest = order[row_bounds[:-1]]
    lead = hist_len[earliest]
    seq_len = lead + rows_per_user
    seq_start = np.r_[0, np.cumsum(seq_len)[:-1]]
    flat = np.empty(int(seq_len.sum()), dtype=np.int64)
    flat[_ranges(seq_start, lead)] = hist_vals[_ranges(hist_start[earliest], lead)]
    sorted_user = urank[order]
    pos_in_user = np.arange(len(order)) - row_bounds[sorted_user]
    target_pos = np.empty(len(order), dtype=np.int64)  # flat position of each row's target
    target_pos[order] = seq_start[sorted_user] + lead[sorted_user] + pos_in_user
    flat[target_pos] = target

    _check_histories(parts, hist_len, hist_vals, target_pos, seq_start[urank], flat, split_rank, file_row)

    bounds = np.r_[seq_start, len(flat)]  # indexed by user rank
    sequences = [flat[bounds[r]:bounds[r + 1]] for r in range(n_users)]
    timestamps = None
    if time is not None:
        flat_time = np.full(len(flat), np.nan)
        flat_time[target_pos] = time
        timestamps = [flat_time[bounds[r]:bounds[r + 1]] for r in range(n_users)]
    return make_dataset(name or source.name, items, fields, user_ids[np.argsort(user_rank)], sequences, timestamps,
                        "resid", source)


def _check_histories(parts: list[dict], hist_len: np.ndarray, hist_vals: np.ndarray, target_pos: np.ndarray,
                     user_start: np.ndarray, flat: np.ndarray, split_rank: np.ndarray, file_row: np.ndarray) -> None:
    """Every row's history must equal the items right before its target in the rebuilt sequence.

    Args are per row (hist_len, target_pos = flat index of the target, user_start = flat
    index of the user's first item, split_rank, file_row) or flat (hist_vals, flat).
    """
    too_long = hist_len > target_pos - user_start
    expected = np.clip(_ranges(target_pos - hist_len, hist_len), 0, len(flat) - 1)
    mismatch = np.zeros(len(hist_len), dtype=bool)
    if len(hist_vals):
        bad_val = flat[expected] != hist_vals
        row_of_val = np.repeat(np.arange(len(hist_len)), hist_len)
        mismatch[row_of_val[bad_val]] = True
    bad = np.flatnonzero(too_long | mismatch)
    if len(bad):
        row = bad[np.lexsort((file_row[bad], split_rank[bad]))[0]]
        part = parts[split_rank[row]]
        raise DataError(
            f"{part['path']} row {file_row[row] + 1}: the history of user {str(part['user'][file_row[row]])!r} "
            "does not match the items before its target in the sequence rebuilt from the user's rows "
            "(rows must be windows of one chronological sequence)")


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` for every (start, length) pair."""
    offsets = np.arange(int(lengths.sum())) - np.repeat(np.r_[0, np.cumsum(lengths)[:-1]], lengths)
    return np.repeat(starts, lengths) + offsets


def _find(source: Path, prefix: str) -> Path:
    found = sorted(source.glob(f"{prefix}*.parquet"))
    if not found:
        raise DataError(f"missing file: no {prefix}*.parquet in {source} (the resid format needs "
                        "item_feature, train, valid and test parquet files)")
    if len(found) > 1:
        raise DataError(f"{source}: several {prefix}*.parquet files ({', '.join(p.name for p in found)})")
    return require_file(found[0])


def _read_table(path: Path) -> pa.Table:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable parquet file ({exc})") from None
    if table.num_rows == 0:
        raise DataError(f"{path}: file is empty (no rows)")
    return table


def _read_items(path: Path):
    table = _read_table(path)
    if "item_id" not in table.column_names:
        raise DataError(f"{path}: required column 'item_id' is missing (columns: {', '.join(table.column_names)})")
    ids = table.column("item_id")
    if ids.null_count:
        row = int(np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))[0]) + 1
        raise DataError(f"{path} row {row}: item_id is empty")
    columns, kinds = {}, {}
    for col in table.column_names:
        if col == "item_id":
            continue
        values = table.column(col).to_pylist()
        kind = _column_kind(col, table.schema.field(col).type)
        if kind is None and _whole_numbers(values):
            kind, values = "categorical", [None if v is None else int(v) for v in values]
        if kind is None:
            continue
        kinds[col] = kind
        columns[col] = values
    items, fields = build_items(ids.to_pylist(), columns, str(path), kinds=kinds)
    return items, fields, _id_keys(ids)


def _column_kind(name: str, typ: pa.DataType) -> FieldKind | None:
    if is_text_name(name):
        return "text"
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return "multi"
    if pa.types.is_floating(typ):
        return None
    return "categorical"


def _whole_numbers(values: list) -> bool:
    """True when every non-null value is a finite whole number."""
    known = [v for v in values if v is not None and not math.isnan(v)]
    return bool(known) and all(math.isfinite(v) and float(v).is_integer() for v in known)


def _id_keys(ids: pa.ChunkedArray) -> np.ndarray:
    """(n_items,) item ids to look up history and target ids: int64 when integers, else strings."""
    values = ids.to_numpy(zero_copy_only=False)
    return values if np.issubdtype(values.dtype, np.integer) else values.astype(str)


def _lookup(keys: np.ndarray, values: np.ndarray, path: Path, rows: np.ndarray, column: str, item_path: Path) -> np.ndarray:
    """Item indices of ``values``; DataError naming the row of the first id not in the item file.

    Integer ids are matched as integers; otherwise both sides are compared as strings.
    """
    if not (np.issubdtype(keys.dtype, np.integer) and np.issubdtype(values.dtype, np.integer)):
        keys, values = keys.astype(str).astype(object), values.astype(str).astype(object)
    idx = pd.Index(keys).get_indexer(values)
    if (idx < 0).any():
        i = int(np.flatnonzero(idx < 0)[0])
        raise DataError(f"{path} row {rows[i] + 1}: {column} item id {str(values[i])!r} is not in the item file {item_path}")
    return idx.astype(np.int64)


def _read_split(path: Path, item_keys: np.ndarray, item_path: Path) -> dict:
    """One split file as per-row arrays: user, target and timestamp, history lengths and flat history items."""
    table = _read_table(path)
    for col in REQUIRED:
        if col not in table.column_names:
            raise DataError(f"{path}: required column {col!r} is missing (columns: {', '.join(table.column_names)})")
    for col in ("user_id", "target"):
        if table.column(col).null_count:
            row = int(np.flatnonzero(table.column(col).is_null().to_numpy(zero_copy_only=False))[0]) + 1
            raise DataError(f"{path} row {row}: {col} is empty")
    history = table.column("history").combine_chunks()
    if not (pa.types.is_list(history.type) or pa.types.is_large_list(history.type)):
        raise DataError(f"{path}: column 'history' must hold lists of item ids, not {history.type}")
    n = table.num_rows
    hist_len = pc.fill_null(pc.list_value_length(history), 0).to_numpy().astype(np.int64)
    hist_raw = pc.list_flatten(history).to_numpy(zero_copy_only=False)
    hist_rows = np.repeat(np.arange(n), hist_len)
    part = {
        "path": path,
        "user": table.column("user_id").to_numpy(zero_copy_only=False).astype(str),
        "target": _lookup(item_keys, table.column("target").to_numpy(zero_copy_only=False), path,
                          np.arange(n), "target", item_path),
        "hist_len": hist_len,
        "hist_vals": _lookup(item_keys, hist_raw, path, hist_rows, "history", item_path),
        "time": None,
    }
    if "timestamp" in table.column_names:
        ts = table.column("timestamp")
        if not (pa.types.is_integer(ts.type) or pa.types.is_floating(ts.type)):
            raise DataError(f"{path}: column 'timestamp' must hold one number per row, not {ts.type}")
        if ts.null_count:
            row = int(np.flatnonzero(ts.is_null().to_numpy(zero_copy_only=False))[0]) + 1
            raise DataError(f"{path} row {row}: timestamp is empty")
        part["time"] = ts.to_numpy().astype(np.float64)
    return part
