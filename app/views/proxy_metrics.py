"""Proxy metrics: Metric 1 and Metric 2 per epoch for the selected runs' encoders, beside downstream Recall@10."""
from __future__ import annotations

import streamlit as st

from common import header, history, metrics, page_errors, pick_runs, run_label
from resid_lib.explore.palette import run_colors
from resid_lib.explore.proxy import history_figure, history_long, proxy_summary, tradeoff_figure

header("Proxy metrics", "Metric 1 (collaborative: Recall@10 with all target fields masked) and Metric 2 "
                        "(discriminative: Recall@10 with only the item id masked) per epoch for the selected runs' "
                        "encoders, with the downstream Recall@10 where the G-stage ran.")

with page_errors():
    views = pick_runs("Runs", "proxy_runs", "encode_history")
    if not views:
        st.stop()
    named = {run_label(str(v.path)): v for v in views}
    long = history_long({name: history(v, "encode") for name, v in named.items()})
    summary = proxy_summary({name: metrics(v, "encode") for name, v in named.items()},
                            {name: metrics(v, "generate") for name, v in named.items()})
    best = dict(zip(summary["run"], summary["best_epoch"]))
    colors = run_colors(list(named))

    st.subheader("Selected epoch and downstream result")
    st.dataframe(summary, hide_index=True, width="stretch", column_config={
        c: st.column_config.NumberColumn(format="%.4f")
        for c in ("metric1", "metric2", "valid_recall@10", "test_recall@10")})
    if summary["test_recall@10"].isna().all():
        st.caption("No selected run has finished its G-stage yet, so there is no downstream Recall@10 to compare.")

    measures = set(long["measure"])
    if {"metric1", "metric2"} <= measures:
        left, right = st.columns(2)
        with left:
            st.markdown("**Metric 1 (collaborative)**")
            st.plotly_chart(history_figure(long, "metric1", best, colors=colors), width="stretch", key="metric1_chart")
        with right:
            st.markdown("**Metric 2 (discriminative)**")
            st.plotly_chart(history_figure(long, "metric2", best, colors=colors), width="stretch", key="metric2_chart")
        st.caption("Stars mark the epoch each run kept (early stopping). The paper finds downstream Recall@10 "
                   "rises when both metrics rise.")
        st.subheader("Metric 1 against Metric 2")
        st.plotly_chart(tradeoff_figure(summary), width="stretch", key="tradeoff_chart")
    else:
        st.info("None of the selected runs logs Metric 1 and 2: they come from FAMAE encoders "
                "(encode.method=famae).")
    if "valid_recall@10" in measures:
        st.subheader("Sequential-recommender encoders: validation Recall@10")
        st.plotly_chart(history_figure(long, "valid_recall@10", best, colors=colors), width="stretch",
                        key="seqrec_chart")
    if "loss" in measures:
        with st.expander("Training loss"):
            st.plotly_chart(history_figure(long, "loss", best, colors=colors), width="stretch", key="loss_chart")
