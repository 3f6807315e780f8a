"""Format readers: the real datasets' published counts, and small hand-written fixtures per format."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from resid_lib.data.dataset import Dataset
from resid_lib.data.readers import FORMATS, read_dataset
from resid_lib.data.readers.lcrec import category_levels
from resid_lib.errors import DataError

# ------------------------------------------------------------------ real data

REAL = {
    "amazon2014-beauty": ("s3rec", 22_363, 12_101, 198_502),
    "amazon2014-office": ("lcrec", 4_905, 2_420, 53_258),
    "amazon2018-scientific": ("lcrec", 8_317, 4_344, 58_492),
}


@pytest.fixture(scope="module")
def real(shared_data: Path) -> dict[str, Dataset]:
    return {name: read_dataset(fmt, shared_data / name) for name, (fmt, *_) in REAL.items()}


@pytest.mark.parametrize("name", list(REAL))
def test_real_counts_match_readme(real, name):
    _, users, items, interactions = REAL[name]
    ds = real[name]
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (users, items, interactions)


def test_beauty_fields_match_readme(real):
    ds = real["amazon2014-beauty"]
    vocab = {f["name"]: f["vocab_size"] for f in ds.info()["fields"]}
    assert {k: vocab[k] for k in ("brand", "cat_l1", "cat_l2", "cat_l3", "cat_l4")} == {
        "brand": 434, "cat_l1": 8, "cat_l2": 36, "cat_l3": 124, "cat_l4": 45}
    assert ds.field("categories").kind == "multi"
    assert "asin" in ds.items.columns and "asin" not in [f.name for f in ds.fields]
    # the literal "Unknown" brand is a value; null brands are the unknown code 0
    assert "Unknown" in ds.vocabulary("brand")
    assert 0.37 < (ds.codes("brand") == 0).mean() < 0.39  # README: null for 38% of items


def test_beauty_first_user_is_first_line(real, shared_data):
    ds = real["amazon2014-beauty"]
    first = (shared_data / "amazon2014-beauty" / "sequences.txt").read_text().splitlines()[0].split()
    assert ds.user_ids[0] == first[0]
    assert ds.item_ids[ds.sequences[0]].tolist() == first[1:]


@pytest.mark.parametrize("name", ["amazon2014-office", "amazon2018-scientific"])
def test_lcrec_real_fields(real, name):
    ds = real[name]
    assert ds.text_fields == ["title", "description"]
    cats = [f for f in ds.categorical_fields if f.startswith("cat_l")]
    assert cats == [f"cat_l{d}" for d in range(1, 7)]  # paths are cut where fewer than 0.1% of items go deeper
    assert "brand" in ds.categorical_fields
    assert not any("&amp;" in t for t in ds.items["title"].dropna())


def test_scientific_level_names_with_commas_stay_whole(real):
    ds = real["amazon2018-scientific"]
    assert "Hydraulics, Pneumatics & Plumbing" in ds.vocabulary("cat_l2")
    assert "Pneumatics & Plumbing" not in ds.vocabulary("cat_l3")


# ---------------------------------------------------------- small fixtures


def cells(column: pd.Series) -> list:
    """Column values with every missing value as None."""
    return [None if not isinstance(v, list) and pd.isna(v) else v for v in column]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_s3rec_fixture(tmp_path):
    write_lines(tmp_path / "sequences.txt", ["u1 10 20 30", "", "u2 30 10"])
    write_lines(tmp_path / "items.jsonl", [
        json.dumps({"item_id": 10, "asin": "A1", "brand": "Unknown", "tags": ["x", "y", "x"], "title": "Red pen"}),
        json.dumps({"item_id": 20, "asin": "A2", "brand": None, "tags": [], "title": ""}),
        json.dumps({"item_id": 30, "asin": "A3", "brand": "  ", "tags": None}),
        json.dumps({"item_id": 40, "asin": "A4", "brand": "Acme", "tags": ["y"], "title": "Blue pen"}),
    ])
    ds = read_dataset("s3rec", tmp_path)
    assert ds.name == tmp_path.name and ds.source["format"] == "s3rec"
    assert ds.item_ids.tolist() == ["10", "20", "30", "40"]  # file order, unused items kept
    assert ds.user_ids.tolist() == ["u1", "u2"]
    assert [s.tolist() for s in ds.sequences] == [[0, 1, 2], [2, 0]]
    assert [(f.name, f.kind) for f in ds.fields] == [("brand", "categorical"), ("tags", "multi"), ("title", "text")]
    assert ds.vocabulary("brand") == ["Acme", "Unknown"]
    assert ds.codes("brand").tolist() == [2, 0, 0, 1]  # null and blank are unknown
    assert ds.items["tags"].tolist() == [["x", "y"], [], [], ["y"]]
    assert ds.items["title"].isna().tolist() == [False, True, True, False]
    assert ds.timestamps is None


def test_lcrec_fixture_tight_separator(tmp_path):
    items = {
        "0": {"title": "AT&amp;T phone", "description": "", "brand": "ATT",
              "categories": "Office,Phones, Faxes & Cables,Corded"},
        "1": {"title": "Stapler", "description": "Staples paper", "brand": "",
              "categories": "Office,Supplies"},
        "2": {"title": "Tape", "description": "Sticky", "brand": "3M", "categories": ""},
    }
    (tmp_path / "Toy.item.json").write_text(json.dumps(items, indent=2))
    (tmp_path / "Toy.inter.json").write_text(json.dumps({"7": [0, 1], "3": [2, 2, 0]}, indent=2))
    ds = read_dataset("lcrec", tmp_path)
    assert ds.name == "Toy"
    assert ds.user_ids.tolist() == ["7", "3"]
    assert [s.tolist() for s in ds.sequences] == [[0, 1], [2, 2, 0]]
    assert ds.items["title"][0] == "AT&T phone"
    assert ds.vocabulary("brand") == ["3M", "ATT"]
    assert ds.codes("brand").tolist() == [2, 0, 1]
    assert [cells(ds.items[f"cat_l{d}"]) for d in (1, 2, 3)] == [
        ["Office", "Office", None], ["Phones, Faxes & Cables", "Supplies", None], ["Corded", None, None]]
    assert ds.text_fields == ["title", "description"]
    assert ds.items["description"].isna().tolist() == [True, False, False]


def test_category_levels_separators():
    loose = category_levels(["A, B, C", "A, D", "A, B, C", "A, B, C", "A, B, C", "A, B, C"])
    assert loose == {"cat_l1": ["A"] * 6, "cat_l2": ["B", "D", "B", "B", "B", "B"],
                     "cat_l3": ["C", None, "C", "C", "C", "C"]}
    tight = category_levels(["A,B, b2,C", "A,D", None])
    assert tight == {"cat_l1": ["A", "A", None], "cat_l2": ["B, b2", "D", None], "cat_l3": ["C", None, None]}
    # a level reached by fewer than min_level_share of the items is dropped
    assert list(category_levels(["A,B,C", "A,B", "A,B"], min_level_share=0.5)) == ["cat_l1", "cat_l2"]
    assert category_levels([["A", "B"], ["A"]])["cat_l2"] == ["B", None]


RECBOLE_ITEMS = [
    "item_id:token\tmovie_title:token_seq\tgenre:token_seq\tyear:token\tprice:float",
    "m1\tThe Red Pen\tdrama comedy\t1999\t9.5",
    "m2\tBlue\tdrama\t\t3",
    "m3\tGreen\t\t2001\t1",
]


def test_recbole_orders_by_timestamp_stably(tmp_path):
    write_lines(tmp_path / "toy.item", RECBOLE_ITEMS)
    write_lines(tmp_path / "toy.inter", [
        "user_id:token\titem_id:token\trating:float\ttimestamp:float",
        "b\tm1\t5\t300",
        "a\tm3\t4\t200",
        "b\tm2\t3\t100",
        "a\tm1\t4\t200",  # same time as the a/m3 row above: file order kept
        "a\tm2\t1\t50",
    ])
    ds = read_dataset("recbole", tmp_path)
    assert ds.name == "toy"
    assert ds.user_ids.tolist() == ["b", "a"]  # order of first appearance
    assert [ds.item_ids[s].tolist() for s in ds.sequences] == [["m2", "m1"], ["m2", "m3", "m1"]]
    assert [t.tolist() for t in ds.timestamps] == [[100.0, 300.0], [50.0, 200.0, 200.0]]
    assert [(f.name, f.kind) for f in ds.fields] == [("movie_title", "text"), ("genre", "multi"), ("year", "categorical")]
    assert ds.items["movie_title"][0] == "The Red Pen"
    assert ds.items["genre"].tolist() == [["drama", "comedy"], ["drama"], []]
    assert ds.codes("year").tolist() == [1, 0, 2]


def test_recbole_without_timestamp_keeps_file_order(tmp_path):
    write_lines(tmp_path / "toy.item", RECBOLE_ITEMS)
    write_lines(tmp_path / "toy.inter", ["user_id:token\titem_id:token", "a\tm3", "b\tm1", "a\tm1", "a\tm2"])
    ds = read_dataset("recbole", tmp_path, name="toy")
    assert ds.timestamps is None
    assert [ds.item_ids[s].tolist() for s in ds.sequences] == [["m3", "m1", "m2"], ["m1"]]


# ----------------------------------------------------------- resid format


def write_resid(folder: Path, sequences: dict[str, list[int]], *, max_hist: int = 50, with_time: bool = True,
                seed: int = 0) -> None:
    """Write a ReSID-style release from full sequences: sliding train windows, one valid and one test row."""
    folder.mkdir(parents=True, exist_ok=True)
    n_items = max(max(s) for s in sequences.values()) + 1
    pd.DataFrame({
        "item_id": np.arange(100, 100 + n_items + 2),  # two items nobody bought
        "store_id": np.arange(n_items + 2) % 3,
        "cate1_id": [f"c{i % 2}" for i in range(n_items + 2)],
        "price": np.linspace(1, 2, n_items + 2),
    }).to_parquet(folder / "item_feature.parquet")
    rows = {"train": [], "valid": [], "test": []}
    for user, seq in sequences.items():
        ids = [100 + i for i in seq]
        for t in range(1, len(ids)):
            split = "test" if t == len(ids) - 1 else "valid" if t == len(ids) - 2 else "train"
            rows[split].append({"user_id": user, "history": ids[max(0, t - max_hist):t], "target": ids[t],
                                "timestamp": 1000.0 * t})
    rng = np.random.default_rng(seed)
    for split, rs in rows.items():
        frame = pd.DataFrame(rs).iloc[rng.permutation(len(rs))] if rs else pd.DataFrame(rs)
        if not with_time:
            frame = frame.drop(columns="timestamp")
        frame.to_parquet(folder / f"{split}.parquet", index=False)


SEQS = {"u1": [0, 1, 2, 3, 4, 5], "u2": [3, 3, 1], "u3": [5, 4, 0, 2, 1, 3, 0, 2]}


@pytest.mark.parametrize("max_hist", [50, 2])
def test_resid_rebuilds_sequences(tmp_path, max_hist):
    write_resid(tmp_path, SEQS, max_hist=max_hist)
    ds = read_dataset("resid", tmp_path, name="toy")
    got = dict(zip(ds.user_ids.tolist(), ds.sequences))
    assert {u: (ds.item_ids[s].astype(int) - 100).tolist() for u, s in got.items()} == SEQS
    times = dict(zip(ds.user_ids.tolist(), ds.timestamps))
    assert np.isnan(times["u1"][0]) and times["u1"][1:].tolist() == [1000.0 * t for t in range(1, 6)]
    assert ds.n_items == 8
    assert [(f.name, f.kind) for f in ds.fields] == [("store_id", "categorical"), ("cate1_id", "categorical")]
    assert ds.vocabulary("store_id") == ["0", "1", "2"]


def test_resid_without_timestamps_uses_split_and_file_order(tmp_path):
    seqs = {"u1": [0, 1, 2, 3], "u2": [2, 0, 1]}
    write_resid(tmp_path, seqs, with_time=False)
    # keep training rows chronological in the file, as order is all there is without timestamps
    train = pd.read_parquet(tmp_path / "train.parquet")
    train.sort_values("history", key=lambda h: h.map(len), kind="stable").to_parquet(tmp_path / "train.parquet")
    ds = read_dataset("resid", tmp_path)
    assert ds.timestamps is None
    assert {u: (ds.item_ids[s].astype(int) - 100).tolist() for u, s in zip(ds.user_ids, ds.sequences)} == seqs


def test_resid_inconsistent_history_names_file_and_row(tmp_path):
    write_resid(tmp_path, SEQS, seed=3)
    test = pd.read_parquet(tmp_path / "test.parquet")
    row = int(np.flatnonzero(test["user_id"] == "u1")[0])
    test.at[test.index[row], "history"] = [100, 101, 102, 104, 103]
    test.to_parquet(tmp_path / "test.parquet", index=False)
    with pytest.raises(DataError, match=rf"test.parquet row {row + 1}: the history of user 'u1'"):
        read_dataset("resid", tmp_path)


def test_unknown_format_lists_known(tmp_path):
    with pytest.raises(DataError, match="unknown format 'csv'.*" + ", ".join(FORMATS)):
        read_dataset("csv", tmp_path)


def test_resid_string_ids_and_nullable_id_columns(tmp_path):
    pd.DataFrame({"item_id": ["a", "b", "c"], "cate1_id": [1, None, 2], "price": [1.5, 2.0, None],
                  "tags": [["x"], None, ["y", "z"]], "title": ["A", "B", None]}).to_parquet(tmp_path / "item_feature.parquet")
    pd.DataFrame({"user_id": [5, 6], "history": [["a"], ["c"]], "target": ["b", "a"]}).to_parquet(tmp_path / "train.parquet")
    pd.DataFrame({"user_id": [5, 6], "history": [["a", "b"], ["c", "a"]], "target": ["c", "b"]}).to_parquet(
        tmp_path / "valid.parquet")
    pd.DataFrame({"user_id": [6, 5], "history": [["c", "a", "b"], ["a", "b", "c"]], "target": ["c", "a"]}).to_parquet(
        tmp_path / "test_0.parquet")
    ds = read_dataset("resid", tmp_path)
    assert ds.user_ids.tolist() == ["5", "6"] and ds.timestamps is None
    assert [ds.item_ids[s].tolist() for s in ds.sequences] == [["a", "b", "c", "a"], ["c", "a", "b", "c"]]
    assert [(f.name, f.kind) for f in ds.fields] == [("cate1_id", "categorical"), ("tags", "multi"), ("title", "text")]
    assert ds.vocabulary("cate1_id") == ["1", "2"]  # whole-number floats are ids with gaps, not prices
    assert ds.codes("cate1_id").tolist() == [1, 0, 2]
