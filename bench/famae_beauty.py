"""FAMAE on Amazon Beauty: Metric 1 / Metric 2 per epoch, time per epoch, and its ratio to SASRec's.

Trains FAMAE with the paper's settings (item_id + every categorical field, 2 layers,
4 heads, d=128, FFN 512, windows of 32, AdamW 1e-3, cosine schedule, early stopping
on Metric 1 + Metric 2) and prints the loss, both proxy metrics and the seconds of
every epoch. Then, in the same process and on the same threads, SASRec of the same
size (d_model, layers, heads, FFN, dropout, window length and batch size as FAMAE)
trains for a few epochs, and the ratio of the two training times per epoch is
printed. Timed is the training pass only (FAMAE over its sliding windows, SASRec
over its user sequences), not the per-epoch validation.

    .venv/bin/python bench/famae_beauty.py [--epochs 30] [--sasrec-epochs 3] [--threads N]
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resid_lib.data.readers import read_dataset  # noqa: E402
from resid_lib.data.split import leave_one_out, sliding_windows  # noqa: E402
from resid_lib.device import resolve_device  # noqa: E402
from resid_lib.encode.config import EncodeConfig, FamaeConfig, SeqRecConfig  # noqa: E402
from resid_lib.encode.famae import FamaeEncoder  # noqa: E402
from resid_lib.encode.sasrec import SASRec  # noqa: E402
from resid_lib.io import write_json  # noqa: E402

BEAUTY = ROOT.parent / "shared" / "data" / "amazon2014-beauty"
RESULTS = ROOT / "bench" / "results" / "famae_beauty.json"


def timed_training_epochs(encoder: SASRec) -> list[float]:
    """Wrap the recommender's per-epoch training pass so its seconds (without validation) are recorded."""
    seconds: list[float] = []
    train_epoch = encoder._run_epoch

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        result = train_epoch(*args, **kwargs)
        seconds.append(time.perf_counter() - t0)
        return result

    encoder._run_epoch = timed
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="FAMAE epochs at most (early stopping, patience 3)")
    parser.add_argument("--sasrec-epochs", type=int, default=3, help="SASRec epochs timed for the ratio")
    parser.add_argument("--batch-size", type=int, default=EncodeConfig.batch_size)
    parser.add_argument("--eval-users", type=int, default=0, help="validation users per epoch (0 = all)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if not BEAUTY.is_dir():
        print(f"skip: {BEAUTY} not found (the real datasets live in ../shared/data)")
        return 0
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)

    dataset = read_dataset("s3rec", BEAUTY)
    split = leave_one_out(dataset)
    cfg = EncodeConfig(batch_size=args.batch_size, epochs=args.epochs, eval_users=args.eval_users,
                       famae=FamaeConfig(attention_users=0))
    n_windows = len(sliding_windows(split.train, cfg.max_len))
    print(f"Beauty: {dataset.n_users:,} users, {dataset.n_items:,} items, {n_windows:,} training windows of "
          f"<= {cfg.max_len}; validation users {args.eval_users or len(split.valid):,}; device {device}, "
          f"{torch.get_num_threads()} threads, batch {cfg.batch_size}")

    famae = FamaeEncoder(cfg, seed=args.seed, device=device).fit(dataset, split)
    print(f"\nFAMAE fields {famae.fields} -> item vectors of {len(famae.fields)} x {cfg.d_model}")
    print(f"{'epoch':>5} {'loss':>8} {'metric1':>8} {'metric2':>8} {'train s':>8} {'eval s':>7}")
    for row in famae.history:
        print(f"{row['epoch']:>5} {row['loss']:8.4f} {row['metric1']:8.4f} {row['metric2']:8.4f} "
              f"{row['seconds']:8.1f} {row['eval_seconds']:7.1f}")
    best = famae.metrics()
    print(f"best epoch {best['best_epoch']}: Metric 1 (R@10, all fields masked) {best['metric1']:.4f}, "
          f"Metric 2 (R@10, item id masked) {best['metric2']:.4f}; chance {10 / dataset.n_items:.5f}")

    same_size = SeqRecConfig(**{k: getattr(cfg, k) for k in ("max_len", "d_model", "n_layers", "n_heads", "d_ff",
                                                            "dropout", "lr", "weight_decay", "batch_size")},
                             epochs=args.sasrec_epochs, patience=0)
    sasrec = SASRec(dataclasses.replace(cfg, method="sasrec", seqrec=same_size), seed=args.seed, device=device)
    sasrec_seconds = timed_training_epochs(sasrec)
    sasrec.fit(dataset, split)
    famae_epoch = float(np.mean([row["seconds"] for row in famae.history]))
    sasrec_epoch = float(np.mean(sasrec_seconds))
    ratio = famae_epoch / sasrec_epoch
    print(f"\ntraining time per epoch, same size (d={cfg.d_model}, {cfg.n_layers} layers, {cfg.n_heads} heads, "
          f"FFN {cfg.d_ff}, window {cfg.max_len}, batch {cfg.batch_size}):")
    print(f"  FAMAE  {famae_epoch:8.1f} s  (mean of {len(famae.history)} epochs)")
    print(f"  SASRec {sasrec_epoch:8.1f} s  (mean of {len(sasrec_seconds)} epochs)")
    print(f"  ratio FAMAE / SASRec = {ratio:.2f}")

    write_json(RESULTS, {
        "dataset": {"name": dataset.name, "users": dataset.n_users, "items": dataset.n_items,
                    "training_windows": n_windows},
        "settings": {"famae": dataclasses.asdict(cfg), "sasrec_epochs": args.sasrec_epochs,
                     "eval_users": args.eval_users},
        "machine": {"device": str(device), "threads": torch.get_num_threads(), "platform": platform.platform()},
        "famae": {"fields": famae.fields, "history": famae.history, "best": best},
        "seconds_per_epoch": {"famae": famae_epoch, "sasrec": sasrec_epoch, "sasrec_epochs": sasrec_seconds,
                              "ratio_famae_to_sasrec": ratio},
    })
    print(f"results: {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
