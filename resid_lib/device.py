"""Device choice and seeding shared by every stage."""
from __future__ import annotations

import random

import numpy as np
import torch

from .errors import ConfigError


def resolve_device(preference: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cpu``/``cuda``/``cuda:N`` are taken as given."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {preference!r} requested but CUDA is not available; use device=auto or cpu")
    try:
        return torch.device(preference)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {preference!r}: {exc}") from None


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch; return a numpy Generator for local use."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)
