"""The G-stage of a run: train the generator on the run's SIDs, then rank and score.

Reads ``quantize/sids.parquet`` and writes under ``generate/`` exactly what the
run-directory contract (``resid_lib.rundir``) lists: ``metrics.json``,
``history.csv``, ``predictions.parquet``, ``model.pt`` and ``checkpoint.pt``.
Validation and test use every evaluable user, full ranking over all items (a beam
result is an item), Recall@5/10 and NDCG@5/10.
"""
from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.dataset import Dataset
from ..errors import DataError, RunDirError
from ..io import atomic_path, write_json, write_parquet
from ..pipeline import StageContext
from .recommend import evaluate
from .trainer import GeneratorTrainer
from .trie import check_sids

_CODE_COLUMN = re.compile(r"codebook(\d+)_id")


def read_sids(path: str | Path, dataset: Dataset) -> np.ndarray:
    """(n_items, L) int64 SIDs from a ``sids.parquet``, rows aligned to the dataset's item order.

    Raises RunDirError when the file is missing and DataError when its items are not
    exactly the dataset's items, its columns are not ``item_id, codebook1_id..codebookL_id``,
    or two items share a SID.
    """
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path} is missing: run the quantize stage first")
    frame = pd.read_parquet(path)
    if "item_id" not in frame.columns:
        raise DataError(f"{path}: no 'item_id' column")
    levels = sorted(int(m.group(1)) for c in frame.columns if (m := _CODE_COLUMN.fullmatch(str(c))))
    if not levels or levels != list(range(1, len(levels) + 1)):
        raise DataError(f"{path}: expected columns codebook1_id .. codebookL_id, found {list(frame.columns)}")
    ids = frame["item_id"].astype(str)
    if ids.duplicated().any():
        raise DataError(f"{path}: item {ids[ids.duplicated()].iloc[0]!r} has more than one row")
    known = set(map(str, dataset.item_ids))
    extra = [i for i in ids if i not in known]
    if extra or len(ids) != dataset.n_items:
        detail = f"e.g. {extra[0]!r} is not a dataset item" if extra else f"{dataset.n_items - len(ids)} dataset item(s) have no SID"
        raise DataError(f"{path} does not belong to dataset {dataset.name!r} ({len(ids)} rows for {dataset.n_items} items; "
                        f"{detail}); was the run directory made from other data?")
    codes = frame[[f"codebook{level}_id" for level in levels]].to_numpy()
    order = dataset.item_index(ids.to_numpy())
    sids = np.empty_like(codes)
    sids[order] = codes
    try:
        return check_sids(sids)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


def run_stage(ctx: StageContext) -> None:
    """Train, select on validation, rank valid and test users, write the G-stage artifacts."""
    cfg = ctx.config.generate
    out = ctx.run.stage_dir("generate")
    sids = read_sids(ctx.run.file("quantize", "sids.parquet"), ctx.dataset)
    trainer = GeneratorTrainer(cfg, sids, ctx.split.train, ctx.split.valid, seed=ctx.config.seed, device=ctx.device,
                               checkpoint=out / "checkpoint.pt", show_progress=ctx.progress)
    outcome = trainer.fit(resume=ctx.resume)
    with atomic_path(out / "history.csv") as tmp:
        pd.DataFrame(outcome.history, columns=["epoch", "loss", "valid_recall@10", "seconds"]).to_csv(tmp, index=False)
    outcome.model.save(out / "model.pt", config=asdict(cfg), best_epoch=outcome.best_epoch, sids=sids)

    decode = dict(max_items=cfg.max_items, beams=cfg.beams, top_k=cfg.top_k, batch_size=cfg.decode_batch_size,
                  precision=cfg.precision, progress=ctx.progress)
    results, frames, invalid = {}, [], []
    for split in ("valid", "test"):
        eval_set = ctx.split.eval_set(split)
        results[split], rankings = evaluate(outcome.model, outcome.trie, outcome.tokenizer, eval_set,
                                            desc=f"rank {split}", **decode)
        invalid.append(rankings.invalid_rate)
        frames.append(pd.DataFrame({
            "user_id": ctx.dataset.user_ids[eval_set.users].astype(str),
            "split": split,
            "target": eval_set.targets,
            "ranked": list(rankings.ranked),
        }))
    write_parquet(out / "predictions.parquet", pd.concat(frames, ignore_index=True))
    write_json(out / "metrics.json", {
        "valid": results["valid"],
        "test": results["test"],
        "best_epoch": outcome.best_epoch,
        "invalid_rate": max(invalid),
        "decode_seconds": round(rankings.seconds, 3),  # ranking the test users
    })
