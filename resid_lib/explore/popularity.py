"""Recall by how popular each target was in training, from several runs' ``generate/predictions.parquet``.

A generator that only learns the head of the catalog scores well on targets seen
often in training and near zero on the tail; the buckets make that visible.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..data.dataset import Dataset
from ..data.split import leave_one_out
from ..metrics import recall_by_target_count
from .palette import run_colors

DEFAULT_EDGES = (1, 5, 20)


def training_counts(dataset: Dataset) -> np.ndarray:
    """(n_items,) occurrences of each item in the leave-one-out training prefixes."""
    return np.bincount(np.concatenate(leave_one_out(dataset).train), minlength=dataset.n_items)


def target_popularity_frame(predictions: dict[str, pd.DataFrame], counts: np.ndarray, split: str = "test",
                            k: int = 10, edges=DEFAULT_EDGES) -> pd.DataFrame:
    """One row per run and bucket of target training counts: ``run, bucket, users, share, recall@K``.

    Args:
        predictions: run label -> ``predictions.parquet`` frame (split, target, ranked).
        counts: (n_items,) training occurrences per item, e.g. :func:`training_counts`.
    """
    rows = []
    for run, frame in predictions.items():
        chosen = frame[frame["split"] == split]
        if not len(chosen):
            continue
        ranked = np.stack(chosen["ranked"].to_numpy())
        for row in recall_by_target_count(ranked, chosen["target"].to_numpy(), counts, k=k, edges=edges):
            rows.append({"run": run, **row})
    return pd.DataFrame(rows, columns=["run", "bucket", "users", "share", f"recall@{k}"])


def target_popularity_figure(frame: pd.DataFrame, k: int = 10, *, height: int = 340) -> go.Figure:
    """Grouped bars: x = bucket of the target's training count (with its share of users), one colour per run."""
    fig = go.Figure()
    colors = run_colors(list(frame["run"]))
    for run, rows in frame.groupby("run", sort=False):
        labels = [f"{b} ({s:.0%} of users)" for b, s in zip(rows["bucket"], rows["share"])]
        fig.add_bar(x=labels, y=rows[f"recall@{k}"], name=run, marker_color=colors[run],
                    customdata=rows["users"], hovertemplate="%{x}<br>%{customdata} users<br>"
                                                            f"Recall@{k} " + "%{y:.4f}<extra>%{fullData.name}</extra>")
    fig.update_layout(barmode="group", height=height, xaxis_title="training occurrences of the target item",
                      yaxis_title=f"Recall@{k}", margin={"t": 20, "l": 10, "r": 10, "b": 10},
                      legend={"orientation": "h", "y": -0.3})
    return fig
