"""SID diagnostics and the tree export on hand-computed examples."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from resid_lib.data.dataset import Dataset, FieldSpec
from resid_lib.errors import DataError
from resid_lib.quantize import diagnostics as dg
from resid_lib.quantize.tree import read_sids, tree_frame, write_sids

CODES = np.array([[0, 0], [0, 1], [1, 0], [1, 0]])


def test_utilization_counts_used_codes_over_codebook_size():
    assert dg.utilization(CODES, [2, 4]) == [1.0, 0.5]
    assert dg.utilization(CODES) == [1.0, 1.0]  # default size: max code + 1
    with pytest.raises(DataError, match="exceeds the codebook size"):
        dg.utilization(CODES, [1, 4])


def test_entropy_in_bits():
    h1, h2 = dg.entropy(CODES)
    assert h1 == pytest.approx(1.0)
    assert h2 == pytest.approx(-(0.75 * np.log2(0.75) + 0.25 * np.log2(0.25)))


def test_conditional_entropy_is_joint_minus_prefix():
    # H(c1) = 1; H(c1, c2) over (0,0), (0,1), (1,0) x2 = 1.5 bits -> H(c2 | c1) = 0.5
    assert dg.conditional_entropy(CODES) == pytest.approx([1.0, 0.5])
    # a code fully determined by its prefix adds nothing
    assert dg.conditional_entropy(np.array([[0, 5], [1, 6], [1, 6]]))[1] == pytest.approx(0.0)


def test_collision_rate_counts_items_sharing_their_tuple():
    assert dg.collision_rate(CODES) == 0.5
    assert dg.collision_rate(np.array([[0], [1], [2]])) == 0.0


def test_reconstruction_error_is_relative_to_the_mean():
    X = np.array([[0.0], [2.0]])
    assert dg.reconstruction_error(X, np.array([[1.0], [1.0]])) == pytest.approx(1.0)
    assert dg.reconstruction_error(X, X) == 0.0
    assert dg.reconstruction_error(X, np.array([[0.0], [1.0]])) == pytest.approx(0.5)


def test_directional_coherence_hand_example():
    # parent 0 centred at (0,0): code 0 -> (1,0), code 1 -> (-1,0)
    # parent 1 centred at (5,5): code 0 -> (1,1)/sqrt2, code 1 -> (-1,-1)/sqrt2
    X = np.array([[1, 0], [-1, 0], [6, 6], [4, 4]], dtype=float)
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    assert dg.directional_coherence(X, codes) == pytest.approx(1 / np.sqrt(2))
    # swapping the codes under one parent makes the directions opposite
    swapped = np.array([[0, 0], [0, 1], [1, 1], [1, 0]])
    assert dg.directional_coherence(X, swapped) == pytest.approx(-1 / np.sqrt(2))


def test_directional_coherence_matches_brute_force_pairs():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5))
    codes = np.stack([rng.integers(0, 3, 60), rng.integers(0, 4, 60)], axis=1)
    expected = []
    for v in range(4):
        dirs = []
        for p in range(3):
            child = (codes[:, 0] == p) & (codes[:, 1] == v)
            if child.any():
                r = X[child].mean(0) - X[codes[:, 0] == p].mean(0)
                dirs.append(r / np.linalg.norm(r))
        pairs = [a @ b for a, b in itertools.combinations(dirs, 2)]
        if pairs:
            expected.append(np.mean(pairs))
    assert dg.directional_coherence(X, codes) == pytest.approx(np.mean(expected))


def test_history_target_overlap_hand_example():
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    histories = [np.array([0, 1, 2]), np.array([3]), np.array([], dtype=np.int64), np.array([1])]
    targets = np.array([1, 2, 0, 3])
    l1, l2 = dg.history_target_overlap(codes, histories, targets)
    # users: (2/3, 1, skipped, 0) at level 1; level 2 codes (1/3, 0, -, 1), prefixes (1/3, 0, -, 0)
    assert l1 == {"level": 1, "code_share": pytest.approx(5 / 9), "prefix_share": pytest.approx(5 / 9)}
    assert l2 == {"level": 2, "code_share": pytest.approx(4 / 9), "prefix_share": pytest.approx(1 / 9)}


def test_summarize_reports_every_measure():
    raw = CODES
    final = np.array([[0, 0, 0], [0, 1, 0], [1, 0, 0], [1, 0, 1]])
    X = np.array([[1, 0], [-1, 0], [6, 6], [4, 4]], dtype=float)
    out = dg.summarize(final, raw_codes=raw, codebook_sizes=[2, 4], embeddings=X, reconstruction=X,
                       histories=[np.array([0])], targets=np.array([1]), extra={"method": "x"})
    assert out["levels"] == 2 and out["sid_length"] == 3 and out["dedup_level"]
    assert [p["codebook_size"] for p in out["per_level"]] == [2, 4, 2]
    assert out["per_level"][1]["utilization"] == 0.5
    assert out["per_level"][2]["dedup"] and not out["per_level"][0]["dedup"]
    assert out["collisions"] == {"n_collided": 2, "rate": 0.5, "max_group": 2}
    assert out["reconstruction_error"] == 0.0
    assert out["directional_coherence"] is None  # parent 1's only child is the parent itself: no direction
    assert out["history_target_overlap"][0]["code_share"] == 1.0
    assert out["method"] == "x"


def _toy_dataset() -> Dataset:
    items = pd.DataFrame({"item_id": ["i0", "i1", "i2"], "brand": ["a", "a", None], "cat": ["x", "y", "y"]})
    return Dataset(name="toy", items=items, fields=(FieldSpec("brand", "categorical"), FieldSpec("cat", "categorical")),
                   user_ids=np.array(["u"]), sequences=[np.array([0, 1, 2])])


def test_tree_frame_nodes_and_field_shares():
    tree = tree_frame(np.array([[0, 0], [0, 1], [1, 0]]), _toy_dataset())
    assert tree["prefix"].tolist() == ["0", "1", "0-0", "0-1", "1-0"]
    assert tree["parent"].tolist() == ["", "", "0", "0", "1"]
    assert tree["level"].tolist() == [1, 1, 2, 2, 2]
    assert tree["code"].tolist() == [0, 1, 0, 1, 0]
    assert tree["n_items"].tolist() == [2, 1, 1, 1, 1]
    assert tree["brand_top"].iloc[0] == "a" and pd.isna(tree["brand_top"].iloc[1])  # only unknown brands
    assert tree["brand_share"].tolist()[:2] == [1.0, 0.0]
    assert tree["cat_top"].tolist()[:2] == ["x", "y"]  # tie at node "0" -> the first value
    assert tree["cat_share"].tolist()[:2] == [0.5, 1.0]


def test_sids_round_trip_in_dataset_order(tmp_path):
    ds = _toy_dataset()
    codes = np.array([[0, 0], [0, 1], [1, 0]])
    write_sids(tmp_path / "sids.parquet", ["i2", "i0", "i1"], codes[[2, 0, 1]])
    frame = pd.read_parquet(tmp_path / "sids.parquet")
    assert list(frame.columns) == ["item_id", "codebook1_id", "codebook2_id"]
    back, ids = read_sids(tmp_path / "sids.parquet", ds)
    np.testing.assert_array_equal(back, codes)
    assert ids.tolist() == ["i0", "i1", "i2"]
    write_sids(tmp_path / "short.parquet", ["i0", "i1"], codes[:2])
    with pytest.raises(DataError, match="2 SIDs for the 3 items"):
        read_sids(tmp_path / "short.parquet", ds)
