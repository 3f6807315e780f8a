"""The Amazon Beauty ablation beside the published numbers.

Runs (or reuses) ``workbench ablate`` on Amazon Beauty with a preset (default
``beauty-cpu``) and prints, for every row, test Recall@5/10 and NDCG@5/10 next to
the published results of ``../shared/data/README.md`` and the wall time of each
stage. Finished runs are reused, so the script can be called again to continue
or, with ``--collect``, only to tabulate what has finished.

    .venv/bin/python bench/beauty_ablation.py [--config beauty-cpu] [--only ReSID TIGER SASRec*]
        [--out runs/beauty-ablation] [--collect] [--set generate.epochs=10 ...]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resid_lib.ablation import GRID, run_ablation  # noqa: E402
from resid_lib.data.dataset import Dataset  # noqa: E402
from resid_lib.data.readers import read_dataset  # noqa: E402
from resid_lib.errors import DataError  # noqa: E402
from resid_lib.io import write_json  # noqa: E402
from resid_lib.rundir import HEADLINE_KEYS  # noqa: E402

BEAUTY = ROOT.parent / "shared" / "data" / "amazon2014-beauty"
RESULTS = ROOT / "bench" / "results" / "beauty_ablation.json"

#: Published Recall@5, Recall@10, NDCG@5, NDCG@10 on amazon2014-beauty (../shared/data/README.md).
PUBLISHED = {
    "SASRec": ((0.0387, 0.0605, 0.0249, 0.0318), "TIGER paper"),
    "S3-Rec": ((0.0387, 0.0647, 0.0244, 0.0327), "TIGER paper"),
    "TIGER": ((0.0454, 0.0648, 0.0321, 0.0384), "TIGER paper"),
    "GRID residual k-means": ((0.0422, 0.0639, 0.0277, 0.0347), "GRID paper"),
    "LETTER-TIGER": ((0.0431, 0.0672, 0.0286, 0.0364), "LETTER paper"),
    "TIGER, residual k-means": ((0.0465, 0.0698, 0.0310, 0.0385), "RecBoard rerun"),
    "RPG": ((0.0550, 0.0809, 0.0381, 0.0464), "RPG paper"),
}
#: Which published row each ablation row is compared with.
COMPARE = {"ReSID": "TIGER", "TIGER": "TIGER", "SASRec": "SASRec", "SASRec*": "SASRec"}
TARGET = ("ReSID", "recall@10", 0.0648)  # the TIGER paper's Recall@10 on Beauty


def dataset_dir(work: Path) -> Path:
    """The canonical Beauty dataset under ``work/data`` (imported once from ../shared/data)."""
    path = work / "data"
    try:
        Dataset.load(path)
    except DataError:
        read_dataset("s3rec", BEAUTY).save(path)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="beauty-cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "beauty-ablation")
    parser.add_argument("--only", nargs="+", metavar="NAME", help=f"rows to run ({', '.join(r.name for r in GRID)})")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--collect", action="store_true", help="run nothing; tabulate finished runs")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if not BEAUTY.is_dir():
        print(f"skip: {BEAUTY} not found (the real datasets live in ../shared/data)")
        return 0

    data = dataset_dir(args.out)
    table = run_ablation(args.config, data, args.out, only=args.only, overrides=args.overrides,
                         execute=not args.collect, progress=not args.quiet)

    short = {"recall@5": "R@5", "recall@10": "R@10", "ndcg@5": "N@5", "ndcg@10": "N@10"}
    print(f"\nAmazon Beauty, test split, full ranking ({args.config}); published numbers in brackets")
    print(f"{'row':<9}{'encoder + quantizer':<26}" + "".join(f"{short[k]:>17}" for k in HEADLINE_KEYS)
          + f"{'E s':>8}{'Q s':>8}{'G s':>8}  status")
    rows = []
    for rec in table.to_dict("records"):
        pub = PUBLISHED.get(COMPARE.get(rec["name"], ""), (None, None))[0]
        cells = []
        for i, key in enumerate(HEADLINE_KEYS):
            ours = "-" if pd.isna(rec[key]) else f"{rec[key]:.4f}"
            cells.append(f"{ours} [{pub[i]:.4f}]" if pub else ours)
        method = f"{rec['encoder']} + {'-' if pd.isna(rec['quantizer']) else rec['quantizer']}"
        secs = ["-" if pd.isna(rec[f"{s}_seconds"]) else f"{rec[f'{s}_seconds']:.0f}" for s in ("encode", "quantize", "generate")]
        status = rec["status"] if rec["status"] != "failed" else f"failed: {rec['error']}"
        print(f"{rec['name']:<9}{method:<26}" + "".join(f"{c:>17}" for c in cells) + "".join(f"{s:>8}" for s in secs)
              + f"  {status}")
        rows.append({k: (None if pd.isna(v) else v) for k, v in rec.items()})
    print("\npublished (R@5 / R@10 / N@5 / N@10):")
    for name, (values, source) in PUBLISHED.items():
        print(f"  {name:<26}" + " / ".join(f"{v:.4f}" for v in values) + f"   ({source})")
    by_name = table.set_index("name")
    print("\nReSID against rows of this run (ratio of ReSID's figure to the row's):")
    for other in by_name.index.drop("ReSID"):
        if by_name.loc[["ReSID", other], "status"].eq("done").all():
            ratios = (by_name.loc["ReSID", list(HEADLINE_KEYS)] / by_name.loc[other, list(HEADLINE_KEYS)]).astype(float)
            print(f"  vs {other:<8}" + "  ".join(f"{short[k]} {ratios[k]:.2f}x" for k in HEADLINE_KEYS))
    name, key, goal = TARGET
    ours = by_name.loc[name, key]
    verdict = "not measured" if pd.isna(ours) else f"{ours:.4f} ({'reached' if ours >= goal else 'not reached'})"
    print(f"\ntarget: {name} test {key} >= {goal} with {args.config}: {verdict}")
    write_json(RESULTS, {"config": args.config, "rows": rows,
                         "published": {k: dict(zip(HEADLINE_KEYS, v)) for k, (v, _) in PUBLISHED.items()}})
    print(f"results: {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
