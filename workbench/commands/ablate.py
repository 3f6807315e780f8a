"""``workbench ablate``: the paper's comparison as separate runs and one results table."""
from __future__ import annotations

import argparse
from pathlib import Path

from resid_lib.ablation import GRID, RESULTS_MARKDOWN, RESULTS_PARQUET, run_ablation


def register(sub: argparse._SubParsersAction) -> None:
    rows = ", ".join(f"{r.name} ({r.encoder} + {r.quantizer or 'recommender'})" for r in GRID)
    p = sub.add_parser("ablate", help="run the ablation grid (ReSID, E1-E3, Q1-Q2, TIGER, SASRec, SASRec*)",
                       description=f"Runs every row as its own run directory under OUT/runs/ and writes "
                                   f"OUT/{RESULTS_PARQUET} and OUT/{RESULTS_MARKDOWN} (every row; rows not run read 'not run'). "
                                   f"Rows: {rows}. Finished runs with the same config are reused; unfinished ones resumed.")
    p.add_argument("--config", required=True, help="base preset under configs/ or a YAML file (e.g. beauty-cpu)")
    p.add_argument("--data", required=True, type=Path, help="canonical dataset folder")
    p.add_argument("--out", required=True, type=Path, help="ablation folder")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these rows (names as above)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a base config value for every row (repeatable)")
    p.add_argument("--collect", action="store_true", help="run nothing: only tabulate the finished runs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_ablate)


def _ablate(args: argparse.Namespace) -> int:
    table = run_ablation(args.config, args.data, args.out, only=args.only, overrides=args.overrides,
                         execute=not args.collect, progress=not args.quiet)
    print()
    print((args.out / RESULTS_MARKDOWN).read_text(), end="")
    print(f"results: {args.out / RESULTS_PARQUET}")
    return 1 if (table["status"] == "failed").any() else 0
