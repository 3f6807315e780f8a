"""Typed configuration: presets, ``--set`` overrides with types, unknown keys and wrong types."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from resid_lib.config import PRESET_DIR, RunConfig, apply_override, dump_yaml, from_dict, load_config
from resid_lib.errors import ConfigError


@dataclass
class Inner:
    rate: float = 0.5
    names: list[str] | None = None


@dataclass
class Toy:
    size: int = 3
    flag: bool = False
    label: str = "x"
    mode: Literal["a", "b"] = "a"
    shape: tuple[int, int] = (1, 2)
    weights: dict[str, float] = field(default_factory=dict)
    inner: Inner = field(default_factory=Inner)


def test_from_dict_coerces_types():
    cfg = from_dict(Toy, {"size": 4.0, "flag": True, "label": 7, "mode": "b", "shape": [3, 4],
                          "weights": {"brand": 2}, "inner": {"rate": 1, "names": "brand"}})
    assert cfg == Toy(size=4, flag=True, label="7", mode="b", shape=(3, 4), weights={"brand": 2.0},
                      inner=Inner(rate=1.0, names=["brand"]))
    assert from_dict(Toy, {"inner": {"names": None}}).inner.names is None


@pytest.mark.parametrize("raw, message", [
    ({"sise": 3}, r"unknown config key sise \(known: flag, inner, label, mode, shape, size, weights\)"),
    ({"inner": {"rat": 1}}, r"unknown config key inner\.rat in section 'inner'"),
    ({"size": 2.5}, r"size: expected an integer, got 2\.5"),
    ({"size": True}, r"size: expected an integer, got True"),
    ({"flag": "maybe"}, r"flag: expected true/false"),
    ({"mode": "c"}, r"mode: 'c' is not one of 'a', 'b'"),
    ({"shape": [1, 2, 3]}, r"shape: expected 2 values, got 3"),
    ({"inner": {"rate": "fast"}}, r"inner\.rate: expected a number, got 'fast'"),
    ({"inner": 3}, r"inner: expected a mapping"),
    ({"weights": {"brand": "heavy"}}, r"weights\.brand: expected a number"),
])
def test_from_dict_errors_name_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Toy, raw)


def test_defaults_and_demo_preset():
    assert load_config() == RunConfig()
    demo = load_config("demo")
    raw = yaml.safe_load((PRESET_DIR / "demo.yaml").read_text())
    assert demo.seed == raw["seed"]
    assert demo.encode.method == raw["encode"]["method"]
    assert demo.quantize.method == raw["quantize"]["method"]


def test_overrides_with_types():
    cfg = load_config("demo", ["seed=7", "encode.lr=1e-3", "encode.d_model=64", "device=cpu",
                               "stages=[encode, quantize]", "data.min_length=4",
                               "encode.famae.field_weights={brand: 2}"])
    assert cfg.seed == 7 and isinstance(cfg.seed, int)
    assert cfg.encode.lr == 0.001 and isinstance(cfg.encode.lr, float)
    assert cfg.encode.d_model == 64 and cfg.device == "cpu"
    assert cfg.stages == ["encode", "quantize"]
    assert cfg.data.min_length == 4
    assert cfg.encode.famae.field_weights == {"brand": 2.0}


@pytest.mark.parametrize("override, message", [
    ("encode.nonsense=1", r"unknown config key encode\.nonsense"),
    ("seed=abc", r"seed: expected an integer, got 'abc'"),
    ("encode.method=magic", r"encode\.method: 'magic' is not one of"),
    ("stages=[encode, train]", r"stages\[1\]: 'train' is not one of"),
    ("seed", r"must look like section\.key=value"),
    ("encode..lr=1", r"empty key part"),
    ("seed.x=1", r"'seed' is not a section"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("demo", [override])


def test_yaml_files_and_presets(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("seed: 3\nencode:\n  epochs: 2\n")
    cfg = load_config(path)
    assert cfg.seed == 3 and cfg.encode.epochs == 2
    with pytest.raises(ConfigError, match=r"no preset named 'nope' \(presets: .*demo"):
        load_config("nope")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("seed: [1\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(tmp_path / "broken.yaml")


def test_every_preset_loads():
    presets = sorted(PRESET_DIR.glob("*.yaml"))
    assert presets
    for path in presets:
        load_config(path.stem)


def test_dump_round_trip(tmp_path):
    cfg = load_config("demo", ["seed=11", "encode.famae.fields=[item_id, brand]"])
    path = tmp_path / "config.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_config(path) == cfg


def test_apply_override_builds_sections():
    raw: dict = {}
    apply_override(raw, "encode.famae.fields=[brand]")
    apply_override(raw, "device= ")
    assert raw == {"encode": {"famae": {"fields": ["brand"]}}, "device": ""}
