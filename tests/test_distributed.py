"""Data-parallel training: 2 gloo processes against 1 on the tiny demo world.

One spawned process group (``resid_lib.distributed.spawn``) runs every scenario, so
the start-up cost is paid once: the whole pipeline (FAMAE, GAOQ, generator), an
interrupted and resumed FAMAE encode stage, SASRec and BERT4Rec, and the generator
on fixed SIDs. Rank 1 records every file it opens for writing or renames under the
test's folder with an audit hook (``sys.addaudithook``). The single-process
references run in the test process itself.

Dropout is off in the comparisons: the 2-process run then computes the same
gradients as 1 process (same global batches, losses weighted to the global mean)
and only the order of floating-point sums differs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import resid_lib.encode.famae as famae
from resid_lib import distributed
from resid_lib.config import load_config
from resid_lib.data.dataset import Dataset
from resid_lib.data.split import leave_one_out
from resid_lib.encode import make_encoder
from resid_lib.generate.config import GenerateConfig
from resid_lib.generate.recommend import evaluate
from resid_lib.generate.trainer import GeneratorTrainer
from resid_lib.pipeline import run_pipeline
from resid_lib.quantize.base import dedup_codes
from resid_lib.rundir import RunDir
from workbench.cli import main

from _interrupt import interrupt_on_call

NPROC = 2
METRIC_TOL = 0.01
"""Largest |2-process - 1-process| difference of a Recall/NDCG or proxy metric: float sums in
another order may flip a near-tie in a ranking, and one flipped user of ~400 moves a metric by 0.0025."""
LOSS_RTOL = 1e-5
"""Relative tolerance of the per-epoch training losses: float32 sums in another order over a few epochs."""

FAMAE = ["encode.max_len=8", "encode.d_model=16", "encode.n_heads=2", "encode.d_ff=32", "encode.batch_size=128",
         "encode.epochs=3", "encode.patience=5", "encode.dropout=0", "encode.famae.attention_users=8", "device=cpu"]
PIPELINE = FAMAE + ["quantize.branching=[6, 4]", "generate.d_model=16", "generate.d_ff=32", "generate.n_heads=2",
                    "generate.encoder_layers=1", "generate.decoder_layers=1", "generate.epochs=2",
                    "generate.batch_size=128", "generate.eval_every=2", "generate.eval_users=50", "generate.beams=10",
                    "generate.max_items=5"]
SEQREC = ["encode.seqrec.d_model=16", "encode.seqrec.d_ff=32", "encode.seqrec.max_len=12", "encode.seqrec.epochs=2",
          "encode.seqrec.batch_size=64", "encode.seqrec.dropout=0", "encode.seqrec.lr=0.005"]
GENERATOR = dict(d_model=16, n_heads=2, d_ff=32, encoder_layers=1, decoder_layers=1, epochs=2, batch_size=128,
                 warmup_steps=5, eval_every=1, eval_users=100, beams=10, max_items=5, dropout=0.0, precision="fp32")


pytestmark = pytest.mark.usefixtures("one_thread")


def category_sids(dataset: Dataset) -> np.ndarray:
    """Stand-in SIDs from the demo taxonomy: (cat_l1, cat_l3, rank within the pair)."""
    return dedup_codes(np.stack([dataset.codes("cat_l1"), dataset.codes("cat_l3")], axis=1))[0]


def seqrec_result(method: str, dataset: Dataset) -> dict:
    enc = make_encoder(load_config(None, [f"encode.method={method}", *SEQREC]).encode, seed=0,
                       device=torch.device("cpu"), progress=False)
    enc.fit(dataset, leave_one_out(dataset))
    return {"metrics": enc.metrics(), "history": enc.history}


def generator_result(dataset: Dataset) -> dict:
    split = leave_one_out(dataset)
    trainer = GeneratorTrainer(GenerateConfig(**GENERATOR), category_sids(dataset), split.train, split.valid, seed=3,
                               show_progress=False)
    outcome = trainer.fit()
    test, rankings = evaluate(outcome.model, outcome.trie, outcome.tokenizer, split.test, max_items=5, beams=10,
                              top_k=10, precision="fp32")
    return {"history": outcome.history, "test": test, "invalid": rankings.invalid, "n_ranked": len(rankings.ranked)}


def interrupted_encode(data_dir: Path, out: Path) -> None:
    """The FAMAE encode stage stopped by an interruption in epoch 2 (on every rank), then resumed."""
    real = famae.proxy_metrics
    famae.proxy_metrics = interrupt_on_call(real, 2)  # proxy metrics run once per epoch
    try:
        run_pipeline(load_config("demo", FAMAE), data_dir, out, stages=["encode"], progress=False)
    except KeyboardInterrupt:
        pass
    finally:
        famae.proxy_metrics = real
    run_pipeline(load_config("demo", FAMAE), data_dir, out, stages=["encode"], resume=True, progress=False)


def worker(data_dir: Path, root: Path) -> dict:
    """Every scenario, on one rank of the process group; returns what this rank saw."""
    torch.set_num_threads(1)
    writes: list[str] = []
    if os.environ["RANK"] != "0":
        sys.addaudithook(lambda event, args: _record_write(event, args, root, writes))
    run_pipeline(load_config("demo", PIPELINE), data_dir, root / "pipeline", progress=False)
    interrupted_encode(data_dir, root / "resumed")
    dataset = Dataset.load(data_dir)
    return {"writes": writes, "rank": distributed.rank(), "world": distributed.world_size(),
            "sasrec": seqrec_result("sasrec", dataset), "bert4rec": seqrec_result("bert4rec", dataset),
            "generator": generator_result(dataset)}


def _record_write(event: str, args: tuple, root: Path, writes: list[str]) -> None:
    """Note files opened for writing, created or renamed under ``root``."""
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
            (isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        paths = [path] if writing else []
    elif event == "os.rename":
        paths = list(args[:2])
    else:
        return
    for p in paths:
        if isinstance(p, (str, Path)) and Path(p).resolve().is_relative_to(root.resolve()):
            writes.append(f"{event} {p}")


@pytest.fixture(scope="module")
def two_ranks(tiny_dataset_dir, tmp_path_factory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("ddp")
    return root, distributed.spawn(worker, NPROC, tiny_dataset_dir, root)


def assert_close_metrics(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key in want:
        assert abs(got[key] - want[key]) <= METRIC_TOL, (key, got[key], want[key])


def assert_close_losses(got: list[dict], want: list[dict]) -> None:
    assert [r["epoch"] for r in got] == [r["epoch"] for r in want]
    np.testing.assert_allclose([r["loss"] for r in got], [r["loss"] for r in want], rtol=LOSS_RTOL)


def test_every_rank_finishes_and_sees_the_same_metrics(two_ranks):
    _, (rank0, rank1) = two_ranks
    assert (rank0["rank"], rank1["rank"]) == (0, 1) and rank0["world"] == rank1["world"] == NPROC
    for method in ("sasrec", "bert4rec"):
        assert rank1[method]["metrics"] == rank0[method]["metrics"]
    assert rank1["generator"]["test"] == rank0["generator"]["test"]


def test_only_rank_0_writes_the_run_directory(two_ranks):
    root, results = two_ranks
    assert results[1]["writes"] == []
    run = RunDir(root / "pipeline")
    assert run.status == "done"
    assert all(run.stage_status(s) == "done" for s in ("encode", "quantize", "generate"))
    for stage, name in [("encode", "item_embeddings.npy"), ("encode", "attention.npz"), ("encode", "checkpoint.pt"),
                        ("quantize", "sids.parquet"), ("generate", "metrics.json"),
                        ("generate", "predictions.parquet")]:
        assert run.file(stage, name).is_file(), name
    assert not [p for p in root.rglob("*") if ".tmp" in p.name]  # no half-written file left behind


def test_famae_matches_one_process(two_ranks, tiny_dataset_dir, tmp_path):
    root, _ = two_ranks
    one = run_pipeline(load_config("demo", FAMAE), tiny_dataset_dir, tmp_path / "one", stages=["encode"],
                       progress=False)
    two = RunDir(root / "pipeline")
    history = [pd.read_csv(r.file("encode", "history.csv")).to_dict("records") for r in (one, two)]
    assert_close_losses(history[1], history[0])
    for row1, row2 in zip(*history):
        assert_close_metrics({k: row2[k] for k in ("metric1", "metric2")}, {k: row1[k] for k in ("metric1", "metric2")})
    np.testing.assert_allclose(np.load(two.file("encode", "item_embeddings.npy")),
                               np.load(one.file("encode", "item_embeddings.npy")), atol=1e-4)


def test_resume_across_ranks_reproduces_the_uninterrupted_run(two_ranks):
    root, _ = two_ranks
    straight, resumed = RunDir(root / "pipeline"), RunDir(root / "resumed")
    assert resumed.stage_status("encode") == "done"
    columns = ["epoch", "loss", "metric1", "metric2"]
    pd.testing.assert_frame_equal(pd.read_csv(resumed.file("encode", "history.csv"))[columns],
                                  pd.read_csv(straight.file("encode", "history.csv"))[columns])
    np.testing.assert_array_equal(np.load(resumed.file("encode", "item_embeddings.npy")),
                                  np.load(straight.file("encode", "item_embeddings.npy")))


@pytest.mark.parametrize("method", ["sasrec", "bert4rec"])
def test_sequential_recommenders_match_one_process(two_ranks, tiny_dataset, method):
    two = two_ranks[1][0][method]
    one = seqrec_result(method, tiny_dataset)
    assert_close_losses(two["history"], one["history"])
    assert [r["epoch"] for r in two["history"]] == [1, 2]
    assert two["metrics"]["best_epoch"] == one["metrics"]["best_epoch"]
    for which in ("valid", "test"):
        assert_close_metrics(two["metrics"][which], one["metrics"][which])


def test_generator_matches_one_process(two_ranks, tiny_dataset):
    two = two_ranks[1][0]["generator"]
    one = generator_result(tiny_dataset)
    assert_close_losses(two["history"], one["history"])
    assert_close_metrics(two["test"], one["test"])
    assert two["n_ranked"] == one["n_ranked"] and two["invalid"] == one["invalid"] == 0


def test_workbench_run_nproc_launches_through_torchrun(tiny_dataset_dir, tmp_path):
    out = tmp_path / "run"
    sets = [a for item in ["encode.method=sasrec", *SEQREC, "encode.seqrec.epochs=1", "device=cpu"]
            for a in ("--set", item)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "workbench", "run", "--nproc", "2", "--data", str(tiny_dataset_dir),
                           "--out", str(out), "--stages", "encode", "--quiet", *sets],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run partial") == 1  # rank 0 reports, for every rank (one stage of three ran)
    metrics = json.loads((out / "encode" / "metrics.json").read_text())
    assert metrics["method"] == "sasrec" and metrics["best_epoch"] == 1


def test_nproc_errors_are_one_line(tiny_dataset_dir, tmp_path, capsys, monkeypatch):
    args = ["run", "--data", str(tiny_dataset_dir), "--out", str(tmp_path / "run"), "--stages", "encode"]
    assert main(args + ["--nproc", "0"]) == 2
    assert "--nproc must be at least 1" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert main(args + ["--nproc", "2", "--set", "device=cuda"]) == 2
    assert "needs one GPU per process but 1 are visible" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
