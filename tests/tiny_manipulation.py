"""A tiny random-init BigGAN prior, a 9-step preset and test images for the manipulation tests."""

from __future__ import annotations

import torch

from dgp_toolkit.plugins.schedules import build_schedule
from dgp_toolkit.presets import Preset
from dgp_toolkit.priors.biggan.model import BigGANConfig, Discriminator, Generator
from dgp_toolkit.priors.biggan.prior import BigGANPrior

TINY = BigGANConfig(resolution=32, G_ch=8, D_ch=8, dim_z=20, shared_dim=16, n_classes=10, G_attn="0", D_attn="0")


def make_prior(config: BigGANConfig = TINY, name: str = "tiny", seed: int = 0) -> BigGANPrior:
    torch.manual_seed(seed)
    G, D = Generator(config), Discriminator(config)
    for m in G.modules():  # non-trivial batch-norm statistics, as in a trained prior
        if hasattr(m, "stored_var"):
            m.stored_var.uniform_(0.5, 2.0)
            m.stored_mean.normal_(0, 0.1)
    return BigGANPrior(G, D, name=name)


def tiny_preset(use_in=(False, False, False), update_embed=False) -> Preset:
    schedule = build_schedule("blockwise", iterations=[3, 3, 3], ft_num=[4, 4, 4], g_lr=[1e-3] * 3,
                              z_lr=[1e-2, 1e-2, 1e-3], ftr_num=[3, 3, 3], use_in=list(use_in),
                              weights={"discriminator": [1, 1, 1], "mse": [1, 1, 1], "nll": [0.2] * 3})
    return Preset(name="tiny", task="manipulation", family="biggan-32", description="", select_num=4,
                  sample_std=0.5, update_embed=update_embed, schedule=schedule, source="test")


def image(seed: int = 1) -> torch.Tensor:
    return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1
