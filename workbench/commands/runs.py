"""``workbench runs list``: the catalog of run directories under a root."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from resid_lib.rundir import list_runs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list run directories")
    rsub = p.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
    ls = rsub.add_parser("list", help="runs under a root with status and headline metrics")
    ls.add_argument("root", nargs="?", default=Path("runs"), type=Path)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)


def _list(args: argparse.Namespace) -> int:
    runs = list_runs(args.root)
    if args.json:
        print(json.dumps([{"path": str(r.path), "status": r.status, "dataset": r.dataset, "methods": r.methods,
                           "stages": r.stages, "metrics": r.metrics, "updated": r.updated} for r in runs], indent=2))
        return 0
    if not runs:
        print(f"no runs under {args.root}")
        return 0
    print(f"{'run':<40}{'status':<12}{'dataset':<12}{'encode':<18}{'quantize':<10}{'R@10':>8}{'N@10':>8}")
    for r in runs:
        rel = str(r.path.relative_to(args.root)) if r.path != args.root else "."
        r10 = r.metrics.get("recall@10")
        n10 = r.metrics.get("ndcg@10")
        print(f"{rel:<40}{r.status:<12}{r.dataset:<12}{r.methods.get('encode', '-'):<18}{r.methods.get('quantize', '-'):<10}"
              f"{'-' if r10 is None else f'{r10:.4f}':>8}{'-' if n10 is None else f'{n10:.4f}':>8}")
    return 0
