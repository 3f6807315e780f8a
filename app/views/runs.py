"""Runs: the catalog of run directories and the pick of runs to compare."""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from common import COMPARE_KEY, catalog, header, no_runs_message, page_errors, runs_root
from resid_lib.explore.artifacts import load_run
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
    else:
        st.info("No run has test metrics yet: they appear when a G-stage (or a sequential-recommender encoder) "
                "finishes.")
