"""The SID tree as a picture: windows of ``tree.parquet`` and sunburst / icicle figures.

A catalog of 12k items has a few thousand nodes at level 2 and one leaf per item, so
figures show a *window*: a root prefix and a few levels below it.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go

from ..quantize.tree import tree_frame
from .sids import Prefix, code_columns, format_codes, format_prefix

ColorBy = Literal["value", "share"]
PALETTE = plotly.colors.qualitative.Dark24 + plotly.colors.qualitative.Light24
OTHER_COLOR = "#c8c8c8"


def dominant_fields(tree: pd.DataFrame) -> list[str]:
    """Fields with ``F_top`` and ``F_share`` columns in a tree table."""
    return [c[:-4] for c in tree.columns if c.endswith("_top") and f"{c[:-4]}_share" in tree.columns]


def tree_window(tree: pd.DataFrame, root: Prefix, depth: int) -> pd.DataFrame:
    """Nodes of the subtree under ``root`` down to ``depth`` levels below it.

    The root node itself is included (as the figure's centre, parent ``""``) unless
    ``root`` is the empty prefix, whose children are the level-1 nodes.
    """
    level = len(root)
    if root:
        key = format_prefix(root)
        inside = tree["prefix"].str.startswith(key + "-") & (tree["level"] <= level + depth)
        nodes = tree[(tree["prefix"] == key) | inside].copy()
        nodes.loc[nodes["prefix"] == key, "parent"] = ""
    else:
        nodes = tree[tree["level"] <= depth].copy()
        nodes.loc[nodes["level"] == 1, "parent"] = ""
    return nodes.sort_values(["level", "prefix"]).reset_index(drop=True)


def fit_depth(tree: pd.DataFrame, root: Prefix, depth: int, max_nodes: int) -> int:
    """The largest depth <= ``depth`` (at least 1) whose window has at most ``max_nodes`` nodes."""
    while depth > 1 and len(tree_window(tree, root, depth)) > max_nodes:
        depth -= 1
    return depth


def children(tree: pd.DataFrame, root: Prefix) -> pd.DataFrame:
    """The nodes directly under ``root`` with their sizes and dominant values, ordered by code."""
    key = format_prefix(root)
    rows = tree[(tree["level"] == len(root) + 1) & (tree["parent"] == key)] if root else tree[tree["level"] == 1]
    return rows.sort_values("code").reset_index(drop=True)


def subset_tree(table: pd.DataFrame, item_index: np.ndarray, fields: list[str], depth: int) -> pd.DataFrame:
    """A tree table (columns of ``tree.parquet``) over a subset of items, down to ``depth`` levels.

    Args:
        table: a SID table (``resid_lib.explore.sids.sid_table``).
        item_index: (m,) the items to keep.
        fields: field columns of ``table`` that get ``F_top`` / ``F_share`` (dominant value, its share).
    """
    sub = table.set_index("item_index").loc[item_index]
    codes = sub[code_columns(table)].to_numpy(np.int64)[:, :depth]
    nodes = tree_frame(codes)
    for f in fields:
        tops, shares = {}, {}
        values = sub[f].to_numpy()
        for level in range(1, codes.shape[1] + 1):
            keys = pd.Series(format_codes(codes[:, :level]))
            counts = pd.DataFrame({"node": keys, "value": values}).dropna().value_counts().rename("n").reset_index()
            # most frequent value per node; ties go to the smallest value, as in resid_lib.quantize.tree
            best = counts.sort_values(["node", "n", "value"], ascending=[True, False, True]).drop_duplicates("node")
            sizes = keys.value_counts()
            for node, value, n in best[["node", "value", "n"]].itertuples(index=False):
                tops[node], shares[node] = value, n / sizes[node]
        nodes[f"{f}_top"] = nodes["prefix"].map(tops)
        nodes[f"{f}_share"] = nodes["prefix"].map(shares)
    return nodes


def color_key(nodes: pd.DataFrame, field: str, limit: int = 16) -> dict[str, str]:
    """Colours of the ``limit`` most frequent dominant values of ``field`` (others are grey)."""
    counts = nodes.groupby(f"{field}_top", dropna=True)["n_items"].sum().sort_values(ascending=False)
    return {str(v): PALETTE[i % len(PALETTE)] for i, v in enumerate(counts.index[:limit])}


def tree_figure(
    nodes: pd.DataFrame,
    *,
    field: str | None = None,
    color_by: ColorBy = "value",
    kind: Literal["sunburst", "icicle"] = "sunburst",
    colors: dict[str, str] | None = None,
    height: int = 560,
) -> go.Figure:
    """A sunburst (or icicle) of a tree window; sectors sized by item count.

    Colour: the dominant value of ``field`` per node (``color_by="value"``, colours from
    ``colors`` or :func:`color_key`) or its share, i.e. the node's purity (``"share"``).
    """
    hover = _hover_text(nodes)
    marker: dict = {}
    if field is not None and f"{field}_top" in nodes.columns:
        if color_by == "share":
            marker = {"colors": nodes[f"{field}_share"].fillna(0).to_numpy(), "colorscale": "Viridis",
                      "cmin": 0.0, "cmax": 1.0, "colorbar": {"title": {"text": f"{field}<br>share"}}}
        else:
            key = colors if colors is not None else color_key(nodes, field)
            marker = {"colors": [key.get(str(v), OTHER_COLOR) for v in nodes[f"{field}_top"]]}
    marker["line"] = {"width": 1.0 if len(nodes) <= 300 else 0.25, "color": "white"}  # thin wedges stay visible
    trace = go.Sunburst if kind == "sunburst" else go.Icicle
    fig = go.Figure(trace(
        ids=nodes["prefix"], parents=nodes["parent"], values=nodes["n_items"],
        labels=nodes["code"].astype(str), branchvalues="total", hovertext=hover, hoverinfo="text",
        marker=marker,
    ))
    fig.update_layout(margin={"t": 10, "l": 10, "r": 10, "b": 10}, height=height)
    return fig


def _hover_text(nodes: pd.DataFrame) -> list[str]:
    fields = dominant_fields(nodes)
    lines = [("prefix " + nodes["prefix"] + "<br>" + nodes["n_items"].astype(str) + " items").to_numpy()]
    for f in fields:
        share = nodes[f"{f}_share"].map(lambda s: "" if pd.isna(s) else f" ({s:.0%})")
        top = nodes[f"{f}_top"].map(lambda v: "unknown" if pd.isna(v) else str(v))
        lines.append(("<br>" + f + ": " + top + share).to_numpy())
    return ["".join(parts) for parts in zip(*lines)]
