"""SID tree: drill into prefixes, see their items and dominant fields, find an item, compare two quantizers."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from common import (catalog, color_legend, dataset, header, page_errors, pick_run, run_label,
                    run_view, sid_table, tree)
from resid_lib.explore.sid_tree import (children, color_key, dominant_fields, fit_depth, subset_tree, tree_figure,
                                        tree_window)
from resid_lib.explore.sids import (code_columns, compare_sids, format_prefix, prefix_items, prefix_spread,
                                    search_items, sid_path)

MAX_NODES = 4000
MAX_ITEM_ROWS = 2000

header("SID tree", "The tree of one run's Semantic IDs: drill into a prefix to see its items and each node's dominant "
                   "category and brand with its share, find an item's SID path, and compare the same items under "
                   "another run's quantizer.")


def describe(nodes: pd.DataFrame, field: str | None) -> dict[int, str]:
    """Select-box labels for child codes: ``code · n items · dominant value (share)``."""
    out = {}
    for row in nodes.itertuples(index=False):
        text = f"{row.code} · {row.n_items} items"
        if field is not None:
            top, share = getattr(row, f"{field}_top"), getattr(row, f"{field}_share")
            if isinstance(top, str):
                text += f" · {top} ({share:.0%})"
        out[int(row.code)] = text
    return out


def display_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c != "item_index" and c not in code_columns(table)]


with page_errors():
    view = pick_run("Run", "tree_run", "tree")
    if view is None:
        st.stop()
    nodes = tree(view)
    table = sid_table(view)
    if table is None:
        st.info(view.missing("sids"))
        st.stop()
    if dataset(view) is None:
        st.warning(f"The run's dataset folder ({view.dataset_path}) is missing or now holds other data: "
                   "items show their ids only.")
    fields = dominant_fields(nodes)
    n_levels = len(code_columns(table))
    default_field = next((f for f in ("cat_l1", "cat_l2", "brand") if f in fields), fields[0] if fields else None)

    # ---------------------------------------------------------------- prefix drill-down
    st.subheader("Prefix")
    label_field = st.session_state.get("tree_color_field", default_field)
    drill = st.columns(max(1, n_levels - 1))
    prefix: tuple[int, ...] = ()
    for level in range(1, n_levels):
        kids = children(nodes, prefix)
        if kids.empty:
            break
        labels = describe(kids, label_field if label_field in fields else None)
        options = [None, *labels]
        key = f"prefix_l{level}"
        if st.session_state.get(key) not in options:
            st.session_state.pop(key, None)
        choice = drill[level - 1].selectbox(f"Level {level} code", options, key=key,
                                            format_func=lambda c, labels=labels: "all" if c is None else labels[c])
        if choice is None:
            break
        prefix = (*prefix, int(choice))

    # ------------------------------------------------------------------------ the tree
    controls = st.columns([2, 2, 1, 2])
    field = controls[0].selectbox("Colour by field", fields or [None], key="tree_color_field",
                                  index=(fields.index(default_field) if default_field in fields else 0))
    color_by = controls[1].radio("Colour shows", ["value", "share"], horizontal=True, key="tree_color_by",
                                 format_func={"value": "dominant value", "share": "its share (purity)"}.get)
    kind = controls[2].radio("Chart", ["sunburst", "icicle"], key="tree_kind")
    deepest = min(3, n_levels - len(prefix))
    if deepest > 1:
        st.session_state["tree_depth"] = min(st.session_state.get("tree_depth", 2), deepest)
        depth = controls[3].slider("Levels shown below the prefix", 1, deepest, key="tree_depth")
    else:
        depth = 1
        controls[3].caption("One level below this prefix: its items.")
    shown_depth = fit_depth(nodes, prefix, depth, MAX_NODES)
    window = tree_window(nodes, prefix, shown_depth)

    left, right = st.columns([3, 2])
    with left:
        if shown_depth < depth:
            st.caption(f"Showing {shown_depth} level(s): {depth} would draw more than {MAX_NODES:,} nodes; "
                       "pick a prefix to go deeper.")
        colors = color_key(nodes, field) if field else None  # one key for every figure of the page
        st.plotly_chart(tree_figure(window, field=field, color_by=color_by, kind=kind, colors=colors),
                        width="stretch", key="tree_chart")
        if colors and color_by == "value":
            color_legend(colors, f"dominant {field}")
    with right:
        where = f"prefix {format_prefix(prefix)}" if prefix else "the root"
        st.markdown(f"**Nodes under {where}**")
        kids = children(nodes, prefix)
        ordered = ([field] if field else []) + [f for f in fields if f != field]
        cols = ["prefix", "n_items"] + [c for f in ordered for c in (f"{f}_top", f"{f}_share")]
        share_format = {f"{f}_share": st.column_config.ProgressColumn(f"{f} share", min_value=0.0, max_value=1.0,
                                                                      format="percent") for f in fields}
        st.dataframe(kids[cols], hide_index=True, width="stretch", height=420, column_config=share_format)

    # ------------------------------------------------------------------------ the items
    items = prefix_items(table, prefix)
    st.subheader(f"Items under {format_prefix(prefix) if prefix else 'every prefix'} ({len(items):,})")
    if len(items) > MAX_ITEM_ROWS:
        st.caption(f"First {MAX_ITEM_ROWS:,} items by SID; pick a longer prefix to see the rest.")
    st.dataframe(items[display_columns(table)].head(MAX_ITEM_ROWS), hide_index=True, width="stretch",
                 key="prefix_items")

    # ----------------------------------------------------------------------- item search
    st.subheader("Find an item")
    query = st.text_input("Item id or a field value (e.g. a brand or a word of the title)", key="item_query")
    if query.strip():
        found = search_items(table, query)
        if found.empty:
            st.info(f"No item matches {query!r}.")
        else:
            st.dataframe(found[display_columns(table)], hide_index=True, width="stretch", height=200)
            pick = st.selectbox("SID path of", found["item_index"].tolist(), key="item_pick",
                                format_func=lambda i: f"{table.at[i, 'item_id']} ({table.at[i, 'sid']})")
            codes = tuple(int(c) for c in table.loc[pick, code_columns(table)])
            st.dataframe(sid_path(nodes, codes, fields), hide_index=True, width="stretch")
            st.caption("Pick its codes in the prefix boxes above to see the items it shares a prefix with.")

    # -------------------------------------------------------- same items, another quantizer
    st.subheader("The same items under another run's quantizer")
    others = [str(r.path) for r in catalog() if str(r.path) != str(view.path)]
    others = [p for p in others if run_view(p).has("sids") and run_view(p).fingerprint == view.fingerprint]
    if not others:
        st.info("No other run of the same dataset has SIDs yet: run another quantizer (e.g. "
                "`--set quantize.method=hkmeans`) to compare.")
        st.stop()
    if st.session_state.get("compare_with") not in others:
        st.session_state["compare_with"] = others[0]
    names = {p: run_label(p) for p in others}
    other_path = st.selectbox("Compare with", others, key="compare_with", format_func=names.__getitem__)
    other = run_view(other_path)
    other_table = sid_table(other)
    index = items["item_index"].to_numpy()
    st.caption(f"The {len(index):,} items under {format_prefix(prefix) or 'the root'} of {run_label(str(view.path))}, "
               f"and where {run_label(other_path)} puts them.")
    cat_fields = [f for f in fields if f in table.columns]
    a_col, b_col = st.columns(2)
    subset_a = subset_tree(table, index, cat_fields, depth=min(n_levels, len(prefix) + 2))
    subset_b = subset_tree(other_table, index, cat_fields, depth=2)
    with a_col:
        st.markdown(f"**{run_label(str(view.path))}**")
        st.plotly_chart(tree_figure(subset_a, field=field, color_by=color_by, colors=colors, height=420),
                        width="stretch", key="compare_a")
        st.dataframe(prefix_spread(table, index), hide_index=True, width="stretch")
    with b_col:
        st.markdown(f"**{run_label(other_path)}**")
        st.plotly_chart(tree_figure(subset_b, field=field, color_by=color_by, colors=colors, height=420),
                        width="stretch", key="compare_b")
        st.dataframe(prefix_spread(other_table, index), hide_index=True, width="stretch")
    if colors and color_by == "value":
        color_legend(colors, f"dominant {field}")
    st.caption("prefixes: distinct prefixes the items occupy at each level; largest_share: share of them in the "
               "most common one.")
    st.dataframe(compare_sids(table, other_table, index[:MAX_ITEM_ROWS]), hide_index=True, width="stretch",
                 height=260)
