"""The synthetic demo world: deterministic from its seed, and shaped like the method expects."""
from __future__ import annotations

import numpy as np
import pytest

from resid_lib.data.dataset import Dataset
from resid_lib.data.demo import make_demo_dataset
from resid_lib.errors import ConfigError

FILES = ("items.parquet", "interactions.parquet", "schema.json")


def test_same_seed_same_files(tmp_path):
    a = make_demo_dataset(200, 150, seed=4).save(tmp_path / "a")
    b = make_demo_dataset(200, 150, seed=4).save(tmp_path / "b")
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert Dataset.load(a).fingerprint == Dataset.load(b).fingerprint


def test_different_seed_differs():
    a, b = make_demo_dataset(200, 150, seed=4), make_demo_dataset(200, 150, seed=5)
    assert a.fingerprint != b.fingerprint
    assert not a.items["cat_l3"].equals(b.items["cat_l3"])


def test_schema_and_sizes(tiny_dataset):
    ds = tiny_dataset
    assert (ds.n_items, ds.n_users) == (300, 400)
    assert {f.name: f.kind for f in ds.fields} == {
        "title": "text", "description": "text", "brand": "categorical", "cat_l1": "categorical",
        "cat_l2": "categorical", "cat_l3": "categorical", "tags": "multi"}
    assert min(len(s) for s in ds.sequences) >= 5
    assert all(np.all(np.diff(t) > 0) for t in ds.timestamps)
    assert len(ds.vocabulary("cat_l1")) == 8
    assert 0.05 < (ds.codes("brand") == 0).mean() < 0.3  # some items have no known brand
    # the category tree: every cat_l3 value sits under exactly one cat_l2, every cat_l2 under one cat_l1
    for child, parent in (("cat_l3", "cat_l2"), ("cat_l2", "cat_l1")):
        assert ds.items.groupby(child)[parent].nunique().max() == 1


def _mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """Plug-in mutual information (nats) of two integer label arrays."""
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1.0)
    joint /= joint.sum()
    outer = joint.sum(1, keepdims=True) @ joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / outer[nz])).sum())


@pytest.fixture(scope="module")
def world() -> Dataset:
    return make_demo_dataset(600, 800, seed=0)


def test_missions_cut_across_top_categories(world):
    l1, l3 = world.codes("cat_l1"), world.codes("cat_l3")
    prev = np.concatenate([s[:-1] for s in world.sequences])
    nxt = np.concatenate([s[1:] for s in world.sequences])
    cross = l1[prev] != l1[nxt]
    # most next purchases leave the current top-level category ...
    assert cross.mean() > 0.7
    # ... yet where they go is structured (the mission), not random: the leaf category after a
    # cross-category step says much more about the step than under a shuffle of the same steps
    shuffled = np.random.default_rng(0).permutation(l3[nxt][cross])
    assert _mutual_information(l3[prev][cross], l3[nxt][cross]) > 3 * _mutual_information(l3[prev][cross], shuffled)


def test_popularity_is_skewed(world):
    pop = np.sort(world.popularity)[::-1]
    assert pop[: len(pop) // 10].sum() / pop.sum() > 0.4  # top 10% of items take most interactions


def test_bad_arguments():
    with pytest.raises(ConfigError, match="at least 50 items"):
        make_demo_dataset(10, 10)
    with pytest.raises(ConfigError, match="at least one user"):
        make_demo_dataset(100, 0)
