"""Prefix entropy and code quality: per-level diagnostics of several runs' SIDs side by side."""
from __future__ import annotations

import streamlit as st

from common import diagnostics, header, page_errors, pick_runs, run_label
from resid_lib.explore.quality import LEVEL_MEASURES, entropy_figure, level_figure, level_table, summary_table

header("Prefix entropy & code quality",
       "Per SID level, for several runs at once: codebook utilization, H(c_l) against its even-use ceiling log2 b_l, "
       "the prefix-conditional entropy H(c_l | C<l), collisions before dedup, directional coherence and how often "
       "a user's history shares the target's codes.")

with page_errors():
    views = pick_runs("Runs", "quality_runs", "diagnostics")
    if not views:
        st.stop()
    diags = {run_label(str(v.path)): diagnostics(v) for v in views}
    levels = level_table(diags)
    summary = summary_table(diags)

    st.subheader("Per run")
    st.dataframe(summary, hide_index=True, width="stretch", column_config={
        "collision_rate": st.column_config.NumberColumn(format="percent"),
        "directional_coherence": st.column_config.NumberColumn(
            format="%.4f", help="Mean pairwise cosine of the centred child directions sharing one level-2 code "
                                "(paper Table 10: GAOQ 0.046-0.057, hierarchical k-means 0.005-0.017)."),
        "reconstruction_error": st.column_config.NumberColumn(format="%.4f"),
    })

    st.subheader("Entropy per level")
    st.caption("Bars: H(c_l); diamonds: H(c_l | C<l), what the decoder must still guess once the prefix is known; "
               "dashes: log2 b_l, reached when every code is used equally often. Entropies in bits.")
    if levels[["entropy", "max_entropy", "conditional_entropy"]].notna().any().any():
        st.plotly_chart(entropy_figure(levels), width="stretch", key="entropy_chart")
    else:
        st.info("These diagnostics hold no entropies.")

    left, right = st.columns(2)
    with left:
        st.markdown("**Codebook utilization**")
        st.plotly_chart(level_figure(levels, "utilization"), width="stretch", key="utilization_chart")
    with right:
        st.markdown("**History / target overlap**")
        measure = st.radio("Overlap measure", ["prefix_share", "code_share"], horizontal=True, key="overlap_measure",
                           format_func=LEVEL_MEASURES.get)
        if levels[measure].notna().any():
            st.plotly_chart(level_figure(levels, measure), width="stretch", key="overlap_chart")
        else:
            st.info("No history/target overlap in these diagnostics (it needs the evaluation histories).")

    st.subheader("Per level")
    st.dataframe(levels, hide_index=True, width="stretch")
