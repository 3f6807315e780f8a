"""``workbench run``: the E -> Q -> G pipeline into one run directory."""
from __future__ import annotations

import argparse
from pathlib import Path

STAGES = ("encode", "quantize", "generate")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the pipeline stages into a run directory")
    p.add_argument("--config", default="demo", help="preset name under configs/ or a YAML file (default: demo)")
    p.add_argument("--data", required=True, type=Path, help="canonical dataset folder")
    p.add_argument("--out", required=True, type=Path, help="run directory")
    p.add_argument("--stages", nargs="+", choices=STAGES, help="stages to run (default: the config's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set encode.method=sasrec (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue an existing run from its checkpoints")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from resid_lib.config import load_config
    from resid_lib.pipeline import run_pipeline

    cfg = load_config(args.config, args.overrides)
    run = run_pipeline(cfg, args.data, args.out, stages=args.stages, resume=args.resume, progress=not args.quiet)
    print(f"run {run.status}: {run.path}")
    for stage in STAGES:
        secs = run.stage_seconds(stage)
        if secs is not None:
            print(f"  {stage:<9} {run.stage_status(stage):<8} {secs:8.1f} s")
    metrics = run.headline()
    if metrics:
        print("  test  " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return 0
