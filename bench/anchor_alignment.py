"""Alignment consistency of GAOQ's level-2 codes: random (paper) vs learned anchors.

Embeddings are built so that every parent has its children along the same shared
directions: item = parent center + 4 * v_j + noise, with ``v_1 .. v_b`` orthonormal
and shared by all parents, and isotropic item noise (per-coordinate std ``--noise``).
A direction is *aligned* when its children get the same level-2 code under every parent.
Per seed (new data, new anchors) we report

- consistency: the fraction of the b shared directions that are aligned;
- pairwise agreement: the fraction of parent pairs that give a direction the same code,
  averaged over directions;
- a seed *fails* when some direction is not aligned.

1. Full GAOQ (levels 3, branching (16, 8), 128 items per parent, 640 dims) over
   ``--seeds`` seeds, ``anchors="random"`` vs ``anchors="learned"``.
2. The matching alone (exact child residuals, no clustering) over dimensions 32, 128, 640
   and three noise levels: random orthonormal anchors have cosines of about +-1/sqrt(d)
   with every child, so the Hungarian matching turns on differences as small as the
   noise, and more so the higher the dimension; learned anchors sit on the shared
   directions.

Results also go to ``bench/results/anchor_alignment.json``.

    .venv/bin/python bench/anchor_alignment.py [--seeds 50] [--noise 0.02]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resid_lib.io import write_json  # noqa: E402
from resid_lib.quantize.anchors import learned_anchors, match_codes, random_anchors  # noqa: E402
from resid_lib.quantize.gaoq import GAOQ  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "anchor_alignment.json"
PARENTS, DIRECTIONS, PER_CHILD, OFFSET = 16, 8, 16, 4.0


def shared_direction_embeddings(seed: int, d: int, noise: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X (n, d) float32 and every item's parent and shared direction."""
    rng = np.random.default_rng(10_000 + seed)
    centers = rng.standard_normal((PARENTS, d)) * 30
    dirs = np.linalg.qr(rng.standard_normal((d, DIRECTIONS)))[0].T
    parent = np.repeat(np.arange(PARENTS), DIRECTIONS * PER_CHILD)
    direction = np.tile(np.repeat(np.arange(DIRECTIONS), PER_CHILD), PARENTS)
    X = centers[parent] + OFFSET * dirs[direction] + noise * rng.standard_normal((len(parent), d))
    return X.astype(np.float32), parent, direction


def alignment(codes: np.ndarray) -> tuple[float, float]:
    """codes (parents, directions) -> (consistency, pairwise agreement)."""
    consistency = float((codes == codes[0]).all(0).mean())
    same = codes[:, None, :] == codes[None, :, :]  # (P, P, b)
    pairs = ~np.eye(len(codes), dtype=bool)
    return consistency, float(same[pairs].mean())


def gaoq_codes(X: np.ndarray, parent: np.ndarray, direction: np.ndarray, anchors: str, seed: int) -> np.ndarray:
    """(parents, directions) majority level-2 code of each parent's children along each direction."""
    level2 = GAOQ(branching=[PARENTS, DIRECTIONS], anchors=anchors, seed=seed).fit_encode(X)[:, 1]
    out = np.empty((PARENTS, DIRECTIONS), dtype=np.int64)
    for p in range(PARENTS):
        for j in range(DIRECTIONS):
            out[p, j] = np.bincount(level2[(parent == p) & (direction == j)]).argmax()
    return out


def matching_only(seed: int, d: int, noise: float) -> dict[str, float]:
    """Consistency of random vs learned anchors on exact child residuals (no clustering)."""
    rng = np.random.default_rng(20_000 + seed)
    dirs = np.linalg.qr(rng.standard_normal((d, DIRECTIONS)))[0].T
    children = OFFSET * dirs[None] + noise / np.sqrt(PER_CHILD) * rng.standard_normal((PARENTS, DIRECTIONS, d))
    residuals = torch.from_numpy(children - children.mean(1, keepdims=True)).float()
    out = {}
    for kind in ("random", "learned"):
        anchors = random_anchors(d, DIRECTIONS, seed=seed) if kind == "random" else learned_anchors(residuals, DIRECTIONS, seed=seed)
        out[kind] = alignment(match_codes(residuals, torch.from_numpy(anchors)))[0]
    return out


def summary(values: list[float]) -> dict[str, float]:
    v = np.array(values)
    return {"mean_consistency": float(v.mean()), "fail_rate": float((v < 1).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--noise", type=float, default=0.02, help="per-coordinate std of the item noise")
    args = parser.parse_args()
    results: dict = {"seeds": args.seeds, "noise": args.noise}

    d = 640
    print(f"1. GAOQ, {PARENTS} parents x {DIRECTIONS} shared directions x {PER_CHILD} items, {d} dims, "
          f"item noise {args.noise}, {args.seeds} seeds")
    start = time.perf_counter()
    per_kind: dict[str, list[tuple[float, float]]] = {"random": [], "learned": []}
    for seed in range(args.seeds):
        X, parent, direction = shared_direction_embeddings(seed, d, args.noise)
        for kind in per_kind:
            per_kind[kind].append(alignment(gaoq_codes(X, parent, direction, kind, seed)))
    for kind, rows in per_kind.items():
        consistency, agreement = np.array(rows).T
        failed = float((consistency < 1).mean())
        print(f"   {kind:8s} anchors: consistency {consistency.mean():.3f}, pairwise agreement {agreement.mean():.3f}, "
              f"seeds with a misaligned direction {failed:.0%} ({int(failed * args.seeds)}/{args.seeds})")
        results[f"gaoq_{kind}"] = {"mean_consistency": float(consistency.mean()),
                                   "mean_pairwise_agreement": float(agreement.mean()), "fail_rate": failed}
    print(f"   ({time.perf_counter() - start:.0f} s)")

    print(f"\n2. matching alone (exact child residuals), share of {args.seeds} seeds with a misaligned direction")
    print("   dims   noise   random  learned")
    sweep = []
    for dims in (32, 128, 640):
        for noise in (args.noise / 2, args.noise, args.noise * 2):
            rows = [matching_only(seed, dims, noise) for seed in range(args.seeds)]
            rnd, lrn = summary([r["random"] for r in rows]), summary([r["learned"] for r in rows])
            print(f"   {dims:4d}  {noise:6.3f}   {rnd['fail_rate']:5.0%}   {lrn['fail_rate']:5.0%}")
            sweep.append({"dims": dims, "noise": noise, "random": rnd, "learned": lrn})
    results["matching_sweep"] = sweep
    write_json(RESULTS, results)
    print(f"\nresults: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
