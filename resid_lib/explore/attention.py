"""FAMAE attention views: one user's target attention per layer and head, and attention by distance.

Input is the ``encode/attention.npz`` sample (``resid_lib.encode.attention.AttentionSample``):
the masked target position's attention over its window, for a sample of users.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..data.split import PAD
from ..encode.attention import AttentionSample
from .palette import RUN_PALETTE


def distance_table(sample: AttentionSample) -> pd.DataFrame:
    """Mean attention by distance from the target: ``layer, head, distance, weight, uniform, windows``.

    Distance 0 is the target itself, ``t`` the item ``t`` steps before it. ``uniform`` is
    what attention spread evenly over each window's items would give at that distance
    (the reference a learned pattern departs from); ``windows`` counts the windows that
    reach that far.
    """
    profile = sample.recency_profile()  # (layers, heads, L)
    n_layers, n_heads, length = profile.shape
    present = sample.items[:, ::-1] != PAD  # (n, L), distance 0 first
    windows = present.sum(axis=0)
    per_window = 1.0 / np.maximum(present.sum(axis=1, keepdims=True), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        uniform = np.where(windows > 0, (present * per_window).sum(axis=0) / windows, np.nan)
    layer, head, distance = np.meshgrid(np.arange(n_layers), np.arange(n_heads), np.arange(length), indexing="ij")
    frame = pd.DataFrame({
        "layer": layer.ravel() + 1, "head": head.ravel() + 1, "distance": distance.ravel(),
        "weight": profile.ravel(), "uniform": np.tile(uniform, n_layers * n_heads),
        "windows": np.tile(windows, n_layers * n_heads),
    })
    return frame[frame["windows"] > 0].reset_index(drop=True)


def distance_figure(table: pd.DataFrame, *, per_head: bool = False, max_distance: int | None = None,
                    height: int = 380) -> go.Figure:
    """Mean attention against distance from the target: one line per layer (or layer/head), uniform dashed."""
    if max_distance is not None:
        table = table[table["distance"] <= max_distance]
    fig = go.Figure()
    keys = ["layer", "head"] if per_head else ["layer"]
    grouped = table.groupby(keys + ["distance"], as_index=False)["weight"].mean()
    for i, (key, rows) in enumerate(grouped.groupby(keys)):
        key = key if isinstance(key, tuple) else (key,)
        name = f"layer {key[0]}" + (f" head {key[1]}" if per_head else " (mean of heads)")
        fig.add_scatter(x=rows["distance"], y=rows["weight"], mode="lines+markers", name=name,
                        line={"color": RUN_PALETTE[i % len(RUN_PALETTE)]})
    base = table.groupby("distance", as_index=False)["uniform"].first()
    fig.add_scatter(x=base["distance"], y=base["uniform"], mode="lines", name="uniform over the window",
                    line={"dash": "dash", "color": "grey"})
    fig.update_layout(height=height, xaxis_title="distance from the target (0 = the target itself)",
                      yaxis_title="mean attention weight", margin={"t": 30, "l": 10, "r": 10, "b": 10})
    return fig


def window_labels(items: np.ndarray, item_ids: np.ndarray | None) -> list[str]:
    """Axis labels for one window's non-PAD positions: ``-t item`` (``target`` for the last)."""
    valid = np.flatnonzero(items != PAD)
    last = len(items) - 1
    labels = []
    for pos in valid:
        name = str(item_ids[items[pos]]) if item_ids is not None else str(items[pos])
        labels.append("target " + name if pos == last else f"-{last - pos} {name}")
    return labels


def user_heatmap(sample: AttentionSample, index: int, item_ids: np.ndarray | None = None,
                 hover: list[str] | None = None, *, height_per_layer: int = 190) -> go.Figure:
    """One heatmap per layer: rows are heads, columns the window's items (PAD dropped), oldest left.

    Args:
        index: which sampled window.
        item_ids: (n_items,) labels for item indices.
        hover: optional per-position hover text (same length as the non-PAD positions).
    """
    weights = sample.weights[index]  # (layers, heads, L)
    items = sample.items[index]
    valid = np.flatnonzero(items != PAD)
    labels = window_labels(items, item_ids)
    n_layers, n_heads = weights.shape[:2]
    fig = make_subplots(rows=n_layers, cols=1, shared_xaxes=True, vertical_spacing=0.3 / max(n_layers, 1),
                        subplot_titles=[f"layer {l + 1}" for l in range(n_layers)])
    zmax = float(weights[:, :, valid].max()) if len(valid) else 1.0
    for layer in range(n_layers):
        text = None if hover is None else [hover] * n_heads
        fig.add_trace(go.Heatmap(
            z=weights[layer][:, valid], x=labels, y=[f"head {h + 1}" for h in range(n_heads)],
            zmin=0.0, zmax=zmax, colorscale="Blues", showscale=layer == 0, text=text,
            hovertemplate="%{y} -> %{x}<br>weight %{z:.3f}" + ("<br>%{text}" if hover else "") + "<extra></extra>",
            colorbar={"title": {"text": "weight"}},
        ), row=layer + 1, col=1)
    fig.update_layout(height=80 + height_per_layer * n_layers, margin={"t": 30, "l": 10, "r": 10, "b": 10})
    fig.update_xaxes(tickangle=-45)
    return fig
