"""What every page shares: the runs root, the runs picked for comparison, cached loaders, error display.

Loaders are cached with ``st.cache_data`` (``st.cache_resource`` for the dataset)
keyed on the file's path and modification time, so a rewritten artifact is read
again and an unchanged one never is. The app only reads run directories.
"""
from __future__ import annotations

import contextlib
import html
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import streamlit as st

from resid_lib.data.dataset import Dataset
from resid_lib.errors import WorkbenchError
from resid_lib.explore import artifacts
from resid_lib.explore.ablations import read_ablation
from resid_lib.explore.embeddings import project_2d, sample_items
from resid_lib.explore.popularity import target_popularity_frame, training_counts
from resid_lib.explore.sids import sid_table as build_sid_table
from resid_lib.rundir import MANIFEST, RunSummary, list_runs

RUNS_ENV = "RESID_RUNS"
ROOT_KEY = "runs_root"
COMPARE_KEY = "compare_runs"


# ------------------------------------------------------------------ layout
def header(title: str, what: str) -> None:
    """The page title and the one sentence saying what the page shows."""
    st.title(title)
    st.caption(what)


@contextlib.contextmanager
def page_errors() -> Iterator[None]:
    """Show a workbench error (bad or unreadable artifact) as a message instead of a traceback."""
    try:
        yield
    except WorkbenchError as exc:
        st.error(str(exc))


def root_sidebar() -> None:
    """The runs-root box in the sidebar (default: ``$RESID_RUNS`` or ``runs``) and what it holds."""
    if ROOT_KEY not in st.session_state:
        st.session_state[ROOT_KEY] = os.environ.get(RUNS_ENV, "runs")
    text = st.sidebar.text_input("Runs root", key=ROOT_KEY, help="Folder searched for run directories (run.json)")
    root = Path(text).expanduser()
    runs = catalog()
    st.sidebar.caption(f"{len(runs)} run(s) under {root}" if root.is_dir() else f"{root} does not exist")
    chosen = compared_paths()
    if chosen:
        st.sidebar.caption("Comparing: " + ", ".join(run_label(p) for p in chosen))


def runs_root() -> Path:
    return Path(st.session_state.get(ROOT_KEY) or os.environ.get(RUNS_ENV, "runs")).expanduser()


# --------------------------------------------------------------- catalog
def catalog() -> list[RunSummary]:
    """Runs under the root, newest first (re-read whenever any run.json changes)."""
    root = runs_root()
    if not root.is_dir():
        return []
    manifests = [root / MANIFEST, *root.glob(f"*/{MANIFEST}"), *root.glob(f"*/*/{MANIFEST}"),
                 *root.glob(f"*/*/*/{MANIFEST}"), *root.glob(f"*/*/*/*/{MANIFEST}")]
    signature = tuple(sorted((str(p), artifacts.artifact_stamp(p)) for p in manifests if p.is_file()))
    return _catalog(str(root), signature)


@st.cache_data(show_spinner=False, max_entries=8)
def _catalog(root: str, signature: tuple) -> list[RunSummary]:
    return list_runs(root)


def compared_paths() -> list[str]:
    """Run paths picked on the Runs page (only those still present)."""
    present = {str(r.path) for r in catalog()}
    return [p for p in st.session_state.get(COMPARE_KEY, []) if p in present]


def candidate_paths() -> list[str]:
    """The runs other pages offer: the compared ones, or every run when none is picked."""
    return compared_paths() or [str(r.path) for r in catalog()]


def no_runs_message() -> None:
    st.info(f"No run directories under {runs_root()}. Create one with `workbench demo` or "
            "`workbench run --data DATASET --out runs/NAME`, or point the sidebar's runs root elsewhere.")


def run_view(path: str) -> artifacts.RunView:
    return artifacts.load_run(path)


def run_label(path: str) -> str:
    """``relative/path (encode+quantize)``: how pickers, tables and legends name a run."""
    root = runs_root()
    p = Path(path)
    rel = p.relative_to(root) if p.is_relative_to(root) else p
    view = run_view(path)
    methods = "+".join(view.methods.get(s, "?") for s in ("encode", "quantize"))
    return f"{rel} ({methods})"


def pick_run(label: str, key: str, artifact: str) -> artifacts.RunView | None:
    """One of the offered runs (:func:`candidate_paths`) in a select box; runs holding ``artifact`` first.

    Returns None (after showing a message) when there is no run at all or the chosen
    run lacks the artifact.
    """
    paths = candidate_paths()
    if not paths:
        no_runs_message()
        return None
    paths = sorted(paths, key=lambda p: not run_view(p).has(artifact))
    if st.session_state.get(key) not in paths:
        st.session_state.pop(key, None)
    names = {p: run_label(p) for p in paths}
    chosen = st.selectbox(label, paths, key=key, format_func=names.__getitem__)
    view = run_view(chosen)
    if not view.has(artifact):
        st.info(view.missing(artifact))
        return None
    return view


def pick_runs(label: str, key: str, artifact: str) -> list[artifacts.RunView]:
    """Several runs holding ``artifact`` (default: the compared ones that hold it)."""
    paths = [p for p in candidate_paths() if run_view(p).has(artifact)]
    every = [str(r.path) for r in catalog() if run_view(str(r.path)).has(artifact)]
    if not every:
        if catalog():
            stage, name = artifacts.ARTIFACTS[artifact]
            st.info(f"No run under {runs_root()} has {stage}/{name} yet: its {stage} stage has not run.")
        else:
            no_runs_message()
        return []
    if key not in st.session_state or not set(st.session_state[key]) <= set(every):
        st.session_state[key] = paths or every[:3]
    names = {p: run_label(p) for p in every}
    chosen = st.multiselect(label, every, key=key, format_func=names.__getitem__)
    return [run_view(p) for p in chosen]


# ---------------------------------------------------------------- loaders
def _stamp(view: artifacts.RunView, artifact: str) -> int:
    return artifacts.artifact_stamp(view.file(artifact))


def dataset(view: artifacts.RunView) -> Dataset | None:
    """The run's dataset (None when its folder is gone or holds other data)."""
    if view.dataset_path is None:
        return None
    folder = view.dataset_path
    files = ("schema.json", "items.parquet", "interactions.parquet")
    stamp = sum(artifacts.artifact_stamp(folder / name) for name in files)
    return _dataset(str(folder), view.fingerprint or "", stamp)


@st.cache_resource(show_spinner="Loading the dataset ...", max_entries=4)
def _dataset(folder: str, fingerprint: str, stamp: int) -> Dataset | None:
    return artifacts.open_dataset(Path(folder), fingerprint or None)


def sid_table(view: artifacts.RunView) -> pd.DataFrame | None:
    """The run's SIDs joined with its item fields (ids only when the dataset is unavailable)."""
    ds = dataset(view)
    return _sid_table(str(view.path), _stamp(view, "sids"), ds.fingerprint if ds is not None else "")


@st.cache_data(show_spinner="Reading SIDs ...", max_entries=16)
def _sid_table(run_path: str, stamp: int, fingerprint: str) -> pd.DataFrame | None:
    view = artifacts.load_run(run_path)
    ds = dataset(view) if fingerprint else None
    read = artifacts.read_sids(view, ds)
    if read is None:
        return None
    codes, item_ids = read
    return build_sid_table(codes, item_ids, ds.items if ds is not None else None)


def tree(view: artifacts.RunView) -> pd.DataFrame | None:
    return _tree(str(view.path), _stamp(view, "tree"))


@st.cache_data(show_spinner=False, max_entries=16)
def _tree(run_path: str, stamp: int) -> pd.DataFrame | None:
    return artifacts.read_tree(artifacts.load_run(run_path))


def diagnostics(view: artifacts.RunView) -> dict | None:
    return _diagnostics(str(view.path), _stamp(view, "diagnostics"))


@st.cache_data(show_spinner=False, max_entries=32)
def _diagnostics(run_path: str, stamp: int) -> dict | None:
    return artifacts.read_diagnostics(artifacts.load_run(run_path))


def history(view: artifacts.RunView, stage: str) -> pd.DataFrame | None:
    return _history(str(view.path), stage, artifacts.artifact_stamp(view.path / stage / "history.csv"))


@st.cache_data(show_spinner=False, max_entries=64)
def _history(run_path: str, stage: str, stamp: int) -> pd.DataFrame | None:
    return artifacts.read_history(artifacts.load_run(run_path), stage)


def metrics(view: artifacts.RunView, stage: str) -> dict | None:
    return _metrics(str(view.path), stage, artifacts.artifact_stamp(view.path / stage / "metrics.json"))


@st.cache_data(show_spinner=False, max_entries=64)
def _metrics(run_path: str, stage: str, stamp: int) -> dict | None:
    return artifacts.read_metrics(artifacts.load_run(run_path), stage)


def attention(view: artifacts.RunView):
    return _attention(str(view.path), _stamp(view, "attention"))


@st.cache_data(show_spinner=False, max_entries=8)
def _attention(run_path: str, stamp: int):
    return artifacts.read_attention(artifacts.load_run(run_path))


def embedding_map(view: artifacts.RunView, method: str, max_items: int,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """``(item_index (m,), coords (m, 2), n_items)`` for a seeded sample of at most ``max_items`` items."""
    return _embedding_map(str(view.path), _stamp(view, "embeddings"), method, max_items, seed)


@st.cache_data(show_spinner=False, max_entries=16)
def _embedding_map(run_path: str, stamp: int, method: str, max_items: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    X = artifacts.read_embeddings(artifacts.load_run(run_path))
    index = sample_items(len(X), max_items, seed)
    return index, project_2d(X[index], method=method, seed=seed), len(X)


def target_popularity(view: artifacts.RunView, label: str, split: str, k: int = 10) -> pd.DataFrame | None:
    """The run's Recall@K per bucket of its targets' training counts (None without predictions or dataset)."""
    ds = dataset(view)
    if ds is None or not view.has("predictions"):
        return None
    frame = _target_popularity(str(view.path), _stamp(view, "predictions"), ds.fingerprint, split, k)
    return frame.assign(run=label)


@st.cache_data(show_spinner="Breaking recall down by target popularity ...", max_entries=16)
def _target_popularity(run_path: str, stamp: int, fingerprint: str, split: str, k: int) -> pd.DataFrame:
    view = artifacts.load_run(run_path)
    counts = training_counts(dataset(view))
    return target_popularity_frame({run_path: artifacts.read_predictions(view)}, counts, split=split, k=k)


def ablation(folder: Path) -> pd.DataFrame:
    return _ablation(str(folder), artifacts.artifact_stamp(folder / "results.parquet"))


@st.cache_data(show_spinner=False, max_entries=16)
def _ablation(folder: str, stamp: int) -> pd.DataFrame:
    return read_ablation(folder)


def color_legend(colors: dict[str, str], title: str) -> None:
    """A compact legend of coloured swatches (figures without a legend of their own)."""
    swatches = " ".join(
        f"<span style='white-space:nowrap;margin-right:0.8em'><span style='display:inline-block;width:0.8em;"
        f"height:0.8em;background:{c};border-radius:2px;margin-right:0.3em'></span>{html.escape(v)}</span>"
        for v, c in colors.items())
    st.markdown(f"<div style='font-size:0.85em;line-height:1.7'><b>{html.escape(title)}</b>: {swatches} "
                f"<span style='color:#888'>(grey: other)</span></div>", unsafe_allow_html=True)
