"""E-stage: item encoders (FAMAE and the baselines) and the embedding-quality proxy metrics.

``ENCODERS`` maps each ``encode.method`` to the class implementing it, as
``"module:Class"`` so that a method's dependencies (e.g. sentence-transformers for
``text``) are imported only when that method runs.
"""
from __future__ import annotations

import importlib

import torch

from ..errors import ConfigError
from .base import Encoder, Recommender
from .config import EncodeConfig

ENCODERS: dict[str, str] = {
    "famae": "resid_lib.encode.famae:FamaeEncoder",
    "sasrec": "resid_lib.encode.sasrec:SASRec",
    "sasrec_features": "resid_lib.encode.sasrec:SASRecFeatures",
    "bert4rec": "resid_lib.encode.bert4rec:BERT4Rec",
    "bert4rec_features": "resid_lib.encode.bert4rec:BERT4RecFeatures",
    "text": "resid_lib.encode.text:TextEncoder",
}


def encoder_class(method: str) -> type[Encoder]:
    """The class registered for ``method``."""
    if method not in ENCODERS:
        raise ConfigError(f"unknown encode.method {method!r} (methods: {', '.join(ENCODERS)})")
    module, name = ENCODERS[method].split(":")
    return getattr(importlib.import_module(module), name)


def make_encoder(cfg: EncodeConfig, *, seed: int, device: torch.device, progress: bool = True) -> Encoder:
    """An untrained encoder for ``cfg.method``."""
    return encoder_class(cfg.method)(cfg, seed=seed, device=device, progress=progress)


__all__ = ["ENCODERS", "Encoder", "EncodeConfig", "Recommender", "encoder_class", "make_encoder"]
