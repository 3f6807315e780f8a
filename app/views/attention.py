"""FAMAE attention: where the masked target position looks in a user's history."""
from __future__ import annotations

import streamlit as st

from common import attention, dataset, header, page_errors, pick_run
from resid_lib.data.split import PAD
from resid_lib.explore.attention import distance_figure, distance_table, user_heatmap

header("FAMAE attention", "For a sample of validation users: the fully masked target position's attention over the "
                          "history, per layer and head, and the attention averaged by distance from the target.")

with page_errors():
    view = pick_run("Run", "att_run", "attention")
    if view is None:
        st.stop()
    sample = attention(view)
    ds = dataset(view)
    n, n_layers, n_heads, length = sample.weights.shape
    if n == 0:
        st.info("The attention sample of this run is empty (no validation users were sampled).")
        st.stop()
    st.caption(f"{n} sampled users, {n_layers} layers x {n_heads} heads, windows of up to {length} items.")
    item_ids = ds.item_ids if ds is not None else None

    def user_text(i: int) -> str:
        user = int(sample.users[i])
        name = str(ds.user_ids[user]) if ds is not None and 0 <= user < ds.n_users else f"user {user}"
        return f"{name} · {int((sample.items[i] != PAD).sum()) - 1} history items"

    st.subheader("One user's window")
    pick = st.selectbox("Sampled user", list(range(n)), key="att_user", format_func=user_text)
    hover = None
    if ds is not None:
        fields = ds.text_fields[:1] + ds.categorical_fields[-1:]
        window = sample.items[pick][sample.items[pick] != PAD]
        hover = [" · ".join(str(ds.items.at[int(i), f]) for f in fields) for i in window]
    st.plotly_chart(user_heatmap(sample, pick, item_ids, hover), width="stretch", key="att_heatmap")
    st.caption("Columns run from the oldest history item (left) to the target (right); each head's row sums to 1.")

    st.subheader("Attention by distance from the target")
    table = distance_table(sample)
    farthest = int(table["distance"].max())
    c1, c2 = st.columns([1, 2])
    per_head = c1.toggle("One line per head", key="att_per_head")
    max_distance = farthest
    if farthest > 1:
        max_distance = c2.slider("Largest distance", 1, farthest, farthest, key="att_max_distance")
    st.plotly_chart(distance_figure(table, per_head=per_head, max_distance=max_distance), width="stretch",
                    key="att_distance")
    st.caption("Averaged over the sampled windows that reach each distance. Above the dashed line a layer favours "
               "those positions over spreading attention evenly.")
    by_layer = table.groupby(["distance", "layer"])["weight"].mean().unstack("layer")
    by_layer.columns = [f"layer {layer}" for layer in by_layer.columns]
    by_layer["uniform"] = table.groupby("distance")["uniform"].first()
    st.dataframe(by_layer, width="stretch", height=240)
