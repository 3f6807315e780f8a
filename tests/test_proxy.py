"""Proxy metrics (Metric 1 / Metric 2) on hand-built cases with known answers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from resid_lib.data.split import EvalSet
from resid_lib.encode.proxy import eval_windows, masked_recall, proxy_metrics

N_ITEMS = 60


class StubScorer:
    """Places each target at a chosen rank, one rank table per masking condition."""

    n_fields = 3
    item_field = 0

    def __init__(self, ranks_all_masked: dict[int, int], ranks_id_masked: dict[int, int]):
        self.ranks = {"all": ranks_all_masked, "id": ranks_id_masked}
        self.seen_masks: list[np.ndarray] = []

    def target_scores(self, windows: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        mask = target_mask.numpy()
        self.seen_masks.append(mask)
        if mask.all():
            table = self.ranks["all"]
        elif (mask == [True, False, False]).all():
            table = self.ranks["id"]
        else:
            raise AssertionError(f"unexpected target mask {mask}")
        scores = np.zeros((len(windows), N_ITEMS), dtype=np.float32)
        for row, target in enumerate(windows[:, -1].tolist()):
            order = [i for i in range(N_ITEMS) if i != target]
            order.insert(table[target] - 1, target)
            scores[row, order] = -np.arange(N_ITEMS, dtype=np.float32)
        return torch.from_numpy(scores)


def make_eval_set(targets: list[int]) -> EvalSet:
    histories = [np.arange(i % 5 + 1, dtype=np.int64) + 40 for i in range(len(targets))]
    return EvalSet(np.arange(len(targets)), histories, np.asarray(targets, dtype=np.int64))


def test_eval_windows_put_the_target_last_after_the_recent_history():
    eval_set = EvalSet(np.arange(2), [np.array([1, 2, 3, 4, 5]), np.array([7])], np.array([9, 8]))
    windows = eval_windows(eval_set, 4)
    np.testing.assert_array_equal(windows, [[3, 4, 5, 9], [-1, -1, 7, 8]])


def test_metric1_and_metric2_count_targets_in_the_top_10():
    targets = [3, 11, 20, 21, 30, 33, 47]
    ranks_all = dict(zip(targets, [1, 10, 11, 50, 2, 60, 9]))   # 4 of 7 within the top 10
    ranks_id = dict(zip(targets, [1, 1, 1, 12, 3, 10, 40]))     # 5 of 7
    scorer = StubScorer(ranks_all, ranks_id)
    scores = proxy_metrics(scorer, make_eval_set(targets), max_len=4, batch_size=3)
    assert scores == {"metric1": pytest.approx(4 / 7), "metric2": pytest.approx(5 / 7)}
    # metric 1 hides every target field, metric 2 only the item id (batches of at most 3)
    assert [len(m) for m in scorer.seen_masks] == [3, 3, 1, 3, 3, 1]
    assert all(m.all() for m in scorer.seen_masks[:3])
    assert all((m == [True, False, False]).all() for m in scorer.seen_masks[3:])


def test_masked_recall_at_other_k_and_empty_input():
    targets = [5, 6, 7, 8]
    scorer = StubScorer(dict(zip(targets, [1, 2, 3, 4])), {})
    windows = eval_windows(make_eval_set(targets), 3)
    assert masked_recall(scorer, windows, np.ones(3, dtype=bool), k=2) == pytest.approx(0.5)
    assert masked_recall(scorer, windows[:0], np.ones(3, dtype=bool)) == 0.0
