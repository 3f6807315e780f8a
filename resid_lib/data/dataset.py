"""The canonical dataset: an item catalog with typed fields plus user sequences.

On disk a dataset is a folder with three files:

- ``items.parquet``: one row per item, in the dataset's item order (item index
  ``0..n_items-1``); column ``item_id`` (string) plus one column per field (and,
  from some sources, identifier columns such as ``asin`` that are not fields).
  Categorical fields are strings (null = missing), multi-valued fields are lists of
  strings, text fields are strings.
- ``interactions.parquet``: ``user_id`` (string), ``item_index`` (int32) and, when the
  source has them, ``timestamp`` (float64). Rows of one user are contiguous and in
  chronological order.
- ``schema.json``: name, source, counts, fields (name, kind, vocabulary size,
  missing rate) and a fingerprint that run directories use to refuse a mismatched
  dataset.

In memory, categorical values are integer codes: ``0`` is the explicit *unknown*
value and ``1..V`` the known values in sorted order.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError
from ..io import atomic_dir, read_json, write_json

FieldKind = Literal["categorical", "multi", "text"]
FIELD_KINDS: tuple[str, ...] = ("categorical", "multi", "text")
UNKNOWN = "<unknown>"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class FieldSpec:
    """One item field: ``categorical`` (one value or missing), ``multi`` (a set of values), ``text``."""

    name: str
    kind: FieldKind

    def __post_init__(self) -> None:
        if self.kind not in FIELD_KINDS:
            raise DataError(f"field {self.name!r}: unknown kind {self.kind!r} (expected one of {FIELD_KINDS})")


@dataclass
class Dataset:
    """Items with typed fields and chronological per-user item sequences.

    Attributes:
        name: short dataset name.
        items: DataFrame, one row per item in item-index order; ``item_id`` + field columns.
        fields: the typed item fields, in column order.
        user_ids: (n_users,) user id strings.
        sequences: per user, an int64 array of item indices in chronological order.
        timestamps: per user, float64 timestamps parallel to ``sequences``, or None.
        source: where the data was imported from (format, path), for the record.
    """

    name: str
    items: pd.DataFrame
    fields: tuple[FieldSpec, ...]
    user_ids: np.ndarray
    sequences: list[np.ndarray]
    timestamps: list[np.ndarray] | None = None
    source: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ----------------------------------------------------------------- checks
    def validate(self) -> None:
        """Raise DataError when the parts do not fit together."""
        if len(self.items) == 0:
            raise DataError(f"dataset {self.name!r} has no items")
        if len(self.sequences) == 0:
            raise DataError(f"dataset {self.name!r} has no users")
        if "item_id" not in self.items.columns:
            raise DataError(f"dataset {self.name!r}: items table lacks the 'item_id' column")
        dup = self.items["item_id"].duplicated()
        if dup.any():
            raise DataError(f"dataset {self.name!r}: duplicate item id {str(self.items['item_id'][dup].iloc[0])!r}")
        for spec in self.fields:
            if spec.name not in self.items.columns:
                raise DataError(f"dataset {self.name!r}: field {spec.name!r} has no column in the items table")
        if len(self.user_ids) != len(self.sequences):
            raise DataError("user_ids and sequences differ in length")
        n = len(self.items)
        for uid, seq in zip(self.user_ids, self.sequences):
            if len(seq) == 0:
                raise DataError(f"user {str(uid)!r} has an empty sequence")
            if seq.min() < 0 or seq.max() >= n:
                raise DataError(f"user {str(uid)!r} refers to an item index outside 0..{n - 1}")

    # ------------------------------------------------------------- properties
    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_users(self) -> int:
        return len(self.sequences)

    @property
    def n_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    @property
    def item_ids(self) -> np.ndarray:
        return self.items["item_id"].to_numpy()

    def field(self, name: str) -> FieldSpec:
        for spec in self.fields:
            if spec.name == name:
                return spec
        known = ", ".join(f.name for f in self.fields) or "none"
        raise DataError(f"dataset {self.name!r} has no field {name!r} (fields: {known})")

    def fields_of_kind(self, kind: FieldKind) -> list[str]:
        return [f.name for f in self.fields if f.kind == kind]

    @property
    def categorical_fields(self) -> list[str]:
        return self.fields_of_kind("categorical")

    @property
    def text_fields(self) -> list[str]:
        return self.fields_of_kind("text")

    def vocabulary(self, name: str) -> list[str]:
        """Known values of a categorical or multi field, sorted; code ``i+1`` is ``vocab[i]``."""
        return self._vocabularies[name]

    @cached_property
    def _vocabularies(self) -> dict[str, list[str]]:
        vocabs: dict[str, list[str]] = {}
        for spec in self.fields:
            col = self.items[spec.name]
            if spec.kind == "categorical":
                vocabs[spec.name] = sorted({str(v) for v in col.dropna()})
            elif spec.kind == "multi":
                vocabs[spec.name] = sorted({str(v) for vals in col.dropna() for v in vals})
        return vocabs

    def codes(self, name: str) -> np.ndarray:
        """(n_items,) int64 codes of a categorical field; 0 = unknown, 1..V = ``vocabulary(name)``."""
        spec = self.field(name)
        if spec.kind != "categorical":
            raise DataError(f"field {name!r} is {spec.kind}, not categorical")
        return self._codes[name]

    @cached_property
    def _codes(self) -> dict[str, np.ndarray]:
        out = {}
        for name in self.categorical_fields:
            cat = pd.Categorical(self.items[name].astype("string"), categories=self.vocabulary(name))
            out[name] = (np.asarray(cat.codes, dtype=np.int64) + 1)
        return out

    def cardinality(self, name: str) -> int:
        """Number of codes of a categorical field including the unknown code 0."""
        return len(self.vocabulary(name)) + 1

    def item_index(self, item_ids) -> np.ndarray:
        """Map item id strings to indices; raises DataError naming the first unknown id."""
        lookup = self._id_to_index
        out = np.empty(len(item_ids), dtype=np.int64)
        for i, iid in enumerate(item_ids):
            idx = lookup.get(str(iid))
            if idx is None:
                raise DataError(f"unknown item id {iid!r} in dataset {self.name!r}")
            out[i] = idx
        return out

    @cached_property
    def _id_to_index(self) -> dict[str, int]:
        return {str(v): i for i, v in enumerate(self.items["item_id"])}

    @cached_property
    def popularity(self) -> np.ndarray:
        """(n_items,) interaction counts."""
        return np.bincount(np.concatenate(self.sequences), minlength=self.n_items)

    @property
    def fingerprint(self) -> str:
        """Short hash of item ids and sequence contents: identifies the dataset's data."""
        h = hashlib.sha256()
        h.update("\n".join(map(str, self.items["item_id"])).encode())
        lengths = np.fromiter((len(s) for s in self.sequences), dtype=np.int64, count=self.n_users)
        h.update(lengths.tobytes())
        h.update(np.concatenate(self.sequences).astype(np.int64).tobytes())
        return h.hexdigest()[:16]

    # ------------------------------------------------------------ summaries
    def info(self) -> dict:
        """Counts, sequence-length statistics and per-field vocabulary size / missing rate."""
        lengths = np.array([len(s) for s in self.sequences])
        fields = []
        for spec in self.fields:
            col = self.items[spec.name]
            if spec.kind == "text":
                missing = col.isna() | (col.astype("string").str.strip() == "")
                vocab = None
            elif spec.kind == "multi":
                missing = col.apply(lambda v: v is None or len(v) == 0)
                vocab = len(self.vocabulary(spec.name))
            else:
                missing = col.isna()
                vocab = len(self.vocabulary(spec.name))
            fields.append({"name": spec.name, "kind": spec.kind, "vocab_size": vocab,
                           "missing_rate": round(float(missing.mean()), 6)})
        return {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "density": self.n_interactions / (self.n_users * self.n_items),
            "sequence_length": {
                "min": int(lengths.min()), "max": int(lengths.max()),
                "mean": round(float(lengths.mean()), 4), "median": float(np.median(lengths)),
                "p90": float(np.percentile(lengths, 90)),
            },
            "fields": fields,
            "has_timestamps": self.timestamps is not None,
            "fingerprint": self.fingerprint,
        }

    # ------------------------------------------------------------ persistence
    def save(self, out_dir: str | Path) -> Path:
        """Write the canonical folder atomically (replacing an existing one)."""
        out_dir = Path(out_dir)
        with atomic_dir(out_dir) as tmp:
            items = self.items.copy()
            items["item_id"] = items["item_id"].astype(str)
            items.to_parquet(tmp / "items.parquet", index=False)
            lengths = np.fromiter((len(s) for s in self.sequences), dtype=np.int64, count=self.n_users)
            cols = {
                "user_id": pa.array(np.repeat(self.user_ids.astype(str), lengths)),
                "item_index": pa.array(np.concatenate(self.sequences).astype(np.int32)),
            }
            if self.timestamps is not None:
                cols["timestamp"] = pa.array(np.concatenate(self.timestamps).astype(np.float64))
            pq.write_table(pa.table(cols), tmp / "interactions.parquet")
            info = self.info()
            schema = {
                "format_version": FORMAT_VERSION,
                "name": self.name,
                "source": self.source,
                "counts": {k: info[k] for k in ("users", "items", "interactions")},
                "fields": info["fields"],
                "fingerprint": info["fingerprint"],
            }
            write_json(tmp / "schema.json", schema)
        return out_dir

    @classmethod
    def load(cls, path: str | Path) -> "Dataset":
        """Read a canonical dataset folder written by :meth:`save`."""
        path = Path(path)
        schema_path = path / "schema.json"
        if not schema_path.is_file():
            raise DataError(f"{path}: not a dataset folder (no schema.json); create one with 'workbench data import' or 'workbench data demo'")
        schema = read_json(schema_path)
        if schema.get("format_version") != FORMAT_VERSION:
            raise DataError(f"{schema_path}: unsupported format_version {schema.get('format_version')!r}")
        items = pd.read_parquet(path / "items.parquet")
        for spec in schema["fields"]:
            if spec["kind"] == "multi":
                items[spec["name"]] = items[spec["name"]].apply(lambda v: [] if v is None else list(v))
        table = pq.read_table(path / "interactions.parquet")
        user_col = table.column("user_id").to_numpy(zero_copy_only=False).astype(str)
        item_col = table.column("item_index").to_numpy().astype(np.int64)
        starts = np.flatnonzero(np.r_[True, user_col[1:] != user_col[:-1]])
        bounds = np.r_[starts, len(user_col)]
        sequences = [item_col[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        timestamps = None
        if "timestamp" in table.column_names:
            ts = table.column("timestamp").to_numpy()
            timestamps = [ts[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        ds = cls(
            name=schema["name"],
            items=items,
            fields=tuple(FieldSpec(f["name"], f["kind"]) for f in schema["fields"]),
            user_ids=user_col[starts],
            sequences=sequences,
            timestamps=timestamps,
            source=schema.get("source", {}),
        )
        if len(set(ds.user_ids.tolist())) != ds.n_users:
            raise DataError(f"{path / 'interactions.parquet'}: rows of one user are not contiguous")
        return ds
