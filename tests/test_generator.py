"""The G-stage end to end on tiny demo data: quality, contract files, resume, determinism, bad input."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from resid_lib.config import load_config
from resid_lib.data.dataset import Dataset
from resid_lib.data.demo import make_demo_dataset
from resid_lib.data.split import leave_one_out
from resid_lib.errors import ConfigError, DataError, RunDirError
from resid_lib.generate.config import GenerateConfig
from resid_lib.generate.stage import read_sids
from resid_lib.generate.trainer import GeneratorTrainer
from resid_lib.io import write_parquet
from resid_lib.metrics import evaluate_rankings
from resid_lib.pipeline import run_pipeline
from resid_lib.quantize.base import dedup_codes
from resid_lib.rundir import RunDir

TINY = ["generate.d_model=64", "generate.d_ff=128", "generate.encoder_layers=1", "generate.decoder_layers=1",
        "generate.epochs=4", "generate.batch_size=64", "generate.warmup_steps=20", "generate.eval_every=2",
        "generate.beams=20", "generate.max_items=8", "generate.eval_users=100"]


pytestmark = pytest.mark.usefixtures("one_thread")


def category_sids(dataset: Dataset) -> np.ndarray:
    """Stand-in SIDs from the demo taxonomy: (cat_l1, cat_l3, rank within the pair)."""
    return dedup_codes(np.stack([dataset.codes("cat_l1"), dataset.codes("cat_l3")], axis=1))[0]


def sids_frame(dataset: Dataset, sids: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({"item_id": dataset.item_ids.astype(str)})
    for level in range(sids.shape[1]):
        frame[f"codebook{level + 1}_id"] = sids[:, level]
    return frame


def prepare_run(path, data_dir, dataset, config, sids) -> None:
    """A run directory whose Q-stage output is the given SIDs."""
    RunDir(path).init(dataset_name=dataset.name, dataset_path=data_dir, fingerprint=dataset.fingerprint, config=config)
    write_parquet(RunDir(path).file("quantize", "sids.parquet"), sids_frame(dataset, sids).sample(frac=1.0, random_state=0))


@pytest.fixture(scope="module")
def generated_run(tmp_path_factory, tiny_dataset_dir):
    dataset = Dataset.load(tiny_dataset_dir)
    config = load_config("demo", TINY + ["stages=[generate]"])
    out = tmp_path_factory.mktemp("gen") / "run"
    prepare_run(out, tiny_dataset_dir, dataset, config, category_sids(dataset))
    run = run_pipeline(config, tiny_dataset_dir, out, resume=True, progress=False)
    return dataset, run


def test_stage_writes_the_contract_files(generated_run):
    dataset, run = generated_run
    assert run.stage_status("generate") == "done" and run.status == "done"
    metrics = json.loads(run.file("generate", "metrics.json").read_text())
    assert set(metrics) == {"valid", "test", "best_epoch", "invalid_rate", "decode_seconds"}
    assert set(metrics["test"]) == {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}
    assert metrics["invalid_rate"] == 0.0 and metrics["best_epoch"] in (2, 4)
    history = pd.read_csv(run.file("generate", "history.csv"))
    assert list(history.columns) == ["epoch", "loss", "valid_recall@10", "seconds"]
    assert history["epoch"].tolist() == [1, 2, 3, 4] and history["valid_recall@10"].notna().sum() == 2
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    predictions = pd.read_parquet(run.file("generate", "predictions.parquet"))
    split = leave_one_out(dataset)
    assert list(predictions.columns) == ["user_id", "split", "target", "ranked"]
    assert (predictions["split"] == "valid").sum() == len(split.valid) == (predictions["split"] == "test").sum()
    test = predictions[predictions["split"] == "test"]
    ranked = np.stack(test["ranked"].to_numpy())
    assert ranked.shape == (len(split.test), 10) and ranked.min() >= 0 and ranked.max() < dataset.n_items
    assert metrics["test"] == pytest.approx(evaluate_rankings(ranked, test["target"].to_numpy()))
    assert run.file("generate", "model.pt").is_file() and run.file("generate", "checkpoint.pt").is_file()


def test_recall_clearly_above_popularity(generated_run):
    dataset, run = generated_run
    split = leave_one_out(dataset)
    popular = np.argsort(-np.bincount(np.concatenate(split.train), minlength=dataset.n_items), kind="stable")[:10]
    baseline = evaluate_rankings(np.tile(popular, (len(split.test), 1)), split.test.targets)
    test = run.read_metrics("generate")["test"]
    assert test["recall@10"] > 1.5 * baseline["recall@10"]
    assert test["ndcg@10"] > 1.5 * baseline["ndcg@10"]


def test_item_level_metrics_on_hand_built_predictions():
    # items 3 and 4 share the SID prefix; a hit needs the item itself
    ranked = np.array([
        [3, 1, 2, 5, 6, 7, 8, 9, 10, 11],   # target 3 at rank 1
        [4, 0, 1, 2, 5, 6, 7, 8, 9, 10],    # target 3 absent (its sibling 4 is no hit)
        [0, 1, 2, 5, 6, 7, 3, -1, -1, -1],  # target 3 at rank 7, padded list
    ])
    metrics = evaluate_rankings(ranked, np.array([3, 3, 3]))
    assert metrics["recall@5"] == pytest.approx(1 / 3)
    assert metrics["recall@10"] == pytest.approx(2 / 3)
    assert metrics["ndcg@5"] == pytest.approx(1 / 3)
    assert metrics["ndcg@10"] == pytest.approx((1 + 1 / np.log2(8)) / 3)


def small_trainer(tiny_dataset, checkpoint, on_epoch_end=None, show_progress=False, **overrides) -> GeneratorTrainer:
    split = leave_one_out(tiny_dataset)
    settings = dict(d_model=16, n_heads=2, d_ff=32, encoder_layers=1, decoder_layers=1, epochs=3, batch_size=128,
                    warmup_steps=5, eval_every=1, eval_users=50, beams=10, max_items=5)
    config = GenerateConfig(**{**settings, **overrides})
    return GeneratorTrainer(config, category_sids(tiny_dataset), split.train, split.valid, seed=3,
                            checkpoint=checkpoint, show_progress=show_progress, on_epoch_end=on_epoch_end)


def test_resume_reproduces_the_uninterrupted_run(tiny_dataset, tmp_path):
    full = small_trainer(tiny_dataset, tmp_path / "full.pt").fit()

    def stop_after_one(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        small_trainer(tiny_dataset, tmp_path / "cut.pt", stop_after_one).fit()
    resumed = small_trainer(tiny_dataset, tmp_path / "cut.pt").fit(resume=True)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    assert resumed.best_epoch == full.best_epoch
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_each_epoch_prints_its_loss_and_validation_recall(tiny_dataset, capsys):
    outcome = small_trainer(tiny_dataset, None, epochs=2, show_progress=True).fit()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    second = outcome.history[1]
    assert f"loss {second['loss']:.4f}" in lines[1] and f"valid_recall@10 {second['valid_recall@10']:.4f}" in lines[1]
    assert sum("(best)" in line for line in lines) >= 1


def test_same_seed_same_model(tiny_dataset):
    a = small_trainer(tiny_dataset, None, epochs=1).fit()
    b = small_trainer(tiny_dataset, None, epochs=1).fit()
    assert a.history[-1]["loss"] == b.history[-1]["loss"]
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())


def test_duplicate_sids_are_refused(tiny_dataset, tmp_path):
    sids = category_sids(tiny_dataset)
    sids[5] = sids[9]
    split = leave_one_out(tiny_dataset)
    with pytest.raises(DataError, match="not unique"):
        GeneratorTrainer(GenerateConfig(), sids, split.train, split.valid)
    path = tmp_path / "sids.parquet"
    write_parquet(path, sids_frame(tiny_dataset, sids))
    with pytest.raises(DataError, match=r"sids.parquet: SIDs are not unique"):
        read_sids(path, tiny_dataset)


def test_beam_narrower_than_k_is_a_config_error():
    with pytest.raises(ConfigError, match="beams .* narrower than generate.top_k"):
        load_config("demo", ["generate.beams=5", "generate.top_k=10"])


def test_sids_are_aligned_to_the_dataset_order(tiny_dataset, tmp_path):
    sids = category_sids(tiny_dataset)
    path = tmp_path / "sids.parquet"
    write_parquet(path, sids_frame(tiny_dataset, sids).sample(frac=1.0, random_state=1))
    assert np.array_equal(read_sids(path, tiny_dataset), sids)


def test_sids_of_another_dataset_are_refused(tiny_dataset, tmp_path):
    other = make_demo_dataset(250, 300, seed=1)
    path = tmp_path / "sids.parquet"
    write_parquet(path, sids_frame(other, category_sids(other)))
    with pytest.raises(DataError, match="does not belong to dataset"):
        read_sids(path, tiny_dataset)
    with pytest.raises(RunDirError, match="run the quantize stage first"):
        read_sids(tmp_path / "missing.parquet", tiny_dataset)


def test_run_directory_of_another_dataset_is_refused(tiny_dataset_dir, tmp_path):
    dataset = Dataset.load(tiny_dataset_dir)
    config = load_config("demo", TINY + ["stages=[generate]"])
    prepare_run(tmp_path / "run", tiny_dataset_dir, dataset, config, category_sids(dataset))
    other_dir = make_demo_dataset(250, 300, seed=1).save(tmp_path / "other")
    with pytest.raises(RunDirError, match="was made from dataset"):
        run_pipeline(config, other_dir, tmp_path / "run", resume=True, progress=False)
