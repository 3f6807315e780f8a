"""Data-parallel training throughput: examples per second with 1 and with 2 processes.

FAMAE, SASRec and the generator train on the demo world with the ``demo`` preset's
settings, each in fresh processes started by ``resid_lib.distributed.spawn`` (one
process group per measurement: gloo on CPU, NCCL on CUDA). Timed is the training
pass of the last of ``--epochs`` epochs (earlier epochs warm up; validation is not
timed); examples per second = training examples of an epoch / the slowest rank's
seconds. The global batch is the preset's batch size whatever the process count, so
every measurement takes the same optimizer steps. Every process gets the same number
of torch threads, by default cores // (largest process count), so the largest
measurement fills the machine without oversubscribing it and the ratio is the
data-parallel speed-up at equal threads per process. On a machine already busy with
other work the extra processes find no free core and the ratio falls below 1. On CUDA
one process uses one GPU; 2 processes are measured only with 2 GPUs.

    .venv/bin/python bench/ddp_throughput.py [--device cpu|cuda] [--nprocs 1 2] [--users 1500] [--epochs 2]
                                             [--threads N] [--models famae sasrec generator] [--out JSON]
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resid_lib import distributed  # noqa: E402
from resid_lib.config import load_config  # noqa: E402
from resid_lib.data.demo import make_demo_dataset  # noqa: E402
from resid_lib.data.split import leave_one_out, sliding_windows  # noqa: E402
from resid_lib.encode import make_encoder  # noqa: E402
from resid_lib.generate.trainer import GeneratorTrainer  # noqa: E402
from resid_lib.io import write_json  # noqa: E402
from resid_lib.quantize.base import dedup_codes  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "ddp_throughput.json"
MODELS = ("famae", "sasrec", "generator")
ITEMS = 2000
EVAL_USERS = 200
"""Validation users scored after each epoch (not timed; kept small so the benchmark stays short)."""


def timed(obj: object, method: str, seconds: list[float]) -> None:
    """Replace ``obj.method`` by a wrapper that appends the seconds of every call to ``seconds``."""
    inner = getattr(obj, method)

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        out = inner(*args, **kwargs)
        seconds.append(time.perf_counter() - t0)
        return out

    setattr(obj, method, wrapper)


def measure(model: str, device: str, threads: int, users: int, epochs: int) -> dict:
    """Train ``model`` for ``epochs`` on this rank; the examples, steps and training seconds of each epoch."""
    torch.set_num_threads(threads)
    dev = torch.device(device)
    distributed.init(dev)
    dev = distributed.local_device(dev)
    dataset = make_demo_dataset(ITEMS, users, seed=0)
    split = leave_one_out(dataset)
    seconds: list[float] = []
    if model == "generator":
        cfg = load_config("demo", [f"generate.epochs={epochs}", f"generate.eval_every={epochs}",
                                   f"generate.eval_users={EVAL_USERS}", "generate.beams=10"]).generate
        sids = dedup_codes(dataset.codes("cat_l3")[:, None])[0]  # stand-in SIDs: leaf category, then rank
        trainer = GeneratorTrainer(cfg, sids, split.train, split.valid, seed=0, device=dev, show_progress=False)
        timed(trainer, "_train_epoch", seconds)
        trainer.fit()
        examples, batch = len(trainer.windows), cfg.batch_size
    else:
        cfg = load_config("demo", [f"encode.method={model}", f"encode.epochs={epochs}", "encode.patience=0",
                                   f"encode.eval_users={EVAL_USERS}", "encode.famae.attention_users=0",
                                   f"encode.seqrec.epochs={epochs}", "encode.seqrec.patience=0"]).encode
        encoder = make_encoder(cfg, seed=0, device=dev, progress=False)
        timed(encoder, "_train_epoch" if model == "famae" else "_run_epoch", seconds)
        encoder.fit(dataset, split)
        if model == "famae":
            examples, batch = len(sliding_windows(split.train, cfg.max_len)), cfg.batch_size
        else:
            examples, batch = len(encoder._prepare(split.train)), encoder.settings.batch_size
    return {"examples": examples, "steps": math.ceil(examples / batch), "batch_size": batch, "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--nprocs", type=int, nargs="+", help="process counts (default: 1 2 on CPU, 1 per GPU on CUDA)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--users", type=int, default=1500, help="demo-world users (2,000 items)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per measurement; the last one is timed")
    parser.add_argument("--threads", type=int,
                        help="torch threads of every process (default: cores // the largest process count)")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help=f"results file (default: {RESULTS.relative_to(ROOT)})")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("skip: --device cuda but CUDA is not available")
            return 0
        nprocs = args.nprocs or sorted({1, min(2, torch.cuda.device_count())})
        if max(nprocs) > torch.cuda.device_count():
            parser.error(f"{max(nprocs)} processes need as many GPUs; {torch.cuda.device_count()} visible")
    else:
        nprocs = args.nprocs or [1, 2]
    threads = args.threads or max(1, cores // max(nprocs))
    print(f"demo world {ITEMS:,} items x {args.users:,} users, device {args.device}, {cores} cores, "
          f"{threads} thread(s) per process, load average {os.getloadavg()[0]:.1f} before")
    print(f"{'model':<10} {'procs':>5} {'threads':>7} {'examples':>9} {'steps':>6} {'batch':>6} {'seconds':>8} "
          f"{'examples/s':>11}")
    results: dict[str, dict] = {}
    for model in args.models:
        rows = {}
        for n in nprocs:
            ranks = distributed.spawn(measure, n, model, args.device, threads, args.users, args.epochs)
            seconds = max(r["seconds"][-1] for r in ranks)  # the slowest rank's last epoch
            r0 = ranks[0]
            rows[n] = {**{k: r0[k] for k in ("examples", "steps", "batch_size")}, "threads": threads,
                       "seconds": round(seconds, 3), "examples_per_second": round(r0["examples"] / seconds, 1),
                       "seconds_per_rank": [r["seconds"] for r in ranks]}
            print(f"{model:<10} {n:>5} {threads:>7} {r0['examples']:>9,} {r0['steps']:>6} {r0['batch_size']:>6} "
                  f"{seconds:8.2f} {rows[n]['examples_per_second']:>11,.0f}")
        ratios = {f"{n}/{nprocs[0]}": round(rows[n]["examples_per_second"] / rows[nprocs[0]]["examples_per_second"], 3)
                  for n in nprocs[1:]}
        if ratios:
            print(f"{'':<10} ratio " + "  ".join(f"{k} procs: {v:.2f}x" for k, v in ratios.items()))
        results[model] = {"by_nproc": rows, "ratio": ratios}
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} after (the machine may be busy with other work)")
    write_json(args.out, {
        "benchmark": "ddp_throughput",
        "dataset": {"demo_items": ITEMS, "demo_users": args.users},
        "settings": {"preset": "demo", "epochs": args.epochs, "timed_epoch": args.epochs, "eval_users": EVAL_USERS,
                     "threads_per_process": threads},
        "device": args.device,
        "machine": {"cores": cores, "platform": platform.platform(), "load_average_after": load,
                    "gpus": torch.cuda.device_count() if args.device == "cuda" else 0},
        "results": results,
    })
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
