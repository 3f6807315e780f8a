"""Constrained beam search against exhaustive scoring and a per-beam reference."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from resid_lib.errors import ConfigError
from resid_lib.generate.beam import beam_search
from resid_lib.generate.data import SIDTokenizer
from resid_lib.generate.model import SIDGenerator
from resid_lib.generate.recommend import recommend
from resid_lib.generate.trie import SIDTrie


pytestmark = pytest.mark.usefixtures("one_thread")


def random_sids(n: int, sizes: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """n distinct random SIDs with the given level sizes."""
    rng = np.random.default_rng(seed)
    flat = rng.choice(int(np.prod(sizes)), size=n, replace=False)
    return np.stack(np.unravel_index(flat, sizes), axis=1).astype(np.int64)


def tiny_model(sizes, seed: int = 0) -> SIDGenerator:
    torch.manual_seed(seed)
    model = SIDGenerator(sizes, d_model=32, n_heads=4, d_ff=64, encoder_layers=2, decoder_layers=2)
    with torch.no_grad():  # sharper distributions than at initialisation, so rankings are not near-ties
        model.head.weight.mul_(4.0)
    return model.eval()


def setup(n_items=40, sizes=(3, 5, 6), n_users=6, seed=0):
    sids = random_sids(n_items, sizes, seed=seed)
    trie = SIDTrie(sids)
    model = tiny_model(trie.level_sizes, seed)
    tokenizer = SIDTokenizer(sids, model.layout)
    rng = np.random.default_rng(seed)
    histories = rng.integers(0, n_items, size=(n_users, 5))
    histories[0, :3] = -1  # a short history
    return sids, trie, model, tokenizer.histories(histories)


def exhaustive_ranking(model, sids, src):
    """log p(sid) of every item for every user by teacher forcing, and the items sorted by it."""
    codes = torch.from_numpy(sids)
    scores = torch.stack([model.sequence_log_prob(src[u:u + 1].expand(len(sids), -1), codes) for u in range(len(src))])
    return scores, scores.argsort(dim=1, descending=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wide_beam_equals_exhaustive_ranking(seed):
    sids, trie, model, src = setup(seed=seed)
    scores, order = exhaustive_ranking(model, sids, src)
    result = beam_search(model, trie, src, beams=len(sids), top_k=len(sids))
    assert torch.equal(result.items, order)
    torch.testing.assert_close(result.scores, scores.gather(1, order), atol=1e-4, rtol=1e-5)
    assert torch.equal(result.codes, torch.from_numpy(sids)[result.items])


def test_every_result_is_a_real_item_with_its_own_sid():
    sids, trie, model, src = setup(n_items=120, sizes=(4, 6, 9), seed=3)
    result = beam_search(model, trie, src, beams=8, top_k=5)
    assert result.items.shape == (len(src), 5)
    assert (result.items >= 0).all()
    assert torch.equal(result.codes, torch.from_numpy(sids)[result.items])
    assert (result.scores[:, :-1] >= result.scores[:, 1:]).all()  # best first
    assert all(len(set(row)) == len(row) for row in result.items.tolist())  # no item twice


def test_narrow_beam_result_matches_per_beam_reference():
    sids, trie, model, src = setup(n_items=80, sizes=(4, 5, 6), seed=4)
    beams = 7
    fast = beam_search(model, trie, src, beams=beams, top_k=beams)
    for u in range(len(src)):
        items, scores = reference_beam(model, sids, src[u:u + 1], beams)
        assert fast.items[u].tolist() == items
        torch.testing.assert_close(fast.scores[u], torch.tensor(scores), atol=1e-4, rtol=1e-5)


@torch.no_grad()
def reference_beam(model, sids, src, beams):
    """The slow version: one user, Python loop over beams, full decoder pass per prefix."""
    sid_of = {tuple(r): i for i, r in enumerate(sids.tolist())}
    prefixes = {tuple(r[:level]) for r in sids.tolist() for level in range(sids.shape[1] + 1)}
    memory = model.encode(src)
    beam = [((), 0.0)]
    for level in range(sids.shape[1]):
        candidates = []
        for prefix, score in beam:
            hidden = model.decoder_states(memory, torch.tensor([list(prefix) + [0]]))[:, level]
            log_probs = torch.log_softmax(model.level_logits(hidden, level), -1)[0].tolist()
            for code, log_prob in enumerate(log_probs):
                if prefix + (code,) in prefixes:
                    candidates.append((prefix + (code,), score + log_prob))
        beam = sorted(candidates, key=lambda c: -c[1])[:beams]
    return [sid_of[p] for p, _ in beam], [s for _, s in beam]


def test_catalog_smaller_than_k_is_padded():
    sids = np.array([[0, 0], [0, 1], [1, 0]])
    trie = SIDTrie(sids)
    model = tiny_model(trie.level_sizes)
    src = SIDTokenizer(sids, model.layout).histories(np.array([[0, 1], [-1, 2]]))
    result = beam_search(model, trie, src, beams=10, top_k=5)
    assert result.items.shape == (2, 5)
    assert sorted(result.items[0, :3].tolist()) == [0, 1, 2]
    assert (result.items[:, 3:] == -1).all() and torch.isinf(result.scores[:, 3:]).all()


def test_beam_narrower_than_k_is_refused():
    sids, trie, model, src = setup()
    with pytest.raises(ConfigError, match="narrower than top_k"):
        beam_search(model, trie, src, beams=5, top_k=10)


def test_threaded_cpu_decoding_matches_one_thread_and_restores_threads():
    sids, trie, model, _ = setup(n_items=60, n_users=1)
    tokenizer = SIDTokenizer(sids, model.layout)
    histories = [np.random.default_rng(u).integers(0, len(sids), size=1 + u % 7) for u in range(50)]
    kwargs = dict(max_items=6, beams=12, top_k=5, batch_size=4)
    single = recommend(model, trie, tokenizer, histories, **kwargs)
    torch.set_num_threads(2)
    try:
        threaded = recommend(model, trie, tokenizer, histories, **kwargs)  # 13 batches on 2 worker threads
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    np.testing.assert_array_equal(threaded.ranked, single.ranked)
    np.testing.assert_allclose(threaded.scores, single.scores, rtol=1e-5)
    assert threaded.invalid == single.invalid == 0
