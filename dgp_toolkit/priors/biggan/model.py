"""BigGAN generator and discriminator, laid out like the official BigGAN-PyTorch checkpoints.

The configuration uses the official argument names (``resolution``, ``G_ch``, ``D_ch``,
``dim_z``, ``shared_dim``, ``hier``, ``G_shared``, ``n_classes``, ``G_attn``, ``D_attn``,
``SN_eps``, ``BN_eps``), so a ``--config`` JSON written for BigGAN-PyTorch reads as is.

>>> cfg = BigGANConfig(resolution=32, G_ch=8, D_ch=8, dim_z=20, shared_dim=16, n_classes=10)
>>> G, D = Generator(cfg).eval(), Discriminator(cfg).eval()
>>> z = torch.randn(2, G.dim_z); e = G.shared(torch.tensor([1, 2]))
>>> G(z, e).shape
torch.Size([2, 3, 32, 32])
>>> logits, feats = D(G(z, e)); logits.shape, len(feats)
(torch.Size([2]), 9)
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import torch
from torch import nn

from dgp_toolkit.errors import DGPUsageError
from dgp_toolkit.priors.biggan.layers import (
    BatchNorm,
    DBlock,
    GBlock,
    SelfAttention,
    SNConv2d,
    SNEmbedding,
    SNLinear,
)

# Channel multipliers (in, out) per generator block; block i outputs 8 * 2**i pixels.
G_ARCH: dict[int, tuple[list[int], list[int]]] = {
    32: ([4, 4, 4], [4, 4, 4]),
    64: ([16, 16, 8, 4], [16, 8, 4, 2]),
    128: ([16, 16, 8, 4, 2], [16, 8, 4, 2, 1]),
    256: ([16, 16, 8, 8, 4, 2], [16, 8, 8, 4, 2, 1]),
    512: ([16, 16, 8, 8, 4, 2, 1], [16, 8, 8, 4, 2, 1, 1]),
}

# Discriminator: input channel multipliers (the first entry is RGB, 3 channels, literal),
# output multipliers, downsampling flags and the table resolution used for attention.
D_ARCH: dict[int, tuple[list[int], list[int], list[bool], list[int]]] = {
    32: ([3, 4, 4, 4], [4, 4, 4, 4], [True, True, False, False], [16, 16, 16, 16]),
    64: ([3, 1, 2, 4, 8], [1, 2, 4, 8, 16], [True] * 4 + [False], [32, 16, 8, 4, 4]),
    128: ([3, 1, 2, 4, 8, 16], [1, 2, 4, 8, 16, 16], [True] * 5 + [False], [64, 32, 16, 8, 4, 4]),
    256: ([3, 1, 2, 4, 8, 8, 16], [1, 2, 4, 8, 8, 16, 16], [True] * 6 + [False],
          [128, 64, 32, 16, 8, 4, 4]),
}

BOTTOM_WIDTH = 4


def parse_attn(value: str | int | None) -> frozenset[int]:
    """Attention resolutions from the official string form: ``"64"``, ``"16_32"``, ``"0"``."""
    if value is None or value == "" or value == 0:
        return frozenset()
    parts = str(value).split("_")
    try:
        res = {int(p) for p in parts}
    except ValueError:
        raise DGPUsageError(f"attention resolutions must look like '64' or '16_32', got {value!r}") from None
    return frozenset(r for r in res if r > 0)


@dataclasses.dataclass(frozen=True)
class BigGANConfig:
    """Architecture of a BigGAN, with the official BigGAN-PyTorch argument names."""

    resolution: int = 128
    G_ch: int = 96
    D_ch: int = 96
    dim_z: int = 120
    shared_dim: int = 128
    hier: bool = True
    G_shared: bool = True
    n_classes: int = 1000
    G_attn: str = "64"
    D_attn: str = "64"
    SN_eps: float = 1e-6
    BN_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.resolution not in G_ARCH:
            raise DGPUsageError(f"unsupported BigGAN resolution {self.resolution}; choices: {sorted(G_ARCH)}")
        if not self.G_shared:
            raise DGPUsageError("only G_shared=true BigGANs (a shared class embedding) are supported")
        for name in ("G_ch", "D_ch", "dim_z", "shared_dim", "n_classes"):
            if int(getattr(self, name)) <= 0:
                raise DGPUsageError(f"BigGAN config: {name} must be a positive integer")
        if self.G_ch % 8 or self.D_ch % 8:
            # Attention layers split channels by 8; the official widths are multiples of 8.
            raise DGPUsageError("BigGAN config: G_ch and D_ch must be multiples of 8")
        object.__setattr__(self, "G_attn", str(self.G_attn))
        object.__setattr__(self, "D_attn", str(self.D_attn))
        parse_attn(self.G_attn), parse_attn(self.D_attn)

    @property
    def n_blocks(self) -> int:
        return len(G_ARCH[self.resolution][0])

    @property
    def z_slots(self) -> int:
        return self.n_blocks + 1 if self.hier else 1

    @property
    def z_chunk(self) -> int:
        return self.dim_z // self.z_slots

    @property
    def effective_dim_z(self) -> int:
        """The latent size the generator really uses: ``(dim_z // slots) * slots``."""
        return self.z_chunk * self.z_slots

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BigGANConfig":
        """Build from official argument names; unknown keys are an error naming them."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        data = dict(data)
        if "attention" in data:  # the fixture's single attention entry
            att = data.pop("attention")
            data.setdefault("G_attn", att)
            data.setdefault("D_attn", att)
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise DGPUsageError(
                f"unknown BigGAN config keys {unknown}; expected some of {sorted(fields)}")
        kwargs = {}
        for key, value in data.items():
            kind = fields[key].type
            if kind in ("int", int):
                value = int(value)
            elif kind in ("float", float):
                value = float(value)
            elif kind in ("bool", bool):
                if isinstance(value, str):
                    value = value.strip().lower() in ("1", "true", "yes")
                value = bool(value)
            elif kind in ("str", str):
                value = str(value)
            kwargs[key] = value
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


class Generator(nn.Module):
    """BigGAN generator ``G(z, e)`` with ``e`` a class embedding (``G.shared(y)``)."""

    def __init__(self, config: BigGANConfig):
        super().__init__()
        self.config = config
        ch, res = config.G_ch, config.resolution
        ins, outs = G_ARCH[res]
        attn = parse_attn(config.G_attn)
        self.dim_z = config.effective_dim_z
        self.z_chunk = config.z_chunk
        cond_dim = config.shared_dim + (self.z_chunk if config.hier else 0)
        eps = config.SN_eps
        self.shared = nn.Embedding(config.n_classes, config.shared_dim)
        z_in = self.z_chunk if config.hier else self.dim_z
        self.linear = SNLinear(z_in, ins[0] * ch * BOTTOM_WIDTH**2, eps=eps)
        blocks = []
        for i, (cin, cout) in enumerate(zip(ins, outs)):
            layer = [GBlock(cin * ch, cout * ch, cond_dim, bn_eps=config.BN_eps, sn_eps=eps)]
            if 8 * 2**i in attn:
                layer.append(SelfAttention(cout * ch, sn_eps=eps))
            blocks.append(nn.ModuleList(layer))
        self.blocks = nn.ModuleList(blocks)
        self.output_layer = nn.Sequential(
            BatchNorm(outs[-1] * ch, bn_eps=config.BN_eps),
            nn.ReLU(),
            SNConv2d(outs[-1] * ch, 3, 3, eps=eps),
        )

    def stages(self) -> list[list[nn.Module]]:
        """The fine-tunable stages in order: the first linear layer, then each block
        (with its attention). The output layer is not a stage and is never tuned."""
        return [[self.linear]] + [list(block) for block in self.blocks]

    def embed(self, y: torch.Tensor) -> torch.Tensor:
        """Class embeddings ``(B, shared_dim)`` of class indices ``y`` (``(B,)``). With stacked
        copies of the embedding table (``(copies, n_classes, shared_dim)``), copy ``i`` embeds
        ``y[i]``."""
        table = self.shared.weight
        if table.dim() == 3:
            return table[torch.arange(table.shape[0], device=y.device), y]
        return self.shared(y)

    def stack_copies(self, copies: int, *, embedding: bool = False) -> None:
        """Turn every stage's parameters (and the class embedding with ``embedding``) into
        ``copies`` stacked, independent copies, in place (see layers.py): sample ``i`` of a
        batch of ``copies`` then goes through copy ``i``. The output layer and the buffers
        stay shared: DGP never tunes them."""
        modules = [m for stage in self.stages() for layer in stage for m in layer.modules()]
        if embedding:
            modules.append(self.shared)
        for module in modules:
            for name, p in list(module.named_parameters(recurse=False)):
                stacked = p.detach().unsqueeze(0).repeat(copies, *[1] * p.dim())
                setattr(module, name, nn.Parameter(stacked, requires_grad=p.requires_grad))
        self.copies = copies

    def set_instance_norm(self, enabled: bool) -> None:
        """Switch DGP's instance-norm path on or off; statistics are re-taken next forward."""
        for block in self.blocks:
            block[0].use_in = enabled
            block[0].reset_instance_norm()

    def forward(self, z: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        if z.shape[-1] != self.dim_z:
            raise ValueError(f"latent has {z.shape[-1]} dimensions, this generator takes {self.dim_z}")
        if self.config.hier:
            chunks = torch.split(z, self.z_chunk, dim=1)
            h = self.linear(chunks[0])
            conds = [torch.cat([embedding, zc], dim=1) for zc in chunks[1:]]
        else:
            h = self.linear(z)
            conds = [embedding] * len(self.blocks)
        h = h.view(h.shape[0], -1, BOTTOM_WIDTH, BOTTOM_WIDTH)
        for block, cond in zip(self.blocks, conds):
            for layer in block:
                h = layer(h, cond)
        return torch.tanh(self.output_layer(h))


class Discriminator(nn.Module):
    """Projection discriminator returning ``(logits of shape (B,), feature list)``.

    Features: the output of every module of every block in order (an attention layer is
    its own entry), then the globally sum-pooled ReLU of the last block.
    """

    def __init__(self, config: BigGANConfig):
        super().__init__()
        if config.resolution not in D_ARCH:
            raise DGPUsageError(
                f"no BigGAN discriminator is defined for {config.resolution} px; choices: {sorted(D_ARCH)}")
        self.config = config
        ch = config.D_ch
        ins, outs, down, table_res = D_ARCH[config.resolution]
        attn = parse_attn(config.D_attn)
        eps = config.SN_eps
        blocks = []
        for i in range(len(outs)):
            cin = 3 if i == 0 else ins[i] * ch
            layer: list[nn.Module] = [DBlock(cin, outs[i] * ch, preactivation=i > 0,
                                             downsample=down[i], sn_eps=eps)]
            if table_res[i] in attn:
                layer.append(SelfAttention(outs[i] * ch, sn_eps=eps))
            blocks.append(nn.ModuleList(layer))
        self.blocks = nn.ModuleList(blocks)
        self.linear = SNLinear(outs[-1] * ch, 1, eps=eps)
        self.embed = SNEmbedding(config.n_classes, outs[-1] * ch, eps=eps)

    @property
    def n_features(self) -> int:
        return sum(len(b) for b in self.blocks) + 1

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats: list[torch.Tensor] = []
        h = x
        for block in self.blocks:
            for layer in block:
                h = layer(h)
                feats.append(h)
        pooled = torch.relu(h).sum(dim=(2, 3))
        feats.append(pooled)
        out = self.linear(pooled).squeeze(1)
        if y is not None:
            out = out + (self.embed(y) * pooled).sum(dim=1)
        return out, feats


def orthogonal_init(module: nn.Module) -> None:
    """The BigGAN training initialisation: orthogonal conv/linear/embedding weights."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            nn.init.orthogonal_(m.weight)
