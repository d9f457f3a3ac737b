"""Random BigGAN weights with the official key names and shapes, for tests and benchmarks.

The networks are built on the meta device (no memory, no initialisation cost) to learn
the key names and shapes; the tensors are then drawn directly, with values that keep a
forward pass well behaved (positive stored variances, ``sv0`` of one, a non-zero
attention gain so attention layers take part).

>>> from dgp_toolkit.priors.biggan.model import BigGANConfig
>>> cfg = BigGANConfig(resolution=32, G_ch=8, D_ch=8, dim_z=32, shared_dim=16, n_classes=10,
...                    G_attn="0", D_attn="0")
>>> G_sd, D_sd = random_state_dicts(cfg, seed=0)
>>> G_sd["shared.weight"].shape, D_sd["embed.weight"].shape
(torch.Size([10, 16]), torch.Size([10, 32]))
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from dgp_toolkit.priors.biggan.model import BigGANConfig, Discriminator, Generator

__all__ = ["random_state_dicts", "save_prior_file"]


def _random_tensor(key: str, shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "stored_var":
        return torch.rand(shape, generator=gen) + 0.5
    if leaf == "sv0":
        return torch.ones(shape)
    if leaf == "gamma":
        return torch.full(shape, 0.2)
    if key.startswith("output_layer.0.gain"):
        return 1 + 0.1 * torch.randn(shape, generator=gen)
    values = torch.randn(shape, generator=gen)
    if leaf in ("bias", "stored_mean"):
        values.mul_(0.1)
    return values


def random_state_dicts(config: BigGANConfig, *, seed: int = 0,
                       ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Random ``(G_ema, D)`` state dicts for ``config`` with the official layout (float32, CPU)."""
    with torch.device("meta"):
        G, D = Generator(config), Discriminator(config)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for net in (G, D):
        out.append({k: _random_tensor(k, v.shape, gen) for k, v in net.state_dict().items()})
    return out[0], out[1]


def save_prior_file(path: str | Path, G_sd: dict[str, torch.Tensor], D_sd: dict[str, torch.Tensor],
                    config: BigGANConfig, *, class_names: list[str] | None = None) -> Path:
    """Write a prior file (safetensors, keys ``G.*``/``D.*``, config in the metadata)."""
    from safetensors.torch import save_file

    from dgp_toolkit.priors.biggan.weights import PRIOR_FORMAT

    path = Path(path)
    tensors = {f"G.{k}": v.contiguous() for k, v in G_sd.items()}
    tensors.update({f"D.{k}": v.contiguous() for k, v in D_sd.items()})
    metadata = {"format": PRIOR_FORMAT, "config": json.dumps(config.to_dict(), sort_keys=True)}
    if class_names is not None:
        metadata["class_names"] = json.dumps(list(class_names))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
