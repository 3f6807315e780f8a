"""SASRec and SASRec* on Amazon Beauty (2014, 5-core), beside the published SASRec.

Trains each method with the library defaults (``encode.seqrec``; change them with
``--set``) on the leave-one-out split, selects the epoch on validation Recall@10 and
prints the test Recall@5/10 and NDCG@5/10 next to SASRec's published figures (TIGER
paper, NeurIPS 2023) with the ratio ours / published, plus epochs and time per epoch.
Results are also written to ``bench/results/sasrec_beauty.json``.

The default budget, ``--epochs 20`` (the cosine schedule anneals to zero over them),
keeps a CPU run near 20-30 minutes; ``--epochs 200`` runs the full early-stopped recipe.

    .venv/bin/python bench/sasrec_beauty.py [--epochs N] [--methods sasrec sasrec_features] [--set KEY=VALUE ...]
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resid_lib.config import load_config, to_dict  # noqa: E402
from resid_lib.data.readers import read_dataset  # noqa: E402
from resid_lib.data.split import leave_one_out  # noqa: E402
from resid_lib.device import resolve_device  # noqa: E402
from resid_lib.encode import make_encoder  # noqa: E402
from resid_lib.io import write_json  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "amazon2014-beauty"
RESULTS = ROOT / "bench" / "results" / "sasrec_beauty.json"
PUBLISHED_SASREC = {"recall@5": 0.0387, "recall@10": 0.0605, "ndcg@5": 0.0249, "ndcg@10": 0.0318}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["sasrec", "sasrec_features"],
                        choices=["sasrec", "sasrec_features", "bert4rec", "bert4rec_features"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. --set encode.seqrec.epochs=30 (repeatable)")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs (encode.seqrec.epochs)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    overrides = [f"encode.seqrec.epochs={args.epochs}", *args.overrides]

    if not DATA.is_dir():
        print(f"skip: Amazon Beauty not found at {DATA} (see ../shared/data/README.md)")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    t0 = time.perf_counter()
    dataset = read_dataset("s3rec", DATA)
    split = leave_one_out(dataset)
    print(f"{dataset.name}: {dataset.n_users} users, {dataset.n_items} items, {dataset.n_interactions} "
          f"interactions; read in {time.perf_counter() - t0:.1f} s; device {device}, "
          f"{torch.get_num_threads()} threads")

    results = {}
    for method in args.methods:
        cfg = load_config(None, [f"encode.method={method}", *overrides]).encode
        enc = make_encoder(cfg, seed=args.seed, device=device, progress=not args.quiet)
        t0 = time.perf_counter()
        enc.fit(dataset, split)
        seconds = time.perf_counter() - t0
        metrics = enc.metrics()
        epochs = len(enc.history)
        per_epoch = sum(row["seconds"] for row in enc.history) / max(1, epochs)
        results[method] = {
            **metrics,
            "epochs": epochs,
            "seconds_per_epoch": round(per_epoch, 2),
            "total_seconds": round(seconds, 1),
            "history": enc.history,
            "settings": enc.settings.__dict__,
        }
        curve = " ".join(f"{row['valid_recall@10']:.4f}" for row in enc.history)
        print(f"\n{method}: {epochs} epochs (best {metrics['best_epoch']}), {per_epoch:.1f} s/epoch "
              f"(train + validation), {seconds / 60:.1f} min in all")
        print(f"  validation Recall@10 per epoch: {curve}")

    print("\ntest, full ranking over all items (ratio = ours / published SASRec)")
    header = f"{'metric':<10} {'published SASRec':>17}" + "".join(f" {m:>24}" for m in results)
    print(header)
    for key, ref in PUBLISHED_SASREC.items():
        cells = "".join(f" {r['test'][key]:>14.4f} ({r['test'][key] / ref:4.2f}x)" for r in results.values())
        print(f"{key:<10} {ref:>17.4f}{cells}")

    write_json(RESULTS, {
        "benchmark": "sasrec_beauty",
        "dataset": dataset.info(),
        "published_sasrec": PUBLISHED_SASREC,
        "results": results,
        "config_overrides": overrides,
        "encode_config": {m: to_dict(load_config(None, [f"encode.method={m}", *overrides]).encode)
                          for m in results},
        "device": str(device),
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    })
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
