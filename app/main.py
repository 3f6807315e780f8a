"""The ReSID workbench app: ``streamlit run app/main.py`` (or ``workbench app``).

Reads run directories under a runs root (sidebar; default ``$RESID_RUNS`` or ``runs``)
and never trains or writes. One module per page under ``app/views``; the folder is not
called ``pages``, which would make Streamlit serve a page opened by its URL without
this script (no navigation, no sidebar).
"""
from __future__ import annotations

import streamlit as st

from common import root_sidebar

st.set_page_config(page_title="ReSID workbench", page_icon=":material/account_tree:", layout="wide")

PAGES = [
    st.Page("views/runs.py", title="Runs", icon=":material/folder_open:", default=True),
    st.Page("views/sid_tree.py", title="SID tree", icon=":material/account_tree:"),
    st.Page("views/code_quality.py", title="Prefix entropy & code quality", icon=":material/insights:"),
    st.Page("views/embeddings.py", title="Embeddings", icon=":material/scatter_plot:"),
    st.Page("views/attention.py", title="FAMAE attention", icon=":material/visibility:"),
    st.Page("views/proxy_metrics.py", title="Proxy metrics", icon=":material/show_chart:"),
    st.Page("views/ablations.py", title="Ablations", icon=":material/bar_chart:"),
]

navigation = st.navigation(PAGES)
root_sidebar()
navigation.run()
