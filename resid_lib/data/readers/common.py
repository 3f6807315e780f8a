"""What every reader shares: field-kind inference, missing values, id lookup, assembly.

Field kinds are inferred from the values a source holds for one key or column:

- a column named ``title`` or ``description`` (or ending in ``_title`` /
  ``_description``) is **text**;
- a column whose values are lists is **multi** (a set of categorical values);
- any other column of scalars is **categorical** (values kept as strings).

``asin`` and ``parent_asin`` are identifiers, not fields: they stay in the items
table as extra columns so items can be traced back to their source catalog.

Missing values (``null``, NaN, absent keys, blank strings) are never errors: they
become null in the items table, i.e. the unknown code 0 in memory. ``"Unknown"``
and other literal strings are kept as values.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import DataError
from ..dataset import Dataset, FieldKind, FieldSpec

TEXT_NAMES = ("title", "description")
IDENTIFIER_NAMES = ("asin", "parent_asin")


def is_text_name(name: str) -> bool:
    """True for column names that hold free text (title, description, movie_title, ...)."""
    low = name.lower()
    return low in TEXT_NAMES or any(low.endswith("_" + t) for t in TEXT_NAMES)


def is_missing(value: Any) -> bool:
    """None, NaN and blank strings are missing values."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def scalar_text(value: Any) -> str | None:
    """A scalar as a string value, or None when missing."""
    return None if is_missing(value) else str(value)


def value_list(value: Any) -> list[str]:
    """The values of a multi-valued entry: strings, blanks dropped, duplicates removed (order kept)."""
    if is_missing(value):
        return []
    if isinstance(value, (str, int, float)):
        value = [value]
    out: list[str] = []
    for v in value:
        if not is_missing(v) and str(v) not in out:
            out.append(str(v))
    return out


def infer_kind(name: str, values: Iterable[Any], where: str) -> FieldKind:
    """The kind of a field from its name and (Python) values; ``where`` names the source file."""
    has_list = has_scalar = False
    for v in values:
        if is_missing(v):
            continue
        if isinstance(v, (list, tuple, np.ndarray)):
            has_list = True
        elif isinstance(v, dict):
            raise DataError(f"{where}: field {name!r} holds nested objects; expected single values or lists")
        else:
            has_scalar = True
        if has_list and has_scalar:
            raise DataError(f"{where}: field {name!r} mixes lists and single values")
    if has_list:
        return "multi"
    return "text" if is_text_name(name) else "categorical"


def clean_column(values: Sequence[Any], kind: FieldKind) -> list:
    """Normalise a column's values for the items table: strings / None, or lists of strings."""
    if kind == "multi":
        return [value_list(v) for v in values]
    return [scalar_text(v) for v in values]


def build_items(item_ids: Sequence[Any], columns: dict[str, Sequence[Any]], where: str,
                kinds: dict[str, FieldKind] | None = None, lines: Sequence[int] | None = None) -> tuple[pd.DataFrame, tuple[FieldSpec, ...]]:
    """The items table and field specs from raw columns (one value per item, in item order).

    Args:
        item_ids: (n_items,) item ids; must be unique.
        columns: field name -> raw values parallel to ``item_ids``; identifier columns
            (``asin``) are kept as plain columns, every other column becomes a field.
        where: file the columns come from, for error messages.
        kinds: field kinds fixed by the source format (e.g. RecBole's typed headers);
            columns not listed are inferred with :func:`infer_kind`.
        lines: source line of each item, for error messages.
    """
    ids = [str(i) for i in item_ids]
    check_unique_ids(ids, where, lines=lines)
    frame: dict[str, list] = {"item_id": ids}
    fields = []
    for name, raw in columns.items():
        if name == "item_id":
            continue
        if name.lower() in IDENTIFIER_NAMES:
            frame[name] = [scalar_text(v) for v in raw]
            continue
        kind = (kinds or {}).get(name) or infer_kind(name, raw, where)
        frame[name] = clean_column(raw, kind)
        fields.append(FieldSpec(name, kind))
    return pd.DataFrame(frame), tuple(fields)


def check_unique_ids(ids: Sequence[str], where: str, what: str = "item id",
                     lines: Sequence[int] | None = None) -> None:
    """Raise DataError naming the first repeated id and where both copies are (line numbers if given)."""
    seen: dict[str, int] = {}
    for pos, iid in enumerate(ids):
        if iid in seen:
            first, second = (lines[seen[iid]], lines[pos]) if lines is not None else (seen[iid] + 1, pos + 1)
            unit = "lines" if lines is not None else "rows"
            raise DataError(f"{where}: duplicate {what} {iid!r} ({unit} {first} and {second})")
        seen[iid] = pos


def id_lookup(item_ids: Sequence[str]) -> dict[str, int]:
    """Item id string -> item index."""
    return {iid: i for i, iid in enumerate(item_ids)}


def unknown_item(where: str, item_id: Any, item_file: Path) -> DataError:
    return DataError(f"{where}: item id {str(item_id)!r} is not in the item file {item_file}")


def require_file(path: Path) -> Path:
    """The path when it is a non-empty file; a DataError naming it otherwise."""
    if not path.is_file():
        raise DataError(f"missing file {path}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    return path


def require_dir(path: Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"source folder {path} does not exist")
    return path


def find_named(source: Path, suffix: str, name: str | None, fmt: str) -> tuple[str, Path]:
    """The dataset name and the file ``NAME{suffix}`` in ``source`` (NAME found when not given)."""
    if name is not None:
        return name, require_file(source / f"{name}{suffix}")
    found = sorted(source.glob(f"*{suffix}"))
    if not found:
        raise DataError(f"missing file: no *{suffix} file in {source} (the {fmt} format needs NAME{suffix})")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise DataError(f"{source}: several *{suffix} files ({names}); pick one with --name")
    return found[0].name[: -len(suffix)], require_file(found[0])


def make_dataset(name: str, items: pd.DataFrame, fields: tuple[FieldSpec, ...], user_ids: Sequence[str],
                 sequences: list[np.ndarray], timestamps: list[np.ndarray] | None,
                 fmt: str, source: Path) -> Dataset:
    """Assemble the Dataset, recording where it came from."""
    return Dataset(
        name=name,
        items=items,
        fields=fields,
        user_ids=np.asarray([str(u) for u in user_ids], dtype=object).astype(str),
        sequences=sequences,
        timestamps=timestamps,
        source={"format": fmt, "path": str(source.resolve())},
    )
