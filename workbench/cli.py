"""``workbench``: the command line. Each command group lives in ``workbench/commands``."""
from __future__ import annotations

import argparse
import importlib
import sys

from resid_lib.errors import WorkbenchError

COMMAND_MODULES = ("data", "run", "runs", "quantize", "ablate", "notebooks", "app", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="ReSID workbench: import data, run E -> Q -> G pipelines, explore runs.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"workbench.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
