"""Read-only views of run directories for the app and the notebooks.

Pure functions: they read artifacts (``artifacts``), join and aggregate them into
DataFrames (``sids``, ``quality``, ``proxy``, ``ablations``, ``catalog``,
``popularity``) and draw
plotly figures (``sid_tree``, ``embeddings``, ``attention`` and the others). Nothing
here trains a model or writes into a run.
"""
from __future__ import annotations

from .artifacts import (ARTIFACTS, RunView, artifact_stamp, load_dataset, load_run, read_attention,
                        read_diagnostics, read_embeddings, read_history, read_metrics, read_predictions, read_sids,
                        read_tree)
from .published import PUBLISHED_DATASET, published_results

__all__ = [
    "ARTIFACTS", "PUBLISHED_DATASET", "RunView", "artifact_stamp", "load_dataset", "load_run", "published_results",
    "read_attention", "read_diagnostics", "read_embeddings", "read_history", "read_metrics", "read_predictions",
    "read_sids", "read_tree",
]
