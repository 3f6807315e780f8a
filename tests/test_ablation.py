"""The ablation grid: runs per row, reuse of finished runs, failed rows, the results table and the CLI.

The E- and Q-stages are replaced by small stand-ins (popularity metrics, taxonomy
SIDs) so the test exercises the orchestration and the real G-stage in seconds.
"""
from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest
import torch

from resid_lib.ablation import GRID, results_markdown, run_ablation, select_rows, shared_encode
from resid_lib.config import load_config
from resid_lib.data.dataset import Dataset
from resid_lib.errors import ConfigError, DataError
from resid_lib.io import write_json, write_parquet
from resid_lib.metrics import evaluate_rankings
from resid_lib.quantize.base import dedup_codes
from workbench.cli import main

TINY = ["generate.d_model=32", "generate.d_ff=64", "generate.encoder_layers=1", "generate.decoder_layers=1",
        "generate.epochs=1", "generate.batch_size=128", "generate.warmup_steps=5", "generate.beams=10",
        "generate.max_items=5", "generate.eval_users=50"]


@pytest.fixture
def stand_in_stages(monkeypatch):
    """Replace the encode and quantize stages' entry points; count their calls."""
    calls = {"encode": 0, "quantize": 0}

    def encode(ctx):
        calls["encode"] += 1
        method = ctx.config.encode.method
        if method.startswith("sasrec"):
            popular = np.argsort(-ctx.dataset.popularity, kind="stable")[:10]
            scores = {s: evaluate_rankings(np.tile(popular, (len(ctx.split.eval_set(s)), 1)), ctx.split.eval_set(s).targets)
                      for s in ("valid", "test")}
            write_json(ctx.run.file("encode", "metrics.json"), {"method": method, "best_epoch": 1, **scores})

    def quantize(ctx):
        calls["quantize"] += 1
        if ctx.config.quantize.method == "rqvae":
            raise DataError("stand-in quantizer failure")
        ds = ctx.dataset
        sids = dedup_codes(np.stack([ds.codes("cat_l1"), ds.codes("cat_l3")], axis=1))[0]
        frame = pd.DataFrame({"item_id": ds.item_ids.astype(str)})
        for level in range(sids.shape[1]):
            frame[f"codebook{level + 1}_id"] = sids[:, level]
        write_parquet(ctx.run.file("quantize", "sids.parquet"), frame)

    for stage, fn in (("encode", encode), ("quantize", quantize)):
        monkeypatch.setattr(importlib.import_module(f"resid_lib.{stage}.stage"), "run_stage", fn)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield calls
    torch.set_num_threads(threads)


def test_grid_has_the_papers_rows():
    assert [r.name for r in GRID] == ["ReSID", "E1", "E2", "E3", "Q1", "Q2", "TIGER", "SASRec", "SASRec*"]
    pairs = {r.name: (r.encoder, r.quantizer) for r in GRID}
    assert pairs["ReSID"] == ("famae", "gaoq") and pairs["TIGER"] == ("text", "rqvae")
    assert pairs["Q2"] == ("famae", "hkmeans") and pairs["SASRec*"] == ("sasrec_features", None)
    assert select_rows(["tiger", "SASRec*"]) == [GRID[6], GRID[8]]
    with pytest.raises(ConfigError, match="unknown ablation row 'nope'"):
        select_rows(["nope"])


def test_ablation_runs_reuses_and_records_failures(stand_in_stages, tiny_dataset_dir, tmp_path, capsys):
    out = tmp_path / "ablation"
    table = run_ablation("demo", tiny_dataset_dir, out, only=["ReSID", "Q1", "SASRec"], overrides=TINY,
                         progress=False, log=lambda msg: None)
    assert table["name"].tolist() == [r.name for r in GRID]  # every row, selected or not
    status = dict(zip(table["name"], table["status"]))
    assert status == {**{r.name: "not run" for r in GRID}, "ReSID": "done", "Q1": "failed", "SASRec": "done"}
    rows = table.set_index("name")
    resid, q1, sasrec = rows.loc["ReSID"], rows.loc["Q1"], rows.loc["SASRec"]
    assert 0 < resid["recall@10"] <= 1 and resid["generate_seconds"] > 0 and resid["quantizer"] == "gaoq"
    assert "stand-in quantizer failure" in q1["error"] and np.isnan(q1["recall@10"])
    assert pd.isna(sasrec["quantizer"]) and np.isnan(sasrec["generate_seconds"])
    assert sasrec["recall@10"] == pytest.approx(
        pd.read_json(out / "runs" / "sasrec" / "encode" / "metrics.json", typ="series")["test"]["recall@10"])
    assert (out / "runs" / "resid" / "generate" / "predictions.parquet").is_file()
    assert not (out / "runs" / "tiger").exists()
    assert pd.read_parquet(out / "results.parquet").equals(table)
    assert stand_in_stages == {"encode": 2, "quantize": 2}  # Q1 took over ReSID's FAMAE stage
    q1_stages = pd.read_json(out / "runs" / "q1" / "run.json", typ="series")["stages"]
    assert q1_stages["encode"]["copied_from"] == str((out / "runs" / "resid").resolve())
    assert q1["encode_seconds"] == resid["encode_seconds"]
    assert sorted(p.name for p in (out / "runs" / "q1" / "encode").iterdir()) == \
        sorted(p.name for p in (out / "runs" / "resid" / "encode").iterdir())

    # through the CLI, one row more: finished rows are reused, the failed one is resumed and fails again
    code = main(["ablate", "--config", "demo", "--data", str(tiny_dataset_dir), "--out", str(out), "--quiet",
                 "--only", "ReSID", "Q1", "SASRec*", *sum((["--set", s] for s in TINY), [])])
    assert code == 1
    assert stand_in_stages == {"encode": 3, "quantize": 3}
    printed = capsys.readouterr().out
    assert "reused" in printed and "| ReSID | famae | gaoq |" in printed and "failed: DataError" in printed
    again = pd.read_parquet(out / "results.parquet").set_index("name")
    assert again.loc["ReSID", "recall@10"] == resid["recall@10"]
    assert again.loc["SASRec", "status"] == "done" and again.loc["SASRec*", "status"] == "done"  # cumulative

    # collecting only runs nothing
    collected = run_ablation("demo", tiny_dataset_dir, out, overrides=TINY, execute=False, log=lambda m: None)
    assert stand_in_stages == {"encode": 3, "quantize": 3}
    assert collected.set_index("name")["status"].to_dict()["Q1"] == "not run"


def test_a_finished_run_with_another_config_is_not_reused(stand_in_stages, tiny_dataset_dir, tmp_path):
    out = tmp_path / "ablation"
    run_ablation("demo", tiny_dataset_dir, out, only=["SASRec"], overrides=TINY, progress=False, log=lambda m: None)
    table = run_ablation("demo", tiny_dataset_dir, out, only=["SASRec"], overrides=TINY + ["seed=7"],
                         progress=False, log=lambda m: None).set_index("name")
    assert table.loc["SASRec", "status"] == "failed" and "different config" in table.loc["SASRec", "error"]
    assert stand_in_stages["encode"] == 1


def test_rows_share_an_encode_stage_only_when_its_settings_match(stand_in_stages, tiny_dataset_dir, tmp_path):
    out = tmp_path / "ablation"
    run_ablation("demo", tiny_dataset_dir, out, only=["SASRec"], overrides=TINY, progress=False, log=lambda m: None)
    messages = []
    run_ablation("demo", tiny_dataset_dir, out, only=["E2", "E3"], overrides=TINY, progress=False, log=messages.append)
    assert stand_in_stages["encode"] == 2  # E2 copied the SASRec row's stage, E3 (BERT4Rec) trained its own
    assert any("copied from sasrec" in m for m in messages)
    fingerprint = Dataset.load(tiny_dataset_dir).fingerprint
    e2 = [*TINY, *GRID[2].overrides()]
    assert shared_encode(load_config("demo", e2), out / "runs" / "new", fingerprint).path.name == "e2"
    for change in ("seed=7", "encode.lr=0.002", "data.min_length=4"):  # what the stage computes differs
        assert shared_encode(load_config("demo", [*e2, change]), out / "runs" / "new", fingerprint) is None
    assert shared_encode(load_config("demo", [*e2, "generate.epochs=3"]), out / "runs" / "new", fingerprint) is not None
    assert shared_encode(load_config("demo", e2), out / "runs" / "new", "another dataset") is None


def test_the_table_keeps_rows_that_another_call_finished_meanwhile(stand_in_stages, tiny_dataset_dir, tmp_path,
                                                                   monkeypatch):
    out = tmp_path / "ablation"
    quiet = dict(overrides=TINY, progress=False, log=lambda m: None)
    ablation = importlib.import_module("resid_lib.ablation")
    run_row = ablation.run_or_reuse

    def q2_while_resid_finishes_elsewhere(config, data_dir, run_dir, *args, **kwargs):
        if run_dir.name == "q2":  # a second `ablate --only ReSID` finishes while Q2 runs
            run_ablation("demo", tiny_dataset_dir, out, only=["ReSID"], **quiet)
            assert pd.read_parquet(out / "results.parquet").set_index("name").loc["ReSID", "status"] == "done"
        return run_row(config, data_dir, run_dir, *args, **kwargs)

    monkeypatch.setattr(ablation, "run_or_reuse", q2_while_resid_finishes_elsewhere)
    table = run_ablation("demo", tiny_dataset_dir, out, only=["Q2"], **quiet).set_index("name")
    assert table.loc["ReSID", "status"] == "done" and table.loc["Q2", "status"] == "done"
    on_disk = pd.read_parquet(out / "results.parquet").set_index("name")
    assert on_disk.loc["ReSID", "status"] == "done" and on_disk.loc["Q2", "status"] == "done"


def test_results_markdown_lists_every_row():
    table = pd.DataFrame([
        {"name": "ReSID", "encoder": "famae", "quantizer": "gaoq", "status": "done", "recall@5": 0.05, "recall@10": 0.07,
         "ndcg@5": 0.03, "ndcg@10": 0.04, "encode_seconds": 10.0, "quantize_seconds": 2.0, "generate_seconds": 30.0,
         "run": "runs/resid", "error": None},
        {"name": "Q1", "encoder": "famae", "quantizer": "rqvae", "status": "failed", "recall@5": None,
         "recall@10": None, "ndcg@5": None, "ndcg@10": None, "encode_seconds": 10.0, "quantize_seconds": None,
         "generate_seconds": None, "run": "runs/q1", "error": "DataError: bad"},
    ])
    lines = results_markdown(table).splitlines()
    assert lines[2] == "| ReSID | famae | gaoq | 0.0500 | 0.0700 | 0.0300 | 0.0400 | 10 | 2 | 30 | done |"
    assert lines[3].endswith("| - | - | - | - | 10 | - | - | failed: DataError: bad |")
    unfinished = table.iloc[[1]].assign(status="not run", error="run is running")
    assert results_markdown(unfinished).splitlines()[2].endswith("| not run: run is running |")
