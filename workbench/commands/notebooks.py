"""``workbench notebooks list|run|sweep|lab``: parameterized notebooks through papermill."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from resid_lib.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("notebooks", help="run parameterized notebooks and sweeps")
    nsub = p.add_subparsers(dest="notebooks_command", metavar="ACTION", required=True)

    ls = nsub.add_parser("list", help="the notebooks and their parameters with defaults")
    ls.set_defaults(func=_list)

    run = nsub.add_parser("run", help="execute one notebook with papermill")
    run.add_argument("name", help="notebook name or prefix, e.g. 01_encode or 01")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                     help="set a parameter (repeatable); checked against the notebook's defaults")
    run.add_argument("--run", dest="run_dir", type=Path, help="run directory: the executed notebook is kept in RUN/notebooks/")
    run.add_argument("--out", type=Path, help="folder for the executed notebook (default: beside the run, or runs/notebooks/)")
    run.add_argument("--quiet", action="store_true")
    run.set_defaults(func=_run)

    sw = nsub.add_parser("sweep", help="run a parameter grid, one executed notebook per point")
    sw.add_argument("name")
    sw.add_argument("--grid", required=True, type=Path, help="YAML: {param: [values]} or {points: [{...}]}")
    sw.add_argument("--out", type=Path, help="sweep folder (default: runs/sweeps/NAME)")
    sw.add_argument("--quiet", action="store_true")
    sw.set_defaults(func=_sweep)

    lab = nsub.add_parser("lab", help="open JupyterLab on the notebooks folder")
    lab.set_defaults(func=_lab)


def _list(args: argparse.Namespace) -> int:
    from workbench import notebooks as nb

    for name in nb.list_notebooks():
        params = nb.notebook_parameters(nb.find_notebook(name))
        print(name)
        for key, value in params.items():
            print(f"    {key} = {value!r}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from workbench import notebooks as nb

    params = dict(args.parameter)
    if len(params) != len(args.parameter):
        raise ConfigError("a parameter was given twice")
    res = nb.run_notebook(args.name, params, out_dir=args.out, run_dir=args.run_dir, progress=not args.quiet)
    print(f"executed notebook: {res.executed}")
    for key, value in res.summary.items():
        print(f"  {key}: {value}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from workbench import notebooks as nb

    path = nb.find_notebook(args.name)
    out = args.out or Path("runs") / "sweeps" / path.stem
    table = nb.sweep(path, args.grid, out_dir=out, progress=not args.quiet)
    failed = table[table["status"] != "ok"]
    print(f"sweep of {path.stem}: {len(table)} points, {len(failed)} failed -> {out / 'results.parquet'}")
    for _, row in failed.iterrows():
        print(f"  point {row['point']} failed at {row['error']}")
    return 1 if len(failed) else 0


def _lab(args: argparse.Namespace) -> int:
    from workbench import notebooks as nb

    cmd = [sys.executable, "-m", "jupyter", "lab", str(nb.NOTEBOOK_DIR)]
    print("starting:", " ".join(cmd))
    return subprocess.call(cmd, env={**os.environ, "PYTHONPATH": nb.kernel_pythonpath()})
