"""SASRec and SASRec*: causality, training examples, learning, determinism, resume, bad input."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from resid_lib.config import load_config
from resid_lib.data.demo import make_demo_dataset
from resid_lib.data.split import leave_one_out
from resid_lib.encode import make_encoder
from resid_lib.encode.sasrec import SASRec, SASRecFeatures
from resid_lib.errors import ConfigError, DataError
from resid_lib.metrics import evaluate_rankings
from resid_lib.pipeline import run_pipeline
from resid_lib.rundir import HEADLINE_KEYS

CPU = torch.device("cpu")
SMALL = ["encode.seqrec.d_model=32", "encode.seqrec.d_ff=64", "encode.seqrec.max_len=20",
         "encode.seqrec.batch_size=64", "encode.seqrec.dropout=0.1"]


pytestmark = pytest.mark.usefixtures("one_thread")


def encode_config(method: str, *overrides: str):
    return load_config(None, [f"encode.method={method}", *SMALL, *overrides]).encode


def fitted(method: str, dataset, *overrides: str, seed: int = 0, workdir=None, resume=False):
    enc = make_encoder(encode_config(method, *overrides), seed=seed, device=CPU, progress=False)
    return enc.fit(dataset, leave_one_out(dataset), workdir=workdir, resume=resume)


def test_registry_builds_sasrec_classes():
    assert type(make_encoder(encode_config("sasrec"), seed=0, device=CPU)) is SASRec
    assert type(make_encoder(encode_config("sasrec_features"), seed=0, device=CPU)) is SASRecFeatures


def test_seqrec_keys_override_shared_keys_unless_null():
    enc = make_encoder(load_config(None, ["encode.method=sasrec", "encode.d_model=96"]).encode, seed=0, device=CPU)
    assert enc.settings.d_model == 64  # the SASRec recipe default wins over FAMAE's shared key
    cfg = load_config(None, ["encode.method=sasrec", "encode.d_model=96", "encode.seqrec.d_model=null"]).encode
    assert make_encoder(cfg, seed=0, device=CPU).settings.d_model == 96


def test_training_examples_predict_the_next_item_at_every_position():
    enc = make_encoder(encode_config("sasrec", "encode.seqrec.max_len=3"), seed=0, device=CPU)
    examples = enc._prepare([np.array([5, 6, 7, 8, 9]), np.array([1, 2]), np.array([4])])
    np.testing.assert_array_equal(examples, [[6, 7, 8, 9], [-1, -1, 1, 2]])  # 1-item prefix dropped
    inputs, targets = enc._epoch_examples(examples, np.random.default_rng(0))
    np.testing.assert_array_equal(inputs, [[7, 8, 9], [0, 0, 2]])  # tokens = item + 1, padding 0
    np.testing.assert_array_equal(targets, [[7, 8, 9], [-1, -1, 2]])


def test_attention_is_causal(tiny_dataset):
    enc = make_encoder(encode_config("sasrec"), seed=0, device=CPU)
    enc.n_items = tiny_dataset.n_items
    model = enc.build(tiny_dataset).eval()
    rng = np.random.default_rng(0)
    tokens = torch.as_tensor(rng.integers(1, tiny_dataset.n_items + 1, size=(4, 12)))
    tokens[:, :3] = 0  # left padding
    changed = tokens.clone()
    changed[:, 8:] = torch.as_tensor(rng.integers(1, tiny_dataset.n_items + 1, size=(4, 4)))
    with torch.no_grad():
        before, _ = model(tokens)
        after, _ = model(changed)
    torch.testing.assert_close(before[:, :8], after[:, :8])
    assert not torch.allclose(before[:, 8:], after[:, 8:])


def test_left_padding_does_not_change_the_prediction(tiny_dataset):
    enc = make_encoder(encode_config("sasrec"), seed=0, device=CPU)
    model = enc.build(tiny_dataset).eval()
    tokens = torch.tensor([[0, 0, 0, 0, 5, 9, 11], [3, 4, 5, 6, 7, 8, 9]])
    with torch.no_grad():
        full, _ = model(tokens)
        cropped, _ = model(tokens[:1, 4:])
    torch.testing.assert_close(full[0, 4:], cropped[0])


def test_sasrec_beats_popularity_on_demo_data():
    dataset = make_demo_dataset(600, 1500, seed=0)
    split = leave_one_out(dataset)
    popular = np.argsort(-np.bincount(np.concatenate(split.train), minlength=dataset.n_items))[:10]
    baseline = evaluate_rankings(np.tile(popular, (len(split.test), 1)), split.test.targets)["recall@10"]
    enc = fitted("sasrec", dataset, "encode.seqrec.epochs=4", "encode.seqrec.lr=1e-2")
    metrics = enc.metrics()
    assert metrics["method"] == "sasrec" and 1 <= metrics["best_epoch"] <= 4
    assert set(metrics["test"]) == {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}
    assert metrics["test"]["recall@10"] > baseline + 0.1, (metrics["test"], baseline)
    assert enc.history[-1]["loss"] < enc.history[0]["loss"]


def test_outputs_have_the_documented_shapes(tiny_dataset):
    enc = fitted("sasrec", tiny_dataset, "encode.seqrec.epochs=1")
    emb = enc.item_embeddings()
    assert emb.shape == (tiny_dataset.n_items, 32) and emb.dtype == np.float32
    assert np.isfinite(emb).all()
    split = leave_one_out(tiny_dataset)
    ranked = enc.recommend(split.test, 10)
    assert ranked.shape == (len(split.test), 10)
    assert all(len(set(row)) == 10 for row in ranked)
    row = enc.history[0]
    assert set(row) == {"epoch", "loss", "seconds", "valid_recall@10", "valid_ndcg@10"}


def test_same_seed_same_embeddings_other_seed_differs(tiny_dataset):
    a = fitted("sasrec", tiny_dataset, "encode.seqrec.epochs=2").item_embeddings()
    b = fitted("sasrec", tiny_dataset, "encode.seqrec.epochs=2").item_embeddings()
    c = fitted("sasrec", tiny_dataset, "encode.seqrec.epochs=2", seed=1).item_embeddings()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_early_stopping_ends_training_after_patience_epochs_without_a_better_validation(tiny_dataset):
    # lr 0: the model never changes, so epoch 1 stays the best and every later epoch is a bad one
    enc = fitted("sasrec", tiny_dataset, "encode.seqrec.epochs=6", "encode.seqrec.patience=2", "encode.seqrec.lr=1e-12")
    assert [row["epoch"] for row in enc.history] == [1, 2, 3]
    assert enc.best_epoch == 1


def test_resume_after_an_interruption_equals_an_uninterrupted_run(tiny_dataset, tmp_path, monkeypatch):
    overrides = ("encode.seqrec.epochs=3", "encode.seqrec.patience=0")
    reference = fitted("sasrec_features", tiny_dataset, *overrides, workdir=tmp_path / "a")

    calls = {"n": 0}
    run_epoch = SASRecFeatures._run_epoch

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return run_epoch(self, *args, **kwargs)

    monkeypatch.setattr(SASRecFeatures, "_run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fitted("sasrec_features", tiny_dataset, *overrides, workdir=tmp_path / "b")
    monkeypatch.setattr(SASRecFeatures, "_run_epoch", run_epoch)
    resumed = fitted("sasrec_features", tiny_dataset, *overrides, workdir=tmp_path / "b", resume=True)

    np.testing.assert_array_equal(resumed.item_embeddings(), reference.item_embeddings())
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in reference.history]
    assert resumed.metrics() == reference.metrics()


def test_features_variant_fuses_field_embeddings(tiny_dataset):
    enc = fitted("sasrec_features", tiny_dataset, "encode.seqrec.epochs=1",
                 "encode.seqrec.feature_fields=[brand, cat_l3]")
    items = enc.model.items
    expected = items.ids.weight + items.fields[0](torch.as_tensor(tiny_dataset.codes("brand"))) \
        + items.fields[1](torch.as_tensor(tiny_dataset.codes("cat_l3")))
    np.testing.assert_allclose(enc.item_embeddings(), expected.detach().numpy(), rtol=1e-6, atol=1e-6)
    concat = fitted("sasrec_features", tiny_dataset, "encode.seqrec.epochs=1", "encode.seqrec.fusion=concat")
    assert concat.item_embeddings().shape == (tiny_dataset.n_items, 32)
    assert concat.fields == tiny_dataset.categorical_fields


def test_bad_settings_and_data_give_clear_errors(tiny_dataset):
    with pytest.raises(ConfigError, match="max_len must be at least 2"):
        make_encoder(encode_config("sasrec", "encode.seqrec.max_len=1"), seed=0, device=CPU)
    with pytest.raises(ConfigError, match="divisible by encode.seqrec.n_heads"):
        make_encoder(encode_config("sasrec", "encode.seqrec.n_heads=3"), seed=0, device=CPU)
    with pytest.raises(ConfigError, match="'colour' is not a categorical field"):
        fitted("sasrec_features", tiny_dataset, "encode.seqrec.feature_fields=[colour]")
    plain = make_demo_dataset(60, 30, seed=0)
    plain.fields = tuple(f for f in plain.fields if f.kind != "categorical")
    with pytest.raises(DataError, match="no categorical fields"):
        fitted("sasrec_features", plain)
    single = make_demo_dataset(60, 30, seed=0)
    single.sequences = [s[:1] for s in single.sequences]
    with pytest.raises(DataError, match="no user has two or more training items"):
        fitted("sasrec", single)
    with pytest.raises(ConfigError, match="call fit"):
        make_encoder(encode_config("sasrec"), seed=0, device=CPU).item_embeddings()


def test_encode_stage_writes_the_run_directory_artifacts(tiny_dataset_dir, tmp_path):
    overrides = ["encode.method=sasrec_features", *SMALL, "encode.seqrec.epochs=2"]
    run = run_pipeline(load_config(None, overrides), tiny_dataset_dir, tmp_path / "run", stages=["encode"],
                       progress=False)
    encode = run.path / "encode"
    emb = np.load(encode / "item_embeddings.npy")
    assert emb.shape == (300, 32) and emb.dtype == np.float32
    history = pd.read_csv(encode / "history.csv")
    assert list(history.columns) == ["epoch", "loss", "seconds", "valid_recall@10", "valid_ndcg@10"]
    assert len(history) == 2
    metrics = run.read_metrics("encode")
    assert metrics["method"] == "sasrec_features" and set(metrics["test"]) == set(HEADLINE_KEYS)
    assert run.headline() == metrics["test"]
    assert (encode / "model.pt").is_file() and (encode / "checkpoint.pt").is_file()
