"""FAMAE: masking, the packed encoder against a dense reference, loss, training, resume, errors."""
from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import resid_lib.encode.famae as famae
from resid_lib.data.dataset import Dataset, FieldSpec
from resid_lib.data.demo import make_demo_dataset
from resid_lib.data.split import leave_one_out, sliding_windows
from resid_lib.encode import make_encoder
from resid_lib.encode.attention import AttentionSample
from resid_lib.encode.config import EncodeConfig, FamaeConfig
from resid_lib.encode.famae import (FamaeEncoder, FamaeModel, draw_field_masks, field_code_table, last_rows,
                                    resolve_fields)
from resid_lib.errors import ConfigError, DataError

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cfg(famae_cfg: FamaeConfig | None = None, **overrides) -> EncodeConfig:
    settings = dict(max_len=8, d_model=32, n_layers=2, n_heads=2, d_ff=64, batch_size=128, epochs=2)
    settings.update(overrides)
    return EncodeConfig(famae=famae_cfg or FamaeConfig(attention_users=16), **settings)


def tiny_model(dataset: Dataset, *, dropout: float = 0.0, seed: int = 0) -> FamaeModel:
    fields = resolve_fields(dataset, None)
    vocab = [dataset.n_items] + [dataset.cardinality(f) for f in fields[1:]]
    torch.manual_seed(seed)
    return FamaeModel(torch.as_tensor(field_code_table(dataset, fields)), vocab, max_len=8, d_model=32,
                      n_layers=2, n_heads=4, d_ff=64, dropout=dropout)


def some_windows(dataset: Dataset, n: int = 64) -> torch.Tensor:
    windows = sliding_windows(leave_one_out(dataset).train, 8)
    return torch.as_tensor(windows[np.random.default_rng(0).choice(len(windows), n, replace=False)])


# ------------------------------------------------------------------------ masking
def test_masking_statistics_k_uniform_and_fields_uniform():
    n, j = 200_000, 5
    masks = draw_field_masks(np.random.default_rng(0), n, j)
    k = masks.sum(axis=1)
    assert k.min() == 1 and k.max() == j
    np.testing.assert_allclose(np.bincount(k, minlength=j + 1)[1:] / n, 1 / j, atol=0.01)
    for size in range(1, j + 1):
        rows = masks[k == size]
        # each field is in the masked subset with probability K / J
        np.testing.assert_allclose(rows.mean(axis=0), size / j, atol=0.02)
    pairs = masks[k == 2]
    pair_freq = [np.mean(pairs[:, a] & pairs[:, b]) for a, b in combinations(range(j), 2)]
    np.testing.assert_allclose(pair_freq, 1 / math.comb(j, 2), atol=0.01)


def test_only_the_target_position_is_masked(tiny_dataset):
    model = tiny_model(tiny_dataset).eval()
    windows = some_windows(tiny_dataset)
    j = model.n_fields
    none = model.tokens(windows, torch.zeros(len(windows), j, dtype=torch.bool))
    everything = model.tokens(windows, torch.ones(len(windows), j, dtype=torch.bool))
    last = last_rows(windows >= 0)
    changed = (none != everything).any(dim=1)
    assert changed[last].all()
    changed[last] = False
    assert not changed.any(), "a history position was masked"
    # a fully masked target is the sum of the mask vectors plus the last position embedding
    expected = model.mask_emb.sum(dim=0) + model.pos_emb.weight[-1]
    torch.testing.assert_close(everything[last], expected.expand(len(windows), -1))


def dense_reference(model: FamaeModel, windows: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """The same encoder written the obvious way: every position, padded layout, explicit softmax."""
    valid = windows >= 0
    b, length = windows.shape
    codes = model.item_codes[windows.clamp(min=0)]
    x = torch.zeros(b, length, model.d_model)
    for k, emb in enumerate(model.field_emb):
        e = emb(codes[..., k])
        e[:, -1] = torch.where(target_mask[:, k, None], model.mask_emb[k], e[:, -1])
        x = x + e
    x = x * valid[..., None] + model.pos_emb.weight[model.max_len - length:]
    for block in model.blocks:
        h = block.norm1(x)
        attn = block.attn
        n_heads = attn.n_heads
        split = lambda t: t.view(b, length, n_heads, -1).transpose(1, 2)  # noqa: E731
        q = split(attn.query(h))
        key, value = (split(t) for t in attn.key_value(h).chunk(2, dim=-1))
        scores = q @ key.transpose(-2, -1) / math.sqrt(q.shape[-1])
        weights = scores.masked_fill(~valid[:, None, None, :], float("-inf")).softmax(-1)
        x = x + attn.out((weights @ value).transpose(1, 2).reshape(b, length, -1))
        x = x + block.ffn(block.norm2(x))
    return model.norm(x[:, -1])


def test_packed_encoder_matches_dense_reference(tiny_dataset):
    model = tiny_model(tiny_dataset).eval()
    windows = some_windows(tiny_dataset)
    mask = torch.as_tensor(draw_field_masks(np.random.default_rng(1), len(windows), model.n_fields))
    with torch.no_grad():
        expected = dense_reference(model, windows, mask)
        fast, _ = model.encode_target(windows, mask)
        explicit, weights = model.encode_target(windows, mask, need_weights=True)
        narrow, _ = model.encode_target(windows[:, -5:], mask)  # fewer columns than max_len
    torch.testing.assert_close(fast, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(explicit, expected, atol=1e-5, rtol=1e-5)
    assert weights.shape == (len(windows), 2, 4, 8)
    torch.testing.assert_close(weights.sum(-1), torch.ones(len(windows), 2, 4))
    assert (weights[(windows < 0)[:, None, None, :].expand_as(weights)] == 0).all()
    short = (windows[:, :-5] < 0).all(dim=1)  # windows that fit in 5 columns encode identically
    torch.testing.assert_close(narrow[short], expected[short], atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- loss
def test_loss_is_finite_and_reaches_the_mask_vectors(tiny_dataset):
    model = tiny_model(tiny_dataset, dropout=0.1).train()
    windows = some_windows(tiny_dataset)
    mask = torch.zeros(len(windows), model.n_fields, dtype=torch.bool)
    mask[:, [0, 2]] = True  # only fields 0 and 2 are ever masked
    loss = model.loss(windows, mask, [1.0] * model.n_fields)
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    grad = model.mask_emb.grad
    assert grad[[0, 2]].abs().sum(dim=1).gt(0).all()
    assert grad[[1, 3, 4]].abs().sum() == 0
    assert model.field_emb[0].weight.grad.abs().sum() > 0


def test_loss_is_the_weighted_mean_cross_entropy_with_cosine_logits(tiny_dataset):
    model = tiny_model(tiny_dataset).eval()
    windows = some_windows(tiny_dataset, 16)
    mask = torch.as_tensor(draw_field_masks(np.random.default_rng(2), len(windows), model.n_fields))
    alphas = [1.0, 0.5, 2.0, 0.0, 1.0]
    with torch.no_grad():
        h = model.encode_target(windows, mask)[0]
        truth = model.item_codes[windows[:, -1]]
        total = 0.0
        for b in range(len(windows)):
            for k in range(model.n_fields):
                if mask[b, k]:
                    table = model.field_emb[k].weight
                    logits = math.sqrt(32) * F.cosine_similarity(h[b][None], table, dim=-1)
                    total += alphas[k] * F.cross_entropy(logits[None], truth[b, k][None]).item()
        expected = total / mask.sum().item()
        assert model.loss(windows, mask, alphas).item() == pytest.approx(expected, rel=1e-5)


def test_sampled_softmax_over_every_value_equals_the_full_softmax(tiny_dataset):
    model = tiny_model(tiny_dataset).eval()
    windows = some_windows(tiny_dataset)
    mask = torch.as_tensor(draw_field_masks(np.random.default_rng(3), len(windows), model.n_fields))
    alphas = [1.0] * model.n_fields
    everything = [(torch.arange(e.num_embeddings), torch.full((e.num_embeddings,), -math.log(e.num_embeddings)))
                  for e in model.field_emb]
    with torch.no_grad():
        full = model.loss(windows, mask, alphas)
        sampled = model.loss(windows, mask, alphas, everything)
    torch.testing.assert_close(sampled, full)


def test_sampled_softmax_training_runs_with_popularity_negatives(tiny_dataset):
    cfg = tiny_cfg(FamaeConfig(sampled_negatives=16, negative_sampling="popularity", attention_users=0), epochs=1)
    enc = FamaeEncoder(cfg, seed=0, device=CPU, progress=False).fit(tiny_dataset, leave_one_out(tiny_dataset))
    assert np.isfinite(enc.history[0]["loss"])
    sampler = famae.NegativeSampler([300, 10], 16, kind="popularity", value_counts=[np.arange(300), np.ones(10)],
                                    device=CPU)
    drawn = sampler.draw(np.random.default_rng(0))
    assert drawn[1] is None  # a vocabulary smaller than the sample keeps the full softmax
    values, log_q = drawn[0]
    assert values.shape == (16,) and torch.isclose(log_q.exp().sum(), torch.tensor(1.0))


# ----------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained() -> tuple[Dataset, FamaeEncoder]:
    dataset = make_demo_dataset(300, 600, seed=0)
    enc = FamaeEncoder(tiny_cfg(epochs=4), seed=0, device=CPU, progress=False)
    return dataset, enc.fit(dataset, leave_one_out(dataset))


def test_short_training_beats_chance(trained):
    dataset, enc = trained
    chance = 10 / dataset.n_items
    assert [row["epoch"] for row in enc.history] == [1, 2, 3, 4]
    assert enc.history[-1]["loss"] < enc.history[0]["loss"]
    assert enc.metrics()["metric2"] > 10 * chance
    assert enc.metrics()["metric1"] > 3 * chance
    assert set(enc.history[0]) >= {"epoch", "loss", "metric1", "metric2", "seconds"}


def test_item_embeddings_concatenate_the_field_embeddings(trained):
    dataset, enc = trained
    emb = enc.item_embeddings()
    assert emb.dtype == np.float32 and emb.shape == (dataset.n_items, 5 * 32)
    model = enc.model
    item = 17
    codes = field_code_table(dataset, enc.fields)[item]
    expected = torch.cat([model.field_emb[k].weight[c] for k, c in enumerate(codes)]).detach().numpy()
    np.testing.assert_array_equal(emb[item], expected)
    assert enc.metrics()["fields"] == ["item_id", "brand", "cat_l1", "cat_l2", "cat_l3"]


def test_attention_sample_is_a_distribution_over_the_window(trained, tmp_path):
    dataset, enc = trained
    sample = enc.attention_sample(leave_one_out(dataset).valid)
    assert sample.weights.shape == (16, 2, 2, 8) and sample.items.shape == (16, 8) and sample.users.shape == (16,)
    pad = (sample.items == -1)[:, None, None, :]
    assert np.all(sample.weights[np.broadcast_to(pad, sample.weights.shape)] == 0)
    np.testing.assert_allclose(sample.weights.sum(-1), 1.0, rtol=1e-5)
    sample.save(tmp_path / "attention.npz")
    again = AttentionSample.load(tmp_path / "attention.npz")
    np.testing.assert_array_equal(again.weights, sample.weights)
    np.testing.assert_array_equal(again.items, sample.items)


def test_same_seed_same_embeddings_other_seed_different(tiny_dataset):
    split = leave_one_out(tiny_dataset)
    cfg = tiny_cfg(epochs=1)
    a = FamaeEncoder(cfg, seed=5, device=CPU, progress=False).fit(tiny_dataset, split).item_embeddings()
    b = FamaeEncoder(cfg, seed=5, device=CPU, progress=False).fit(tiny_dataset, split).item_embeddings()
    c = FamaeEncoder(cfg, seed=6, device=CPU, progress=False).fit(tiny_dataset, split).item_embeddings()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_resume_reproduces_an_uninterrupted_run(tiny_dataset, tmp_path, monkeypatch):
    split = leave_one_out(tiny_dataset)
    cfg = tiny_cfg(epochs=3, patience=10)
    straight = FamaeEncoder(cfg, seed=1, device=CPU, progress=False).fit(tiny_dataset, split, workdir=tmp_path / "a")

    real = famae.proxy_metrics
    calls = []

    def interrupted_in_epoch_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(famae, "proxy_metrics", interrupted_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        FamaeEncoder(cfg, seed=1, device=CPU, progress=False).fit(tiny_dataset, split, workdir=tmp_path / "b")
    monkeypatch.setattr(famae, "proxy_metrics", real)
    torch.manual_seed(999)  # resume must restore the RNG state from the checkpoint
    resumed = FamaeEncoder(cfg, seed=1, device=CPU, progress=False).fit(tiny_dataset, split, workdir=tmp_path / "b",
                                                                         resume=True)
    np.testing.assert_array_equal(straight.item_embeddings(), resumed.item_embeddings())
    key = lambda rows: [(r["epoch"], r["loss"], r["metric1"], r["metric2"]) for r in rows]  # noqa: E731
    assert key(resumed.history) == key(straight.history)


def test_early_stopping_keeps_the_best_epoch(tiny_dataset, monkeypatch):
    scores = iter([0.3, 0.5, 0.4, 0.2, 0.1, 0.9])
    monkeypatch.setattr(famae, "proxy_metrics", lambda *a, **k: {"metric1": next(scores), "metric2": 0.0})
    cfg = tiny_cfg(FamaeConfig(early_stop_metric="metric1", attention_users=0), epochs=6, patience=2)
    enc = FamaeEncoder(cfg, seed=0, device=CPU, progress=False).fit(tiny_dataset, leave_one_out(tiny_dataset))
    assert len(enc.history) == 4  # epochs 3 and 4 did not improve on epoch 2
    assert enc.metrics()["best_epoch"] == 2 and enc.metrics()["metric1"] == 0.5


# ------------------------------------------------------------------------- errors
def test_registry_builds_famae():
    assert isinstance(make_encoder(EncodeConfig(), seed=0, device=CPU), FamaeEncoder)


@pytest.mark.parametrize(("famae_cfg", "overrides", "message"), [
    (FamaeConfig(fields=["item_id", "colour"]), {}, "unknown field 'colour'"),
    (FamaeConfig(fields=["item_id", "title"]), {}, "'title' is a text field"),
    (FamaeConfig(fields=["brand", "cat_l1"]), {}, "must include 'item_id'"),
    (FamaeConfig(fields=["item_id"]), {}, "at least one categorical field"),
    (FamaeConfig(field_weights={"colour": 2.0}), {}, "'colour' is not a modelled field"),
    (FamaeConfig(field_weights={"brand": -1.0}), {}, "must be >= 0"),
    (FamaeConfig(sampled_negatives=-1), {}, "sampled_negatives"),
    (FamaeConfig(), {"max_len": 1}, "encode.max_len must be at least 2"),
    (FamaeConfig(), {"d_model": 30, "n_heads": 4}, "divisible"),
])
def test_bad_settings_are_config_errors(tiny_dataset, famae_cfg, overrides, message):
    enc = FamaeEncoder(tiny_cfg(famae_cfg, **overrides), seed=0, device=CPU, progress=False)
    with pytest.raises(ConfigError, match=message):
        enc.fit(tiny_dataset, leave_one_out(tiny_dataset))


def test_dataset_without_categorical_fields_is_a_data_error(tiny_dataset):
    text_only = Dataset(name="text-only", items=tiny_dataset.items[["item_id", "title"]],
                        fields=(FieldSpec("title", "text"),), user_ids=tiny_dataset.user_ids,
                        sequences=tiny_dataset.sequences)
    enc = FamaeEncoder(tiny_cfg(), seed=0, device=CPU, progress=False)
    with pytest.raises(DataError, match="no categorical fields"):
        enc.fit(text_only, leave_one_out(text_only))


def test_untrained_encoder_refuses_embeddings():
    with pytest.raises(ConfigError, match="not trained"):
        FamaeEncoder(tiny_cfg(), seed=0, device=CPU).item_embeddings()


def test_recency_profile_averages_attention_by_distance_from_the_target():
    sample = AttentionSample(
        weights=np.array([[[[0.0, 0.25, 0.75]]], [[[0.2, 0.3, 0.5]]]], dtype=np.float32),  # (2, 1, 1, 3)
        items=np.array([[-1, 5, 6], [4, 5, 6]]),
        users=np.array([0, 1]),
    )
    np.testing.assert_allclose(sample.recency_profile()[0, 0], [0.625, 0.275, 0.2], rtol=1e-6)
