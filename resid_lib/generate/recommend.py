"""Rank items for many users with the trained generator, and score the rankings.

Users are decoded in batches of similar history length (less padding); the
result is in the users' original order. On CPU the batches are shared among one
worker thread per torch thread, each running its operations single-threaded:
beam search is many small operations, which scale better across batches than
within one. Hits are item-level: a beam result is an item, and Recall/NDCG
compare item indices with the target item. In a distributed run
:func:`evaluate` splits the users across ranks and gathers the rankings.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from .. import distributed
from ..data.split import EvalSet
from ..device import single_thread_on_cpu
from ..metrics import evaluate_rankings
from ..train import progress as progress_bar
from .beam import beam_search
from .data import SIDTokenizer, history_matrix
from .model import SIDGenerator
from .precision import inference_copy
from .trie import SIDTrie


@dataclass
class Rankings:
    """Beam-search output for n users.

    Attributes:
        ranked: (n, top_k) int64 item indices, best first; -1 where fewer items were found.
        scores: (n, top_k) float32 SID log-likelihoods (-inf where empty).
        invalid: returned slots whose decoded SID is not the SID of a real item.
        seconds: wall time of the decoding.
    """

    ranked: np.ndarray
    scores: np.ndarray
    invalid: int
    seconds: float

    @property
    def invalid_rate(self) -> float:
        """Share of the returned (finite-score) slots that are invalid."""
        return self.invalid / max(int(np.isfinite(self.scores).sum()), 1)

    @classmethod
    def concat(cls, parts: list["Rankings"]) -> "Rankings":
        """The rankings of consecutive user groups as one; ``seconds`` is the slowest part's."""
        return cls(ranked=np.concatenate([p.ranked for p in parts]), scores=np.concatenate([p.scores for p in parts]),
                   invalid=sum(p.invalid for p in parts), seconds=max(p.seconds for p in parts))


@torch.no_grad()
def recommend(model: SIDGenerator, trie: SIDTrie, tokenizer: SIDTokenizer, histories: list[np.ndarray], *,
              max_items: int, beams: int, top_k: int, batch_size: int = 64, precision: str = "auto",
              progress: bool = False, desc: str = "decode") -> Rankings:
    """Top-``top_k`` items for each history by trie-constrained beam search (``precision``: see ``.precision``)."""
    device = next(model.parameters()).device
    was_training = model.training
    decoder = inference_copy(model, precision)
    trie = trie.to(device)
    items = history_matrix(histories, max_items)
    lengths = (items >= 0).sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    ranked = np.full((len(items), top_k), -1, dtype=np.int64)
    scores = np.full((len(items), top_k), -np.inf, dtype=np.float32)
    start = time.perf_counter()

    def rank(idx: np.ndarray) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, int]:
        result = beam_search(decoder, trie, tokenizer.histories(items[idx]).to(device), beams=beams, top_k=top_k)
        true_codes = trie.sids[result.items.clamp(min=0)]
        matches = (result.items >= 0) & (true_codes == result.codes).all(dim=-1)
        return idx, result.items, result.scores, int((torch.isfinite(result.scores) & ~matches).sum())

    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    workers = torch.get_num_threads() if device.type == "cpu" else 1
    invalid = 0
    for idx, got, score, bad in progress_bar(map_threaded(rank, batches, workers), desc=desc, enabled=progress,
                                             total=len(batches)):
        ranked[idx] = got.cpu().numpy()
        scores[idx] = score.cpu().numpy()
        invalid += bad
    seconds = time.perf_counter() - start
    model.train(was_training)
    return Rankings(ranked=ranked, scores=scores, invalid=invalid, seconds=seconds)


def map_threaded(fn: Callable, jobs: Sequence, workers: int) -> Iterator:
    """``fn`` of each job, in order; with ``workers`` > 1 on that many threads whose torch operations are single-threaded."""
    if workers <= 1 or len(jobs) <= 1:
        yield from map(fn, jobs)
        return
    with single_thread_on_cpu("cpu"), ThreadPoolExecutor(min(workers, len(jobs)), initializer=torch.set_num_threads,
                                                         initargs=(1,)) as pool:
        yield from pool.map(fn, jobs)


def evaluate(model: SIDGenerator, trie: SIDTrie, tokenizer: SIDTokenizer, eval_set: EvalSet, **kwargs) -> tuple[dict[str, float], Rankings]:
    """Recall@5/10 and NDCG@5/10 (item-level hits) of the rankings for ``eval_set``; kwargs go to :func:`recommend`.

    Each rank ranks its shard of the users; every rank gets all the rankings and the
    same metrics (a collective in a distributed run: every rank must call it).
    """
    mine = recommend(model, trie, tokenizer, eval_set.take(distributed.shard(len(eval_set))).histories, **kwargs)
    rankings = Rankings.concat(distributed.all_gather_objects(mine))
    return evaluate_rankings(rankings.ranked, eval_set.targets), rankings
