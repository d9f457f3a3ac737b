"""Tiny shared test material: a random-init BigGAN prior (32 px, 10 classes), tiny presets
(as objects and as preset-file text), prior files for ``--prior biggan`` and test images.

The fixtures that use them (``tiny_files``, ``tiny_biggan``) and ``one_thread`` are in
``conftest.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from dgp_toolkit.plugins.schedules import build_schedule
from dgp_toolkit.presets import Preset
from dgp_toolkit.priors.biggan.model import BigGANConfig, Discriminator, Generator
from dgp_toolkit.priors.biggan.prior import BigGANPrior
from dgp_toolkit.priors.biggan.synthetic import random_state_dicts, save_prior_file
from dgp_toolkit.priors.biggan.variants import CIFAR10_CLASSES

TINY = BigGANConfig(resolution=32, G_ch=8, D_ch=8, dim_z=20, shared_dim=16, n_classes=10, G_attn="0", D_attn="0")
#: Another prior: ``TINY`` with a wider latent.
WIDER = BigGANConfig(**{**TINY.to_dict(), "dim_z": 24})

#: A restoration preset file: two short stages, four candidates.
RESTORE_PRESET_TOML = """\
task = "test"
description = "two short stages, four candidates"
[select]
select_num = 4
sample_std = 0.3
[schedule]
name = "blockwise"
iterations = [3, 3]
ftr_num = [3, 3]
ft_num = [2, 3]
g_lr = [5e-5, 2e-5]
z_lr = [2e-3, 1e-3]
[schedule.weights]
discriminator = [1.0, 1.0]
mse = [1.0, 1.0]
nll = [0.02, 0.02]
"""

#: A manipulation preset file: three stages of three steps, four candidates.
MANIPULATION_PRESET_TOML = """\
task = "manipulation"
[select]
select_num = 4
sample_std = 0.5
[schedule]
name = "blockwise"
iterations = [3, 3, 3]
ftr_num = [3, 3, 3]
ft_num = [4, 4, 4]
g_lr = [1e-3, 1e-3, 1e-4]
z_lr = [1e-2, 1e-2, 1e-3]
[schedule.weights]
discriminator = [1.0, 1.0, 1.0]
mse = [1.0, 1.0, 1.0]
nll = [0.2, 0.2, 0.2]
"""


def make_prior(config: BigGANConfig = TINY, name: str = "tiny", seed: int = 0) -> BigGANPrior:
    """A random-init prior (``torch.manual_seed(seed)``) with non-trivial batch-norm statistics."""
    torch.manual_seed(seed)
    G, D = Generator(config), Discriminator(config)
    for m in G.modules():  # non-trivial batch-norm statistics, as in a trained prior
        if hasattr(m, "stored_var"):
            m.stored_var.uniform_(0.5, 2.0)
            m.stored_mean.normal_(0, 0.1)
    return BigGANPrior(G, D, name=name)


def make_preset(schedule: str = "blockwise", *, task: str, select_num: int, sample_std: float,
                update_embed: bool = False, **table: Any) -> Preset:
    """A preset object named ``tiny`` (family ``biggan-32``): SCHEDULE built from TABLE."""
    return Preset(name="tiny", task=task, family="biggan-32", description="", select_num=select_num,
                  sample_std=sample_std, update_embed=update_embed, schedule=build_schedule(schedule, **table),
                  source="test")


def tiny_preset(use_in=(False, False, False), update_embed=False) -> Preset:
    """The 9-step manipulation preset: three stages of three steps, four candidates."""
    return make_preset(task="manipulation", select_num=4, sample_std=0.5, update_embed=update_embed,
                       iterations=[3, 3, 3], ft_num=[4, 4, 4], g_lr=[1e-3] * 3, z_lr=[1e-2, 1e-2, 1e-3],
                       ftr_num=[3, 3, 3], use_in=list(use_in),
                       weights={"discriminator": [1, 1, 1], "mse": [1, 1, 1], "nll": [0.2] * 3})


def save_tiny_prior(path: Path, config: BigGANConfig = TINY) -> Path:
    """A prior file of random weights (seed 0) for CONFIG, with the CIFAR-10 class names."""
    G_sd, D_sd = random_state_dicts(config, seed=0)
    return save_prior_file(path, G_sd, D_sd, config, class_names=list(CIFAR10_CLASSES))


def save_image(path: Path, width: int = 40, height: int = 30, seed: int = 0) -> Path:
    """A random-noise RGB image file (any size, any format PIL writes)."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def image(seed: int = 1) -> torch.Tensor:
    return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


#: The CIFAR-10 dev split in ../shared (beside the repository in CI; absent in a clone elsewhere).
DEV_SPLIT = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "test_dev_jpeg.npz"


def needs_dev_split(test):
    """Skip ``test`` where ../shared's CIFAR-10 dev split is not beside the repository."""
    import pytest

    return pytest.mark.skipif(not DEV_SPLIT.exists(), reason="the CIFAR-10 dev split (../shared) is not here")(test)


def benchmark_module(name: str, alias: str | None = None):
    """``benchmarks/NAME.py`` imported as a module (``alias`` in ``sys.modules``, which its
    dataclasses need), with ``benchmarks/`` on ``sys.path`` for its own imports."""
    import importlib.util
    import sys

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(alias or name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
