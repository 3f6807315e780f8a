"""Recall@K and NDCG@K against rankings computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from resid_lib.errors import ConfigError
from resid_lib.metrics import (evaluate_rankings, hit_ranks, ndcg_at_k, recall_at_k, recall_by_target_count,
                               top_k)

# four users, ranked lists of 10 items; targets at ranks 1, 3, 7 and absent
RANKED = np.array([
    [5, 1, 2, 3, 4, 6, 7, 8, 9, 0],
    [9, 8, 4, 1, 2, 3, 5, 6, 7, 0],
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 0],
])
TARGETS = np.array([5, 4, 6, 11])


def test_hit_ranks():
    assert hit_ranks(RANKED, TARGETS).tolist() == [1, 3, 7, 0]


def test_recall_and_ndcg_by_hand():
    assert recall_at_k(RANKED, TARGETS, 5) == pytest.approx(2 / 4)
    assert recall_at_k(RANKED, TARGETS, 10) == pytest.approx(3 / 4)
    assert recall_at_k(RANKED, TARGETS, 1) == pytest.approx(1 / 4)
    n5 = (1 / math.log2(2) + 1 / math.log2(4)) / 4  # 1.0 and 0.5
    n10 = (1.0 + 0.5 + 1 / math.log2(8)) / 4  # + 1/3
    assert ndcg_at_k(RANKED, TARGETS, 5) == pytest.approx(n5)
    assert ndcg_at_k(RANKED, TARGETS, 10) == pytest.approx(n10)
    assert evaluate_rankings(RANKED, TARGETS) == pytest.approx(
        {"recall@5": 0.5, "recall@10": 0.75, "ndcg@5": n5, "ndcg@10": n10})
    assert list(evaluate_rankings(RANKED, TARGETS)) == ["recall@5", "recall@10", "ndcg@5", "ndcg@10"]


def test_perfect_and_empty():
    ranked = np.arange(20).reshape(2, 10)
    assert evaluate_rankings(ranked, np.array([0, 10])) == pytest.approx(
        {"recall@5": 1.0, "recall@10": 1.0, "ndcg@5": 1.0, "ndcg@10": 1.0})
    empty = np.zeros((0, 10), dtype=np.int64)
    assert recall_at_k(empty, np.zeros(0, dtype=np.int64), 10) == 0.0


def test_full_ranking_from_scores():
    scores = torch.tensor([[0.1, 0.9, 0.3, 0.5], [2.0, -1.0, 0.0, 1.0]])
    assert top_k(scores, 3).tolist() == [[1, 3, 2], [0, 3, 2]]
    assert top_k(scores, 10).shape == (2, 4)  # K larger than the catalog: every item once
    ranked = top_k(scores, 4)
    assert hit_ranks(ranked, np.array([2, 1])).tolist() == [3, 4]


def test_bad_shapes():
    with pytest.raises(ConfigError, match="length >= 20"):
        recall_at_k(RANKED, TARGETS, 20)
    with pytest.raises(ConfigError, match="K must be positive"):
        ndcg_at_k(RANKED, TARGETS, 0)
    with pytest.raises(ConfigError, match="do not match"):
        hit_ranks(RANKED, TARGETS[:2])


def test_recall_by_target_count_buckets_by_training_popularity():
    # item training counts: 0 -> 0, 1 -> 3, 2 -> 7, 3 -> 50
    counts = np.array([0, 3, 7, 50])
    ranked = np.array([[3, 2], [3, 2], [2, 3], [1, 0], [0, 1]])
    targets = np.array([3, 2, 3, 2, 0])  # hits at K=1: yes, no, no, no, yes
    rows = recall_by_target_count(ranked, targets, counts, k=1)
    assert [r["bucket"] for r in rows] == ["0", "1-4", "5-19", "20+"]
    assert [r["users"] for r in rows] == [1, 0, 2, 2]
    assert [r["recall@1"] for r in rows] == [1.0, 0.0, 0.0, 0.5]
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="increasing"):
        recall_by_target_count(ranked, targets, counts, k=1, edges=(5, 5))
