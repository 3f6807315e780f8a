"""Leave-one-out splits and fixed-length windows over item sequences.

Protocol (the one SASRec, TIGER and ReSID use): for a user with sequence
``s_1..s_n`` the test target is ``s_n`` with history ``s_1..s_{n-1}``, the validation
target is ``s_{n-1}`` with history ``s_1..s_{n-2}``, and ``s_1..s_{n-2}`` is training.

Short sequences: a user with fewer than ``min_length`` (default 3) items cannot
give a training item, a validation and a test target; such a user's whole sequence
is used for training only and the user is left out of validation and test.

Windows are right-aligned: the last column holds the newest item (the target in a
training window) and missing positions on the left hold ``PAD = -1``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .dataset import Dataset

PAD = -1


@dataclass(frozen=True)
class EvalSet:
    """Users to evaluate, each with a history and one target item.

    Attributes:
        users: (n,) int64 user positions in the dataset.
        histories: per user, int64 item indices (chronological).
        targets: (n,) int64 target item indices.
    """

    users: np.ndarray
    histories: list[np.ndarray]
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    def padded_histories(self, max_len: int) -> np.ndarray:
        """(n, max_len) int64: the last ``max_len`` history items, right-aligned, PAD on the left."""
        return pad_right_aligned(self.histories, max_len)

    def subset(self, n: int, seed: int = 0) -> "EvalSet":
        """A seeded random sample of at most ``n`` users (order kept)."""
        if n >= len(self):
            return self
        return self.take(np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False)))

    def take(self, rows: slice | np.ndarray) -> "EvalSet":
        """The users at positions ``rows`` (a slice or an index array), in that order."""
        idx = np.arange(len(self))[rows]
        return EvalSet(self.users[idx], [self.histories[i] for i in idx], self.targets[idx])


@dataclass(frozen=True)
class LeaveOneOut:
    """Per-user training prefixes and the validation / test evaluation sets."""

    train: list[np.ndarray]
    valid: EvalSet
    test: EvalSet

    def eval_set(self, which: str) -> EvalSet:
        if which not in ("valid", "test"):
            raise ConfigError(f"unknown split {which!r}: expected 'valid' or 'test'")
        return self.valid if which == "valid" else self.test


def leave_one_out(dataset: Dataset, min_length: int = 3) -> LeaveOneOut:
    """Split every user's sequence; see the module docstring for short sequences."""
    if min_length < 3:
        raise ConfigError(f"min_length must be at least 3 (train, valid and test items), got {min_length}")
    train, eval_users = [], []
    for u, seq in enumerate(dataset.sequences):
        if len(seq) >= min_length:
            train.append(seq[:-2])
            eval_users.append(u)
        else:
            train.append(seq)
    users = np.asarray(eval_users, dtype=np.int64)
    seqs = [dataset.sequences[u] for u in users]
    valid = EvalSet(users, [s[:-2] for s in seqs], np.array([s[-2] for s in seqs], dtype=np.int64))
    test = EvalSet(users, [s[:-1] for s in seqs], np.array([s[-1] for s in seqs], dtype=np.int64))
    return LeaveOneOut(train=train, valid=valid, test=test)


def pad_right_aligned(sequences: list[np.ndarray], max_len: int) -> np.ndarray:
    """(n, max_len) int64 with each sequence's last ``max_len`` items at the right end."""
    out = np.full((len(sequences), max_len), PAD, dtype=np.int64)
    for i, seq in enumerate(sequences):
        tail = seq[-max_len:]
        if len(tail):
            out[i, max_len - len(tail):] = tail
    return out


def sliding_windows(sequences: list[np.ndarray], max_len: int, min_len: int = 2) -> np.ndarray:
    """All windows that end at each position of each sequence (the TIGER / ReSID recipe).

    For every sequence and every position ``t`` with at least ``min_len - 1`` items
    before it, one window ``s[max(0, t - max_len + 1) .. t]`` right-aligned.

    Returns:
        (n_windows, max_len) int64, PAD on the left; the last column is the target.
    """
    if max_len < 2:
        raise ConfigError(f"window length must be at least 2 (one history item and the target), got {max_len}")
    if min_len < 1:
        raise ConfigError(f"min_len must be positive, got {min_len}")
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    n_windows = np.clip(lengths - (min_len - 1), 0, None)
    total = int(n_windows.sum())
    out = np.full((total, max_len), PAD, dtype=np.int64)
    if total == 0:
        return out
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences])
    offsets = np.r_[0, np.cumsum(lengths)[:-1]]
    # end position (exclusive) of every window in the flat array
    seq_of = np.repeat(np.arange(len(sequences)), n_windows)
    first_end = offsets + (min_len - 1)
    rank = np.arange(total) - np.repeat(np.r_[0, np.cumsum(n_windows)[:-1]], n_windows)
    end = first_end[seq_of] + rank  # index of the target in flat
    start = offsets[seq_of]
    for j in range(max_len):
        src = end - (max_len - 1 - j)
        ok = src >= start
        out[ok, j] = flat[src[ok]]
    return out
