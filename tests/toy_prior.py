"""A third-party prior for the tests, installed as the module ``dgp_toy_prior`` of a fake
distribution ``dgp-toolkit-toy``: a small conditional generator that is not a BigGAN.

It implements what the engine and ``restore()`` use of a prior (the protocol that
``dgp_toolkit.testing.PriorContract`` checks) with plain torch modules, and registers
itself as ``toy`` through the ``register_priors`` hook.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from dgp_toolkit import DGPUsageError, hookimpl
from dgp_toolkit.priors.copies import StackedCopies

CLASSES = ("circle", "square", "stripe")


class ToyGenerator(nn.Module):
    """z and a class embedding -> a linear map to 8x8, two upsampling conv blocks -> 32x32."""

    def __init__(self, dim_z: int = 16, n_classes: int = len(CLASSES), width: int = 16) -> None:
        super().__init__()
        self.width = width
        self.shared = nn.Embedding(n_classes, 8)
        self.linear = nn.Linear(dim_z + 8, width * 8 * 8)
        self.block0 = nn.Conv2d(width, width, 3, padding=1)
        self.block1 = nn.Conv2d(width, width, 3, padding=1)
        self.output_layer = nn.Conv2d(width, 3, 3, padding=1)
        self.instance_norm = False

    def stages(self) -> list[nn.Module]:
        return [self.linear, self.block0, self.block1]

    def forward(self, z: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        h = self.linear(torch.cat([z, embedding], dim=1)).view(-1, self.width, 8, 8)
        for block in (self.block0, self.block1):
            h = block(F.interpolate(h, scale_factor=2.0))
            if self.instance_norm:
                h = F.instance_norm(h)
            h = F.relu(h)
        return torch.tanh(self.output_layer(h))


class ToyDiscriminator(nn.Module):
    """Three strided convs; the features are their outputs and the sum-pooled last one."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(3 if i == 0 else width, width, 3, stride=2, padding=1)
                                    for i in range(3)])
        self.head = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features, h = [], x
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
            features.append(h)
        pooled = h.sum(dim=(2, 3))
        features.append(pooled)
        return self.head(pooled).squeeze(1), features


class ToyPrior:
    """The ``toy`` prior: random weights drawn from ``seed``, the same in every process."""

    name = "toy"
    class_names = CLASSES
    dim_z, n_classes, resolution = 16, len(CLASSES), 32

    def __init__(self, device: str = "cpu", seed: int = 0) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            G, D = ToyGenerator(self.dim_z), ToyDiscriminator()
        self.device = torch.device("cpu" if device == "auto" else device)
        self.G = G.to(self.device).eval().requires_grad_(False)
        self.D = D.to(self.device).eval().requires_grad_(False)

    def class_index(self, value: int | str) -> int:
        if isinstance(value, str) and value in CLASSES:
            return CLASSES.index(value)
        try:
            index = int(value)
        except (TypeError, ValueError):
            index = -1
        if not 0 <= index < self.n_classes:
            raise DGPUsageError(f"unknown class {value!r} for prior 'toy' (use {', '.join(CLASSES)} or 0..2)")
        return index

    def sample(self, n: int, *, std: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        if int(n) < 1:
            raise DGPUsageError(f"the number of latents must be at least 1, got {n}")
        device = generator.device if generator is not None else self.device
        return (torch.randn(int(n), self.dim_z, generator=generator, device=device) * std).to(self.device)

    def describe(self) -> dict:
        return {"name": self.name, "family": "toy"}

    # -- generation and features (the Prior protocol, dgp_toolkit/priors/protocol.py)
    def embed(self, y, *, model=None) -> torch.Tensor:
        y = torch.as_tensor(y, device=self.device).reshape(-1)
        if isinstance(model, StackedCopies):  # copy i embeds y[i] with its own table
            return model.stacked("shared.weight")[torch.arange(y.shape[0], device=self.device), y]
        return (model if model is not None else self.G).shared(y)

    def generate(self, z, y=None, *, embedding=None, model=None) -> torch.Tensor:
        if embedding is None:
            embedding = self.embed(y, model=model)
            if embedding.shape[0] == 1 and z.shape[0] > 1:
                embedding = embedding.expand(z.shape[0], -1)
        return (model if model is not None else self.G)(z, embedding)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.D(images)[1]

    def feature_extractor(self, *, channels_last: bool = False):
        return self.features

    # -- fine-tuning
    def generator_copies(self, copies: int, *, tune_embedding: bool = False) -> StackedCopies:
        """The generic recipe for any generator: stacked parameters, a vmapped forward."""
        G = self.fresh_generator()
        G.shared.requires_grad_(bool(tune_embedding))
        return StackedCopies(G, copies)

    def copy_state(self, model: StackedCopies, index: int) -> dict[str, torch.Tensor]:
        return model.state_of(index)

    def instance_norm_stats(self, model) -> None:
        return None  # the toy's instance norm keeps no statistics

    def set_instance_norm_stats(self, stats, model) -> None:
        self.set_instance_norm(False, model=model)

    def fresh_generator(self) -> ToyGenerator:
        G = copy.deepcopy(self.G)
        G.requires_grad_(True)
        G.output_layer.requires_grad_(False)
        G.shared.requires_grad_(False)
        G.instance_norm = False
        return G

    def stages(self, model=None, *, include_embedding: bool = False) -> list[list[nn.Parameter]]:
        if isinstance(model, StackedCopies):
            groups = [model.parameters_of(name) for name in ("linear", "block0", "block1")]
            if include_embedding:
                groups[0] = groups[0] + model.parameters_of("shared")
            return groups
        G = model if model is not None else self.G
        groups = [list(module.parameters()) for module in G.stages()]
        if include_embedding:
            groups[0] = groups[0] + list(G.shared.parameters())
        return groups

    def generator_state(self, model: ToyGenerator | None = None) -> dict[str, torch.Tensor]:
        G = model if model is not None else self.G
        return {k: v.detach().clone() for k, v in G.state_dict().items()}

    def load_generator_state(self, state, model: ToyGenerator | None = None) -> None:
        G = model if model is not None else self.G
        try:
            with torch.no_grad():
                G.load_state_dict(dict(state), strict=True)
        except RuntimeError as exc:
            raise DGPUsageError(f"generator state does not fit prior 'toy': {' '.join(str(exc).split())}") from None

    def set_instance_norm(self, enabled: bool, model=None) -> None:
        G = model if model is not None else self.G
        (G.template if isinstance(G, StackedCopies) else G).instance_norm = bool(enabled)


@hookimpl
def register_priors(register):
    register("toy", ToyPrior)
