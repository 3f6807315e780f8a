"""The canonical Dataset: codes with an explicit unknown, validation, save/load round trip."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from resid_lib.data.dataset import Dataset, FieldSpec
from resid_lib.errors import DataError


def small(**changes) -> Dataset:
    parts = dict(
        name="toy",
        items=pd.DataFrame({
            "item_id": ["a", "b", "c", "d"],
            "title": ["Red pen", None, "Blue pen", "  "],
            "brand": ["Zeta", None, "Acme", "Zeta"],
            "tags": [["x"], [], ["y", "x"], []],
        }),
        fields=(FieldSpec("title", "text"), FieldSpec("brand", "categorical"), FieldSpec("tags", "multi")),
        user_ids=np.array(["u1", "u2"]),
        sequences=[np.array([0, 1, 2]), np.array([3, 3])],
        timestamps=[np.array([1.0, 2.0, 3.0]), np.array([5.0, 6.0])],
        source={"format": "test"},
    )
    parts.update(changes)
    return Dataset(**parts)


def test_codes_vocabulary_and_unknown():
    ds = small()
    assert ds.vocabulary("brand") == ["Acme", "Zeta"]
    assert ds.codes("brand").tolist() == [2, 0, 1, 2]
    assert ds.cardinality("brand") == 3
    assert ds.vocabulary("tags") == ["x", "y"]
    assert ds.categorical_fields == ["brand"] and ds.text_fields == ["title"]
    assert ds.popularity.tolist() == [1, 1, 1, 2]
    assert ds.item_index(["c", "a"]).tolist() == [2, 0]
    with pytest.raises(DataError, match="unknown item id 'zz'"):
        ds.item_index(["zz"])
    with pytest.raises(DataError, match="is text, not categorical"):
        ds.codes("title")
    with pytest.raises(DataError, match="has no field 'price'"):
        ds.field("price")


def test_info_counts_and_missing_rates():
    info = small().info()
    assert (info["users"], info["items"], info["interactions"]) == (2, 4, 5)
    fields = {f["name"]: f for f in info["fields"]}
    assert fields["title"] == {"name": "title", "kind": "text", "vocab_size": None, "missing_rate": 0.5}
    assert fields["brand"]["vocab_size"] == 2 and fields["brand"]["missing_rate"] == 0.25
    assert fields["tags"]["missing_rate"] == 0.5
    assert info["sequence_length"]["min"] == 2 and info["sequence_length"]["max"] == 3


@pytest.mark.parametrize("changes, message", [
    ({"items": pd.DataFrame({"item_id": ["a", "a"]}), "fields": ()}, "duplicate item id 'a'"),
    ({"sequences": [np.array([0, 9]), np.array([1])]}, r"item index outside 0\.\.3"),
    ({"sequences": [np.array([0]), np.array([], dtype=np.int64)]}, "user 'u2' has an empty sequence"),
    ({"fields": (FieldSpec("price", "categorical"),)}, "field 'price' has no column"),
    ({"user_ids": np.array(["u1"])}, "differ in length"),
])
def test_validation(changes, message):
    with pytest.raises(DataError, match=message):
        small(**changes)


def test_unknown_field_kind():
    with pytest.raises(DataError, match="unknown kind 'number'"):
        FieldSpec("price", "number")


def test_save_load_round_trip(tmp_path):
    ds = small()
    ds.save(tmp_path / "ds")
    back = Dataset.load(tmp_path / "ds")
    assert back.name == "toy" and back.source == {"format": "test"}
    assert back.fields == ds.fields
    assert back.user_ids.tolist() == ["u1", "u2"]
    assert [s.tolist() for s in back.sequences] == [[0, 1, 2], [3, 3]]
    assert [t.tolist() for t in back.timestamps] == [[1.0, 2.0, 3.0], [5.0, 6.0]]
    assert back.codes("brand").tolist() == ds.codes("brand").tolist()
    assert back.items["tags"].tolist() == [["x"], [], ["y", "x"], []]
    assert back.fingerprint == ds.fingerprint
    assert back.info() == ds.info()


def test_round_trip_of_the_demo_world(tiny_dataset, tmp_path):
    back = Dataset.load(tiny_dataset.save(tmp_path / "demo"))
    assert back.fingerprint == tiny_dataset.fingerprint
    for name in back.categorical_fields:
        assert np.array_equal(back.codes(name), tiny_dataset.codes(name))
    assert back.info() == tiny_dataset.info()


def test_save_replaces_atomically(tmp_path):
    target = tmp_path / "ds"
    small().save(target)
    small(name="second").save(target)
    assert Dataset.load(target).name == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_fingerprint_tracks_the_data():
    base = small().fingerprint
    assert small(name="renamed").fingerprint == base
    assert small(sequences=[np.array([0, 2, 1]), np.array([3, 3])]).fingerprint != base
    assert small(sequences=[np.array([0, 1]), np.array([2, 3, 3])]).fingerprint != base


def test_load_refuses_other_folders(tmp_path):
    with pytest.raises(DataError, match="not a dataset folder"):
        Dataset.load(tmp_path)
