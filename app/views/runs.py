"""Runs: the catalog of run directories and the pick of runs to compare."""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

import pandas as pd

from common import COMPARE_KEY, catalog, header, no_runs_message, page_errors, run_view, runs_root, target_popularity
from resid_lib.explore.artifacts import load_run
from resid_lib.explore.popularity import target_popularity_figure
from resid_lib.explore.catalog import runs_table
from resid_lib.rundir import HEADLINE_KEYS

header("Runs", "Every run directory under the runs root with its status, dataset, methods and headline test "
               "metrics; pick the runs that the other pages compare.")

with page_errors():
    runs = catalog()
    if not runs:
        no_runs_message()
        st.stop()
    table = runs_table(runs, runs_root())
    metric_format = {k: st.column_config.NumberColumn(k, format="%.4f") for k in HEADLINE_KEYS}
    st.dataframe(table.drop(columns="path"), hide_index=True, width="stretch", column_config=metric_format)

    labels = dict(zip(table["path"], table["run"] + " (" + table["encode"] + "+" + table["quantize"] + ")"))
    widget = "runs_compare_widget"
    if widget not in st.session_state:  # first visit, or back from another page: restore the pick
        st.session_state[widget] = st.session_state.get(COMPARE_KEY, [])
    st.session_state[widget] = [p for p in st.session_state[widget] if p in labels]
    chosen = st.multiselect("Runs to compare", list(labels), key=widget, format_func=labels.get,
                            help="The SID tree, code-quality, embedding, attention and proxy-metric pages offer these "
                                 "runs; with none picked they offer every run.")
    st.session_state[COMPARE_KEY] = chosen

    failed = [r for r in runs if any(s in ("failed", "interrupted") for s in r.stages.values())]
    for r in failed:
        for stage, message in load_run(r.path).errors.items():
            st.warning(f"{labels[str(r.path)]}: {stage} {r.stages[stage]}: {message}")

    scored = table.dropna(subset=["recall@10"])
    shown = scored[scored["path"].isin(chosen)] if chosen else scored
    if len(shown):
        st.subheader("Headline test metrics")
        fig = go.Figure()
        for key in HEADLINE_KEYS:
            fig.add_bar(x=shown["run"], y=shown[key], name=key)
        fig.update_layout(barmode="group", height=340, margin={"t": 20, "l": 10, "r": 10, "b": 10})
        st.plotly_chart(fig, width="stretch")

        st.subheader("Recall@10 by the target's popularity")
        split = st.radio("Split", ["test", "valid"], horizontal=True, key="runs_popularity_split")
        frames = [target_popularity(run_view(row.path), row.run, split) for row in shown.itertuples(index=False)]
        frames = [f for f in frames if f is not None]
        if frames:
            st.caption("Users grouped by how often their target item occurs in the training prefixes: a "
                       "generator that only learns the head of the catalog scores near zero on the tail.")
            st.plotly_chart(target_popularity_figure(pd.concat(frames, ignore_index=True)), width="stretch",
                            key="runs_popularity")
        else:
            st.info("No picked run has G-stage predictions with its dataset at hand.")
    else:
        st.info("No run has test metrics yet: they appear when a G-stage (or a sequential-recommender encoder) "
                "finishes.")
