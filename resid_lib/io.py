"""Atomic file writes: a crash never leaves a file that looks complete.

Every writer goes to a temporary file in the destination folder and is renamed
over the destination only after it was written and flushed.

In a distributed run (``resid_lib.distributed``) only rank 0 writes: on the other
ranks the same calls write into a scratch folder that is deleted afterwards, so
code runs unchanged on every rank and no rank races rank 0 for a file. Ranks that
read what rank 0 wrote wait for it on a barrier first.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    if not _writes():
        with tempfile.TemporaryDirectory(prefix="resid-discarded-") as scratch:
            yield Path(scratch) / path.name
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(0o666 & ~_umask())  # mkstemp makes 0600; give new files the usual permissions
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; move it onto ``path`` on success.

    On any exception the temporary folder is removed, so a failed import or export
    leaves no half-written output behind. An existing ``path`` is replaced.
    """
    path = Path(path)
    if not _writes():
        with tempfile.TemporaryDirectory(prefix="resid-discarded-") as scratch:
            yield Path(scratch)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; give new folders the usual permissions
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_figure(path: str | Path, fig) -> None:
    """Write a plotly figure as an HTML page that also opens offline.

    The page loads plotly.js from a file beside it (``plotly-VERSION.min.js``, written
    once per folder), so a folder of figures holds one copy of the library, not one per
    page, and needs no network.
    """
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    path = Path(path)
    script = f"plotly-{get_plotlyjs_version()}.min.js"
    if not (path.parent / script).is_file():
        write_text(path.parent / script, get_plotlyjs())
    write_text(path, fig.to_html(include_plotlyjs=script))


def save_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


def write_parquet(path: str | Path, frame) -> None:
    """Write a pandas DataFrame to parquet atomically (index dropped)."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def torch_save(path: str | Path, obj: Any) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _writes() -> bool:
    """False on a non-zero rank of a distributed run (which has imported torch.distributed)."""
    if "torch.distributed" not in sys.modules:
        return True
    from .distributed import is_main

    return is_main()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
