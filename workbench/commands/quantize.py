"""``workbench quantize``: Semantic IDs for embeddings a user brings.

Writes ``sids.parquet`` (``item_id``, ``codebook1_id`` ..), ``diagnostics.json``,
``tree.parquet`` and ``quantizer.pt`` into ``--out``, exactly as the pipeline's
quantize stage does. With ``--data`` the rows are the dataset's items (ids, field
shares in the tree, history/target overlap); without it ``item_id`` is the row number.
"""
from __future__ import annotations

import argparse
import typing
from pathlib import Path

import numpy as np

from resid_lib.config import apply_override, from_dict
from resid_lib.data.dataset import Dataset
from resid_lib.data.split import leave_one_out
from resid_lib.device import resolve_device, seed_everything
from resid_lib.errors import DataError
from resid_lib.quantize import make_quantizer
from resid_lib.quantize.config import QuantizeConfig, QuantizeMethod
from resid_lib.quantize.stage import DIAGNOSTICS, SIDS, TREE, accepted_options, quantize_embeddings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quantize", help="turn an embedding matrix (.npy) into Semantic IDs")
    p.add_argument("embeddings", type=Path, help="float matrix (n_items, dim) saved with numpy.save")
    p.add_argument("--method", choices=typing.get_args(QuantizeMethod), default="gaoq", help="quantizer (default: gaoq)")
    p.add_argument("--out", required=True, type=Path, help="folder for sids.parquet, diagnostics.json, tree.parquet")
    p.add_argument("--data", type=Path, help="canonical dataset folder whose items the rows are")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="quantize setting, e.g. --set branching=[32,40] or --set codebook_size=128 (repeatable)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_quantize)


def _quantize(args: argparse.Namespace) -> int:
    raw: dict = {"method": args.method}
    for item in args.overrides:
        apply_override(raw, item.removeprefix("quantize."))
    cfg = from_dict(QuantizeConfig, raw, "quantize")
    if not args.embeddings.is_file():
        raise DataError(f"{args.embeddings}: no such file")
    try:
        X = np.load(args.embeddings, allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"{args.embeddings}: not a numpy array file ({exc})") from None
    dataset = Dataset.load(args.data) if args.data else None
    eval_set = leave_one_out(dataset).test if dataset is not None else None
    device = resolve_device(args.device)
    seed_everything(args.seed)
    quantizer = make_quantizer(cfg, seed=args.seed, device=str(device), **accepted_options(cfg.method, {"progress": not args.quiet}))
    diag = quantize_embeddings(quantizer, X, args.out, dataset=dataset, eval_set=eval_set)
    print(format_diagnostics(diag))
    print(f"wrote {args.out / SIDS}, {args.out / DIAGNOSTICS}, {args.out / TREE}")
    return 0


def format_diagnostics(diag: dict) -> str:
    """A short table of the per-level diagnostics."""
    coll = diag["collisions"]
    lines = [
        f"{diag['method']}: {diag['n_items']:,} items, SID length {diag['sid_length']}"
        f"{' (dedup level appended)' if diag['dedup_level'] else ''}, fit {diag['seconds']['fit']:.1f} s",
        f"collisions before dedup: {coll['n_collided']:,} items ({coll['rate']:.2%}), largest group {coll['max_group']}",
        f"{'level':>5} {'size':>6} {'used':>6} {'H(c_l)':>8} {'log2 b':>8} {'H(c_l|<l)':>10}",
    ]
    for p in diag["per_level"]:
        lines.append(f"{p['level']:>5} {p['codebook_size']:>6} {p['used']:>6} {p['entropy']:>8.3f} "
                     f"{p['max_entropy']:>8.3f} {p['conditional_entropy']:>10.3f}{'  (dedup)' if p['dedup'] else ''}")
    for key in ("reconstruction_error", "directional_coherence"):
        if diag[key] is not None:
            lines.append(f"{key.replace('_', ' ')}: {diag[key]:.4f}")
    return "\n".join(lines)
