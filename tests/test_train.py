"""Training utilities shared by every trained model (resid_lib.train)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from resid_lib.train import EarlyStopping, cosine_schedule, epoch_line, epoch_rng, length_grouped_batches


def test_length_grouped_batches_cover_every_row_once_in_batches_of_similar_length():
    lengths = np.random.default_rng(0).integers(1, 50, size=1000)
    batches = length_grouped_batches(lengths, 16, np.random.default_rng(1), pool_batches=4)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(1000))
    assert max(len(b) for b in batches) == 16 and sum(len(b) < 16 for b in batches) <= -(-1000 // 64)  # a short one per pool
    # inside a pool the rows are sorted by length, so a batch spans far less than the whole range
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 0.25 * np.ptp(lengths)


def test_length_grouped_batches_depend_only_on_the_generator():
    lengths = np.arange(300) % 17
    a = length_grouped_batches(lengths, 32, epoch_rng(7, 3))
    b = length_grouped_batches(lengths, 32, epoch_rng(7, 3))
    c = length_grouped_batches(lengths, 32, epoch_rng(7, 4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_early_stopping_counts_evaluations_without_improvement():
    stopper = EarlyStopping(patience=2, mode="max")
    assert [stopper.step(v, epoch) for epoch, v in enumerate([0.1, 0.3, 0.2, 0.3], start=1)] == [True, True, False,
                                                                                                 False]
    assert stopper.should_stop and stopper.best_epoch == 2 and stopper.best == pytest.approx(0.3)
    restored = EarlyStopping(patience=2)
    restored.load_state_dict(stopper.state_dict())
    assert restored.should_stop and restored.best_epoch == 2


def test_cosine_schedule_warms_up_then_decays_to_zero():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = cosine_schedule(optimizer, total_steps=10, warmup_steps=2)
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[:3] == pytest.approx([0.5, 1.0, 1.0])  # linear warm-up over 2 steps, then the cosine starts at 1
    assert all(x >= y for x, y in zip(rates[2:], rates[3:])) and rates[-1] < 0.05


def test_epoch_line_shows_the_scores_marks_the_best_and_skips_what_was_not_evaluated():
    row = {"epoch": 4, "loss": 2.18614, "valid_recall@10": 0.0515, "seconds": 576.36, "eval_seconds": 31.0}
    assert epoch_line(row, 16, best_epoch=4) == "epoch 4/16: loss 2.1861, valid_recall@10 0.0515 (best), 576 s"
    skipped = {"epoch": 5, "loss": 2.12, "valid_recall@10": float("nan"), "seconds": 548.7}
    assert epoch_line(skipped, 16, best_epoch=4) == "epoch 5/16: loss 2.1200, 549 s"
