"""Shared pytest fixtures: the real data folder (or a skip) and a tiny demo dataset."""
from __future__ import annotations

from pathlib import Path

import pytest

from resid_lib.data.dataset import Dataset
from resid_lib.data.demo import make_demo_dataset

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real datasets beside the repository; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not available: {SHARED_DATA} does not exist")
    return SHARED_DATA


@pytest.fixture
def tiny_dataset() -> Dataset:
    """A fresh small seeded demo dataset (300 items, 400 users); tests may modify it."""
    return make_demo_dataset(300, 400, seed=0)


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny demo dataset saved as a canonical dataset folder (session-scoped; do not modify)."""
    return make_demo_dataset(300, 400, seed=0).save(tmp_path_factory.mktemp("tiny") / "dataset")
