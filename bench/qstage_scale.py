"""The Q-stage at catalog scale: GAOQ on up to 1,000,000 items x 640 dims, branching (256, 256).

For every size in ``--sizes`` (default 100,000, 300,000 and 1,000,000 items) a fresh child
process generates synthetic clustered data (a float32 Gaussian mixture, written block by
block, see ``bench/balanced_kmeans.py``), fits :class:`resid_lib.quantize.gaoq.GAOQ`
(3 levels: balanced k-means into 256 clusters, 256 aligned children per cluster, the derived
last level) and reports the wall time of every level and in all, the child's peak resident
memory (targets for 1,000,000 items on the 2-core development machine: under 15 minutes and
under 8 GiB), whether the SIDs are unique, and the load average before and after (the
machine may be busy with other work). Across sizes it fits ``log(seconds) = a log(n) + c`` by
least squares and prints the exponent ``a`` (1 = linear growth). Results also go to
``bench/results/qstage_scale.json``.

    .venv/bin/python bench/qstage_scale.py [--sizes 100000 300000 1000000] [--device cpu|cuda|auto]
                                           [--dims 640] [--branching 256 256] [--threads N]
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from balanced_kmeans import clustered_data  # noqa: E402

from resid_lib.io import write_json  # noqa: E402
from resid_lib.quantize.gaoq import GAOQ  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "qstage_scale.json"
TARGET_SECONDS = 15 * 60
TARGET_GIB = 8.0


def fit_one(n: int, dims: int, branching: list[int], device: str, threads: int | None) -> dict:
    """Generate n x dims items and fit GAOQ on them; runs in its own process so its memory peak is its own."""
    if threads:
        torch.set_num_threads(threads)
    load_before = os.getloadavg()
    start = time.perf_counter()
    X = clustered_data(n, d=dims, components=1000, seed=2)
    data_seconds = time.perf_counter() - start
    quantizer = GAOQ(branching=branching, seed=0, device=device)
    start = time.perf_counter()
    quantizer.fit(X)
    seconds = time.perf_counter() - start
    codes = quantizer.encode(X)
    return {
        "items": n, "dims": dims, "branching": quantizer.branching_, "device": device,
        "torch_threads": torch.get_num_threads(), "data_seconds": data_seconds, "seconds": seconds,
        "level_seconds": quantizer.level_seconds_, "unique": bool(len(np.unique(codes, axis=0)) == n),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "data_gib": X.nbytes / 2**30,
        "load_before": list(load_before), "load_after": list(os.getloadavg()),
    }


def _child(queue, *args) -> None:
    queue.put(fit_one(*args))


def in_child(*args) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, *args))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--device", default="cpu", help="cpu, cuda[:N] or auto (default: cpu)")
    parser.add_argument("--dims", type=int, default=640)
    parser.add_argument("--branching", type=int, nargs=2, default=[256, 256])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()

    runs = []
    for n in sorted(args.sizes):
        run = in_child(n, args.dims, args.branching, args.device, args.threads)
        runs.append(run)
        levels = "  ".join(f"{name} {secs:7.1f} s" for name, secs in run["level_seconds"].items())
        print(f"{n:>9,} x {run['dims']}  branching {run['branching']}  fit {run['seconds']:7.1f} s  ({levels})  "
              f"peak {run['peak_rss_gib']:.2f} GiB (data {run['data_gib']:.2f} GiB)  unique SIDs {run['unique']}  "
              f"load {run['load_before'][0]:.2f} -> {run['load_after'][0]:.2f}  threads {run['torch_threads']}",
              flush=True)
    results: dict = {"runs": runs, "target_seconds": TARGET_SECONDS, "target_gib": TARGET_GIB}
    if len(runs) > 1:
        sizes = np.log([r["items"] for r in runs])
        exponent = float(np.polyfit(sizes, np.log([r["seconds"] for r in runs]), 1)[0])
        results["time_exponent"] = exponent
        print(f"time grows as n^{exponent:.2f} (log-log least squares over {len(runs)} sizes)")
    largest = runs[-1]
    print(f"largest: {largest['seconds'] / 60:.1f} min (target {TARGET_SECONDS // 60}), "
          f"{largest['peak_rss_gib']:.2f} GiB (target {TARGET_GIB:.0f})")
    write_json(RESULTS, results)
    print(f"results: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
