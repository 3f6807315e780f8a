"""How popular the validation and test targets of Amazon Beauty are, and what that does to recall.

Measures, in one run:
- a popularity baseline (the same 10 most frequent training items for every user)
  on the validation and the test targets: Recall@5/10, NDCG@5/10 and the ratio
  test / validation, the gap that any recommender inherits from the split;
- how the targets spread over buckets of their training counts (0, 1-4, 5-19, 20+);
- for each run directory given with ``--run``, its generator's Recall@10 per bucket
  on both splits, read from ``generate/predictions.parquet``.

    .venv/bin/python bench/target_popularity.py [--run RUN_DIR ...]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resid_lib.data.readers import read_dataset  # noqa: E402
from resid_lib.data.split import leave_one_out  # noqa: E402
from resid_lib.errors import RunDirError  # noqa: E402
from resid_lib.io import write_json  # noqa: E402
from resid_lib.metrics import evaluate_rankings, recall_by_target_count  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "amazon2014-beauty"
RESULTS = ROOT / "bench" / "results" / "target_popularity.json"
SPLITS = ("valid", "test")


def run_buckets(run_dir: Path, counts: np.ndarray) -> dict[str, list[dict]]:
    """Per split, the run's Recall@10 per target-count bucket."""
    path = run_dir / "generate" / "predictions.parquet"
    if not path.is_file():
        raise RunDirError(f"{run_dir}: no generate/predictions.parquet (has the generate stage finished?)")
    frame = pd.read_parquet(path)
    out = {}
    for split in SPLITS:
        rows = frame[frame["split"] == split]
        ranked = np.stack(rows["ranked"].to_numpy())
        out[split] = recall_by_target_count(ranked, rows["target"].to_numpy(), counts, k=10)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", dest="runs", action="append", default=[], type=Path, metavar="RUN_DIR",
                        help="a finished run on Beauty whose predictions to break down (repeatable)")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"skip: Amazon Beauty not found at {DATA} (see ../shared/data/README.md)")
        return 0
    dataset = read_dataset("s3rec", DATA)
    split = leave_one_out(dataset)
    counts = np.bincount(np.concatenate(split.train), minlength=dataset.n_items)
    popular = np.argsort(-counts, kind="stable")[:10]

    baseline = {}
    print("popularity baseline (top 10 training items for everyone)")
    for name in SPLITS:
        targets = split.eval_set(name).targets
        baseline[name] = evaluate_rankings(np.tile(popular, (len(targets), 1)), targets)
        baseline[name]["target_mean_train_count"] = float(counts[targets].mean())
        cells = "  ".join(f"{k} {v:.4f}" for k, v in baseline[name].items() if "@" in k)
        print(f"  {name:<5} {cells}  mean training count of the targets {counts[targets].mean():.1f}")
    ratio = baseline["test"]["recall@10"] / baseline["valid"]["recall@10"]
    print(f"  Recall@10 test / valid: {ratio:.2f}x")

    runs = {str(run): run_buckets(run, counts) for run in args.runs}
    buckets = {name: recall_by_target_count(np.tile(popular, (len(split.eval_set(name).targets), 1)),
                                            split.eval_set(name).targets, counts, k=10) for name in SPLITS}
    print("\ntargets per bucket of training count: share of users"
          + "".join(f"; {run} Recall@10" for run in runs))
    for i, row in enumerate(buckets["valid"]):
        cells = "  ".join(f"{name} {buckets[name][i]['share']:.3f}" for name in SPLITS)
        for result in runs.values():
            cells += "  |  " + "  ".join(f"{name} {result[name][i]['recall@10']:.4f}" for name in SPLITS)
        print(f"  {row['bucket']:>5}: {cells}")

    write_json(RESULTS, {"benchmark": "target_popularity", "dataset": dataset.info(),
                         "popularity_baseline": baseline, "test_over_valid_recall@10": ratio,
                         "buckets": buckets, "runs": runs})
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
