"""Ablations: an ablation grid's results table and bar charts against the published numbers."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from common import ablation, header, page_errors, runs_root
from resid_lib.explore.ablations import (comparison_figure, comparison_frame, find_ablations, seconds_columns,
                                         seconds_figure, unfinished_rows)
from resid_lib.explore.published import PUBLISHED_DATASET, published_results
from resid_lib.rundir import HEADLINE_KEYS

header("Ablations", "The results of an ablation grid (`workbench ablate`: one row per method) as a table and as bar "
                    f"charts beside the published numbers on {PUBLISHED_DATASET}.")

with page_errors():
    root = runs_root()
    found = find_ablations(root)
    typed = st.text_input("Ablation folder (holding results.parquet)", key="abl_folder",
                          placeholder="leave empty to pick one found under the runs root")
    if typed.strip():
        folder = Path(typed.strip()).expanduser()
    elif found:
        folder = st.selectbox("Found", found, key="abl_found", format_func=str)
    else:
        st.info(f"No results.parquet under {root} yet. Run the ablation grid, e.g. "
                "`workbench ablate --config beauty-cpu --data DATASET --out runs/ablations/NAME`, "
                "or type its folder above.")
        st.stop()
    results = ablation(folder)

    st.subheader("Results")
    st.dataframe(results.drop(columns=[c for c in ("error",) if c in results.columns]), hide_index=True,
                 width="stretch",
                 column_config={k: st.column_config.NumberColumn(format="%.4f") for k in HEADLINE_KEYS})
    for row in unfinished_rows(results).itertuples(index=False):
        st.warning(f"{row.name}: {row.status}" + (f": {row.error}" if row.error else ""))

    metrics = [k for k in HEADLINE_KEYS if k in results.columns]
    c1, c2 = st.columns([1, 2])
    metric = c1.selectbox("Metric", metrics, index=metrics.index("recall@10") if "recall@10" in metrics else 0,
                          key="abl_metric")
    show_published = c2.toggle(f"Published numbers ({PUBLISHED_DATASET})", value=True, key="abl_published",
                               help="Only comparable when the ablation ran on amazon2014-beauty with the "
                                    "leave-one-out, full-ranking protocol.")
    published = published_results() if show_published else None
    st.plotly_chart(comparison_figure(comparison_frame(results, published, metric), metric), width="stretch",
                    key="abl_chart")
    if show_published:
        with st.expander("Sources of the published numbers"):
            st.dataframe(published_results(), hide_index=True, width="stretch")
    if seconds_columns(results):
        st.subheader("Time per stage")
        st.plotly_chart(seconds_figure(results), width="stretch", key="abl_seconds")
