"""Embeddings: a 2-D map of one run's item vectors, coloured by code, field or popularity."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from common import dataset, embedding_map, header, page_errors, pick_run, sid_table
from resid_lib.explore.embeddings import map_figure, map_frame
from resid_lib.explore.sids import code_columns

header("Embeddings", "A 2-D map (UMAP, or PCA for speed) of one run's item vectors from the E-stage, coloured by "
                     "first-level SID code, by an item field or by popularity; hover a point to see the item.")

FIRST_CODE = "first-level code"

with page_errors():
    view = pick_run("Run", "emb_run", "embeddings")
    if view is None:
        st.stop()
    ds = dataset(view)
    table = sid_table(view) if view.has("sids") else None
    if ds is None:
        st.warning(f"The run's dataset folder ({view.dataset_path}) is missing or holds other data: "
                   "points carry item indices only.")

    options = ([FIRST_CODE] if table is not None else []) + (ds.categorical_fields if ds else [])
    options += ["popularity"] if ds is not None else []
    c1, c2, c3 = st.columns([1, 1, 2])
    method = c1.radio("Projection", ["umap", "pca"], horizontal=True, key="emb_method",
                      format_func={"umap": "UMAP", "pca": "PCA"}.get)
    max_items = int(c2.number_input("Items on the map (sampled)", min_value=100, max_value=50_000, value=5000,
                                    step=500, key="emb_max_items"))
    options = options or ["item_id"]
    if st.session_state.get("emb_color") not in options:
        st.session_state.pop("emb_color", None)
    color = c3.selectbox("Colour by", options, key="emb_color")
    if table is None:
        st.caption(view.missing("sids") + " Colouring by SID code appears once it has run.")

    with st.spinner(f"Computing the {method.upper()} map ..."):
        index, coords, n_items = embedding_map(view, method, max_items)
    if table is not None:
        items = table.assign(**{FIRST_CODE: table[code_columns(table)[0]].astype(str)})
    elif ds is not None:
        items = ds.items
    else:
        items = pd.DataFrame({"item_id": np.arange(n_items).astype(str)})
    if len(items) != n_items:
        st.error(f"encode/item_embeddings.npy has {n_items:,} rows but the run's catalog has {len(items):,} items.")
        st.stop()
    frame = map_frame(index, coords, items, ds.popularity if ds is not None else None)
    hover = ["item_id", "sid", *(ds.text_fields[:1] if ds else []), *(ds.categorical_fields if ds else [])]
    st.plotly_chart(map_figure(frame, color, hover=hover), width="stretch", key="emb_chart")
    st.caption(f"{len(index):,} items shown" + (f" of {n_items:,} (seeded sample)" if len(index) < n_items else "")
               + ". Projection cached per run, method and sample size.")
