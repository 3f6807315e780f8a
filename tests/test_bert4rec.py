"""BERT4Rec and BERT4Rec*: Cloze masking, bidirectional attention, inference input, learning."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from resid_lib.config import load_config
from resid_lib.data.split import PAD, leave_one_out, pad_right_aligned
from resid_lib.encode import make_encoder
from resid_lib.encode.bert4rec import BERT4Rec, BERT4RecFeatures, cloze_mask

CPU = torch.device("cpu")
SMALL = ["encode.seqrec.d_model=32", "encode.seqrec.d_ff=64", "encode.seqrec.max_len=20",
         "encode.seqrec.batch_size=64", "encode.seqrec.dropout=0.1"]


pytestmark = pytest.mark.usefixtures("one_thread")


def make(method: str, *overrides: str, seed: int = 0):
    cfg = load_config(None, [f"encode.method={method}", *SMALL, *overrides]).encode
    return make_encoder(cfg, seed=seed, device=CPU, progress=False)


def test_registry_builds_bert4rec_classes():
    assert type(make("bert4rec")) is BERT4Rec
    assert type(make("bert4rec_features")) is BERT4RecFeatures


def test_cloze_mask_rate_padding_and_at_least_one_per_row():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 31, size=4000)
    windows = pad_right_aligned([np.arange(n) for n in lengths], 30)
    mask = cloze_mask(windows, 0.2, rng)
    assert not mask[windows == PAD].any()
    assert mask.any(axis=1).all()
    long_rows = lengths >= 20  # the at-least-one rule barely moves the rate on long rows
    rate = mask[long_rows].sum() / (windows[long_rows] != PAD).sum()
    assert abs(rate - 0.2) < 0.01, rate
    single = lengths == 1
    assert mask[single, -1].all()


def test_training_examples_mask_items_and_target_only_masked_positions(tiny_dataset):
    enc = make("bert4rec", "encode.seqrec.mask_prob=0.3")
    enc.n_items = tiny_dataset.n_items
    examples = enc._prepare(leave_one_out(tiny_dataset).train)
    inputs, targets = enc._epoch_examples(examples, np.random.default_rng(0))
    masked = inputs == tiny_dataset.n_items + 1
    np.testing.assert_array_equal(targets[masked], examples[masked])
    assert (targets[~masked] == PAD).all()
    np.testing.assert_array_equal(inputs[~masked], np.where(examples == PAD, 0, examples + 1)[~masked])
    assert 0.25 < masked.sum() / (examples != PAD).sum() < 0.4


def test_inference_appends_a_mask_token_after_the_history(tiny_dataset):
    enc = make("bert4rec", "encode.seqrec.max_len=4")
    enc.n_items = tiny_dataset.n_items
    tokens = enc._inference_tokens([np.array([7, 8, 9, 10, 11]), np.array([3])])
    mask = tiny_dataset.n_items + 1
    np.testing.assert_array_equal(tokens, [[10, 11, 12, mask], [0, 0, 4, mask]])


def test_attention_is_bidirectional(tiny_dataset):
    enc = make("bert4rec")
    model = enc.build(tiny_dataset).eval()
    rng = np.random.default_rng(0)
    tokens = torch.as_tensor(rng.integers(1, tiny_dataset.n_items + 1, size=(4, 12)))
    changed = tokens.clone()
    changed[:, -1] = tokens[:, -1] % tiny_dataset.n_items + 1
    with torch.no_grad():
        before, _ = model(tokens)
        after, _ = model(changed)
    assert not torch.allclose(before[:, :-1], after[:, :-1])  # earlier positions see the later item


def test_bert4rec_learns_and_is_deterministic(tiny_dataset):
    split = leave_one_out(tiny_dataset)
    runs = [make("bert4rec_features", "encode.seqrec.epochs=3", "encode.seqrec.lr=3e-3").fit(tiny_dataset, split)
            for _ in range(2)]
    np.testing.assert_array_equal(runs[0].item_embeddings(), runs[1].item_embeddings())
    enc = runs[0]
    assert enc.item_embeddings().shape == (tiny_dataset.n_items, 32)
    assert enc.history[-1]["loss"] < enc.history[0]["loss"]
    chance = 10 / tiny_dataset.n_items
    assert enc.metrics()["valid"]["recall@10"] > 3 * chance
    assert enc.recommend(split.test, 10).shape == (len(split.test), 10)
