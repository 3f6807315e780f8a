"""``workbench demo``: the Quickstart's main job on the built-in demo world."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="generate the demo world and run the whole pipeline on it")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder for the demo data and run")
    p.add_argument("--config", default="demo", help="preset or YAML (default: demo)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-app", action="store_true", help="do not start the app when the run is done")
    p.add_argument("--port", type=int, help="port for the app (default: the first free one from 8501)")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from resid_lib.config import load_config
    from resid_lib.data.dataset import Dataset
    from resid_lib.data.demo import make_demo_dataset
    from resid_lib.pipeline import run_pipeline
    from resid_lib.rundir import RunDir

    data_dir = args.out / "data"
    run_dir = args.out / "run"
    if not (data_dir / "schema.json").is_file():
        ds = make_demo_dataset()
        ds.save(data_dir)
        print(f"demo world written: {ds.n_users} users, {ds.n_items} items -> {data_dir}")
    else:
        Dataset.load(data_dir)
        print(f"demo world found: {data_dir}")
    cfg = load_config(args.config, args.overrides)
    run = run_pipeline(cfg, data_dir, run_dir, resume=RunDir(run_dir).exists(), progress=not args.quiet)
    print(f"run {run.status}: {run.path}")
    for k, v in run.headline().items():
        print(f"  test {k:<10} {v:.4f}")
    if args.no_app:
        return 0
    from workbench.commands.app import launch

    return launch(args.out, args.port)
