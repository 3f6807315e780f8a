"""Run the parameterized notebooks with papermill, alone or as a parameter sweep.

A notebook under ``notebooks/`` has one cell tagged ``parameters`` holding plain
assignments with literal defaults (``n_items: int = 600`` or ``n_items = 600``).
Those defaults define the notebook's parameters: a value given on the command line
must name one of them and have the default's type, or nothing is executed.

Every notebook takes an ``out_dir`` parameter: the orchestration points it at the
folder where the executed copy is written, the notebook saves its figures and a
``summary.json`` of headline numbers there, and a sweep collects those summaries
into one table.
"""
from __future__ import annotations

import ast
import contextlib
import datetime as _dt
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import nbformat
import pandas as pd
import yaml

from resid_lib.errors import ConfigError
from resid_lib.io import atomic_path, write_parquet, write_text

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
SUMMARY = "summary.json"
OUT_DIR_PARAM = "out_dir"


def kernel_pythonpath() -> str:
    """PYTHONPATH for notebook kernels: this checkout first, so they import it even when it is not pip-installed."""
    return os.pathsep.join(filter(None, [str(NOTEBOOK_DIR.parent), os.environ.get("PYTHONPATH")]))


@contextlib.contextmanager
def _kernels_import_the_project() -> Iterator[None]:
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = kernel_pythonpath()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def list_notebooks() -> list[str]:
    return sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb"))


def find_notebook(name: str | Path) -> Path:
    """A notebook path as given, or the notebook under ``notebooks/`` whose name starts with ``name``."""
    path = Path(name)
    if path.suffix == ".ipynb":
        if not path.is_file():
            raise ConfigError(f"notebook {path} does not exist")
        return path
    matches = [p for p in sorted(NOTEBOOK_DIR.glob("*.ipynb")) if p.stem == name or p.stem.startswith(f"{name}_")]
    if len(matches) != 1:
        known = ", ".join(list_notebooks()) or "none"
        reason = "is ambiguous" if matches else "matches no notebook"
        raise ConfigError(f"notebook name {name!r} {reason} (notebooks: {known})")
    return matches[0]


def notebook_parameters(path: str | Path) -> dict[str, Any]:
    """Defaults of the cell tagged ``parameters``: ``{name: literal value}`` in order."""
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ConfigError(f"{path}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    params: dict[str, Any] = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value = node.target.id, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
        else:
            continue
        try:
            params[name] = ast.literal_eval(value)
        except ValueError:
            raise ConfigError(f"{path}: parameter {name!r} must have a literal default") from None
    return params


def validate_parameters(defaults: dict[str, Any], given: dict[str, Any], *, notebook: str = "notebook") -> dict[str, Any]:
    """Check names and types of ``given`` against ``defaults``; strings are parsed as YAML values.

    Raises ConfigError for an unknown name or a value whose type differs from the
    default's (an int is accepted where the default is a float; a default of None
    accepts anything).
    """
    out = {}
    for name, raw in given.items():
        if name not in defaults:
            raise ConfigError(f"{notebook} has no parameter {name!r} (parameters: {', '.join(defaults)})")
        value = yaml.safe_load(raw) if isinstance(raw, str) else raw
        default = defaults[name]
        if isinstance(default, str) and not isinstance(value, str):
            value = raw if isinstance(raw, str) else str(value)
        if default is None or value is None:
            out[name] = value
            continue
        if isinstance(default, bool) != isinstance(value, bool):
            raise ConfigError(f"{notebook}: parameter {name!r} expects {type(default).__name__}, got {value!r}")
        if isinstance(default, float) and isinstance(value, int):
            value = float(value)
        if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
            value = type(default)(value)
        if type(value) is not type(default):
            raise ConfigError(f"{notebook}: parameter {name!r} expects {type(default).__name__}, got {value!r}")
        out[name] = value
    return out


@dataclass(frozen=True)
class NotebookResult:
    notebook: Path
    executed: Path
    out_dir: Path
    parameters: dict[str, Any]
    ok: bool
    error: str | None = None
    failed_cell: int | None = None

    @property
    def summary(self) -> dict:
        p = self.out_dir / SUMMARY
        return json.loads(p.read_text()) if p.is_file() else {}


def run_notebook(
    name: str | Path,
    parameters: dict[str, Any] | None = None,
    *,
    out_dir: str | Path | None = None,
    run_dir: str | Path | None = None,
    progress: bool = True,
    raise_on_error: bool = True,
) -> NotebookResult:
    """Execute one notebook with papermill.

    The executed copy goes to ``out_dir`` (default: ``RUN_DIR/notebooks/NAME`` when
    ``run_dir`` is given, else ``runs/notebooks/NAME-TIMESTAMP``), beside what it produced.
    ``run_dir`` is passed to the notebook as its ``run_dir`` parameter when it has one.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    path = find_notebook(name)
    defaults = notebook_parameters(path)
    given = dict(parameters or {})
    if run_dir is not None:
        if "run_dir" not in defaults:
            raise ConfigError(f"{path.stem} takes no run directory")
        given["run_dir"] = str(run_dir)
    params = validate_parameters(defaults, given, notebook=path.stem)
    if out_dir is None:
        if run_dir is not None:
            out_dir = Path(run_dir) / "notebooks" / path.stem
        else:
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            out_dir = Path("runs") / "notebooks" / f"{path.stem}-{stamp}"
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if OUT_DIR_PARAM in defaults:
        params[OUT_DIR_PARAM] = str(out_dir)
    executed = out_dir / path.name
    error, failed_cell = None, None
    with atomic_path(executed) as tmp, _kernels_import_the_project():
        try:
            pm.execute_notebook(str(path), str(tmp), parameters=params, progress_bar=progress,
                                cwd=str(NOTEBOOK_DIR), kernel_name="python3", language="python")
        except PapermillExecutionError as exc:
            failed_cell = exc.exec_count
            error = f"cell [{exc.exec_count}] raised {exc.ename}: {exc.evalue}"
    result = NotebookResult(path, executed, out_dir, params, ok=error is None, error=error, failed_cell=failed_cell)
    if error and raise_on_error:
        raise NotebookFailed(f"{path.stem} failed: {error} (executed copy: {executed})")
    return result


class NotebookFailed(ConfigError):
    """A notebook raised during execution; the executed copy shows where."""


def load_grid(path: str | Path) -> list[dict[str, Any]]:
    """Points of a sweep grid file.

    The YAML is either ``{name: [v1, v2], ...}`` (the cartesian product; a scalar is a
    single value) or ``{points: [{name: v, ...}, ...]}`` (an explicit list).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"grid file {path} does not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{path}: expected a non-empty mapping of parameter names to value lists")
    if "points" in raw:
        points = raw["points"]
        if not isinstance(points, list) or not all(isinstance(p, dict) for p in points) or not points:
            raise ConfigError(f"{path}: 'points' must be a non-empty list of mappings")
        return points
    names = list(raw)
    values = [v if isinstance(v, list) else [v] for v in raw.values()]
    return [dict(zip(names, combo)) for combo in itertools.product(*values)]


def sweep(name: str | Path, grid: str | Path, *, out_dir: str | Path, progress: bool = True) -> pd.DataFrame:
    """Run one notebook per grid point; a failing point is recorded and the rest go on.

    Writes ``out_dir/point-NNN/`` per point and ``out_dir/results.parquet`` and
    ``results.md``: one row per point with its parameters, status, failing cell and
    the values of its ``summary.json``.
    """
    path = find_notebook(name)
    points = load_grid(grid)
    defaults = notebook_parameters(path)
    for point in points:  # every point is checked before anything runs
        validate_parameters(defaults, point, notebook=path.stem)
    out_dir = Path(out_dir)
    rows = []
    for i, point in enumerate(points):
        res = run_notebook(path, point, out_dir=out_dir / f"point-{i:03d}", progress=progress, raise_on_error=False)
        rows.append({"point": i, **{f"param.{k}": v for k, v in point.items()},
                     "status": "ok" if res.ok else "failed", "failed_cell": res.failed_cell,
                     "error": res.error, "notebook": str(res.executed), **res.summary})
    table = pd.DataFrame(rows)
    write_parquet(out_dir / "results.parquet", table.astype({c: str for c in table.columns if table[c].dtype == object}))
    write_text(out_dir / "results.md", table.to_markdown(index=False) + "\n")
    return table
