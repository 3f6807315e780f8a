"""Notebook orchestration: parameter parsing and validation, papermill runs, sweeps."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from resid_lib.errors import ConfigError
from workbench import notebooks as nb
from workbench.cli import main


def _toy_notebook(path: Path) -> Path:
    params = nbformat.v4.new_code_cell('scale: int = 2\nlabel: str = "a"\nfail: bool = False\nrate = 0.5\nout_dir = ""')
    params.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "import json, pathlib\n"
        "if fail:\n    raise RuntimeError('asked to fail')\n"
        "pathlib.Path(out_dir, 'summary.json').write_text(json.dumps({'value': scale * 10, 'label': label, 'rate': rate}))"
    )
    nb_obj = nbformat.v4.new_notebook(cells=[params, body])
    nb_obj.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb_obj, path)
    return path


@pytest.fixture()
def toy(tmp_path: Path) -> Path:
    return _toy_notebook(tmp_path / "toy.ipynb")


def test_parameters_are_read_from_the_tagged_cell(toy):
    assert nb.notebook_parameters(toy) == {"scale": 2, "label": "a", "fail": False, "rate": 0.5, "out_dir": ""}


@pytest.mark.parametrize("given, message", [
    ({"nope": "1"}, "no parameter 'nope'"),
    ({"scale": "abc"}, "expects int"),
    ({"scale": "1.5"}, "expects int"),
    ({"fail": "3"}, "expects bool"),
])
def test_bad_parameters_are_refused_before_running(toy, tmp_path, given, message):
    with pytest.raises(ConfigError, match=message):
        nb.run_notebook(toy, given, out_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_validation_parses_and_widens():
    defaults = {"a": 1, "b": 0.5, "c": "x", "d": [1, 2], "e": None}
    got = nb.validate_parameters(defaults, {"a": "3", "b": "2", "c": "7", "d": "[3]", "e": "0.001"})
    assert got == {"a": 3, "b": 2.0, "c": "7", "d": [3], "e": 0.001}


def test_a_parameter_reaches_the_notebook(toy, tmp_path):
    res = nb.run_notebook(toy, {"scale": "7", "label": "hello"}, out_dir=tmp_path / "run7", progress=False)
    assert res.ok and res.executed.is_file()
    assert res.summary == {"value": 70, "label": "hello", "rate": 0.5}
    res2 = nb.run_notebook(toy, {"scale": 3}, out_dir=tmp_path / "run3", progress=False)
    assert res2.summary["value"] == 30


def test_a_failing_notebook_names_the_cell(toy, tmp_path):
    with pytest.raises(nb.NotebookFailed, match="RuntimeError"):
        nb.run_notebook(toy, {"fail": True}, out_dir=tmp_path / "f", progress=False)
    assert (tmp_path / "f" / "toy.ipynb").is_file()  # the executed copy shows where it failed


def test_sweep_runs_every_point_and_reports_failures(toy, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("points:\n  - {scale: 1}\n  - {scale: 2, fail: true}\n  - {scale: 4}\n")
    table = nb.sweep(toy, grid, out_dir=tmp_path / "sweep", progress=False)
    assert list(table["status"]) == ["ok", "failed", "ok"]
    assert list(table["value"].dropna()) == [10, 40]
    assert "asked to fail" in table.loc[1, "error"]
    saved = pd.read_parquet(tmp_path / "sweep" / "results.parquet")
    assert len(saved) == 3 and (tmp_path / "sweep" / "results.md").is_file()
    assert len(list((tmp_path / "sweep").glob("point-*/toy.ipynb"))) == 3


def test_grid_product_and_cli(toy, tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text("scale: [1, 2]\nlabel: b\n")
    assert nb.load_grid(grid) == [{"scale": 1, "label": "b"}, {"scale": 2, "label": "b"}]
    rc = main(["notebooks", "sweep", str(toy), "--grid", str(grid), "--out", str(tmp_path / "s"), "--quiet"])
    assert rc == 0
    assert "2 points, 0 failed" in capsys.readouterr().out
    rc = main(["notebooks", "run", str(toy), "-p", "scale", "5", "--out", str(tmp_path / "r"), "--quiet"])
    assert rc == 0
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["value"] == 50
    assert main(["notebooks", "run", str(toy), "-p", "bogus", "1", "--quiet"]) == 2
