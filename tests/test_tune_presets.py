"""``benchmarks/tune_presets.py``: a variant is the built-in preset with JSON overrides merged
in, written as TOML that ``load_preset`` reads back with exactly those values."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path

import pytest

from dgp_toolkit.presets import load_preset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tune():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("tune_presets", ROOT / "benchmarks" / "tune_presets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("task", ["denoising", "inpainting", "super-resolution"])
def test_variant_round_trips_through_toml(tune, task, tmp_path):
    base = tomllib.loads((tune.PRESETS / f"{task}.toml").read_text())
    n = len(base["schedule"]["iterations"])
    change = {"options": {"update_embed": True},
              "schedule": {"name": "latent-only", "ft_num": [1] * n, "weights": {"discriminator": [0.5] * n}}}
    text = tune.variant_toml(base, change)
    assert base["schedule"]["name"] == "blockwise"  # the base is not modified
    path = tmp_path / "variant.toml"
    path.write_text(text)
    preset = load_preset(path)
    assert preset.update_embed is True
    assert preset.select_num == base["select"]["select_num"]
    assert preset.schedule.name == "latent-only"
    assert [s.weights["discriminator"] for s in preset.schedule.stages] == [0.5] * n
    assert [s.weights["mse"] for s in preset.schedule.stages] == base["schedule"]["weights"]["mse"]
    assert [s.iterations for s in preset.schedule.stages] == base["schedule"]["iterations"]
