"""``workbench data import|info|demo``: good imports, every bad-input case, the info output."""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from resid_lib.data.dataset import Dataset
from workbench.cli import main

# ----------------------------------------------------------------- sources


def s3rec(folder: Path, sequences: list[str] | None = None, items: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if sequences is not None:
        (folder / "sequences.txt").write_text("".join(s + "\n" for s in sequences))
    if items is not None:
        (folder / "items.jsonl").write_text("".join(s + "\n" for s in items))
    return folder


GOOD_ITEMS = [json.dumps({"item_id": i, "brand": b, "cat_l1": c})
              for i, b, c in [(1, "A", "x"), (2, None, "x"), (3, "B", "y")]]
GOOD_SEQS = ["1 1 2 3", "2 3 1", "3 2 3 1 2"]


def lcrec(folder: Path, inter: str | None, item: str | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if inter is not None:
        (folder / "Toy.inter.json").write_text(inter)
    if item is not None:
        (folder / "Toy.item.json").write_text(item)
    return folder


LC_ITEMS = json.dumps({str(i): {"title": f"t{i}", "brand": "b", "categories": "A, B"} for i in range(3)}, indent=1)
LC_INTER = json.dumps({"0": [0, 1, 2], "1": [2, 1, 0]}, indent=1)


def recbole(folder: Path, inter: list[str] | None, item: list[str] | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if inter is not None:
        (folder / "toy.inter").write_text("".join(s + "\n" for s in inter))
    if item is not None:
        (folder / "toy.item").write_text("".join(s + "\n" for s in item))
    return folder


RB_ITEMS = ["item_id:token\tgenre:token_seq", "a\tx y", "b\ty", "c\t"]
RB_INTER = ["user_id:token\titem_id:token\ttimestamp:float", "u\ta\t1", "u\tb\t2", "v\tc\t1", "v\ta\t3"]


def resid(folder: Path, drop: str | None = None, **frames: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tables = {
        "item_feature": pd.DataFrame({"item_id": [1, 2, 3], "store_id": [7, 7, 8]}),
        "train": pd.DataFrame({"user_id": ["u"], "history": [[1]], "target": [2], "timestamp": [1.0]}),
        "valid": pd.DataFrame({"user_id": ["u"], "history": [[1, 2]], "target": [3], "timestamp": [2.0]}),
        "test": pd.DataFrame({"user_id": ["u"], "history": [[1, 2, 3]], "target": [1], "timestamp": [3.0]}),
    }
    tables.update(frames)
    for name, frame in tables.items():
        if name != drop:
            frame.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


# (format, builder, regex the message must match)
BAD: dict[str, tuple[str, Callable[[Path], Path], str]] = {
    "s3rec-malformed-line": ("s3rec", lambda d: s3rec(d, ["1 1 2", "2"], GOOD_ITEMS),
                             r"sequences\.txt line 2: malformed line"),
    "s3rec-unknown-item": ("s3rec", lambda d: s3rec(d, ["1 1 2", "2 3 9"], GOOD_ITEMS),
                           r"sequences\.txt line 2: item id '9' is not in the item file .*items\.jsonl"),
    "s3rec-duplicate-item": ("s3rec", lambda d: s3rec(d, GOOD_SEQS, GOOD_ITEMS + [GOOD_ITEMS[1]]),
                             r"items\.jsonl: duplicate item id '2' \(lines 2 and 4\)"),
    "s3rec-duplicate-user": ("s3rec", lambda d: s3rec(d, GOOD_SEQS + ["2 1"], GOOD_ITEMS),
                             r"sequences\.txt: duplicate user id '2' \(lines 2 and 4\)"),
    "s3rec-missing-key": ("s3rec", lambda d: s3rec(d, GOOD_SEQS, GOOD_ITEMS + ['{"brand": "C"}']),
                          r"items\.jsonl line 4: required key 'item_id' is missing"),
    "s3rec-bad-json": ("s3rec", lambda d: s3rec(d, GOOD_SEQS, GOOD_ITEMS[:2] + ['{"item_id": 3,']),
                       r"items\.jsonl line 3: invalid JSON"),
    "s3rec-empty-file": ("s3rec", lambda d: s3rec(d, [], GOOD_ITEMS), r"sequences\.txt: file is empty"),
    "s3rec-blank-file": ("s3rec", lambda d: s3rec(d, ["", "  "], GOOD_ITEMS), r"sequences\.txt: file is empty"),
    "s3rec-missing-file": ("s3rec", lambda d: s3rec(d, GOOD_SEQS, None), r"missing file .*items\.jsonl"),
    "lcrec-bad-json": ("lcrec", lambda d: lcrec(d, LC_INTER[:-3], LC_ITEMS), r"Toy\.inter\.json line \d+: invalid JSON"),
    "lcrec-unknown-item": ("lcrec", lambda d: lcrec(d, json.dumps({"0": [0, 5]}), LC_ITEMS),
                           r"Toy\.inter\.json: user '0': item id '5' is not in the item file .*Toy\.item\.json"),
    "lcrec-duplicate-item": ("lcrec", lambda d: lcrec(d, LC_INTER, LC_ITEMS[:-2] + ',\n "1": {"title": "again"}\n}'),
                             r"Toy\.item\.json: duplicate item id '1' \(lines \d+ and \d+\)"),
    "lcrec-empty-file": ("lcrec", lambda d: lcrec(d, LC_INTER, "{}"), r"Toy\.item\.json: file is empty"),
    "lcrec-wrong-shape": ("lcrec", lambda d: lcrec(d, json.dumps({"0": 3}), LC_ITEMS),
                          r"Toy\.inter\.json: user '0': expected a list"),
    "lcrec-missing-file": ("lcrec", lambda d: lcrec(d, LC_INTER, None), r"missing file .*Toy\.item\.json"),
    "recbole-malformed-line": ("recbole", lambda d: recbole(d, RB_INTER + ["w\ta"], RB_ITEMS),
                               r"toy\.inter line 6: malformed line, 2 tab-separated values where the header has 3"),
    "recbole-missing-column": ("recbole", lambda d: recbole(d, ["user_id:token\titem:token", "u\ta"], RB_ITEMS),
                               r"toy\.inter line 1: required column 'item_id' is missing"),
    "recbole-untyped-header": ("recbole", lambda d: recbole(d, ["user_id\titem_id", "u\ta"], RB_ITEMS),
                               r"toy\.inter line 1: header column 'user_id' is not 'name:type'"),
    "recbole-unknown-item": ("recbole", lambda d: recbole(d, RB_INTER + ["w\tz\t4"], RB_ITEMS),
                             r"toy\.inter line 6: item id 'z' is not in the item file .*toy\.item"),
    "recbole-duplicate-item": ("recbole", lambda d: recbole(d, RB_INTER, RB_ITEMS + ["b\tz"]),
                               r"toy\.item: duplicate item id 'b' \(lines 3 and 5\)"),
    "recbole-bad-timestamp": ("recbole", lambda d: recbole(d, RB_INTER + ["w\ta\tnoon"], RB_ITEMS),
                              r"toy\.inter line 6: timestamp 'noon' is not a number"),
    "recbole-header-only": ("recbole", lambda d: recbole(d, RB_INTER[:1], RB_ITEMS), r"toy\.inter: file is empty"),
    "recbole-empty-file": ("recbole", lambda d: recbole(d, RB_INTER, []), r"toy\.item: file is empty"),
    "recbole-missing-file": ("recbole", lambda d: recbole(d, RB_INTER, None), r"missing file .*toy\.item"),
    "resid-missing-column": ("resid", lambda d: resid(d, test=pd.DataFrame({"user_id": ["u"], "history": [[1, 2, 3]]})),
                             r"test\.parquet: required column 'target' is missing"),
    "resid-unknown-item": ("resid", lambda d: resid(d, train=pd.DataFrame(
        {"user_id": ["u", "u"], "history": [[1], [9]], "target": [2, 1], "timestamp": [1.0, 0.5]})),
        r"train\.parquet row 2: history item id '9' is not in the item file .*item_feature\.parquet"),
    "resid-duplicate-item": ("resid", lambda d: resid(d, item_feature=pd.DataFrame({"item_id": [1, 2, 3, 2]})),
                             r"item_feature\.parquet: duplicate item id .2. \(rows 2 and 4\)"),
    "resid-empty-file": ("resid", lambda d: resid(d, valid=pd.DataFrame(
        {"user_id": pd.Series([], dtype=str), "history": pd.Series([], dtype=object),
         "target": pd.Series([], dtype=int)})), r"valid\.parquet: file is empty"),
    "resid-missing-file": ("resid", lambda d: resid(d, drop="valid"), r"missing file: no val\*\.parquet"),
    "resid-inconsistent": ("resid", lambda d: resid(d, test=pd.DataFrame(
        {"user_id": ["u"], "history": [[2, 1, 3]], "target": [1], "timestamp": [3.0]})),
        r"test\.parquet row 1: the history of user 'u' does not match"),
    "missing-source": ("s3rec", lambda d: d / "nowhere", r"source folder .*nowhere does not exist"),
    "wrong-format": ("csv", lambda d: s3rec(d, GOOD_SEQS, GOOD_ITEMS),
                     r"unknown format 'csv' \(known formats: s3rec, lcrec, recbole, resid\)"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_fails_cleanly(case, tmp_path, capsys):
    fmt, build, pattern = BAD[case]
    source = build(tmp_path / "src")
    out = tmp_path / "out" / "dataset"
    rc = main(["data", "import", "--format", fmt, str(source), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert re.search(pattern, err), err
    assert not out.exists()
    assert not (out.parent.exists() and any(out.parent.iterdir())), "no temporary output may remain"


@pytest.mark.parametrize("fmt, build", [
    ("s3rec", lambda d: s3rec(d, GOOD_SEQS, GOOD_ITEMS)),
    ("lcrec", lambda d: lcrec(d, LC_INTER, LC_ITEMS)),
    ("recbole", lambda d: recbole(d, RB_INTER, RB_ITEMS)),
    ("resid", lambda d: resid(d)),
])
def test_good_fixtures_import(fmt, build, tmp_path, capsys):
    out = tmp_path / "dataset"
    assert main(["data", "import", "--format", fmt, str(build(tmp_path / "src")), "--out", str(out)]) == 0
    assert "imported" in capsys.readouterr().out
    ds = Dataset.load(out)
    assert ds.source["format"] == fmt
    assert sorted(p.name for p in out.iterdir()) == ["interactions.parquet", "items.parquet", "schema.json"]


def test_resid_good_fixture_sequence(tmp_path):
    ds = Dataset.load(_imported(tmp_path, "resid", resid(tmp_path / "src")))
    assert ds.item_ids[ds.sequences[0]].tolist() == ["1", "2", "3", "1"]
    assert np.isnan(ds.timestamps[0][0]) and ds.timestamps[0][1:].tolist() == [1.0, 2.0, 3.0]


def _imported(tmp_path: Path, fmt: str, source: Path) -> Path:
    out = tmp_path / "dataset"
    assert main(["data", "import", "--format", fmt, str(source), "--out", str(out)]) == 0
    return out


def test_info_text_and_json(tiny_dataset_dir, capsys):
    assert main(["data", "info", str(tiny_dataset_dir)]) == 0
    text = capsys.readouterr().out
    assert "users         400" in text and "items         300" in text
    assert "cat_l1" in text and "categorical" in text
    assert main(["data", "info", str(tiny_dataset_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {"users", "items", "interactions", "fields"} <= set(info)
    assert (info["users"], info["items"]) == (400, 300)
    ds = Dataset.load(tiny_dataset_dir)
    assert info["interactions"] == ds.n_interactions
    fields = {f["name"]: f for f in info["fields"]}
    assert fields["cat_l1"]["vocab_size"] == len(ds.vocabulary("cat_l1"))
    assert fields["brand"]["missing_rate"] == pytest.approx((ds.codes("brand") == 0).mean(), abs=1e-6)


def test_info_on_a_non_dataset_folder(tmp_path, capsys):
    assert main(["data", "info", str(tmp_path)]) == 2
    assert "not a dataset folder" in capsys.readouterr().err


def test_demo_command(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["data", "demo", "--out", str(out), "--items", "120", "--users", "80", "--seed", "3"]) == 0
    ds = Dataset.load(out)
    assert (ds.n_items, ds.n_users) == (120, 80)
    assert ds.source["seed"] == 3
    assert main(["data", "demo", "--out", str(tmp_path / "bad"), "--items", "10"]) == 2
    assert "at least 50 items" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_import_refuses_to_replace_a_non_dataset_folder(tmp_path, capsys):
    source = s3rec(tmp_path / "src", GOOD_SEQS, GOOD_ITEMS)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    assert main(["data", "import", "--format", "s3rec", str(source), "--out", str(precious)]) == 2
    assert "refusing to replace" in capsys.readouterr().err
    assert (precious / "notes.txt").read_text() == "keep me"
    # an existing dataset folder is replaced by the new import
    out = tmp_path / "dataset"
    assert main(["data", "demo", "--out", str(out), "--items", "60", "--users", "20"]) == 0
    assert main(["data", "import", "--format", "s3rec", str(source), "--out", str(out)]) == 0
    assert Dataset.load(out).n_items == 3
