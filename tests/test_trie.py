"""The SID prefix trie: exactly the existing SIDs, every one reachable, clear errors."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from resid_lib.errors import DataError
from resid_lib.generate.trie import SIDTrie


def random_sids(n: int, sizes: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pool = np.array(list(itertools.product(*[range(s) for s in sizes])), dtype=np.int64)
    return pool[rng.choice(len(pool), size=n, replace=False)]


def walk(trie: SIDTrie) -> dict[tuple[int, ...], int]:
    """Every full path through the trie's tables (the slow reference): SID -> item."""
    paths = {(): 0}
    for level in range(trie.n_levels):
        table = trie.children[level].numpy()
        paths = {prefix + (code,): int(table[node, code])
                 for prefix, node in paths.items() for code in range(table.shape[1]) if table[node, code] >= 0}
    return paths


def test_paths_are_exactly_the_existing_sids():
    sids = random_sids(200, (5, 6, 7), seed=1)
    trie = SIDTrie(sids)
    paths = walk(trie)
    assert set(paths) == {tuple(row) for row in sids.tolist()}
    assert all(paths[tuple(row)] == item for item, row in enumerate(sids.tolist()))


def test_every_prefix_node_matches_its_stored_prefix():
    sids = random_sids(150, (4, 9, 3, 5), seed=2)
    trie = SIDTrie(sids)
    for level in range(trie.n_levels):
        expected = sorted({tuple(row[:level]) for row in sids.tolist()})
        assert [tuple(p) for p in trie.prefixes[level].tolist()] == expected
        allowed = trie.allowed(level, torch.arange(trie.n_nodes(level)))
        for node, prefix in enumerate(expected):
            codes = {row[level] for row in sids.tolist() if tuple(row[:level]) == prefix}
            assert set(torch.nonzero(allowed[node]).flatten().tolist()) == codes


def test_lookup_maps_sids_to_items_and_rejects_the_rest():
    sids = random_sids(100, (6, 6, 6), seed=3)
    trie = SIDTrie(sids)
    assert torch.equal(trie.lookup(sids), torch.arange(len(sids)))
    existing = {tuple(r) for r in sids.tolist()}
    others = np.array([c for c in itertools.product(range(6), range(6), range(6)) if c not in existing][:50])
    assert (trie.lookup(others) == -1).all()
    assert (trie.lookup(np.array([[99, 0, 0], [0, -1, 0]])) == -1).all()


def test_advance_follows_codes_to_items():
    sids = random_sids(60, (3, 5, 8), seed=4)
    trie = SIDTrie(sids)
    node = torch.zeros(len(sids), dtype=torch.int64)
    codes = torch.from_numpy(sids)
    for level in range(3):
        node = trie.advance(level, node, codes[:, level])
    assert torch.equal(node, torch.arange(len(sids)))


def test_duplicate_sids_are_refused_with_the_rows():
    sids = random_sids(20, (4, 4, 4))
    sids[7] = sids[3]
    with pytest.raises(DataError, match=r"not unique.*rows \[3, 7\]"):
        SIDTrie(sids)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((0, 3), dtype=np.int64), "non-empty"),
    (np.array([[0, 1], [1, -2]]), "negative code in row 1"),
    (np.array([[0.5, 1.0]]), "integer codes"),
])
def test_malformed_sids_are_refused(bad, message):
    with pytest.raises(DataError, match=message):
        SIDTrie(bad)
