"""``benchmarks/tune_presets.py``: a variant is the built-in preset with JSON overrides merged
in, written as TOML that ``load_preset`` reads back with exactly those values."""

from __future__ import annotations

import tomllib

import pytest

from dgp_toolkit.presets import load_preset
from tiny import benchmark_module



@pytest.fixture(scope="module")
def tune():
    return benchmark_module("tune_presets")


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


def test_dip_variant_splits_the_run_into_checkpoint_stages(tune, tmp_path):
    """``--prior dip``: the base is quality.py's DIP preset; equal stages are checkpoints of one run."""
    from dgp_toolkit.priors.dip import dip_preset_toml

    base = tomllib.loads(dip_preset_toml("deblurring"))
    change = {"schedule": {"iterations": [250, 750], "ft_num": [1, 1], "lr_ratio": [1.0, 1.0], "g_lr": [1e-3, 1e-3],
                           "z_lr": [0.0, 0.0], "ftr_num": [1, 1], "use_in": [False, False], "weights": {"mse": [1.0, 1.0]}}}
    path = tmp_path / "dip.toml"
    path.write_text(tune.variant_toml(base, change, "ckpt", "dip"))
    preset = load_preset(path, family="dip")
    assert preset.family == "dip" and preset.select_num == 1
    assert preset.schedule.name == "full"
    assert [s.iterations for s in preset.schedule.stages] == [250, 750]
    assert all(s.z_lr == 0.0 and s.weights == {"mse": 1.0} for s in preset.schedule.stages)
