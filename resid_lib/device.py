"""Device choice, CPU threading and seeding shared by every stage."""
from __future__ import annotations

import contextlib
import random
from typing import Iterator

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


@contextlib.contextmanager
def single_thread_on_cpu(device: torch.device | str) -> Iterator[None]:
    """Run a loop of many small tensor operations single-threaded on CPU: per-operation
    thread synchronisation costs more than it saves there (far more on a busy machine)."""
    if torch.device(device).type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch; return a numpy Generator for local use."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)
