"""The encoder protocol every E-stage method follows.

An encoder turns a dataset into one vector per item::

    enc = SomeEncoder(cfg, seed=42, device=torch.device("cpu"), progress=False)
    enc.fit(dataset, split, workdir=RUN_DIR / "encode", resume=False)
    X = enc.item_embeddings()          # (n_items, d) float32, dataset item order

Trained encoders checkpoint into ``workdir`` (``checkpoint.pt``) at every epoch end
and, with ``resume=True``, continue from it to the result of an uninterrupted run.
Sequential recommenders (SASRec, BERT4Rec and their feature variants) subclass
:class:`Recommender` and also rank all items for an evaluation set.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch

from .. import distributed
from ..data.dataset import Dataset
from ..data.split import EvalSet, LeaveOneOut
from ..errors import ConfigError, check_model_settings
from ..metrics import evaluate_rankings
from .attention import AttentionSample
from .config import EncodeConfig


class Encoder(ABC):
    """Base of every E-stage method.

    Attributes:
        history: one dict per trained epoch (written as ``history.csv``); empty for
            encoders without training.
    """

    method: str = ""

    def __init__(self, cfg: EncodeConfig, *, seed: int, device: torch.device, progress: bool = True):
        self.cfg = cfg
        self.seed = seed
        self.device = device
        self.progress = progress
        self.history: list[dict] = []

    @abstractmethod
    def fit(self, dataset: Dataset, split: LeaveOneOut, *, workdir: Path | None = None,
            resume: bool = False) -> "Encoder":
        """Learn from the training part of ``split``; checkpoint into ``workdir`` when given."""

    @abstractmethod
    def item_embeddings(self) -> np.ndarray:
        """(n_items, d) float32 item vectors in the dataset's item order."""

    def metrics(self) -> dict:
        """What goes into ``encode/metrics.json`` (``method`` plus method-specific figures)."""
        return {"method": self.method}

    def save(self, path: Path) -> None:
        """Write the trained model (``encode/model.pt``); encoders without weights write nothing."""

    def attention_sample(self, eval_set: EvalSet) -> AttentionSample | None:
        """Attention of the target position for a sample of ``eval_set`` (``encode/attention.npz``), if any."""
        return None


class Recommender(Encoder):
    """An encoder that is also a next-item recommender with full ranking."""

    @abstractmethod
    def recommend(self, eval_set: EvalSet, k: int) -> np.ndarray:
        """(n, k) item indices, best first, for each user of ``eval_set`` (all items ranked)."""

    def evaluate(self, eval_set: EvalSet, k: int = 10) -> dict[str, float]:
        """Recall@5/10 and NDCG@5/10 of :meth:`recommend` on ``eval_set``.

        In a distributed run every rank ranks its shard of the users and the rankings
        are gathered, so every rank returns the same figures (a collective: every rank
        must call it).
        """
        mine = self.recommend(eval_set.take(distributed.shard(len(eval_set))), k)
        return evaluate_rankings(np.concatenate(distributed.all_gather_objects(mine)), eval_set.targets)


def check_training_settings(cfg: EncodeConfig) -> None:
    """Reject shared ``encode`` settings no trained encoder can use, naming the key."""
    if cfg.max_len < 2:
        raise ConfigError(f"encode.max_len must be at least 2 (one history item and the target), got {cfg.max_len}")
    check_model_settings("encode", cfg, ("d_model", "n_layers", "n_heads", "d_ff", "batch_size", "epochs"))
    if cfg.eval_users < 0:
        raise ConfigError(f"encode.eval_users must be >= 0 (0 = all), got {cfg.eval_users}")
    if cfg.patience < 0:
        raise ConfigError(f"encode.patience must be >= 0 (0 = no early stopping), got {cfg.patience}")
