"""Leave-one-out splits, right-aligned padding and sliding windows against a slow reference."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from resid_lib.data.dataset import Dataset
from resid_lib.data.split import PAD, leave_one_out, pad_right_aligned, sliding_windows
from resid_lib.errors import ConfigError


def dataset_of(sequences: list[list[int]]) -> Dataset:
    n_items = max(max(s) for s in sequences) + 1
    return Dataset(
        name="seqs",
        items=pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)]}),
        fields=(),
        user_ids=np.array([f"u{u}" for u in range(len(sequences))]),
        sequences=[np.array(s, dtype=np.int64) for s in sequences],
    )


def test_leave_one_out_by_hand():
    ds = dataset_of([[0, 1, 2, 3], [4, 5, 6], [7, 8], [9]])
    split = leave_one_out(ds)
    assert [t.tolist() for t in split.train] == [[0, 1], [4], [7, 8], [9]]
    assert split.test.users.tolist() == [0, 1] and split.valid.users.tolist() == [0, 1]
    assert split.test.targets.tolist() == [3, 6]
    assert [h.tolist() for h in split.test.histories] == [[0, 1, 2], [4, 5]]
    assert split.valid.targets.tolist() == [2, 5]
    assert [h.tolist() for h in split.valid.histories] == [[0, 1], [4]]
    assert split.eval_set("valid") is split.valid
    with pytest.raises(ConfigError, match="unknown split 'train'"):
        split.eval_set("train")


def test_leave_one_out_invariants(tiny_dataset):
    split = leave_one_out(tiny_dataset)
    assert len(split.train) == tiny_dataset.n_users
    for u, seq in enumerate(tiny_dataset.sequences):
        assert np.array_equal(split.train[u], seq[:-2])  # every demo user has >= 5 items
    for i, u in enumerate(split.test.users):
        seq = tiny_dataset.sequences[u]
        assert split.test.targets[i] == seq[-1] and np.array_equal(split.test.histories[i], seq[:-1])
        assert split.valid.targets[i] == seq[-2] and np.array_equal(split.valid.histories[i], seq[:-2])
    # no evaluation target leaks into training
    assert all(len(split.train[u]) == len(tiny_dataset.sequences[u]) - 2 for u in split.test.users)


def test_short_sequence_rule():
    ds = dataset_of([[0, 1, 2, 3, 4], [5, 6, 7, 8], [1, 2]])
    split = leave_one_out(ds, min_length=5)
    assert split.test.users.tolist() == [0]
    assert [t.tolist() for t in split.train] == [[0, 1, 2], [5, 6, 7, 8], [1, 2]]
    with pytest.raises(ConfigError, match="at least 3"):
        leave_one_out(ds, min_length=2)


def test_eval_set_padding_and_subset():
    split = leave_one_out(dataset_of([[0, 1, 2, 3, 4, 5], [6, 7, 8], [1, 2, 3, 4]]))
    padded = split.test.padded_histories(3)
    assert padded.tolist() == [[2, 3, 4], [PAD, 6, 7], [1, 2, 3]]
    sub = split.test.subset(2, seed=1)
    assert len(sub) == 2 and list(sub.users) == sorted(sub.users)
    for u, h, t in zip(sub.users, sub.histories, sub.targets):
        i = list(split.test.users).index(u)
        assert t == split.test.targets[i] and np.array_equal(h, split.test.histories[i])
    assert split.test.subset(10) is split.test
    assert np.array_equal(split.test.subset(2, seed=1).users, sub.users)


def test_pad_right_aligned():
    out = pad_right_aligned([np.array([1, 2, 3, 4]), np.array([5]), np.array([], dtype=np.int64)], 3)
    assert out.tolist() == [[2, 3, 4], [PAD, PAD, 5], [PAD, PAD, PAD]]


def slow_windows(sequences, max_len, min_len):
    rows = []
    for seq in sequences:
        for t in range(min_len - 1, len(seq)):
            window = list(seq[max(0, t - max_len + 1): t + 1])
            rows.append([PAD] * (max_len - len(window)) + window)
    return np.array(rows, dtype=np.int64).reshape(-1, max_len)


@pytest.mark.parametrize("max_len, min_len", [(2, 2), (3, 2), (5, 1), (8, 3), (50, 2)])
def test_sliding_windows_match_reference(max_len, min_len):
    rng = np.random.default_rng(max_len * 10 + min_len)
    sequences = [rng.integers(0, 100, size=rng.integers(1, 15)) for _ in range(40)]
    got = sliding_windows(sequences, max_len, min_len)
    assert got.dtype == np.int64
    assert np.array_equal(got, slow_windows(sequences, max_len, min_len))


def test_sliding_windows_by_hand():
    got = sliding_windows([np.array([1, 2, 3]), np.array([7])], max_len=2)
    assert got.tolist() == [[1, 2], [2, 3]]  # the one-item sequence has no target with history
    assert sliding_windows([np.array([7])], max_len=4).shape == (0, 4)
    with pytest.raises(ConfigError, match="at least 2"):
        sliding_windows([np.array([1, 2])], max_len=1)
