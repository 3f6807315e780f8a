"""The LC-Rec / LETTER json layout: ``NAME.inter.json`` + ``NAME.item.json``.

- ``NAME.inter.json``: ``{"user": [item, item, ...]}``, items in chronological order.
- ``NAME.item.json``: ``{"item": {"title", "description", "brand", "categories", ...}}``;
  every item in the file is kept, in file order, whether or not anyone bought it.

``categories`` is one category path string and becomes the categorical fields
``cat_l1``, ``cat_l2``, ...: Office separates levels with ``", "``, Scientific with
``","`` and no space, while some of its level names themselves contain ``", "``
("Hydraulics, Pneumatics & Plumbing"). So when the file has any comma directly
followed by a non-space character, levels are split on such commas only;
otherwise on every comma. Names are stripped. Levels that fewer than
``min_level_share`` of the items reach (0.1%, at least one item: stray text glued
onto a few paths upstream, e.g. two Scientific items with 8 and 16 "levels") are
dropped. ``title`` and ``description`` are text, other keys are typed as in
``resid_lib.data.readers.common``. Strings are HTML-unescaped (``AT&amp;T`` ->
``AT&T``), as the Amazon metadata behind this format is HTML-escaped.
"""
from __future__ import annotations

import html
import math
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from ..dataset import Dataset
from .common import build_items, find_named, id_lookup, is_missing, make_dataset, require_dir, unknown_item

CATEGORY_KEY = "categories"
MIN_LEVEL_SHARE = 0.001
_TIGHT_COMMA = re.compile(r",(?=\S)")


def read_lcrec(source_dir: str | Path, name: str | None = None, *, min_level_share: float = MIN_LEVEL_SHARE) -> Dataset:
    """Read an LC-Rec folder into a Dataset (``name`` picks ``NAME.inter.json`` when several exist)."""
    source = require_dir(Path(source_dir))
    name, inter_path = find_named(source, ".inter.json", name, "lcrec")
    item_path = source / f"{name}.item.json"
    if not item_path.is_file():
        raise DataError(f"missing file {item_path} (the lcrec format needs {name}.item.json beside {inter_path.name})")
    raw_items = _load_object(item_path, "item id")
    raw_inter = _load_object(inter_path, "user id")

    records = []
    for iid, rec in raw_items.items():
        if not isinstance(rec, dict):
            raise DataError(f"{item_path}: item {iid!r}: expected an object of fields, got {type(rec).__name__}")
        records.append(rec)
    keys: dict[str, None] = {}
    for rec in records:
        keys.update(dict.fromkeys(rec))
    columns: dict[str, list] = {}
    for key in keys:
        values = [_unescape(rec.get(key)) for rec in records]
        if key == CATEGORY_KEY:
            columns.update(category_levels(values, min_level_share, where=str(item_path)))
        else:
            columns[key] = values
    items, fields = build_items(list(raw_items), columns, str(item_path))

    lookup = id_lookup(items["item_id"].tolist())
    sequences = []
    for uid, seq in raw_inter.items():
        if not isinstance(seq, list):
            raise DataError(f"{inter_path}: user {uid!r}: expected a list of item ids, got {type(seq).__name__}")
        if not seq:
            raise DataError(f"{inter_path}: user {uid!r} has no interactions")
        try:
            sequences.append(np.fromiter((lookup[str(i)] for i in seq), dtype=np.int64, count=len(seq)))
        except KeyError as exc:
            raise unknown_item(f"{inter_path}: user {uid!r}", exc.args[0], item_path) from None
    return make_dataset(name, items, fields, list(raw_inter), sequences, None, "lcrec", source)


def category_levels(paths: list[Any], min_level_share: float = MIN_LEVEL_SHARE,
                    where: str = CATEGORY_KEY) -> dict[str, list[str | None]]:
    """Split category paths (strings or lists) into ``cat_l1``.. columns; see the module docstring."""
    strings = [p for p in paths if isinstance(p, str)]
    tight = any(_TIGHT_COMMA.search(p) for p in strings)
    split: list[list[str]] = []
    for p in paths:
        if is_missing(p):
            levels = []
        elif isinstance(p, str):
            levels = _TIGHT_COMMA.split(p) if tight else p.split(",")
        elif isinstance(p, list):
            levels = [str(v) for v in p]
        else:
            raise DataError(f"{where}: {CATEGORY_KEY!r} must be a path string or a list, got {p!r}")
        split.append([v.strip() for v in levels])
    min_items = max(1, math.ceil(min_level_share * len(paths)))
    depth = 0
    while sum(len(levels) > depth for levels in split) >= min_items:
        depth += 1
    return {f"cat_l{d + 1}": [levels[d] if len(levels) > d else None for levels in split] for d in range(depth)}


def _unescape(value: Any) -> Any:
    return html.unescape(value) if isinstance(value, str) else value


def _load_object(path: Path, what: str) -> dict:
    """A JSON file holding one object; DataError for bad JSON, another type, emptiness or duplicate keys."""
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    duplicates: list[tuple[str, dict]] = []

    def keep_pairs(pairs: list[tuple[str, Any]]) -> dict:
        obj = dict(pairs)
        if len(obj) != len(pairs) and not duplicates:
            counts = Counter(k for k, _ in pairs)
            duplicates.append((next(k for k, n in counts.items() if n > 1), obj))
        return obj

    try:
        data = json.loads(text, object_pairs_hook=keep_pairs)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object mapping {what}s, got {type(data).__name__}")
    if not data:
        raise DataError(f"{path}: file is empty (an empty object)")
    if duplicates:
        key, obj = duplicates[0]
        if obj is not data:
            raise DataError(f"{path}: duplicate key {key!r} inside one entry")
        lines = [text.count("\n", 0, m.start()) + 1 for m in re.finditer(rf'"{re.escape(key)}"\s*:', text)]
        at = f" (lines {lines[0]} and {lines[1]})" if len(lines) >= 2 else ""
        raise DataError(f"{path}: duplicate {what} {key!r}{at}")
    return data
