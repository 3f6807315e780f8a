"""Run directories and atomic writes: manifest, stage status, dataset check, catalog, ``workbench runs list``."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from resid_lib.config import load_config
from resid_lib.errors import RunDirError
from resid_lib.io import (atomic_dir, atomic_path, read_json, save_npy, write_figure, write_json, write_parquet,
                          write_text)
from resid_lib.rundir import RunDir, list_runs
from workbench.cli import main


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders (hidden, ``.tmp``) anywhere under ``folder``."""
    return [str(p) for p in folder.rglob("*") if p.name.startswith(".") or ".tmp" in p.name]


def test_atomic_writers_leave_no_temp_files(tmp_path):
    write_json(tmp_path / "a.json", {"x": np.int64(3), "y": np.float32(0.5), "z": np.arange(2)})
    write_text(tmp_path / "sub" / "b.txt", "hello")
    save_npy(tmp_path / "c.npy", np.eye(2, dtype=np.float32))
    write_parquet(tmp_path / "d.parquet", pd.DataFrame({"item_id": ["a"], "codebook1_id": [3]}))
    assert read_json(tmp_path / "a.json") == {"x": 3, "y": 0.5, "z": [0, 1]}
    assert (tmp_path / "sub" / "b.txt").read_text() == "hello"
    assert np.array_equal(np.load(tmp_path / "c.npy"), np.eye(2))
    assert pd.read_parquet(tmp_path / "d.parquet")["codebook1_id"].tolist() == [3]
    assert leftovers(tmp_path) == []


def test_a_crash_keeps_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"v": 2, "trunc')
            raise RuntimeError("crash while writing")
    assert read_json(target) == {"v": 1}
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "dataset") as tmp:
            (tmp / "items.parquet").write_text("half")
            raise RuntimeError("crash while writing")
    assert not (tmp_path / "dataset").exists()
    assert leftovers(tmp_path) == []


def test_figures_open_offline_with_one_copy_of_plotly_per_folder(tmp_path):
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs_version

    for name in ("a", "b"):
        write_figure(tmp_path / f"{name}.html", go.Figure(go.Bar(y=[1, 2])))
    script = tmp_path / f"plotly-{get_plotlyjs_version()}.min.js"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "b.html", script.name]
    page = (tmp_path / "a.html").read_text()
    assert f'src="{script.name}"' in page and "cdn.plot.ly" not in page and "https://" not in page.split("<body>")[0]
    assert script.stat().st_size > 1_000_000  # the whole library, not a loader
    assert leftovers(tmp_path) == []


def make_run(path: Path, fingerprint: str = "f1", name: str = "toy") -> RunDir:
    run = RunDir(path)
    config = load_config(None, ["encode.method=sasrec", "quantize.method=rqkmeans"])
    run.init(dataset_name=name, dataset_path=path.parent, fingerprint=fingerprint, config=config)
    return run


def test_init_writes_manifest_and_config(tmp_path):
    run = RunDir(tmp_path / "run")
    assert not run.exists() and run.status == "missing" and not (tmp_path / "run").exists()
    cfg = load_config("demo", ["seed=5"])
    run.init(dataset_name="toy", dataset_path=tmp_path, fingerprint="abc", config=cfg)
    assert run.exists() and run.status == "created"
    assert run.manifest["dataset"] == {"name": "toy", "path": str(tmp_path.resolve()), "fingerprint": "abc"}
    assert run.read_config() == cfg
    run.init(dataset_name="toy", dataset_path=tmp_path, fingerprint="abc")  # reopening the same data is fine
    with pytest.raises(RunDirError, match="made from dataset 'toy' .*fingerprint abc.*use another --out"):
        run.init(dataset_name="other", dataset_path=tmp_path, fingerprint="xyz")


def test_stage_marks_done_and_failed(tmp_path):
    run = make_run(tmp_path / "run")
    with run.stage("encode") as folder:
        assert run.stage_status("encode") == "running" and run.status == "running"
        write_json(folder / "metrics.json", {"method": "sasrec", "test": {"recall@10": 0.1, "ndcg@10": 0.05}})
    assert run.stage_status("encode") == "done" and run.stage_seconds("encode") >= 0
    assert run.headline() == {"recall@10": 0.1, "ndcg@10": 0.05}
    with pytest.raises(ValueError):
        with run.stage("quantize"):
            raise ValueError("no vectors")
    stage = run.manifest["stages"]["quantize"]
    assert stage["status"] == "failed" and stage["error"] == "ValueError: no vectors"
    assert run.status == "failed"
    with pytest.raises(KeyboardInterrupt):
        with run.stage("generate"):
            raise KeyboardInterrupt
    assert run.stage_status("generate") == "interrupted" and run.status == "interrupted"
    assert run.stage_status("encode") == "done"
    stages = run.manifest["stages"]
    stages["generate"]["seconds"] = 100.0  # as if the interrupted attempt had run 100 s
    write_json(run.path / "run.json", {**run.manifest, "stages": stages})
    with run.stage("generate"):
        pass
    assert run.stage_status("generate") == "done" and 100.0 <= run.stage_seconds("generate") < 110.0
    with run.stage("generate"):  # rerunning a finished stage starts the clock again
        pass
    assert run.stage_seconds("generate") < 10.0
    assert leftovers(run.path) == []


def test_a_stage_killed_without_warning_keeps_the_time_it_ran(tmp_path):
    run = make_run(tmp_path / "run")
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from resid_lib.rundir import RunDir
        RunDir.HEARTBEAT_SECONDS = 0.05
        with RunDir({str(run.path)!r}).stage("generate"):
            time.sleep(60)
    """)], cwd=Path(__file__).resolve().parents[1])
    try:
        deadline = time.monotonic() + 30
        while (run.stage_seconds("generate") or 0.0) < 0.5 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait()
    ran = run.stage_seconds("generate")
    assert run.stage_status("generate") == "running" and ran >= 0.5
    with run.stage("generate"):
        pass
    assert run.stage_status("generate") == "done" and ran <= run.stage_seconds("generate") < ran + 5.0


def test_headline_prefers_the_generative_recommender(tmp_path):
    run = make_run(tmp_path / "run")
    write_json(run.file("encode", "metrics.json"), {"test": {"recall@10": 0.1}})
    write_json(run.file("generate", "metrics.json"), {"test": {"recall@5": 0.2, "recall@10": 0.3, "other": 1}})
    assert run.headline() == {"recall@5": 0.2, "recall@10": 0.3}
    assert run.read_metrics("quantize") is None


def test_list_runs_and_cli(tmp_path, capsys):
    root = tmp_path / "runs"
    a = make_run(root / "a")
    with a.stage("generate") as folder:
        write_json(folder / "metrics.json", {"test": {"recall@10": 0.0642, "ndcg@10": 0.0351}})
    a.set_status("done")
    make_run(root / "group" / "b", name="beauty")
    (root / "not-a-run").mkdir()
    runs = list_runs(root)
    assert sorted(r.path.relative_to(root).as_posix() for r in runs) == ["a", "group/b"]
    by_name = {r.path.name: r for r in runs}
    assert by_name["a"].status == "done" and by_name["a"].stages == {"generate": "done"}
    assert by_name["a"].methods == {"encode": "sasrec", "quantize": "rqkmeans"}
    assert by_name["b"].dataset == "beauty" and by_name["b"].metrics == {}

    assert main(["runs", "list", str(root)]) == 0
    out = capsys.readouterr().out
    line_a = next(line for line in out.splitlines() if line.startswith("a "))
    assert "done" in line_a and "0.0642" in line_a and "0.0351" in line_a
    assert any(line.startswith("group/b") for line in out.splitlines())
    assert main(["runs", "list", str(root), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {r["path"] for r in listed} == {str(root / "a"), str(root / "group" / "b")}

    assert main(["runs", "list", str(tmp_path / "empty-root")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["runs", "list", str(tmp_path / "empty")]) == 0
    assert "no runs" in capsys.readouterr().out
