"""The S3-Rec layout: ``sequences.txt`` plus ``items.jsonl`` with named fields.

- ``sequences.txt``: one user per line, ``user_id item_id item_id ...`` separated by
  whitespace, items in chronological order. Blank lines are skipped.
- ``items.jsonl``: one JSON object per line with an ``item_id`` (the ids used in
  ``sequences.txt``) and any named fields; kinds are inferred from the values (see
  ``resid_lib.data.readers.common``), e.g. for Amazon Beauty ``brand`` and
  ``cat_l1``..``cat_l4`` are categorical, ``categories`` is multi-valued and
  ``asin`` is kept as an identifier column.

Items keep the order of ``items.jsonl``; users the order of ``sequences.txt``.
There are no timestamps in this format.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..dataset import Dataset
from .common import build_items, check_unique_ids, id_lookup, make_dataset, require_dir, require_file, unknown_item

SEQUENCES = "sequences.txt"
ITEMS = "items.jsonl"


def read_s3rec(source_dir: str | Path, name: str | None = None) -> Dataset:
    """Read an S3-Rec folder (``sequences.txt`` + ``items.jsonl``) into a Dataset."""
    source = require_dir(Path(source_dir))
    items_path = require_file(source / ITEMS)
    seq_path = require_file(source / SEQUENCES)
    items, fields = _read_items(items_path)
    lookup = id_lookup(items["item_id"].tolist())
    user_ids, sequences = _read_sequences(seq_path, lookup, items_path)
    return make_dataset(name or source.name, items, fields, user_ids, sequences, None, "s3rec", source)


def _read_items(path: Path):
    records, lines = [], []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path} line {lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise DataError(f"{path} line {lineno}: expected a JSON object, got {type(rec).__name__}")
            if rec.get("item_id") is None:
                raise DataError(f"{path} line {lineno}: required key 'item_id' is missing or null")
            records.append(rec)
            lines.append(lineno)
    if not records:
        raise DataError(f"{path}: file is empty (no items)")
    keys: dict[str, None] = {}
    for rec in records:
        keys.update(dict.fromkeys(rec))
    columns = {k: [rec.get(k) for rec in records] for k in keys if k != "item_id"}
    return build_items([rec["item_id"] for rec in records], columns, str(path), lines=lines)


def _read_sequences(path: Path, lookup: dict[str, int], items_path: Path) -> tuple[list[str], list[np.ndarray]]:
    user_ids: list[str] = []
    user_lines: list[int] = []
    sequences: list[np.ndarray] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) < 2:
                raise DataError(f"{path} line {lineno}: malformed line, expected 'user_id item_id [item_id ...]'")
            try:
                seq = np.fromiter((lookup[t] for t in tokens[1:]), dtype=np.int64, count=len(tokens) - 1)
            except KeyError as exc:
                raise unknown_item(f"{path} line {lineno}", exc.args[0], items_path) from None
            user_ids.append(tokens[0])
            user_lines.append(lineno)
            sequences.append(seq)
    if not sequences:
        raise DataError(f"{path}: file is empty (no users)")
    check_unique_ids(user_ids, str(path), what="user id", lines=user_lines)
    return user_ids, sequences
