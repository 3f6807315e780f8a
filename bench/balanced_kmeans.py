"""Exactly balanced k-means: this project's torch implementation vs ``k-means-constrained``.

Two measurements, in one process, on synthetic clustered data (a Gaussian mixture with
uneven component sizes and spreads, 640 dims like FAMAE's item vectors):

1. 20,000 x 640 into 32 clusters: wall time and within-cluster sum of squares (SSE) of
   ``resid_lib.quantize.kmeans.balanced_kmeans`` beside ``KMeansConstrained(size_min=
   floor(n/k), size_max=ceil(n/k))`` (the package the official ReSID code uses), both with
   one k-means++ initialisation; printed as a speed ratio and an SSE ratio
   (target: >= 10x faster, SSE <= 1.02x).
2. 200,000 x 640 into 128 clusters: wall time (target: under 2 minutes on the 2-core
   development machine) and the process's peak resident memory.

Both check that cluster sizes differ by at most one. Results also go to
``bench/results/balanced_kmeans.json``.

    .venv/bin/python bench/balanced_kmeans.py [--kmc-n-init N] [--skip-large] [--threads N]
"""
from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resid_lib.io import write_json  # noqa: E402
from resid_lib.quantize.kmeans import balanced_kmeans, within_sse  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "balanced_kmeans.json"


def clustered_data(n: int, d: int = 640, components: int = 200, seed: int = 0) -> np.ndarray:
    """(n, d) float32 Gaussian mixture: Zipf-like component sizes, per-component spreads."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((components, d)).astype(np.float32)
    weights = 1.0 / np.arange(1, components + 1) ** 0.7
    member = rng.choice(components, size=n, p=weights / weights.sum())
    spread = rng.uniform(0.4, 1.0, size=components).astype(np.float32)
    X = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 8192):  # in blocks: no temporaries the size of X
        rows = member[start : start + 8192]
        X[start : start + len(rows)] = centers[rows] + spread[rows, None] * rng.standard_normal((len(rows), d), dtype=np.float32)
    return X


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def sizes_ok(labels: np.ndarray, k: int) -> bool:
    sizes = np.bincount(labels, minlength=k)
    return int(sizes.max() - sizes.min()) <= 1 and len(sizes) == k


def run_ours(X: np.ndarray, k: int, seed: int) -> dict:
    Xt = torch.from_numpy(X)
    start = time.perf_counter()
    centroids, labels = balanced_kmeans(Xt, k, seed=seed)
    seconds = time.perf_counter() - start
    labels_np = labels.numpy()
    return {"seconds": seconds, "sse": within_sse(Xt, centroids, labels), "balanced": sizes_ok(labels_np, k)}


def run_kmc(X: np.ndarray, k: int, seed: int, n_init: int) -> dict:
    from k_means_constrained import KMeansConstrained

    n = len(X)
    model = KMeansConstrained(n_clusters=k, size_min=n // k, size_max=-(-n // k), n_init=n_init, random_state=seed)
    start = time.perf_counter()
    labels = model.fit_predict(X)
    seconds = time.perf_counter() - start
    centers = model.cluster_centers_
    sse = float(((X.astype(np.float64) - centers[labels]) ** 2).sum())
    return {"seconds": seconds, "sse": sse, "balanced": sizes_ok(labels, k), "n_iter": int(model.n_iter_)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kmc-n-init", type=int, default=1, help="k-means-constrained initialisations (its default is 10)")
    parser.add_argument("--skip-large", action="store_true", help="leave out the 200,000 x 640 run")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}")
    results: dict = {"torch_threads": torch.get_num_threads(), "kmc_n_init": args.kmc_n_init}

    n, k = 20_000, 32
    X = clustered_data(n)
    ours = run_ours(X, k, seed=0)
    kmc = run_kmc(X, k, seed=0, n_init=args.kmc_n_init)
    speedup = kmc["seconds"] / ours["seconds"]
    sse_ratio = ours["sse"] / kmc["sse"]
    print(f"\n{n:,} x {X.shape[1]} into {k} clusters")
    print(f"  k-means-constrained (n_init={args.kmc_n_init}) {kmc['seconds']:8.2f} s   SSE {kmc['sse']:.6g}   balanced {kmc['balanced']}")
    print(f"  torch balanced k-means        {ours['seconds']:8.2f} s   SSE {ours['sse']:.6g}   balanced {ours['balanced']}")
    print(f"  speed-up {speedup:.1f}x (target >= 10x)   SSE ratio {sse_ratio:.4f} (target <= 1.02)")
    results["n20000_k32"] = {"ours": ours, "kmeans_constrained": kmc, "speedup": speedup, "sse_ratio": sse_ratio}
    del X

    if not args.skip_large:
        n, k = 200_000, 128
        X = clustered_data(n, components=600, seed=1)
        ours = run_ours(X, k, seed=0)
        peak = peak_rss_gib()
        data_gib = X.nbytes / 2**30
        print(f"\n{n:,} x {X.shape[1]} into {k} clusters")
        print(f"  torch balanced k-means        {ours['seconds']:8.2f} s   ({ours['seconds'] / 120:.2f} of the 2-minute target)"
              f"   balanced {ours['balanced']}")
        print(f"  peak resident memory {peak:.2f} GiB (the data alone: {data_gib:.2f} GiB)")
        results["n200000_k128"] = {"ours": ours, "peak_rss_gib": peak, "data_gib": data_gib, "target_seconds": 120}

    write_json(RESULTS, results)
    print(f"\nresults: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
