"""Shared pytest fixtures: the real data folder (or a skip) and a tiny demo dataset."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from resid_lib.data.dataset import Dataset
from resid_lib.data.demo import make_demo_dataset

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MAIN_MODULE = sys.modules["__main__"]


@pytest.fixture(autouse=True)
def keep_main_module():
    """Put pytest's ``sys.modules["__main__"]`` back after each test.

    Streamlit's AppTest runs an app script as a module named ``__main__`` and leaves it
    there; processes started with the spawn method would then re-run that script.
    """
    yield
    sys.modules["__main__"] = MAIN_MODULE


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module: tiny models train fastest, and reproducibly, on one
    thread, and do not compete with other work on the machine. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
