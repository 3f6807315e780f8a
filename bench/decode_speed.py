"""Decoding speed: rank the whole Amazon Beauty test set with trie-constrained beam search.

Measures, in one run:
- the batched, vectorised beam search (``resid_lib.generate.recommend``) on all
  22,363 test users, 50 beams, top 10, at the configured precision and in float32;
- a straightforward reference: per user, per step, per beam a full decoder pass
  over the prefix (no cache) and the invalid codes masked in Python with a dict
  trie. It is timed on a subset of users (``--reference-users``) and extrapolated
  to the whole test set; its rankings are checked against the fast float32 ones.

The model has the default G-stage size (4 + 4 layers, d=128) with random weights
and random balanced SIDs of ReSID's Beauty shape (32 x 40 prefixes plus the
derived last level), or a trained model and its SIDs with ``--run RUN_DIR``.

    .venv/bin/python bench/decode_speed.py [--run RUN_DIR] [--reference-users 100]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resid_lib.data.readers import read_dataset  # noqa: E402
from resid_lib.data.split import leave_one_out  # noqa: E402
from resid_lib.generate.config import GenerateConfig  # noqa: E402
from resid_lib.generate.data import SIDTokenizer, history_matrix  # noqa: E402
from resid_lib.generate.model import SIDGenerator  # noqa: E402
from resid_lib.generate.precision import resolve_precision  # noqa: E402
from resid_lib.generate.recommend import recommend  # noqa: E402
from resid_lib.generate.trie import SIDTrie  # noqa: E402
from resid_lib.io import write_json  # noqa: E402
from resid_lib.quantize.base import dedup_codes  # noqa: E402

BEAUTY = ROOT.parent / "shared" / "data" / "amazon2014-beauty"
RESULTS = ROOT / "bench" / "results" / "decode_speed.json"


def random_balanced_sids(n_items: int, branching: tuple[int, int] = (32, 40), seed: int = 0) -> np.ndarray:
    """(n_items, 3) unique SIDs: balanced random codes at two levels plus a disambiguating last level."""
    rng = np.random.default_rng(seed)
    first = rng.permutation(n_items) % branching[0]
    second = rng.permutation(n_items) % branching[1]
    return dedup_codes(np.stack([first, second], axis=1))[0]


@torch.no_grad()
def reference_rank(model: SIDGenerator, sids: np.ndarray, src: torch.Tensor, beams: int, top_k: int,
                   children: dict[tuple, list[int]], item_of: dict[tuple, int]) -> list[int]:
    """One user's top-k items: Python loops over steps and beams, full decoder pass per prefix."""
    memory = model.encode(src)
    beam: list[tuple[tuple, float]] = [((), 0.0)]
    for level in range(sids.shape[1]):
        candidates = []
        for prefix, score in beam:
            codes = torch.tensor([list(prefix) + [0]])  # the last code is not read by position `level`
            hidden = model.decoder_states(memory, codes)[:, level]
            log_probs = torch.log_softmax(model.level_logits(hidden, level), dim=-1)[0].tolist()
            for code in children[prefix]:  # invalid codes masked in Python
                candidates.append((prefix + (code,), score + log_probs[code]))
        beam = sorted(candidates, key=lambda c: -c[1])[:beams]
    return [item_of[prefix] for prefix, _ in beam[:top_k]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="run directory with a trained generate/model.pt")
    parser.add_argument("--reference-users", type=int, default=100)
    parser.add_argument("--beams", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=GenerateConfig.decode_batch_size)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not BEAUTY.is_dir():
        print(f"skip: {BEAUTY} not found (the real datasets live in ../shared/data)")
        return 0

    dataset = read_dataset("s3rec", BEAUTY)
    test = leave_one_out(dataset).test
    if args.run:
        blob = torch.load(args.run / "generate" / "model.pt", map_location="cpu", weights_only=False)
        sids, model_kind = np.asarray(blob["sids"]), f"trained ({args.run})"
        model = SIDGenerator.load(args.run / "generate" / "model.pt").eval()
    else:
        sids, model_kind = random_balanced_sids(dataset.n_items), "random weights, random balanced SIDs"
        torch.manual_seed(0)
        cfg = GenerateConfig()
        model = SIDGenerator(SIDTrie(sids).level_sizes, d_model=cfg.d_model, n_heads=cfg.n_heads, d_ff=cfg.d_ff,
                             encoder_layers=cfg.encoder_layers, decoder_layers=cfg.decoder_layers).eval()
    trie = SIDTrie(sids)
    tokenizer = SIDTokenizer(sids, model.layout)
    max_items = GenerateConfig.max_items
    print(f"Beauty test set: {len(test):,} users, {dataset.n_items:,} items, SID level sizes {trie.level_sizes}; "
          f"model {model_kind}; {torch.get_num_threads()} threads; {args.beams} beams, top 10, "
          f"{args.batch_size} users per batch")

    common = dict(max_items=max_items, beams=args.beams, top_k=10, batch_size=args.batch_size)
    cpu0 = time.process_time()
    fast = recommend(model, trie, tokenizer, test.histories, precision=args.precision, progress=True,
                     desc=f"fast ({args.precision})", **common)
    cpu1 = time.process_time()
    fast32 = recommend(model, trie, tokenizer, test.histories, precision="fp32", progress=True, desc="fast (fp32)",
                       **common)
    cpu2 = time.process_time()
    precision_used = resolve_precision("cpu", args.precision)

    n_ref = min(args.reference_users, len(test))
    subset = np.random.default_rng(0).choice(len(test), size=n_ref, replace=False)
    children: dict[tuple, list[int]] = {}
    for row in sids.tolist():
        for level in range(len(row)):
            children.setdefault(tuple(row[:level]), [])
            if row[level] not in children[tuple(row[:level])]:
                children[tuple(row[:level])].append(row[level])
    item_of = {tuple(row): i for i, row in enumerate(sids.tolist())}
    histories = history_matrix([test.histories[i] for i in subset], max_items)
    start, cpu3 = time.perf_counter(), time.process_time()
    reference = [reference_rank(model, sids, tokenizer.histories(histories[j:j + 1]), args.beams, 10, children, item_of)
                 for j in range(n_ref)]
    ref_seconds = (time.perf_counter() - start) / n_ref * len(test)
    ref_cpu = (time.process_time() - cpu3) / n_ref * len(test)
    agreement = float(np.mean([reference[j] == fast32.ranked[i].tolist() for j, i in enumerate(subset)]))

    result = {
        "users": len(test), "beams": args.beams, "top_k": 10, "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "model": model_kind, "level_sizes": list(trie.level_sizes), "precision": precision_used,
        "fast_seconds": round(fast.seconds, 2), "fast_fp32_seconds": round(fast32.seconds, 2),
        "fast_cpu_seconds": round(cpu1 - cpu0, 2), "fast_fp32_cpu_seconds": round(cpu2 - cpu1, 2),
        "reference_seconds_extrapolated": round(ref_seconds, 1), "reference_cpu_seconds_extrapolated": round(ref_cpu, 1),
        "reference_users_timed": n_ref, "load_average": os.getloadavg()[0],
        "speedup": round(ref_seconds / fast.seconds, 1), "speedup_fp32": round(ref_seconds / fast32.seconds, 1),
        "invalid_rate": fast.invalid_rate, "reference_agreement_fp32": agreement,
        "machine": platform.processor() or platform.machine(),
    }
    print(f"(wall seconds; CPU seconds of this process in brackets; load average {os.getloadavg()[0]:.1f})")
    print(f"vectorised beam search ({precision_used}): {fast.seconds:8.1f} s [{cpu1 - cpu0:7.1f}] for {len(test):,} "
          f"users (aim: under 60 s); invalid {fast.invalid_rate:.1%}")
    print(f"vectorised beam search (fp32):  {fast32.seconds:8.1f} s [{cpu2 - cpu1:7.1f}]")
    print(f"per-beam Python reference:      {ref_seconds:8.1f} s [{ref_cpu:7.1f}] (timed on {n_ref} users, "
          f"extrapolated)")
    print(f"speed-up: {result['speedup']:.0f}x ({result['speedup_fp32']:.0f}x in fp32); "
          f"reference and fp32 rankings agree for {agreement:.0%} of the timed users")
    write_json(RESULTS, result)
    print(f"results: {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
