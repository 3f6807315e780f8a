"""The quantize stage on a tiny run directory, and ``workbench quantize``."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from resid_lib.config import RunConfig
from resid_lib.data.split import leave_one_out
from resid_lib.errors import DataError, RunDirError
from resid_lib.io import read_json, save_npy
from resid_lib.pipeline import StageContext
from resid_lib.quantize.base import Quantizer
from resid_lib.quantize.config import QuantizeConfig
from resid_lib.quantize.stage import run_stage
from resid_lib.quantize.tree import read_sids
from resid_lib.rundir import RunDir
from workbench.cli import main

SETTINGS = dict(branching=[4, 5], codebook_size=16, epochs=4, hidden_dims=[32], latent_dim=8, batch_size=100)


def _embeddings(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(scale=3.0, size=(10, 24))[rng.integers(0, 10, n)] + rng.normal(size=(n, 24))).astype(np.float32)


def _context(dataset, tmp_path, method: str, X: np.ndarray | None = None) -> StageContext:
    run = RunDir(tmp_path / "run")
    run.init(dataset_name=dataset.name, dataset_path=tmp_path, fingerprint=dataset.fingerprint)
    if X is not None:
        save_npy(run.file("encode", "item_embeddings.npy"), X)
    config = RunConfig(seed=7, device="cpu", quantize=QuantizeConfig(method=method, **SETTINGS))
    return StageContext(config=config, dataset=dataset, split=leave_one_out(dataset), run=run,
                        device=torch.device("cpu"), progress=False)


@pytest.mark.parametrize("method", ["gaoq", "hkmeans", "rqkmeans", "pq", "rqvae"])
def test_stage_writes_the_contract_files(method, tiny_dataset, tmp_path):
    X = _embeddings(tiny_dataset.n_items)
    ctx = _context(tiny_dataset, tmp_path, method, X)
    run_stage(ctx)
    out = ctx.run.path / "quantize"
    sids = pd.read_parquet(out / "sids.parquet")
    assert sids.columns[0] == "item_id" and list(sids.columns[1:]) == [f"codebook{l}_id" for l in range(1, sids.shape[1])]
    assert sids["item_id"].tolist() == tiny_dataset.item_ids.astype(str).tolist()
    codes, _ = read_sids(out / "sids.parquet", tiny_dataset)
    assert len(np.unique(codes, axis=0)) == tiny_dataset.n_items

    diag = read_json(out / "diagnostics.json")
    assert diag["method"] == method and diag["n_items"] == tiny_dataset.n_items
    assert diag["sid_length"] == codes.shape[1]
    assert diag["dedup_level"] == (diag["collisions"]["n_collided"] > 0)
    assert len(diag["history_target_overlap"]) == codes.shape[1]
    assert diag["directional_coherence"] is not None
    assert all(0 < p["utilization"] <= 1 and p["entropy"] <= p["max_entropy"] + 1e-9 for p in diag["per_level"])

    tree = pd.read_parquet(out / "tree.parquet")
    assert tree.groupby("level")["n_items"].sum().tolist() == [tiny_dataset.n_items] * codes.shape[1]
    for name in tiny_dataset.categorical_fields:
        assert {f"{name}_top", f"{name}_share"} <= set(tree.columns)
    assert (tree.loc[tree["level"] == codes.shape[1], "n_items"] == 1).all()

    quantizer = Quantizer.load(out / "quantizer.pt")
    np.testing.assert_array_equal(quantizer.encode(X), codes[:, :diag["levels"]])
    assert quantizer.n_collisions_ == diag["collisions"]["n_collided"]
    assert not (out / "checkpoint.pt").exists()


def test_stage_is_reproducible(tiny_dataset, tmp_path):
    X = _embeddings(tiny_dataset.n_items)
    first = _context(tiny_dataset, tmp_path / "a", "gaoq", X)
    second = _context(tiny_dataset, tmp_path / "b", "gaoq", X)
    run_stage(first)
    run_stage(second)
    a = pd.read_parquet(first.run.file("quantize", "sids.parquet"))
    b = pd.read_parquet(second.run.file("quantize", "sids.parquet"))
    pd.testing.assert_frame_equal(a, b)


def test_stage_refuses_missing_or_mismatched_embeddings(tiny_dataset, tmp_path):
    with pytest.raises(RunDirError, match="run the encode stage first"):
        run_stage(_context(tiny_dataset, tmp_path / "a", "gaoq"))
    ctx = _context(tiny_dataset, tmp_path / "b", "gaoq", _embeddings(tiny_dataset.n_items - 1))
    with pytest.raises(DataError, match="299 rows but dataset"):
        run_stage(ctx)
    assert not (ctx.run.path / "quantize" / "sids.parquet").exists()


def test_cli_without_dataset_uses_row_numbers(tmp_path, capsys):
    save_npy(tmp_path / "emb.npy", _embeddings(200, seed=1))
    rc = main(["quantize", str(tmp_path / "emb.npy"), "--method", "rqkmeans", "--out", str(tmp_path / "q"),
               "--set", "codebook_size=8", "--set", "quantize.levels=2", "--quiet"])
    assert rc == 0
    sids = pd.read_parquet(tmp_path / "q" / "sids.parquet")
    assert sids["item_id"].tolist() == [str(i) for i in range(200)]
    assert sids.shape[1] in (3, 4)
    tree = pd.read_parquet(tmp_path / "q" / "tree.parquet")
    assert list(tree.columns) == ["level", "prefix", "parent", "code", "n_items"]
    diag = read_json(tmp_path / "q" / "diagnostics.json")
    assert diag["history_target_overlap"] is None and diag["reconstruction_error"] is not None
    assert "collisions before dedup" in capsys.readouterr().out


def test_cli_with_dataset_and_bad_input(tiny_dataset_dir, tiny_dataset, tmp_path, capsys):
    save_npy(tmp_path / "emb.npy", _embeddings(tiny_dataset.n_items))
    args = ["quantize", str(tmp_path / "emb.npy"), "--method", "hkmeans", "--out", str(tmp_path / "q"),
            "--data", str(tiny_dataset_dir), "--set", "branching=[4,5]", "--quiet"]
    assert main(args) == 0
    tree = pd.read_parquet(tmp_path / "q" / "tree.parquet")
    assert "brand_share" in tree.columns
    assert read_json(tmp_path / "q" / "diagnostics.json")["history_target_overlap"] is not None

    save_npy(tmp_path / "short.npy", _embeddings(tiny_dataset.n_items - 5))
    assert main([*args[:1], str(tmp_path / "short.npy"), *args[2:5], str(tmp_path / "q2"), *args[6:]]) == 2
    assert "295 rows but dataset" in capsys.readouterr().err
    assert not (tmp_path / "q2").exists()

    bad = _embeddings(50)
    bad[3] = np.inf
    save_npy(tmp_path / "bad.npy", bad)
    assert main(["quantize", str(tmp_path / "bad.npy"), "--out", str(tmp_path / "q3")]) == 2
    assert "row 3" in capsys.readouterr().err
    assert main(["quantize", str(tmp_path / "emb.npy"), "--out", str(tmp_path / "q4"), "--set", "bogus=1"]) == 2
    assert "unknown config key quantize.bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["quantize", str(tmp_path / "emb.npy"), "--method", "vq", "--out", str(tmp_path / "q5")])
