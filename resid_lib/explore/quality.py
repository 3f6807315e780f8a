"""Code-quality tables and figures from ``quantize/diagnostics.json`` of several runs.

The dictionaries are those of ``resid_lib.quantize.diagnostics.summarize``. Runs
written by other versions may lack keys: a missing measure is NaN, never an error.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .palette import run_colors

LEVEL_COLUMNS = ("codebook_size", "used", "utilization", "entropy", "max_entropy", "conditional_entropy",
                 "dedup", "code_share", "prefix_share")
#: per-level measure -> axis title
LEVEL_MEASURES = {
    "utilization": "codebook utilization (used / b_l)",
    "entropy": "H(c_l), bits",
    "conditional_entropy": "H(c_l | C<l), bits",
    "code_share": "history items sharing the target's code",
    "prefix_share": "history items sharing the target's prefix",
}
SUMMARY_COLUMNS = ("n_items", "sid_length", "collision_rate", "collided_items", "largest_collision_group",
                   "directional_coherence", "reconstruction_error", "fit_seconds")


def level_table(diagnostics: dict[str, dict]) -> pd.DataFrame:
    """One row per run and SID level: ``run, level`` and the :data:`LEVEL_COLUMNS` (NaN where absent)."""
    rows = []
    for run, diag in diagnostics.items():
        overlap = {int(o.get("level", i + 1)): o for i, o in enumerate(diag.get("history_target_overlap") or [])}
        levels = diag.get("per_level") or []
        for i, entry in enumerate(levels):
            level = int(entry.get("level", i + 1))
            row = {"run": run, "level": level}
            for col in LEVEL_COLUMNS:
                row[col] = entry.get(col, overlap.get(level, {}).get(col, np.nan))
            rows.append(row)
    frame = pd.DataFrame(rows, columns=["run", "level", *LEVEL_COLUMNS])
    numeric = [c for c in LEVEL_COLUMNS if c != "dedup"]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")
    return frame


def summary_table(diagnostics: dict[str, dict]) -> pd.DataFrame:
    """One row per run: quantizer, size, collisions before dedup, directional coherence, reconstruction
    error and the quantizer's fitting time (NaN where absent)."""
    rows = []
    for run, diag in diagnostics.items():
        collisions = diag.get("collisions") or {}
        rows.append({
            "run": run,
            "method": diag.get("method"),
            "n_items": diag.get("n_items"),
            "sid_length": diag.get("sid_length"),
            "collision_rate": collisions.get("rate"),
            "collided_items": collisions.get("n_collided"),
            "largest_collision_group": collisions.get("max_group"),
            "directional_coherence": diag.get("directional_coherence"),
            "reconstruction_error": diag.get("reconstruction_error"),
            "fit_seconds": (diag.get("seconds") or {}).get("fit"),
        })
    frame = pd.DataFrame(rows, columns=["run", "method", *SUMMARY_COLUMNS])
    frame[list(SUMMARY_COLUMNS)] = frame[list(SUMMARY_COLUMNS)].apply(pd.to_numeric, errors="coerce")
    return frame


def level_figure(levels: pd.DataFrame, measure: str, *, height: int = 320) -> go.Figure:
    """Grouped bars of one per-level measure: x = level, one colour per run."""
    fig = go.Figure()
    colors = run_colors(list(levels["run"]))
    for run, rows in levels.groupby("run", sort=False):
        fig.add_bar(x=[f"level {lv}" for lv in rows["level"]], y=rows[measure], name=run, marker_color=colors[run])
    fig.update_layout(barmode="group", height=height, yaxis_title=LEVEL_MEASURES.get(measure, measure),
                      margin={"t": 30, "l": 10, "r": 10, "b": 10}, legend={"orientation": "h", "y": -0.2})
    if measure == "utilization":
        fig.update_yaxes(range=[0, 1.05])
    return fig


def entropy_figure(levels: pd.DataFrame, *, height: int = 340) -> go.Figure:
    """H(c_l) and H(c_l | C<l) per level and run, with log2 b_l (the even-use ceiling) as a marker."""
    fig = go.Figure()
    colors = run_colors(list(levels["run"]))
    for run, rows in levels.groupby("run", sort=False):
        x = [f"level {lv}" for lv in rows["level"]]
        color = colors[run]
        fig.add_bar(x=x, y=rows["entropy"], name=f"{run}: H(c_l)", offsetgroup=run, legendgroup=run,
                    marker={"color": color, "opacity": 0.55})
        fig.add_scatter(x=x, y=rows["conditional_entropy"], name=f"{run}: H(c_l | C<l)", mode="markers",
                        offsetgroup=run, legendgroup=run,
                        marker={"symbol": "diamond", "size": 12, "color": color,
                                "line": {"width": 1, "color": "white"}})
        fig.add_scatter(x=x, y=rows["max_entropy"], name=f"{run}: log2 b_l", mode="markers",
                        offsetgroup=run, legendgroup=run,
                        marker={"symbol": "line-ew-open", "size": 30, "color": color,
                                "line": {"width": 3, "color": color}})
    fig.update_layout(barmode="group", scattermode="group", height=height, yaxis_title="bits",
                      margin={"t": 30, "l": 10, "r": 10, "b": 10}, legend={"orientation": "h", "y": -0.25})
    return fig
