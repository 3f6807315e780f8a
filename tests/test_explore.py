"""Read-only run views (``resid_lib.explore``): artifacts, SID tables, trees, quality, attention, proxies, ablations."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _runfixture import build_runs_root
from resid_lib.data.split import PAD
from resid_lib.encode.attention import AttentionSample
from resid_lib.errors import DataError, RunDirError
from resid_lib.explore import artifacts
from resid_lib.explore.ablations import (comparison_frame, find_ablations, read_ablation, seconds_columns,
                                         unfinished_rows)
from resid_lib.explore.attention import distance_table, user_heatmap, window_labels
from resid_lib.explore.catalog import runs_table
from resid_lib.explore.embeddings import cosine_knn, map_figure, map_frame, pca, project_2d, sample_items
from resid_lib.explore.proxy import history_long, proxy_summary, tradeoff_figure
from resid_lib.explore.popularity import target_popularity_figure, target_popularity_frame
from resid_lib.explore.published import published_results
from resid_lib.explore.quality import level_table, summary_table
from resid_lib.explore.sid_tree import children, fit_depth, subset_tree, tree_figure, tree_window
from resid_lib.explore.sids import (child_codes, compare_sids, parse_prefix, prefix_items, prefix_spread, search_items,
                                    sid_path, sid_table)
from resid_lib.quantize.tree import tree_frame
from resid_lib.rundir import list_runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_runs_root(tmp_path_factory.mktemp("explore_runs"))


@pytest.fixture(scope="module")
def gaoq(runs):
    view = artifacts.load_run(runs / "famae-gaoq")
    dataset = artifacts.load_dataset(view)
    codes, ids = artifacts.read_sids(view, dataset)
    return view, dataset, sid_table(codes, ids, dataset.items), artifacts.read_tree(view)


# ---------------------------------------------------------------------------- artifacts
def test_run_view_reads_manifest_methods_and_missing_artifacts(runs):
    view = artifacts.load_run(runs / "sasrec-partial")
    assert view.methods == {"encode": "sasrec", "quantize": "gaoq"}
    assert view.stages == {"encode": "done", "quantize": "failed"}
    assert view.has("embeddings") and not view.has("sids")
    assert artifacts.read_sids(view) is None and artifacts.read_tree(view) is None
    assert artifacts.read_attention(view) is None
    assert "quantize stage failed" in view.missing("tree") and "balanced k-means" in view.missing("tree")
    assert "generate stage has status 'pending'" in view.missing("generate_metrics")
    assert "does not produce it" in view.missing("attention")


def test_not_a_run_and_malformed_files_are_clear_errors(runs, tmp_path):
    with pytest.raises(RunDirError, match="not a run directory"):
        artifacts.load_run(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text(json.dumps({"status": "done", "stages": {"quantize": {"status": "done"}}}))
    (broken / "quantize").mkdir()
    (broken / "quantize" / "diagnostics.json").write_text("{not json")
    (broken / "quantize" / "tree.parquet").write_text("not parquet")
    view = artifacts.load_run(broken)
    with pytest.raises(RunDirError, match="diagnostics.json: not valid JSON"):
        artifacts.read_diagnostics(view)
    with pytest.raises(RunDirError, match="tree.parquet"):
        artifacts.read_tree(view)
    assert artifacts.load_dataset(view) is None


def test_attention_shapes_are_checked(tmp_path):
    run = tmp_path / "run"
    (run / "encode").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    AttentionSample(weights=np.ones((2, 1, 1, 4), np.float32), items=np.zeros((2, 3), np.int64),
                    users=np.zeros(2, np.int64)).save(run / "encode" / "attention.npz")
    with pytest.raises(RunDirError, match="do not form"):
        artifacts.read_attention(artifacts.load_run(run))


# ---------------------------------------------------------------------------- SID tables
def test_sid_table_joins_fields_in_item_order(gaoq):
    view, dataset, table, _ = gaoq
    assert list(table["item_id"]) == list(dataset.item_ids)
    assert table["sid"].is_unique
    assert table.at[5, "sid"] == "-".join(str(table.at[5, f"codebook{k}_id"]) for k in (1, 2, 3))
    assert table.at[5, "cat_l1"] == dataset.items.at[5, "cat_l1"]
    assert table.at[5, "tags"] == ", ".join(dataset.items.at[5, "tags"])
    bare = sid_table(*artifacts.read_sids(view))
    assert list(bare.columns[:3]) == ["item_index", "item_id", "sid"] and "title" not in bare


def test_prefix_items_children_and_tree_agree(gaoq):
    _, _, table, tree = gaoq
    for node in tree[tree["level"] <= 2].itertuples():
        prefix = parse_prefix(node.prefix)
        assert len(prefix_items(table, prefix)) == node.n_items
    kids = child_codes(table, (0,))
    tree_kids = children(tree, (0,))
    assert kids["code"].tolist() == tree_kids["code"].tolist()
    assert kids["n_items"].tolist() == tree_kids["n_items"].tolist()
    assert kids["n_items"].sum() == len(prefix_items(table, (0,)))
    assert child_codes(table, (0, 0, 0)).empty  # below the last level


def test_parse_prefix():
    assert parse_prefix(" 3-17 ") == (3, 17)
    assert parse_prefix("") == ()
    with pytest.raises(DataError, match="expected codes"):
        parse_prefix("3-x")


def test_search_finds_ids_exactly_and_fields_by_substring(gaoq):
    _, dataset, table, tree = gaoq
    assert search_items(table, "i00042")["item_id"].tolist() == ["I00042"]
    brand = dataset.items["brand"].dropna().iloc[0]
    hits = search_items(table, brand.lower(), limit=1000)
    assert len(hits) == (dataset.items["brand"] == brand).sum() + dataset.items["title"].str.contains(brand).sum() \
        - ((dataset.items["brand"] == brand) & dataset.items["title"].str.contains(brand)).sum()
    assert search_items(table, "   ").empty
    codes = tuple(int(c) for c in table.loc[42, ["codebook1_id", "codebook2_id", "codebook3_id"]])
    path = sid_path(tree, codes, ["cat_l1"])
    assert path["prefix"].tolist() == ["-".join(map(str, codes[:k])) for k in (1, 2, 3)]
    assert path["n_items"].iloc[-1] == 1 and path["cat_l1"].iloc[-1] == f"{dataset.items.at[42, 'cat_l1']} (100%)"


def test_compare_two_quantizers_on_the_same_items(runs, gaoq):
    _, dataset, table, _ = gaoq
    other_view = artifacts.load_run(runs / "famae-hkmeans")
    other = sid_table(*artifacts.read_sids(other_view, dataset), dataset.items)
    index = prefix_items(table, (1,))["item_index"].to_numpy()
    pairs = compare_sids(table, other, index)
    assert pairs["sid_a"].str.startswith("1-").all()
    assert pairs["sid_b"].tolist() == other.loc[index, "sid"].tolist()
    spread = prefix_spread(table, index)
    assert spread.loc[0, "prefixes"] == 1 and spread.loc[0, "largest_share"] == 1.0
    assert spread["prefixes"].iloc[-1] == len(index)


# ----------------------------------------------------------------------------- SID trees
def test_tree_window_and_depth_limit(gaoq):
    _, _, _, tree = gaoq
    top = tree_window(tree, (), 1)
    assert (top["level"] == 1).all() and (top["parent"] == "").all()
    under = tree_window(tree, (2,), 2)
    assert under.loc[under["prefix"] == "2", "parent"].tolist() == [""]
    assert under["prefix"].str.match(r"^2(-|$)").all() and under["level"].max() == 3
    assert fit_depth(tree, (), 3, max_nodes=len(tree)) == 3
    assert fit_depth(tree, (), 3, max_nodes=(tree["level"] <= 2).sum()) == 2
    assert fit_depth(tree, (), 3, max_nodes=1) == 1
    fig = tree_figure(tree_window(tree, (), 2), field="cat_l1")
    assert len(fig.data[0].ids) == (tree["level"] <= 2).sum()
    fig = tree_figure(under, field="brand", color_by="share", kind="icicle")
    assert fig.data[0].type == "icicle" and fig.data[0].marker.cmax == 1.0


def test_subset_tree_of_every_item_matches_the_quantize_tree(gaoq):
    _, dataset, table, _ = gaoq
    codes = table[["codebook1_id", "codebook2_id", "codebook3_id"]].to_numpy()
    reference = tree_frame(codes, dataset)
    reference = reference[reference["level"] <= 2].set_index("prefix")
    ours = subset_tree(table, table["item_index"].to_numpy(), ["cat_l1", "brand"], depth=2).set_index("prefix")
    assert sorted(ours.index) == sorted(reference.index)
    for col in ("parent", "n_items", "cat_l1_top", "cat_l1_share", "brand_top", "brand_share"):
        assert ours[col].sort_index().tolist() == pytest.approx(reference[col].sort_index().tolist()) \
            if col.endswith("share") else ours[col].sort_index().tolist() == reference[col].sort_index().tolist()


# --------------------------------------------------------------------------- diagnostics
def test_quality_tables_read_summarize_output_and_tolerate_missing_keys(runs):
    diag = artifacts.read_diagnostics(artifacts.load_run(runs / "famae-gaoq"))
    old = {"per_level": [{"level": 1, "entropy": 2.0}, {"level": 2}]}
    levels = level_table({"gaoq": diag, "old": old})
    assert len(levels[levels["run"] == "gaoq"]) == diag["sid_length"]
    gaoq = levels[levels["run"] == "gaoq"].set_index("level")
    assert gaoq.loc[1, "entropy"] == pytest.approx(diag["per_level"][0]["entropy"])
    assert gaoq.loc[2, "prefix_share"] == pytest.approx(diag["history_target_overlap"][1]["prefix_share"])
    assert levels[levels["run"] == "old"]["utilization"].isna().all()
    summary = summary_table({"gaoq": diag, "empty": {}}).set_index("run")
    assert summary.loc["gaoq", "collision_rate"] == pytest.approx(diag["collisions"]["rate"])
    assert summary.loc["empty"].isna().all()


# ---------------------------------------------------------------------------- attention
def test_distance_table_matches_a_direct_average():
    rng = np.random.default_rng(0)
    items = np.full((5, 6), PAD)
    for i, n in enumerate([6, 3, 4, 1, 5]):
        items[i, 6 - n:] = rng.integers(0, 50, n)
    w = rng.random((5, 2, 3, 6)) * (items != PAD)[:, None, None, :]
    w /= w.sum(-1, keepdims=True)
    table = distance_table(AttentionSample(w.astype(np.float32), items, np.arange(5)))
    for (layer, head, d), expected in [((1, 1, 0), w[:, 0, 0, 5].mean()), ((2, 3, 2), w[[0, 1, 2, 4], 1, 2, 3].mean()),
                                       ((1, 2, 5), w[0, 0, 1, 0])]:
        row = table[(table["layer"] == layer) & (table["head"] == head) & (table["distance"] == d)]
        assert row["weight"].item() == pytest.approx(expected, rel=1e-5)
    uniform = table[(table["layer"] == 1) & (table["head"] == 1)].set_index("distance")["uniform"]
    assert uniform[0] == pytest.approx(np.mean([1 / 6, 1 / 3, 1 / 4, 1, 1 / 5]))
    assert uniform[4] == pytest.approx(np.mean([1 / 6, 1 / 5]))
    assert table["windows"].max() == 5 and table["distance"].max() == 5


def test_user_heatmap_drops_padding():
    items = np.array([[PAD, PAD, 4, 7, 9]])
    w = np.zeros((1, 2, 2, 5), np.float32)
    w[..., 2:] = 1 / 3
    sample = AttentionSample(w, items, np.zeros(1, np.int64))
    ids = np.array([f"I{i}" for i in range(10)])
    assert window_labels(items[0], ids) == ["-2 I4", "-1 I7", "target I9"]
    fig = user_heatmap(sample, 0, ids)
    assert len(fig.data) == 2 and np.asarray(fig.data[0].z).shape == (2, 3)


# --------------------------------------------------------------------------- embeddings
def test_cosine_knn_matches_brute_force():
    X = np.random.default_rng(1).normal(size=(40, 6))
    index, dist = cosine_knn(X, 5, chunk=7)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    full = 1 - unit @ unit.T
    assert (index[:, 0] == np.arange(40)).all()
    for i in range(40):
        others = np.argsort(np.where(np.arange(40) == i, np.inf, full[i]))[:4]
        assert set(index[i, 1:]) == set(others)
        assert dist[i, 1:] == pytest.approx(np.sort(full[i, others]), abs=1e-5)


def test_pca_map_frame_and_figure(gaoq):
    view, dataset, table, _ = gaoq
    X = artifacts.read_embeddings(view)
    index = sample_items(len(X), 120, seed=3)
    assert len(index) == 120 and np.all(np.diff(index) > 0)
    assert (sample_items(len(X), 10_000) == np.arange(len(X))).all()
    coords = project_2d(X[index], method="pca")
    assert coords.shape == (120, 2) and np.isfinite(coords).all()
    assert np.allclose(coords, project_2d(X[index], method="pca"))
    frame = map_frame(index, coords, table, dataset.popularity)
    assert frame["item_id"].tolist() == table.loc[index, "item_id"].tolist()
    assert map_figure(frame, "brand", hover=["item_id", "title"]).data
    marker = map_figure(frame, "popularity", hover=["item_id"]).data[0].marker
    assert marker.color == pytest.approx(np.log10(1 + dataset.popularity[index]))


def test_projection_rejects_bad_input():
    with pytest.raises(DataError, match="NaN"):
        project_2d(np.array([[0.0, np.nan], [1, 1], [2, 2]]))
    with pytest.raises(Exception, match="unknown projection"):
        project_2d(np.eye(4), method="tsne")


# ------------------------------------------------------------------ proxies, catalog, ablations
def test_proxy_history_and_summary(runs):
    views = {name: artifacts.load_run(runs / name) for name in ("famae-gaoq", "sasrec-partial")}
    hist = {k: artifacts.read_history(v, "encode") for k, v in views.items()}
    long = history_long(hist)
    assert set(long[long["run"] == "famae-gaoq"]["measure"]) == {"metric1", "metric2", "loss"}
    assert set(long[long["run"] == "sasrec-partial"]["measure"]) == {"valid_recall@10", "valid_ndcg@10", "loss"}
    summary = proxy_summary({k: artifacts.read_metrics(v, "encode") for k, v in views.items()},
                            {k: artifacts.read_metrics(v, "generate") for k, v in views.items()}).set_index("run")
    assert summary.loc["famae-gaoq", "test_recall@10"] == pytest.approx(0.081)
    assert np.isnan(summary.loc["sasrec-partial", "metric1"])
    assert len(tradeoff_figure(summary.reset_index()).data) == 1


def test_runs_table_lists_every_run(runs):
    table = runs_table(list_runs(runs), runs).set_index("run")
    assert set(table.index) == {"famae-gaoq", "famae-hkmeans", "sasrec-partial"}
    assert table.loc["sasrec-partial", "stages"] == "encode done · quantize failed"
    assert table.loc["sasrec-partial", "recall@10"] == pytest.approx(0.066)  # a sequential encoder's test metrics
    assert np.isnan(table.loc["famae-hkmeans", "recall@10"])


def test_ablation_results_beside_published_numbers(runs, tmp_path):
    assert find_ablations(runs) == [runs / "ablations" / "demo"]
    results = read_ablation(runs / "ablations" / "demo")
    assert seconds_columns(results) == ["encode_seconds", "quantize_seconds", "generate_seconds"]
    failed = unfinished_rows(results)[["name", "error"]].values.tolist()
    assert failed == [["Q1", "RuntimeError: RQ-VAE codebook collapsed"]]
    published = published_results()
    assert len(published) == 7 and published["source"].str.len().gt(0).all()
    assert published.set_index("method").at["TIGER (text + RQ-VAE)", "recall@10"] == 0.0648
    both = comparison_frame(results, published, "recall@10")
    assert len(both) == len(results) + len(published)  # the failed row stays, with a NaN the chart drops
    assert (both["source"] == "this ablation").sum() == len(results)
    pd.DataFrame({"point": [0], "status": ["ok"]}).to_parquet(tmp_path / "results.parquet")
    with pytest.raises(RunDirError, match="no metric columns"):
        read_ablation(tmp_path)


def test_pca_matches_an_svd_in_both_shapes():
    rng = np.random.default_rng(2)
    for shape in ((50, 8), (6, 30)):
        X = rng.normal(size=shape)
        centered = X - X.mean(axis=0)
        u, s, _ = np.linalg.svd(centered, full_matrices=False)
        expected = u[:, :3] * s[:3]
        ours = pca(X, 3)
        assert np.abs(ours) == pytest.approx(np.abs(expected), abs=1e-8)  # axes are defined up to sign


# ------------------------------------------------------------------------- target popularity
def test_target_popularity_frame_per_run_and_bucket():
    counts = np.array([0, 2, 30, 30])
    head_only = pd.DataFrame({"split": ["test"] * 3 + ["valid"], "target": [2, 3, 1, 1],
                              "ranked": [np.array([2, 3]), np.array([2, 3]), np.array([2, 3]), np.array([1, 0])]})
    tail_too = head_only.assign(ranked=[np.array([1, 2])] * 4)
    frame = target_popularity_frame({"head": head_only, "tail": tail_too, "empty": head_only.iloc[:0]}, counts,
                                    split="test", k=2, edges=(1, 20))
    assert list(frame["run"].unique()) == ["head", "tail"]  # a run without rows for the split is left out
    table = frame.set_index(["run", "bucket"])["recall@2"]
    assert table["head"].to_dict() == {"0": 0.0, "1-19": 0.0, "20+": 1.0}
    assert table["tail"].to_dict() == {"0": 0.0, "1-19": 1.0, "20+": 0.5}
    assert frame.groupby("run")["share"].sum().tolist() == pytest.approx([1.0, 1.0])
    bars = target_popularity_figure(frame, k=2).data
    assert [b.name for b in bars] == ["head", "tail"] and bars[0].x[2] == "20+ (67% of users)"


def test_read_predictions_names_the_missing_columns(tmp_path):
    root = build_runs_root(tmp_path)
    view = artifacts.load_run(root / "famae-gaoq")
    assert set(artifacts.read_predictions(view)["split"]) == {"valid", "test"}
    assert artifacts.read_predictions(artifacts.load_run(root / "famae-hkmeans")) is None
    pd.DataFrame({"split": ["test"]}).to_parquet(view.file("predictions"))
    with pytest.raises(RunDirError, match=r"missing columns \['ranked', 'target'\]"):
        artifacts.read_predictions(view)
