"""The notebooks under ``notebooks/``: committed clean, readable by papermill, and run end to end.

Every notebook executes through papermill (``workbench.notebooks.run_notebook``) with a
tiny demo world and tiny models; the summaries they write show that the parameters
reached them.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import papermill as pm
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from resid_lib.config import load_config
from resid_lib.data.demo import make_demo_dataset
from resid_lib.pipeline import run_pipeline
from workbench import notebooks as nb
from workbench.cli import main

NOTEBOOKS = ["00_tour", "01_encode", "02_quantize", "03_generate", "10_ablations"]
WORLD = {"n_items": 150, "n_users": 200}
TINY_ENCODE = ["encode.d_model=16", "encode.n_heads=2", "encode.d_ff=32", "encode.batch_size=256",
               "encode.famae.attention_users=8", "encode.seqrec.d_model=16", "encode.seqrec.d_ff=32",
               "encode.seqrec.epochs=1"]
TINY_GENERATE = ["generate.d_model=16", "generate.n_heads=2", "generate.d_ff=32", "generate.encoder_layers=1",
                 "generate.decoder_layers=1", "generate.beams=10", "generate.eval_users=50", "generate.warmup_steps=0"]
TINY = [*TINY_ENCODE, "encode.epochs=1", "quantize.branching=[4, 4]", *TINY_GENERATE, "generate.epochs=1"]


@pytest.fixture(scope="module")
def quantized_run(tmp_path_factory) -> Path:
    """A tiny run whose encode and quantize stages are done (its config also sizes a tiny generator)."""
    root = tmp_path_factory.mktemp("nbrun")
    data_dir = make_demo_dataset(**WORLD, seed=0).save(root / "data")
    config = load_config("demo", [*TINY, "quantize.branching=[4, 5]"])
    return run_pipeline(config, data_dir, root / "run", stages=["encode", "quantize"], progress=False).path


def execute(name: str, out: Path, **params) -> nb.NotebookResult:
    result = nb.run_notebook(name, {"progress": False, **params}, out_dir=out, progress=False)
    assert result.ok and result.executed.is_file()
    assert not errors_in(result.executed)
    return result


def errors_in(path: Path) -> list[str]:
    executed = nbformat.read(path, as_version=4)
    return [o.get("ename", "") for c in executed.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if o.output_type == "error"]


# ------------------------------------------------------------------- as committed
def test_every_notebook_is_listed_with_its_parameters(capsys):
    assert nb.list_notebooks() == NOTEBOOKS
    assert main(["notebooks", "list"]) == 0
    listed = capsys.readouterr().out
    for name in NOTEBOOKS:
        assert f"{name}\n" in listed
        assert "out_dir" in nb.notebook_parameters(nb.find_notebook(name))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_committed_clean_and_parse_for_papermill(name):
    path = nb.find_notebook(name)
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    assert notebook.cells[0].cell_type == "markdown"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: outputs left in a cell"
    defaults = nb.notebook_parameters(path)
    inspected = pm.inspect_notebook(str(path))
    assert list(inspected) == list(defaults)  # every parameter line is one papermill understands
    assert all(inspected[k]["inferred_type_name"] == type(v).__name__ for k, v in defaults.items())


def test_the_kernel_the_notebooks_name_runs_this_environment():
    assert "python3" in KernelSpecManager().find_kernel_specs()
    command = KernelManager(kernel_name="python3").format_kernel_cmd()
    assert Path(command[0]).resolve() == Path(sys.executable).resolve()


def test_lab_opens_the_notebooks_with_the_project_importable(monkeypatch):
    launched = {}
    monkeypatch.setattr(subprocess, "call", lambda cmd, env: launched.update(cmd=cmd, env=env) or 0)
    assert main(["notebooks", "lab"]) == 0
    assert launched["cmd"][:4] == [sys.executable, "-m", "jupyter", "lab"]
    assert Path(launched["cmd"][4]) == nb.NOTEBOOK_DIR
    assert launched["env"]["PYTHONPATH"].split(os.pathsep)[0] == str(nb.NOTEBOOK_DIR.parent)
    assert importlib.util.find_spec("jupyterlab") is not None


# ------------------------------------------------------------------- execution
def test_tour(tmp_path):
    result = execute("00_tour", tmp_path / "tour", **WORLD, famae_epochs=1, generate_epochs=1, overrides=TINY)
    s = result.summary
    assert s["n_items"] == WORLD["n_items"] and s["famae_best_epoch"] == 1
    assert 0 <= s["test_recall@10"] <= 1 and s["sid_length"] >= 3
    assert s["gaoq_directional_coherence"] is not None and s["hkmeans_directional_coherence"] is not None
    assert {"entropy.html", "gaoq_tree.html", "proxy_metrics.html"} <= {p.name for p in result.out_dir.iterdir()}
    assert (result.out_dir / "run" / "generate" / "predictions.parquet").is_file()


def test_encode_trains_what_the_parameters_say(tmp_path):
    result = execute("01_encode", tmp_path / "enc", **WORLD, method="famae", epochs=2, overrides=TINY_ENCODE)
    s = result.summary
    assert s["method"] == "famae" and s["epochs_trained"] == 2
    assert s["embedding_dim"] == 5 * 16  # item_id, brand, cat_l1..3 at the overridden d_model
    assert 0 <= s["metric1"] <= 1 and 0 <= s["metric2"] <= 1
    assert (result.out_dir / "attention_window.html").is_file() and (result.out_dir / "item_map.html").is_file()
    page = (result.out_dir / "item_map.html").read_text()
    assert "cdn.plot.ly" not in page and list(result.out_dir.glob("plotly-*.min.js"))  # opens offline


def test_quantize_sweep_yields_one_notebook_per_point_and_one_table(tmp_path, quantized_run):
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"run_dir: {quantized_run}\nmethods: [[gaoq, hkmeans]]\nbranching: ['[3, 4]', '[5, 4]']\n")
    table = nb.sweep("02_quantize", grid, out_dir=tmp_path / "sweep", progress=False)
    assert list(table["status"]) == ["ok", "ok"]
    executed = sorted((tmp_path / "sweep").glob("point-*/02_quantize.ipynb"))
    assert len(executed) == 2 and not any(errors_in(p) for p in executed)
    sizes = [json.loads(s) if isinstance(s, str) else list(s) for s in table["gaoq.codebook_sizes"]]
    assert [s[:2] for s in sizes] == [[3, 4], [5, 4]]  # the branching parameter reached each point
    saved = pd.read_parquet(tmp_path / "sweep" / "results.parquet")
    assert len(saved) == 2 and "hkmeans.directional_coherence" in saved.columns


def test_quantize_with_an_unknown_method_fails_in_its_cell(tmp_path, quantized_run, capsys):
    out = tmp_path / "bad"
    rc = main(["notebooks", "run", "02_quantize", "-p", "run_dir", str(quantized_run),
               "-p", "methods", "[gaoq, bogus]", "--out", str(out), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "bogus" in err and "cell [" in err
    assert (out / "02_quantize.ipynb").is_file() and not (out / "quantize").exists()


def test_generate_finishes_a_run_and_keeps_the_notebook_beside_it(tmp_path, quantized_run):
    run = shutil.copytree(quantized_run.parent, tmp_path / "copy") / "run"
    result = nb.run_notebook("03_generate", {"progress": False, "n_examples": 2}, run_dir=run, progress=False)
    assert result.ok and result.executed == run / "notebooks" / "03_generate" / "03_generate.ipynb"
    s = result.summary
    assert s["run"] == str(run) and s["methods"] == "famae+gaoq" and len(s["examples"]) == 2
    assert json.loads((run / "generate" / "metrics.json").read_text())["test"]["recall@10"] == s["test_recall@10"]


def test_ablations_run_a_grid_and_compare(tmp_path):
    result = execute("10_ablations", tmp_path / "abl", **WORLD, rows=["SASRec"], overrides=TINY)
    s = result.summary
    assert s["rows"] == ["SASRec"] and s["unfinished"] == []
    assert 0 <= s["SASRec.recall@10"] <= 1
    assert (result.out_dir / "ablation" / "results.parquet").is_file()
    assert (result.out_dir / "comparison_recall_at_10.html").is_file()
