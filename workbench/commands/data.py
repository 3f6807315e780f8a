"""``workbench data import|info|demo``: bring data into the canonical dataset layout."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from resid_lib.data.dataset import Dataset
from resid_lib.data.demo import make_demo_dataset
from resid_lib.data.readers import FORMATS, read_dataset
from resid_lib.errors import DataError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="import, describe or generate datasets")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    imp = dsub.add_parser("import", help="import a published dataset into the canonical layout")
    imp.add_argument("source", type=Path, help="folder with the source files")
    imp.add_argument("--format", required=True, help=f"source format: {', '.join(FORMATS)}")
    imp.add_argument("--out", required=True, type=Path, help="dataset folder to write")
    imp.add_argument("--name", help="dataset name (default: derived from the source)")
    imp.set_defaults(func=_import)

    info = dsub.add_parser("info", help="print counts, sequence lengths and field statistics")
    info.add_argument("dataset", type=Path)
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(func=_info)

    demo = dsub.add_parser("demo", help="write the synthetic demo world")
    demo.add_argument("--out", required=True, type=Path)
    demo.add_argument("--items", type=int, default=2000)
    demo.add_argument("--users", type=int, default=3000)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)


def _import(args: argparse.Namespace) -> int:
    check_output_folder(args.out)
    ds = read_dataset(args.format, args.source, name=args.name)
    ds.save(args.out)
    print(f"imported {ds.n_users} users, {ds.n_items} items, {ds.n_interactions} interactions -> {args.out}")
    return 0


def _info(args: argparse.Namespace) -> int:
    info = Dataset.load(args.dataset).info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(format_info(info))
    return 0


def _demo(args: argparse.Namespace) -> int:
    check_output_folder(args.out)
    ds = make_demo_dataset(args.items, args.users, seed=args.seed)
    ds.save(args.out)
    print(f"demo world: {ds.n_users} users, {ds.n_items} items, {ds.n_interactions} interactions -> {args.out}")
    return 0


def check_output_folder(out: Path) -> None:
    """Saving replaces ``out``: allow that only for a missing path, an empty folder or a dataset folder."""
    if not out.exists():
        return
    if out.is_dir() and (not any(out.iterdir()) or (out / "schema.json").is_file()):
        return
    raise DataError(f"{out} exists and is not a dataset folder; refusing to replace it (choose another --out)")


def format_info(info: dict) -> str:
    sl = info["sequence_length"]
    lines = [
        f"dataset       {info['name']}",
        f"users         {info['users']:,}",
        f"items         {info['items']:,}",
        f"interactions  {info['interactions']:,}   (density {info['density']:.5f})",
        f"seq length    min {sl['min']}  median {sl['median']:g}  mean {sl['mean']:.2f}  p90 {sl['p90']:g}  max {sl['max']}",
        "",
        f"{'field':<16}{'kind':<13}{'vocab':>8}{'missing':>10}",
    ]
    for f in info["fields"]:
        vocab = "-" if f["vocab_size"] is None else f"{f['vocab_size']:,}"
        lines.append(f"{f['name']:<16}{f['kind']:<13}{vocab:>8}{f['missing_rate']:>10.1%}")
    return "\n".join(lines)
