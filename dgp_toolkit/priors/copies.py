"""Independent copies of any generator in one module, for priors that are not BigGANs.

The batched engine needs ``prior.generator_copies(n)``: one module in which sample ``i`` of
a batch of ``n`` goes through copy ``i``, with every trainable parameter stacked along a
first dimension of size ``n`` (the engine keeps each image's roll-back state by indexing
that dimension). The BigGAN prior stacks its own layers (grouped convolutions: the fast
path, see priors/biggan/layers.py). :class:`StackedCopies` does it for any ``nn.Module``
generator with PyTorch's model-ensembling recipe: the parameters stacked
(``torch.func.stack_module_state``'s layout) and the forward vmapped over
``torch.func.functional_call``. Buffers are shared by the copies (a generator in eval mode
does not change them).

>>> import torch
>>> net = torch.nn.Linear(3, 2)
>>> copies = StackedCopies(net, 4)
>>> copies(torch.ones(4, 3)).shape, copies.stacked("weight").shape
(torch.Size([4, 2]), torch.Size([4, 2, 3]))
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class StackedCopies(nn.Module):
    """``copies`` independent copies of ``module``; ``forward(*inputs)`` maps sample ``i`` of
    every input (first dimension ``copies``) through copy ``i``. Parameters keep their
    ``requires_grad``; :meth:`state_of` gives one copy's state in ``module``'s layout."""

    def __init__(self, module: nn.Module, copies: int) -> None:
        super().__init__()
        self.copies = int(copies)
        # the template holds the buffers and the structure; its own parameters are not used
        self.template = copy.deepcopy(module).requires_grad_(False)
        self.names = [name for name, _ in module.named_parameters()]
        self.weights = nn.ParameterList(
            nn.Parameter(p.detach().unsqueeze(0).repeat(self.copies, *[1] * p.dim()).clone(),
                         requires_grad=p.requires_grad)
            for _, p in module.named_parameters())

    def stacked(self, name: str) -> nn.Parameter:
        """The stacked parameter of ``module``'s parameter ``name`` (``(copies, ...)``)."""
        return self.weights[self.names.index(name)]

    def parameters_of(self, prefix: str) -> list[nn.Parameter]:
        """The stacked parameters of the submodule ``prefix`` (e.g. ``"block0"``)."""
        return [w for n, w in zip(self.names, self.weights) if n == prefix or n.startswith(prefix + ".")]

    def state_of(self, index: int) -> dict[str, torch.Tensor]:
        """Copy ``index``'s state dict in ``module``'s layout (views, not copies)."""
        state = dict(self.template.state_dict())
        state.update({n: w[index] for n, w in zip(self.names, self.weights)})
        return state

    def forward(self, *inputs: torch.Tensor) -> Any:
        from torch.func import functional_call, vmap

        buffers = dict(self.template.named_buffers())

        def one(params: dict[str, torch.Tensor], *xs: torch.Tensor) -> Any:
            out = functional_call(self.template, (params, buffers), tuple(x.unsqueeze(0) for x in xs))
            return out.squeeze(0)

        params = dict(zip(self.names, self.weights))
        return vmap(one)(params, *inputs)
