"""The ``quantize`` stage: item embeddings in, unique Semantic IDs and their diagnostics out.

Reads ``RUN_DIR/encode/item_embeddings.npy``, fits the configured quantizer, appends
the dedup level when its codes collide, and writes into ``RUN_DIR/quantize/`` (see
``resid_lib.rundir``): ``sids.parquet``, ``diagnostics.json``, ``tree.parquet`` and
``quantizer.pt``. ``workbench quantize`` writes the same files through
:func:`quantize_embeddings`.
"""
from __future__ import annotations

import inspect
import time
from pathlib import Path

import numpy as np

from ..data.dataset import Dataset
from ..data.split import EvalSet
from ..errors import DataError, RunDirError
from ..io import write_json, write_parquet
from . import make_quantizer, quantizer_class
from .base import Quantizer, check_embeddings, dedup_codes
from .diagnostics import summarize
from .tree import sids_frame, tree_frame

SIDS = "sids.parquet"
DIAGNOSTICS = "diagnostics.json"
TREE = "tree.parquet"
QUANTIZER = "quantizer.pt"
CHECKPOINT = "checkpoint.pt"


def run_stage(ctx) -> None:
    """Pipeline entry point; ``ctx`` is a ``resid_lib.pipeline.StageContext``."""
    path = ctx.run.file("encode", "item_embeddings.npy")
    if not path.is_file():
        raise RunDirError(f"{path} is missing: run the encode stage first (or write item embeddings there)")
    out = ctx.run.stage_dir("quantize")
    runtime = {"progress": ctx.progress, "checkpoint": out / CHECKPOINT}
    quantizer = make_quantizer(ctx.config.quantize, seed=ctx.config.seed, device=str(ctx.device),
                               **accepted_options(ctx.config.quantize.method, runtime))
    quantize_embeddings(quantizer, np.load(path), out, dataset=ctx.dataset, eval_set=ctx.split.test)
    (out / CHECKPOINT).unlink(missing_ok=True)


def accepted_options(method: str, options: dict) -> dict:
    """The subset of ``options`` (run-time settings such as progress bars) the method's constructor takes."""
    params = inspect.signature(quantizer_class(method).__init__).parameters
    return {k: v for k, v in options.items() if k in params}


def unique_sids(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """Codes made unique: unchanged when no two items share a tuple, else with the dedup level.

    Returns:
        ((n, L) or (n, L+1) int64 codes, number of items that collided before dedup).
    """
    codes = np.asarray(codes, dtype=np.int64)
    if len(np.unique(codes, axis=0)) == len(codes):
        return codes, 0
    return dedup_codes(codes)


def quantize_embeddings(
    quantizer: Quantizer,
    embeddings,
    out_dir: str | Path,
    *,
    dataset: Dataset | None = None,
    eval_set: EvalSet | None = None,
    item_ids=None,
) -> dict:
    """Fit ``quantizer`` on ``embeddings``, write the Q-stage files into ``out_dir``, return the diagnostics.

    Args:
        embeddings: (n_items, d) rows in the dataset's item order.
        dataset: gives item ids and the tree's field shares (rows must match its items).
        eval_set: user histories and targets for the history/target overlap.
        item_ids: ids when there is no dataset (default: the row numbers).
    """
    X = check_embeddings(embeddings)
    if dataset is not None:
        if len(X) != dataset.n_items:
            raise DataError(f"embeddings have {len(X)} rows but dataset {dataset.name!r} has {dataset.n_items} items; "
                            "they must be in the dataset's item order")
        item_ids = dataset.item_ids
    elif item_ids is None:
        item_ids = np.arange(len(X)).astype(str)
    elif len(item_ids) != len(X):
        raise DataError(f"{len(item_ids)} item ids for {len(X)} embedding rows")
    t0 = time.perf_counter()
    quantizer.fit(X)
    t1 = time.perf_counter()
    raw = quantizer.encode(X)
    sids, quantizer.n_collisions_ = unique_sids(raw)
    t2 = time.perf_counter()
    reconstruct = getattr(quantizer, "reconstruct", None)
    diagnostics = summarize(
        sids,
        raw_codes=raw,
        codebook_sizes=quantizer.codebook_sizes_,
        embeddings=X,
        reconstruction=reconstruct(X) if reconstruct is not None else None,
        histories=eval_set.histories if eval_set is not None else None,
        targets=eval_set.targets if eval_set is not None else None,
        extra={"method": quantizer.name, "seconds": {"fit": round(t1 - t0, 3), "encode": round(t2 - t1, 3)}},
    )
    tree = tree_frame(sids, dataset)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    quantizer.save(out_dir / QUANTIZER)
    write_parquet(out_dir / TREE, tree)
    write_json(out_dir / DIAGNOSTICS, diagnostics)
    write_parquet(out_dir / SIDS, sids_frame(item_ids, sids))
    return diagnostics
