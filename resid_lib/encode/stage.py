"""The ``encode`` pipeline stage: train the configured encoder, write ``RUN_DIR/encode/``.

Artifacts (formats in ``resid_lib.rundir``): ``item_embeddings.npy``, ``history.csv``
(trained encoders), ``metrics.json`` (with valid/test Recall and NDCG for the
sequential recommenders), ``attention.npz`` (FAMAE), ``model.pt`` and the training
``checkpoint.pt`` that ``--resume`` continues from.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError
from ..io import save_npy, write_json, write_text
from ..pipeline import StageContext
from . import Recommender, make_encoder

STAGE = "encode"


def run_stage(ctx: StageContext) -> None:
    """Fit ``ctx.config.encode.method`` on the split's training part and write its artifacts."""
    cfg = ctx.config.encode
    workdir = ctx.run.stage_dir(STAGE)
    encoder = make_encoder(cfg, seed=ctx.config.seed, device=ctx.device, progress=ctx.progress)
    encoder.fit(ctx.dataset, ctx.split, workdir=workdir, resume=ctx.resume)

    embeddings = np.ascontiguousarray(encoder.item_embeddings(), dtype=np.float32)
    if embeddings.ndim != 2 or embeddings.shape[0] != ctx.dataset.n_items:
        raise DataError(f"encoder {cfg.method!r} returned embeddings of shape {embeddings.shape}, "
                        f"expected ({ctx.dataset.n_items}, d)")
    if not np.isfinite(embeddings).all():
        raise DataError(f"encoder {cfg.method!r} produced NaN or infinite item embeddings")

    metrics = encoder.metrics()
    if isinstance(encoder, Recommender):
        for which in ("valid", "test"):
            if which not in metrics:
                metrics[which] = encoder.evaluate(ctx.split.eval_set(which))
    attention = encoder.attention_sample(ctx.split.valid)

    save_npy(workdir / "item_embeddings.npy", embeddings)
    if encoder.history:
        write_text(workdir / "history.csv", pd.DataFrame(encoder.history).to_csv(index=False))
    if attention is not None:
        attention.save(workdir / "attention.npz")
    encoder.save(workdir / "model.pt")
    write_json(workdir / "metrics.json", metrics)
