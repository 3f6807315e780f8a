"""Read what a run directory holds, tolerating partial runs.

A stage that has not run leaves its files absent: every reader then returns
``None`` and :meth:`RunView.missing` says why in one sentence. A file that exists
but is malformed raises :class:`RunDirError` naming the file. Nothing here writes.
File names and formats follow the contract in ``resid_lib.rundir``.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..data.dataset import Dataset
from ..encode.attention import AttentionSample
from ..errors import DataError, RunDirError
from ..quantize import tree as quantize_tree
from ..rundir import CONFIG, MANIFEST

#: artifact name -> (stage, file name)
ARTIFACTS: dict[str, tuple[str, str]] = {
    "embeddings": ("encode", "item_embeddings.npy"),
    "encode_history": ("encode", "history.csv"),
    "encode_metrics": ("encode", "metrics.json"),
    "attention": ("encode", "attention.npz"),
    "sids": ("quantize", "sids.parquet"),
    "diagnostics": ("quantize", "diagnostics.json"),
    "tree": ("quantize", "tree.parquet"),
    "generate_metrics": ("generate", "metrics.json"),
    "generate_history": ("generate", "history.csv"),
    "predictions": ("generate", "predictions.parquet"),
}


@dataclass(frozen=True)
class RunView:
    """A run directory's manifest and config, read once; artifacts are read on demand.

    Attributes:
        path: the run directory.
        status: the run's status from ``run.json``.
        dataset_name, dataset_path, fingerprint: the dataset the run was made from.
        methods: ``{"encode": ..., "quantize": ...}`` from ``config.yaml``.
        stages: ``{stage: status}`` from ``run.json``.
        errors: ``{stage: error message}`` of failed or interrupted stages.
    """

    path: Path
    status: str
    dataset_name: str
    dataset_path: Path | None
    fingerprint: str | None
    methods: dict[str, str]
    stages: dict[str, str]
    errors: dict[str, str]

    def file(self, artifact: str) -> Path:
        stage, name = ARTIFACTS[artifact]
        return self.path / stage / name

    def has(self, artifact: str) -> bool:
        return self.file(artifact).is_file()

    def missing(self, artifact: str) -> str:
        """Why an artifact is absent, as a sentence for the reader."""
        stage, name = ARTIFACTS[artifact]
        status = self.stages.get(stage, "pending")
        if status == "done":
            return f"{stage}/{name} is not in this run: its {stage} method does not produce it."
        if status in ("failed", "interrupted"):
            return f"{stage}/{name} is missing: the {stage} stage {status} ({self.errors.get(stage, 'no message')})."
        return f"{stage}/{name} is missing: the {stage} stage has status '{status}' in this run."


def load_run(run_dir: str | Path) -> RunView:
    """Read a run directory's manifest and config; RunDirError when it is not a run."""
    path = Path(run_dir)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise RunDirError(f"{path} is not a run directory (no {MANIFEST})")
    manifest = _read_json(manifest_path)
    methods: dict[str, str] = {}
    config_path = path / CONFIG
    if config_path.is_file():
        try:
            raw = yaml.safe_load(config_path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise RunDirError(f"{config_path}: invalid YAML: {exc}") from None
        for stage in ("encode", "quantize"):
            section = raw.get(stage) if isinstance(raw, dict) else None
            if isinstance(section, dict) and "method" in section:
                methods[stage] = str(section["method"])
    stages = manifest.get("stages", {}) or {}
    dataset = manifest.get("dataset", {}) or {}
    return RunView(
        path=path,
        status=manifest.get("status", "missing"),
        dataset_name=dataset.get("name", "?"),
        dataset_path=Path(dataset["path"]) if dataset.get("path") else None,
        fingerprint=dataset.get("fingerprint"),
        methods=methods,
        stages={k: v.get("status", "?") for k, v in stages.items()},
        errors={k: v["error"] for k, v in stages.items() if v.get("error")},
    )


def artifact_stamp(path: str | Path) -> int:
    """Modification time in ns (0 when absent): a cache key that changes when a file is rewritten."""
    try:
        return Path(path).stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def read_embeddings(run: RunView) -> np.ndarray | None:
    """(n_items, d) float32 item vectors, or None before the E-stage."""
    path = run.file("embeddings")
    if not path.is_file():
        return None
    try:
        X = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise RunDirError(f"{path}: not a readable .npy array ({exc})") from None
    if X.ndim != 2:
        raise RunDirError(f"{path}: expected a 2-D array (n_items, d), got shape {X.shape}")
    return np.array(X, dtype=np.float32)  # a writable copy: torch refuses read-only memory


def read_sids(run: RunView, dataset: Dataset | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """``((n, L) int64 codes, (n,) item ids)`` from ``sids.parquet``, or None before the Q-stage.

    With ``dataset`` the rows follow the dataset's item order (see ``resid_lib.quantize.tree.read_sids``).
    """
    path = run.file("sids")
    if not path.is_file():
        return None
    try:
        return quantize_tree.read_sids(path, dataset)
    except (OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise RunDirError(f"{path}: not a readable parquet file ({exc})") from None


def read_tree(run: RunView) -> pd.DataFrame | None:
    """One row per SID-tree node (level, prefix, parent, code, n_items, F_top, F_share), or None."""
    path = run.file("tree")
    if not path.is_file():
        return None
    frame = _read_parquet(path)
    need = {"level", "prefix", "parent", "n_items"}
    if not need <= set(frame.columns):
        raise RunDirError(f"{path}: missing columns {sorted(need - set(frame.columns))}")
    frame = frame[frame["level"] >= 1].copy()
    frame["prefix"] = frame["prefix"].astype(str)
    frame["parent"] = frame["parent"].fillna("").astype(str)
    if "code" not in frame.columns:
        frame["code"] = frame["prefix"].str.rsplit("-", n=1).str[-1].astype(np.int64)
    return frame.reset_index(drop=True)


def read_diagnostics(run: RunView) -> dict | None:
    path = run.file("diagnostics")
    return _read_json(path) if path.is_file() else None


def read_metrics(run: RunView, stage: str) -> dict | None:
    path = run.path / stage / "metrics.json"
    return _read_json(path) if path.is_file() else None


def read_history(run: RunView, stage: str) -> pd.DataFrame | None:
    """A stage's per-epoch log (``STAGE/history.csv``), or None."""
    path = run.path / stage / "history.csv"
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path}: not a readable CSV ({exc})") from None
    if "epoch" not in frame.columns:
        raise RunDirError(f"{path}: no 'epoch' column (columns: {list(frame.columns)})")
    return frame


def read_predictions(run: RunView) -> pd.DataFrame | None:
    """The G-stage's ranked lists (``generate/predictions.parquet``: user_id, split, target, ranked), or None."""
    path = run.file("predictions")
    if not path.is_file():
        return None
    frame = _read_parquet(path)
    missing = {"split", "target", "ranked"} - set(frame.columns)
    if missing:
        raise RunDirError(f"{path}: missing columns {sorted(missing)} (columns: {list(frame.columns)})")
    return frame


def read_attention(run: RunView) -> AttentionSample | None:
    """The FAMAE target-attention sample (``encode/attention.npz``), or None."""
    path = run.file("attention")
    if not path.is_file():
        return None
    try:
        sample = AttentionSample.load(path)
    except (ValueError, OSError, KeyError, zipfile.BadZipFile) as exc:
        raise RunDirError(f"{path}: not a readable attention archive ({exc})") from None
    w, items = sample.weights, sample.items
    if w.ndim != 4 or items.shape != (w.shape[0], w.shape[3]) or sample.users.shape != (w.shape[0],):
        raise RunDirError(f"{path}: weights {w.shape}, items {items.shape} and users {sample.users.shape} "
                          "do not form (n, layers, heads, L), (n, L) and (n,)")
    return sample


def load_dataset(run: RunView) -> Dataset | None:
    """The dataset the run was made from, or None when its folder is gone or holds other data."""
    return open_dataset(run.dataset_path, run.fingerprint) if run.dataset_path is not None else None


def open_dataset(folder: Path, fingerprint: str | None) -> Dataset | None:
    """The dataset folder's contents, or None when it is absent, unreadable or its fingerprint differs."""
    if not (folder / "schema.json").is_file():
        return None
    try:
        dataset = Dataset.load(folder)
    except DataError:
        return None
    if fingerprint and dataset.fingerprint != fingerprint:
        return None
    return dataset


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path}: not valid JSON ({exc})") from None


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path}: not a readable parquet file ({exc})") from None
