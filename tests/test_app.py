"""The Streamlit app driven by ``AppTest`` on a tiny generated runs root (see ``_runfixture``)."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from _runfixture import build_runs_root

APP = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_runs_root(tmp_path_factory.mktemp("app_runs"))


def open_page(root: Path, page: str | None = None, **state) -> AppTest:
    """Run the app on ``root``, switch to ``views/<page>.py`` and run it (with ``state`` preset)."""
    at = AppTest.from_file(APP, default_timeout=90)
    at.session_state["runs_root"] = str(root)
    at.run()
    assert not at.exception, at.exception[0].value
    if page is not None:
        for key, value in state.items():
            at.session_state[key] = value
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, at.exception[0].value
    return at


def charts(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


def labels(widgets) -> list[str]:
    return [w.label for w in widgets]


# ----------------------------------------------------------------------------- every page
@pytest.mark.parametrize("page, title, selects, n_charts", [
    (None, "Runs", [], 2),
    ("sid_tree", "SID tree", ["Run", "Level 1 code", "Colour by field", "Compare with"], 3),
    ("code_quality", "Prefix entropy & code quality", [], 3),
    ("attention", "FAMAE attention", ["Run", "Sampled user"], 2),
    ("proxy_metrics", "Proxy metrics", [], 4),
    ("ablations", "Ablations", ["Found", "Metric"], 2),
])
def test_page_renders_its_widgets_and_charts(runs, page, title, selects, n_charts):
    at = open_page(runs, page)
    assert [t.value for t in at.title] == [title]
    assert at.main.caption[0].value  # the one sentence saying what the page shows
    assert not at.error
    for label in selects:
        assert label in labels(at.selectbox)
    assert charts(at) >= n_charts


def test_embeddings_page_maps_items_coloured_by_code_field_and_popularity(runs):
    at = open_page(runs, "embeddings", emb_run=str(runs / "famae-gaoq"), emb_method="pca")
    assert charts(at) == 1
    color = at.selectbox(key="emb_color")
    assert color.options[0] == "first-level code"
    assert {"cat_l1", "brand", "popularity"} <= set(color.options)
    assert "UMAP" in at.radio(key="emb_method").options
    color.set_value("popularity").run()
    assert not at.exception and charts(at) == 1
    assert "300 items shown" in at.main.caption[-1].value


def test_runs_page_lists_runs_and_stores_the_comparison(runs):
    at = open_page(runs)
    table = at.dataframe[0].value
    assert set(table["run"]) == {"famae-gaoq", "famae-hkmeans", "sasrec-partial"}
    assert table.set_index("run").at["famae-gaoq", "recall@10"] == pytest.approx(0.081)
    assert any("quantize failed" in w.value for w in at.warning)
    picked = [str(runs / "famae-gaoq"), str(runs / "famae-hkmeans")]
    at.multiselect(key="runs_compare_widget").set_value(picked).run()
    assert at.session_state["compare_runs"] == picked
    popularity = at.get("plotly_chart")[-1].proto.spec
    assert "0 (" in popularity and "20+ (" in popularity  # recall by the target's training count
    at.radio(key="runs_popularity_split").set_value("valid").run()
    assert not at.exception
    at.switch_page("views/sid_tree.py").run()
    offered = at.selectbox(key="tree_run").options
    assert sorted(offered) == ["famae-gaoq (famae+gaoq)", "famae-hkmeans (famae+hkmeans)"]
    at.switch_page("views/runs.py").run()
    assert at.multiselect(key="runs_compare_widget").value == picked


# ------------------------------------------------------------------------------ SID tree
def items_table(at: AppTest):
    """The item list under the chosen prefix (the dataframe after the 'Items under' subheader)."""
    return next(df.value for df in at.dataframe if "sid" in df.value.columns and "title" in df.value.columns)


def test_selecting_a_prefix_changes_the_item_list(runs):
    at = open_page(runs, "sid_tree", tree_run=str(runs / "famae-gaoq"))
    everything = items_table(at)
    assert len(everything) == 300
    level1 = at.selectbox(key="prefix_l1")
    code = level1.options[2]  # options: "all", then "code · n items · ..." labels
    chosen = int(code.split(" · ")[0])
    level1.set_value(chosen).run()
    under = items_table(at)
    assert 0 < len(under) < len(everything)
    assert under["sid"].str.startswith(f"{chosen}-").all()
    assert any(s.value.startswith(f"Items under {chosen} (") for s in at.subheader)

    level2 = at.selectbox(key="prefix_l2")
    second = int(level2.options[1].split(" · ")[0])
    level2.set_value(second).run()
    deeper = items_table(at)
    assert 0 < len(deeper) <= len(under)
    assert deeper["sid"].str.startswith(f"{chosen}-{second}-").all()
    assert not at.exception


def test_item_search_shows_the_sid_path(runs):
    at = open_page(runs, "sid_tree", tree_run=str(runs / "famae-gaoq"))
    at.text_input(key="item_query").input("I00007").run()
    path = next(df.value for df in at.dataframe if "level" in df.value.columns and "prefix" in df.value.columns
                and "n_items" in df.value.columns and len(df.value) == 3)
    assert list(path["level"]) == [1, 2, 3]
    assert path["n_items"].iloc[0] >= path["n_items"].iloc[1] >= path["n_items"].iloc[2] == 1
    at.text_input(key="item_query").input("no such thing").run()
    assert any("No item matches" in i.value for i in at.info)


def test_comparison_shows_the_same_items_under_the_other_quantizer(runs):
    at = open_page(runs, "sid_tree", tree_run=str(runs / "famae-gaoq"))
    at.selectbox(key="prefix_l1").set_value(0).run()
    compared = next(df.value for df in at.dataframe if {"sid_a", "sid_b"} <= set(df.value.columns))
    assert compared["sid_a"].str.startswith("0-").all()
    assert compared["sid_b"].notna().all() and len(compared) == len(items_table(at))
    assert charts(at) == 3


def test_partial_and_failed_runs_give_messages_not_tracebacks(runs):
    partial = str(runs / "sasrec-partial")
    at = open_page(runs, "sid_tree", tree_run=partial)
    assert any("quantize stage failed" in i.value for i in at.info)
    at = open_page(runs, "attention", att_run=partial)
    assert any("attention.npz" in i.value for i in at.info)
    at = open_page(runs, "proxy_metrics", proxy_runs=[partial])
    assert any("Metric 1 and 2" in i.value for i in at.info)
    assert charts(at) >= 1  # the sequential encoder's validation recall


def test_an_empty_root_explains_what_to_do(tmp_path):
    for page in (None, "sid_tree", "code_quality", "embeddings", "attention", "proxy_metrics", "ablations"):
        at = open_page(tmp_path, page)
        assert at.info and not at.error


# ----------------------------------------------------------------------------- ablations
def test_ablation_chart_adds_published_numbers_on_request(runs):
    at = open_page(runs, "ablations")
    assert len(at.dataframe[0].value) == 5
    assert any("Q1: failed: RuntimeError" in w.value for w in at.warning)
    with_published = at.get("plotly_chart")[0].proto.spec
    at.toggle(key="abl_published").set_value(False).run()
    without = at.get("plotly_chart")[0].proto.spec
    assert "RPG (OPQ, long SIDs)" in with_published and "RPG (OPQ, long SIDs)" not in without
    at.selectbox(key="abl_metric").set_value("ndcg@5").run()
    assert not at.exception


# ------------------------------------------------------------------------- workbench app
def test_app_command_arguments_and_busy_port(tmp_path):
    import argparse
    import socket

    from resid_lib.errors import WorkbenchError
    from workbench.commands import app as app_command

    parser = argparse.ArgumentParser()
    app_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["app", "--runs", str(tmp_path), "--port", "8999", "--headless"])
    assert (args.runs, args.port, args.headless, args.func) == (tmp_path, 8999, True, app_command._app)
    assert parser.parse_args(["app"]).runs == Path("runs")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not app_command.port_is_free(port)
        assert app_command.free_port(port) > port
        with pytest.raises(WorkbenchError, match=f"port {port} on localhost is in use"):
            app_command.launch(tmp_path, port)
