"""Ablation results (``DIR/results.parquet`` of ``workbench ablate``) beside the published numbers.

A results table (``resid_lib.ablation``) has one row per method: ``name, encoder,
quantizer, status``, the metrics ``recall@5, recall@10, ndcg@5, ndcg@10``, the
seconds each stage took (``STAGE_seconds``), the run folder and the error of a
failed row. Tables of other origins need only a name column and some metrics.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from ..ablation import RESULTS_PARQUET as RESULTS
from ..errors import RunDirError
from ..rundir import HEADLINE_KEYS

NAME_COLUMNS = ("name", "method", "point")


def find_ablations(root: str | Path, max_depth: int = 4) -> list[Path]:
    """Folders under ``root`` (itself included) that hold a ``results.parquet``, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = {root} if (root / RESULTS).is_file() else set()
    for depth in range(1, max_depth + 1):
        found.update(p.parent for p in root.glob("/".join(["*"] * depth) + f"/{RESULTS}"))
    return sorted(found)


def read_ablation(folder: str | Path) -> pd.DataFrame:
    """The results table with a ``name`` column first; RunDirError when it holds no metrics."""
    path = Path(folder) / RESULTS
    if not path.is_file():
        raise RunDirError(f"{folder} holds no {RESULTS}")
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path}: not a readable parquet file ({exc})") from None
    metrics = [k for k in HEADLINE_KEYS if k in frame.columns]
    if not metrics:
        raise RunDirError(f"{path}: no metric columns ({', '.join(HEADLINE_KEYS)}); columns: {list(frame.columns)}")
    name = next((c for c in NAME_COLUMNS if c in frame.columns), None)
    frame = frame.copy()
    if name is None:
        frame.insert(0, "name", [f"row {i}" for i in range(len(frame))])
    elif name != "name":
        frame.insert(0, "name", frame[name].astype(str))
    frame[metrics] = frame[metrics].apply(pd.to_numeric, errors="coerce")
    return frame


def unfinished_rows(results: pd.DataFrame) -> pd.DataFrame:
    """``name, status, error`` of the rows that did not finish: failed or not run (empty without a status column)."""
    if "status" not in results.columns:
        return pd.DataFrame(columns=["name", "error"])
    bad = results[results["status"].astype(str) != "done"]
    errors = bad["error"] if "error" in bad.columns else pd.Series("", index=bad.index)
    return pd.DataFrame({"name": bad["name"], "status": bad["status"], "error": errors.fillna("")})


def seconds_columns(results: pd.DataFrame) -> list[str]:
    return [c for c in results.columns if "seconds" in c and pd.api.types.is_numeric_dtype(results[c])]


def comparison_frame(results: pd.DataFrame, published: pd.DataFrame | None, metric: str) -> pd.DataFrame:
    """``name, value, source`` for one metric: this ablation's rows, then the published ones
    (named ``METHOD · published`` so that a method in both keeps two bars)."""
    own = pd.DataFrame({"name": results["name"].astype(str), "value": results[metric], "source": "this ablation"})
    if published is None or metric not in published.columns:
        return own.reset_index(drop=True)
    other = pd.DataFrame({"name": published["method"] + " · published", "value": published[metric],
                          "source": "published: " + published["source"]})
    return pd.concat([own, other], ignore_index=True)


def comparison_figure(frame: pd.DataFrame, metric: str, *, height: int | None = None) -> go.Figure:
    """Horizontal bars of ``metric``, this ablation's methods coloured apart from the published ones."""
    frame = frame.dropna(subset=["value"]).sort_values("value")
    own = frame["source"] == "this ablation"
    fig = go.Figure()
    fig.add_bar(y=frame.loc[own, "name"], x=frame.loc[own, "value"], orientation="h", name="this ablation",
                marker_color="#1f77b4", text=frame.loc[own, "value"].map("{:.4f}".format), textposition="outside")
    if (~own).any():
        fig.add_bar(y=frame.loc[~own, "name"], x=frame.loc[~own, "value"], orientation="h", name="published",
                    marker_color="#bbbbbb", text=frame.loc[~own, "value"].map("{:.4f}".format), textposition="outside",
                    customdata=frame.loc[~own, "source"],
                    hovertemplate="%{y}: %{x:.4f}<br>%{customdata}<extra></extra>")
    top = frame["value"].max() if len(frame) else 1.0
    fig.update_layout(height=height or 120 + 28 * len(frame), xaxis_title=metric, barmode="overlay",
                      xaxis={"range": [0, 1.15 * top]},
                      yaxis={"categoryorder": "array", "categoryarray": list(frame["name"])},
                      margin={"t": 30, "l": 10, "r": 40, "b": 10}, legend={"orientation": "h", "y": 1.08})
    return fig


def seconds_figure(results: pd.DataFrame, *, height: int | None = None) -> go.Figure:
    """Stacked horizontal bars of the seconds each stage took per method."""
    fig = go.Figure()
    for col in seconds_columns(results):
        fig.add_bar(y=results["name"].astype(str), x=results[col], orientation="h", name=col)
    fig.update_layout(barmode="stack", height=height or 160 + 28 * len(results), xaxis_title="seconds",
                      yaxis={"autorange": "reversed"},
                      margin={"t": 30, "l": 10, "r": 10, "b": 10},
                      legend={"orientation": "h", "y": -0.3, "traceorder": "normal"})
    return fig
