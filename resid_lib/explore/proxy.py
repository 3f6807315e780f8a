"""Embedding-quality proxy metrics across runs, beside the downstream Recall@10.

FAMAE logs Metric 1 (collaborative) and Metric 2 (discriminative) per epoch in
``encode/history.csv``; sequential-recommender encoders log validation Recall/NDCG
instead. The G-stage's ``generate/metrics.json`` holds the downstream result.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .palette import run_colors

#: per-epoch columns of ``encode/history.csv`` worth plotting -> axis title
PROXY_MEASURES = {
    "metric1": "Metric 1: Recall@10, all target fields masked",
    "metric2": "Metric 2: Recall@10, item id masked",
    "valid_recall@10": "validation Recall@10",
    "valid_ndcg@10": "validation NDCG@10",
    "loss": "training loss",
}


def history_long(histories: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """``run, epoch, measure, value`` for the :data:`PROXY_MEASURES` each history holds."""
    frames = []
    for run, hist in histories.items():
        cols = [c for c in PROXY_MEASURES if c in hist.columns]
        if cols:
            long = hist.melt(id_vars="epoch", value_vars=cols, var_name="measure", value_name="value")
            long.insert(0, "run", run)
            frames.append(long)
    if not frames:
        return pd.DataFrame(columns=["run", "epoch", "measure", "value"])
    return pd.concat(frames, ignore_index=True)


def proxy_summary(encode_metrics: dict[str, dict | None], generate_metrics: dict[str, dict | None]) -> pd.DataFrame:
    """One row per run: encoder, best epoch, Metric 1 and 2 at it, and the G-stage's Recall@10 (NaN if not run)."""
    rows = []
    for run, enc in encode_metrics.items():
        enc = enc or {}
        gen = generate_metrics.get(run) or {}
        rows.append({
            "run": run,
            "encoder": enc.get("method"),
            "best_epoch": enc.get("best_epoch"),
            "metric1": enc.get("metric1"),
            "metric2": enc.get("metric2"),
            "valid_recall@10": (gen.get("valid") or {}).get("recall@10"),
            "test_recall@10": (gen.get("test") or {}).get("recall@10"),
        })
    frame = pd.DataFrame(rows, columns=["run", "encoder", "best_epoch", "metric1", "metric2",
                                        "valid_recall@10", "test_recall@10"])
    numeric = ["best_epoch", "metric1", "metric2", "valid_recall@10", "test_recall@10"]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")
    return frame


def history_figure(long: pd.DataFrame, measure: str, best_epochs: dict[str, float] | None = None,
                   *, colors: dict[str, str] | None = None, height: int = 340) -> go.Figure:
    """One line per run of ``measure`` against epoch; a star marks each run's best (selected) epoch.

    ``colors`` maps runs to colours (default: :func:`run_colors` over the runs in ``long``).
    """
    fig = go.Figure()
    colors = colors or run_colors(list(long["run"]))
    rows = long[long["measure"] == measure]
    for run, part in rows.groupby("run", sort=False):
        color = colors[run]
        fig.add_scatter(x=part["epoch"], y=part["value"], mode="lines+markers", name=run, legendgroup=run,
                        line={"color": color})
        best = (best_epochs or {}).get(run)
        if best is not None and not np.isnan(best) and (part["epoch"] == best).any():
            at = part[part["epoch"] == best]
            fig.add_scatter(x=at["epoch"], y=at["value"], mode="markers", name=f"{run} best", legendgroup=run,
                            showlegend=False, marker={"symbol": "star", "size": 15, "color": color})
    fig.update_layout(height=height, xaxis_title="epoch", yaxis_title=PROXY_MEASURES.get(measure, measure),
                      margin={"t": 30, "l": 10, "r": 10, "b": 10}, legend={"orientation": "h", "y": -0.25})
    if len(rows) and rows["epoch"].max() <= 20:
        fig.update_xaxes(dtick=1)  # whole epochs only
    return fig


def tradeoff_figure(summary: pd.DataFrame, *, height: int = 380) -> go.Figure:
    """Metric 1 against Metric 2 per run, coloured by downstream test Recall@10 (hollow where no G-stage ran)."""
    fig = go.Figure()
    have = summary.dropna(subset=["metric1", "metric2"])
    done = have[have["test_recall@10"].notna()]
    todo = have[have["test_recall@10"].isna()]
    if len(done):
        low, high = done["test_recall@10"].min(), done["test_recall@10"].max()
        fig.add_scatter(x=done["metric1"], y=done["metric2"], mode="markers+text", text=done["run"],
                        textposition="top center", name="downstream R@10",
                        marker={"size": 16, "color": done["test_recall@10"], "colorscale": "Viridis",
                                "cmin": low if high > low else 0.0, "cmax": high, "showscale": True,
                                "colorbar": {"title": {"text": "test R@10"}}},
                        hovertemplate="%{text}<br>Metric 1 %{x:.4f}<br>Metric 2 %{y:.4f}"
                                      "<br>test R@10 %{marker.color:.4f}<extra></extra>")
    if len(todo):
        fig.add_scatter(x=todo["metric1"], y=todo["metric2"], mode="markers+text", text=todo["run"],
                        textposition="top center", name="no G-stage yet",
                        marker={"size": 16, "symbol": "circle-open", "color": "grey"})
    fig.update_layout(height=height, xaxis_title="Metric 1 (collaborative)", yaxis_title="Metric 2 (discriminative)",
                      margin={"t": 30, "l": 10, "r": 10, "b": 10}, legend={"orientation": "h", "y": -0.25})
    for axis, col in (("xaxis", "metric1"), ("yaxis", "metric2")):
        if len(have):
            low, high = have[col].min(), have[col].max()
            pad = 0.15 * (high - low) if high > low else 0.1 * abs(high) or 0.01
            fig.update_layout({axis: {"range": [low - pad, high + pad]}})
    return fig
