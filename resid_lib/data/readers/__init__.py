"""Readers for the formats papers publish data in, into the canonical Dataset.

========  ==========================================================  ===============
format    files                                                       as in
========  ==========================================================  ===============
s3rec     ``sequences.txt`` + ``items.jsonl``                         S3-Rec, P5, TIGER
lcrec     ``NAME.inter.json`` + ``NAME.item.json``                    LC-Rec, LETTER
recbole   ``NAME.inter`` + ``NAME.item`` (typed atomic files)         RecBole
resid     ``item_feature`` + ``train``/``valid``/``test`` parquet     the ReSID release
========  ==========================================================  ===============

Each module documents its format and the rules it applies. Every reader reads and
checks everything before returning, so a bad file raises one DataError (naming the
file, and the line or row where there is one) before anything is written.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ...errors import DataError
from ..dataset import Dataset
from .lcrec import read_lcrec
from .recbole import read_recbole
from .resid import read_resid
from .s3rec import read_s3rec

READERS: dict[str, Callable[..., Dataset]] = {
    "s3rec": read_s3rec,
    "lcrec": read_lcrec,
    "recbole": read_recbole,
    "resid": read_resid,
}
FORMATS = tuple(READERS)


def read_dataset(fmt: str, source_dir: str | Path, name: str | None = None) -> Dataset:
    """Read ``source_dir`` in format ``fmt`` (one of FORMATS); ``name`` overrides the dataset name."""
    reader = READERS.get(fmt)
    if reader is None:
        raise DataError(f"unknown format {fmt!r} (known formats: {', '.join(FORMATS)})")
    return reader(source_dir, name)


__all__ = ["FORMATS", "read_dataset", "read_lcrec", "read_recbole", "read_resid", "read_s3rec"]
