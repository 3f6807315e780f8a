"""A tiny runs root that follows the run-directory contract (``resid_lib.rundir``), built in seconds.

Layout under ``root``::

    data/                    the demo world, 300 items and 400 users (seed 0)
    runs/famae-gaoq/         every stage done: encode (embeddings, history, metrics, attention),
                             quantize (sids, tree, diagnostics), generate (metrics, history,
                             predictions: the popular items, shuffled, for everyone)
    runs/famae-hkmeans/      the same items under another quantizer; no G-stage
    runs/sasrec-partial/     a sequential encoder; its quantize stage failed
    runs/ablations/demo/     results.parquet of an ablation grid

The Q-stage files are written by the Q-stage itself (``resid_lib.quantize.stage``:
GAOQ and hierarchical k-means over the encode files' field-structured item vectors); the E- and G-stage files have the stages'
formats with synthetic contents (random-but-structured vectors, plausible learning
curves, recency-biased attention over real validation windows), not trained models.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from resid_lib.config import load_config
from resid_lib.data.dataset import Dataset
from resid_lib.data.demo import make_demo_dataset
from resid_lib.data.split import leave_one_out, pad_right_aligned
from resid_lib.encode.attention import AttentionSample
from resid_lib.io import save_npy, write_json, write_parquet
from resid_lib.pipeline import StageContext
from resid_lib.quantize import stage as quantize_stage
from resid_lib.rundir import RunDir

FIELD_DIM = 16
WINDOW = 12


def build_runs_root(root: Path) -> Path:
    """Write the layout above under ``root`` and return ``root / "runs"``."""
    dataset = make_demo_dataset(300, 400, seed=0)
    data_dir = dataset.save(root / "data")
    split = leave_one_out(dataset)
    X = field_embeddings(dataset, seed=0)
    runs = root / "runs"

    full = _new_run(runs / "famae-gaoq", dataset, data_dir, ["quantize.method=gaoq", "quantize.branching=[6, 4]"])
    with full.stage("encode"):
        _write_famae(full, X, dataset, split, seed=0)
    _run_quantize_stage(full, dataset, split)
    with full.stage("generate"):
        _write_generate(full, dataset, split, recall10=0.081, seed=0)
    full.set_status("done")

    other = _new_run(runs / "famae-hkmeans", dataset, data_dir,
                     ["quantize.method=hkmeans", "quantize.branching=[5, 5]", "seed=7"])
    with other.stage("encode"):
        _write_famae(other, X, dataset, split, seed=1)
    _run_quantize_stage(other, dataset, split)
    other.set_status("partial")

    partial = _new_run(runs / "sasrec-partial", dataset, data_dir, ["encode.method=sasrec"])
    with partial.stage("encode"):
        _write_sasrec(partial, X)
    try:
        with partial.stage("quantize"):
            raise RuntimeError("balanced k-means needs more items than clusters")
    except RuntimeError:
        pass

    _write_ablation(runs / "ablations" / "demo")
    return runs


def field_embeddings(dataset: Dataset, seed: int) -> np.ndarray:
    """(n_items, J * FIELD_DIM) float32: concatenated per-field vectors (item id + categorical fields),
    the shape FAMAE hands to the Q-stage."""
    rng = np.random.default_rng(seed)
    parts = [rng.normal(size=(dataset.n_items, FIELD_DIM))]
    for name in dataset.categorical_fields:
        table = rng.normal(size=(dataset.cardinality(name), FIELD_DIM)) * 2.0
        parts.append(table[dataset.codes(name)])
    return np.concatenate(parts, axis=1).astype(np.float32)


def _new_run(path: Path, dataset: Dataset, data_dir: Path, overrides: list[str]) -> RunDir:
    run = RunDir(path)
    run.init(dataset_name=dataset.name, dataset_path=data_dir, fingerprint=dataset.fingerprint,
             config=load_config(None, overrides))
    return run


def _write_famae(run: RunDir, X: np.ndarray, dataset: Dataset, split, seed: int) -> None:
    rng = np.random.default_rng(seed)
    save_npy(run.file("encode", "item_embeddings.npy"), X + rng.normal(scale=0.1, size=X.shape).astype(np.float32))
    epochs = np.arange(1, 7)
    m1 = 0.02 + 0.05 * (1 - np.exp(-epochs / 2)) + rng.normal(scale=0.002, size=6)
    m2 = 0.10 + 0.30 * (1 - np.exp(-epochs / 3)) + rng.normal(scale=0.005, size=6)
    m1[-1] = m1[-2] - 0.004
    history = pd.DataFrame({"epoch": epochs, "loss": 6.0 * np.exp(-epochs / 4), "metric1": m1, "metric2": m2,
                            "seconds": 1.5, "eval_seconds": 0.2})
    history.to_csv(run.file("encode", "history.csv"), index=False)
    best = int(np.argmax(m1 + m2))
    write_json(run.file("encode", "metrics.json"), {"method": "famae", "best_epoch": int(epochs[best]),
                                                     "metric1": float(m1[best]), "metric2": float(m2[best])})
    _attention_sample(split, n_users=16, seed=seed).save(run.file("encode", "attention.npz"))


def _attention_sample(split, n_users: int, seed: int) -> AttentionSample:
    """Recency-biased attention rows over real validation windows (2 layers, 4 heads)."""
    rng = np.random.default_rng(seed)
    valid = split.valid.subset(n_users, seed)
    items = pad_right_aligned([np.r_[h, t] for h, t in zip(valid.histories, valid.targets)], WINDOW)
    n, L = items.shape
    distance = np.arange(L)[::-1]
    logits = rng.normal(size=(n, 2, 4, L)) - np.array([0.15, 0.4])[None, :, None, None] * distance
    weights = np.exp(logits) * (items != -1)[:, None, None, :]
    weights /= weights.sum(axis=-1, keepdims=True)
    return AttentionSample(weights=weights.astype(np.float32), items=items, users=valid.users.astype(np.int64))


def _run_quantize_stage(run: RunDir, dataset: Dataset, split) -> None:
    """The Q-stage itself, on the run's config and the encode stage's item vectors."""
    ctx = StageContext(config=run.read_config(), dataset=dataset, split=split, run=run,
                       device=torch.device("cpu"), progress=False)
    with run.stage("quantize"):
        quantize_stage.run_stage(ctx)


def _write_generate(run: RunDir, dataset: Dataset, split, recall10: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    popular = np.argsort(-np.bincount(np.concatenate(split.train), minlength=dataset.n_items), kind="stable")[:20]
    frames = [pd.DataFrame({"user_id": dataset.user_ids[ev.users].astype(str), "split": name, "target": ev.targets,
                            "ranked": [rng.permutation(popular)[:10] for _ in ev.targets]})
              for name, ev in (("valid", split.valid), ("test", split.test))]
    write_parquet(run.file("generate", "predictions.parquet"), pd.concat(frames, ignore_index=True))
    test = {"recall@5": recall10 * 0.7, "recall@10": recall10, "ndcg@5": recall10 * 0.45, "ndcg@10": recall10 * 0.55}
    valid = {k: v * 1.05 for k, v in test.items()}
    write_json(run.file("generate", "metrics.json"), {"valid": valid, "test": test, "best_epoch": 4,
                                                       "invalid_rate": 0.0, "decode_seconds": 2.1})
    epochs = np.arange(1, 6)
    pd.DataFrame({"epoch": epochs, "loss": 5.0 * np.exp(-epochs / 3),
                  "valid_recall@10": recall10 * (1 - np.exp(-epochs)) + rng.normal(scale=0.001, size=5),
                  "seconds": 3.0}).to_csv(run.file("generate", "history.csv"), index=False)


def _write_sasrec(run: RunDir, X: np.ndarray) -> None:
    save_npy(run.file("encode", "item_embeddings.npy"), X[:, :FIELD_DIM].copy())
    epochs = np.arange(1, 5)
    pd.DataFrame({"epoch": epochs, "loss": 7.0 - epochs, "valid_recall@10": 0.03 + 0.01 * epochs,
                  "valid_ndcg@10": 0.015 + 0.005 * epochs, "seconds": 0.8}).to_csv(
        run.file("encode", "history.csv"), index=False)
    test = {"recall@5": 0.041, "recall@10": 0.066, "ndcg@5": 0.026, "ndcg@10": 0.034}
    write_json(run.file("encode", "metrics.json"), {"method": "sasrec", "best_epoch": 4,
                                                     "valid": {k: v * 1.1 for k, v in test.items()}, "test": test})


def _write_ablation(folder: Path) -> None:
    """A results table in the layout of ``resid_lib.ablation`` (one failed row)."""
    rows = [
        ("ReSID", "famae", "gaoq", "done", 0.0480, 0.0712, 0.0318, 0.0392, 61.0, 4.2, 120.0, "runs/resid", None),
        ("Q2", "famae", "hkmeans", "done", 0.0455, 0.0688, 0.0301, 0.0377, 61.0, 2.9, 118.0, "runs/q2", None),
        ("E1", "text", "gaoq", "done", 0.0441, 0.0667, 0.0290, 0.0362, 12.0, 4.0, 119.0, "runs/e1", None),
        ("SASRec", "sasrec", None, "done", 0.0391, 0.0611, 0.0252, 0.0322, 40.0, None, None, "runs/sasrec", None),
        ("Q1", "famae", "rqvae", "failed", None, None, None, None, 61.0, None, None, "runs/q1",
         "RuntimeError: RQ-VAE codebook collapsed"),
    ]
    frame = pd.DataFrame(rows, columns=["name", "encoder", "quantizer", "status", "recall@5", "recall@10", "ndcg@5",
                                        "ndcg@10", "encode_seconds", "quantize_seconds", "generate_seconds", "run",
                                        "error"])
    write_parquet(folder / "results.parquet", frame)
