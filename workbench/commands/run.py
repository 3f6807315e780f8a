"""``workbench run``: the E -> Q -> G pipeline into one run directory."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
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
    p.add_argument("--nproc", type=int, metavar="N",
                   help="train data-parallel in N processes on this machine (relaunches itself through torchrun; "
                        "one GPU per process on CUDA, gloo on CPU). The global batch stays the config's "
                        "batch_size, so metrics match a single process within noise; only rank 0 writes")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from resid_lib import distributed
    from resid_lib.config import load_config
    from resid_lib.pipeline import run_pipeline

    cfg = load_config(args.config, args.overrides)
    if args.nproc is not None:
        _check_nproc(args.nproc, cfg.device)
        if args.nproc > 1 and not distributed.launched():
            return _launch(args)
    try:
        run = run_pipeline(cfg, args.data, args.out, stages=args.stages, resume=args.resume, progress=not args.quiet)
        main = distributed.is_main()
    finally:
        distributed.shutdown()
    if not main:  # rank 0 reports for every rank
        return 0
    print(f"run {run.status}: {run.path}")
    for stage in STAGES:
        secs = run.stage_seconds(stage)
        if secs is not None:
            print(f"  {stage:<9} {run.stage_status(stage):<8} {secs:8.1f} s")
    metrics = run.headline()
    if metrics:
        print("  test  " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return 0


def _check_nproc(nproc: int, device: str) -> None:
    """Refuse a process count this machine (or the surrounding torchrun) cannot honour."""
    import torch

    from resid_lib import distributed
    from resid_lib.device import resolve_device
    from resid_lib.errors import ConfigError

    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    if distributed.launched():
        world = int(os.environ["WORLD_SIZE"])
        if nproc != world:
            raise ConfigError(f"--nproc {nproc} under a launcher that started {world} processes; "
                              "leave --nproc out when starting workbench with torchrun")
        return
    if nproc > 1 and resolve_device(device).type == "cuda" and torch.cuda.device_count() < nproc:
        raise ConfigError(f"--nproc {nproc} needs one GPU per process but {torch.cuda.device_count()} are visible; "
                          f"use --nproc {torch.cuda.device_count()} or --set device=cpu")


def _launch(args: argparse.Namespace) -> int:
    """Rerun this command in ``args.nproc`` processes through torchrun; its exit status."""
    argv = ["run", "--config", args.config, "--data", str(args.data), "--out", str(args.out)]
    if args.stages:
        argv += ["--stages", *args.stages]
    for override in args.overrides:
        argv += ["--set", override]
    argv += ["--resume"] * args.resume + ["--quiet"] * args.quiet
    env = dict(os.environ)
    # torchrun would pin every process to one thread; share the cores instead unless the user chose
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.nproc)))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.nproc),
               "-m", "workbench", *argv]
    return subprocess.run(command, env=env).returncode
