"""A 2-D map of item vectors (UMAP, or PCA for speed) and its scatter plot."""
from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from ..errors import ConfigError
from ..quantize.base import check_embeddings

Projection = Literal["umap", "pca"]
PCA_DIMS_BEFORE_UMAP = 50
UMAP_EPOCHS = 200  # umap-learn's choice for large inputs; enough for a picture, 2.5x faster than its 500
MAX_LEGEND_VALUES = 40  # enough for every first-level code of the paper's branchings (b1 = 32)
OTHER = "other"
OTHER_COLOR = "#c8c8c8"


def sample_items(n_items: int, max_items: int, seed: int = 0) -> np.ndarray:
    """(m,) sorted item indices: all items, or a seeded uniform sample of ``max_items``."""
    if max_items < 1:
        raise ConfigError(f"max_items must be positive, got {max_items}")
    if n_items <= max_items:
        return np.arange(n_items)
    return np.sort(np.random.default_rng(seed).choice(n_items, size=max_items, replace=False))


def pca(X: np.ndarray, n_components: int) -> np.ndarray:
    """(n, k) coordinates of ``X`` (n, d) on its top ``k`` principal axes.

    Eigen-decomposes the smaller of the (d, d) covariance and the (n, n) Gram
    matrix, which is much cheaper than an SVD of ``X`` when n >> d or d >> n.
    """
    centered = X - X.mean(axis=0, keepdims=True)
    k = min(n_components, *centered.shape)
    if centered.shape[1] <= centered.shape[0]:
        _, vectors = np.linalg.eigh(centered.T @ centered)
        return centered @ vectors[:, ::-1][:, :k]
    values, vectors = np.linalg.eigh(centered @ centered.T)
    return vectors[:, ::-1][:, :k] * np.sqrt(np.maximum(values[::-1][:k], 0.0))


def cosine_knn(X: np.ndarray, k: int, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine k-nearest neighbours, each row's own index first (the layout UMAP expects).

    Args:
        X: (n, d) vectors.
    Returns:
        ((n, k) int64 indices, (n, k) float32 cosine distances), nearest first.
    """
    unit = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    index = np.empty((len(X), k), dtype=np.int64)
    dist = np.empty((len(X), k), dtype=np.float32)
    for start in range(0, len(X), chunk):
        rows = np.arange(start, min(start + chunk, len(X)))
        d = 1.0 - unit[rows] @ unit.T
        d[np.arange(len(rows)), rows] = -np.inf  # self first
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(d, part, axis=1), axis=1, kind="stable")
        index[rows] = np.take_along_axis(part, order, axis=1)
        dist[rows] = np.maximum(np.take_along_axis(d, index[rows], axis=1), 0.0)
    return index, dist


def project_2d(X, *, method: Projection = "umap", n_neighbors: int = 15, seed: int = 0) -> np.ndarray:
    """(n, 2) map of the rows of ``X`` (n, d).

    UMAP (cosine metric, exact neighbours) runs on the top 50 principal components;
    PCA is the fast, linear alternative. Both are deterministic for a given ``seed``.
    """
    X = check_embeddings(X, name="item embeddings").astype(np.float64)
    if len(X) < 3:
        raise ConfigError(f"a 2-D map needs at least 3 items, got {len(X)}")
    if method == "pca":
        coords = pca(X, 2)
    elif method == "umap":
        import umap

        reduced = pca(X, min(PCA_DIMS_BEFORE_UMAP, X.shape[1], len(X)))
        k = min(n_neighbors, len(X) - 1)
        knn = cosine_knn(reduced, k)
        reducer = umap.UMAP(n_components=2, n_neighbors=k, metric="cosine", precomputed_knn=(*knn, None),
                            n_epochs=UMAP_EPOCHS, random_state=seed, init="spectral" if len(X) > 10 else "random")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            coords = reducer.fit_transform(reduced)
    else:
        raise ConfigError(f"unknown projection {method!r} (expected 'umap' or 'pca')")
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    return np.asarray(coords[:, :2], dtype=np.float32)


def map_frame(item_index: np.ndarray, coords: np.ndarray, items: pd.DataFrame,
              popularity: np.ndarray | None) -> pd.DataFrame:
    """Points of the map: ``x, y`` plus the rows of ``items`` (a SID table or item table) and popularity.

    Args:
        item_index: (m,) item indices of the mapped rows; coords: (m, 2).
        items: one row per item in item order (must hold ``item_id``).
        popularity: (n_items,) interaction counts, or None.
    """
    frame = items.iloc[item_index].reset_index(drop=True).copy()
    frame.insert(0, "x", coords[:, 0])
    frame.insert(1, "y", coords[:, 1])
    if popularity is not None:
        frame["popularity"] = np.asarray(popularity)[item_index]
    return frame


def map_figure(frame: pd.DataFrame, color: str, *, hover: list[str], height: int = 620) -> go.Figure:
    """Scatter of the map coloured by a column: continuous for popularity (log scale), else categorical.

    A categorical column with many values keeps its :data:`MAX_LEGEND_VALUES` most frequent
    values and groups the rest as a grey ``other``, drawn underneath.
    """
    plot = frame.copy()
    hover_data = {c: True for c in hover if c in plot.columns and c != color}
    hover_data.update({"x": False, "y": False})
    if color == "popularity":
        plot["log popularity"] = np.log10(1 + plot["popularity"].astype(float))
        fig = px.scatter(plot, x="x", y="y", color="log popularity", hover_data={**hover_data, "popularity": True},
                         color_continuous_scale="Viridis", render_mode="webgl")
    else:
        values = plot[color].astype(str).where(plot[color].notna(), "unknown")
        top = list(values.value_counts().index[:MAX_LEGEND_VALUES])
        if all(v.isdigit() for v in top):  # codes: legend in code order
            top = sorted(top, key=int)
        plot[color] = values.where(values.isin(top), OTHER)
        order = [OTHER, *top] if (plot[color] == OTHER).any() else top  # "other" drawn first, underneath
        palette = px.colors.qualitative.Dark24 + px.colors.qualitative.Light24
        colors = {v: palette[i % len(palette)] for i, v in enumerate(top)} | {OTHER: OTHER_COLOR}
        fig = px.scatter(plot, x="x", y="y", color=color, hover_data=hover_data, render_mode="webgl",
                         category_orders={color: order}, color_discrete_map=colors)
        fig.for_each_trace(lambda t: t.update(legendrank=2000) if t.name == OTHER else None)
    fig.update_traces(marker={"size": 6, "opacity": 0.8})
    fig.update_layout(height=height, margin={"t": 10, "l": 10, "r": 10, "b": 10}, xaxis_title="", yaxis_title="",
                      xaxis={"showticklabels": False, "showgrid": False, "zeroline": False},
                      yaxis={"showticklabels": False, "showgrid": False, "zeroline": False})
    return fig
