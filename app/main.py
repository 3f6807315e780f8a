"""The ReSID workbench app: ``streamlit run app/main.py`` (or ``workbench app``).

Reads run directories under a runs root (sidebar; default ``$RESID_RUNS`` or ``runs``)
and never trains or writes. One module per page under ``app/pages``.
"""
from __future__ import annotations

import streamlit as st

from common import root_sidebar

st.set_page_config(page_title="ReSID workbench", page_icon=":material/account_tree:", layout="wide")

PAGES = [
    st.Page("pages/runs.py", title="Runs", icon=":material/folder_open:", default=True),
    st.Page("pages/sid_tree.py", title="SID tree", icon=":material/account_tree:"),
    st.Page("pages/code_quality.py", title="Prefix entropy & code quality", icon=":material/insights:"),
    st.Page("pages/embeddings.py", title="Embeddings", icon=":material/scatter_plot:"),
    st.Page("pages/attention.py", title="FAMAE attention", icon=":material/visibility:"),
    st.Page("pages/proxy_metrics.py", title="Proxy metrics", icon=":material/show_chart:"),
    st.Page("pages/ablations.py", title="Ablations", icon=":material/bar_chart:"),
]

navigation = st.navigation(PAGES)
root_sidebar()
navigation.run()
