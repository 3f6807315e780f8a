"""The ``encode`` pipeline stage: artifacts per the run-directory contract, CLI, resume, errors."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import resid_lib.encode.famae as famae
from resid_lib.config import load_config
from resid_lib.encode.attention import AttentionSample
from resid_lib.errors import ConfigError
from resid_lib.pipeline import run_pipeline
from resid_lib.rundir import RunDir
from workbench.cli import main

from _interrupt import interrupt_on_call

TINY = ["encode.max_len=8", "encode.d_model=16", "encode.n_heads=2", "encode.d_ff=32", "encode.batch_size=128",
        "encode.epochs=2", "encode.famae.attention_users=8", "device=cpu"]
TINY_SEQREC = ["encode.seqrec.max_len=8", "encode.seqrec.d_model=16", "encode.seqrec.d_ff=32",
               "encode.seqrec.epochs=1", "encode.seqrec.batch_size=128"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_cli_encode_stage_writes_the_famae_artifacts(tiny_dataset_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--data", str(tiny_dataset_dir), "--out", str(out), "--stages", "encode", "--quiet",
            "--set", "encode.method=famae"]
    assert main(args + [a for item in TINY for a in ("--set", item)]) == 0
    assert "encode" in capsys.readouterr().out
    run = RunDir(out)
    assert run.stage_status("encode") == "done"
    files = {p.name for p in run.stage_dir("encode").iterdir()}
    assert {"item_embeddings.npy", "history.csv", "metrics.json", "attention.npz", "model.pt",
            "checkpoint.pt"} <= files

    emb = np.load(run.file("encode", "item_embeddings.npy"))
    assert emb.dtype == np.float32 and emb.shape == (300, 5 * 16) and np.isfinite(emb).all()
    history = pd.read_csv(run.file("encode", "history.csv"))
    assert list(history["epoch"]) == [1, 2]
    assert {"epoch", "loss", "seconds", "metric1", "metric2"} <= set(history.columns)
    metrics = json.loads(run.file("encode", "metrics.json").read_text())
    assert metrics["method"] == "famae" and metrics["best_epoch"] in (1, 2)
    best = history.set_index("epoch").loc[metrics["best_epoch"]]
    assert metrics["metric1"] == pytest.approx(best["metric1"]) and metrics["metric2"] == pytest.approx(best["metric2"])
    sample = AttentionSample.load(run.file("encode", "attention.npz"))
    assert sample.weights.shape == (8, 2, 2, 8) and sample.weights.dtype == np.float32
    assert sample.items.shape == (8, 8) and sample.users.shape == (8,)


def test_sequential_recommender_stage_reports_valid_and_test_metrics(tiny_dataset_dir, tmp_path):
    cfg = load_config("demo", ["encode.method=sasrec", *TINY, *TINY_SEQREC])
    run = run_pipeline(cfg, tiny_dataset_dir, tmp_path / "run", stages=["encode"], progress=False)
    metrics = run.read_metrics("encode")
    assert metrics["method"] == "sasrec"
    for which in ("valid", "test"):
        assert set(metrics[which]) == {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}
    assert run.headline() == metrics["test"]
    assert np.load(run.file("encode", "item_embeddings.npy")).shape[0] == 300
    assert not run.file("encode", "attention.npz").exists()


def test_interrupted_encode_stage_resumes_to_the_uninterrupted_result(tiny_dataset_dir, tmp_path, monkeypatch):
    cfg = load_config("demo", [*TINY, "encode.epochs=3", "encode.patience=5"])
    straight = run_pipeline(cfg, tiny_dataset_dir, tmp_path / "a", stages=["encode"], progress=False)

    real = famae.proxy_metrics
    monkeypatch.setattr(famae, "proxy_metrics", interrupt_on_call(real, 2))  # proxy metrics run once per epoch
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(cfg, tiny_dataset_dir, tmp_path / "b", stages=["encode"], progress=False)
    assert RunDir(tmp_path / "b").stage_status("encode") == "interrupted"
    monkeypatch.setattr(famae, "proxy_metrics", real)
    resumed = run_pipeline(cfg, tiny_dataset_dir, tmp_path / "b", stages=["encode"], resume=True, progress=False)
    assert resumed.stage_status("encode") == "done"
    np.testing.assert_array_equal(np.load(straight.file("encode", "item_embeddings.npy")),
                                  np.load(resumed.file("encode", "item_embeddings.npy")))
    columns = ["epoch", "loss", "metric1", "metric2"]
    pd.testing.assert_frame_equal(pd.read_csv(straight.file("encode", "history.csv"))[columns],
                                  pd.read_csv(resumed.file("encode", "history.csv"))[columns])


def test_bad_field_fails_the_stage_with_a_clear_error(tiny_dataset_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--data", str(tiny_dataset_dir), "--out", str(out), "--stages", "encode", "--quiet",
                 "--set", "encode.famae.fields=[item_id,colour]"])
    assert code == 2
    assert "unknown field 'colour'" in capsys.readouterr().err
    assert RunDir(out).stage_status("encode") == "failed"
    assert not (out / "encode" / "item_embeddings.npy").exists()


def test_unknown_method_is_a_config_error():
    with pytest.raises(ConfigError, match="encode.method"):
        load_config("demo", ["encode.method=word2vec"])
