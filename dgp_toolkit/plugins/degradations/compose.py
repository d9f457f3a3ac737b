"""Composition of degradations in command-line order.

``--degrade gray --degrade mask --degrade downsample:factor=2`` (the reference's
"hybrid") is ``Compose([Gray(), Mask(), Downsample(factor=2)])``: the truth went through
``gray``, then ``mask``, then ``downsample``.

Rules (the engine relies on them):

- ``forward`` and ``degrade`` apply the steps in order (noise lands where it is listed).
- ``observation_size`` chains the steps in order (``downsample`` shrinks, others keep).
- ``observe`` runs the steps' ``observe`` in *reverse* order, each at the size its step's
  input had: the last operation applied to the truth is the first to be brought back to
  the prior's representation (``downsample`` enlarges the real low-resolution input,
  then ``mask`` zeroes the hole at full size, then ``gray`` makes it grey).
- ``forward`` takes no fitted values: :func:`dgp_toolkit.learnable.apply_values` runs the
  steps as ``forward`` does, handing each step with an ``auto`` option its own values.
- ``finish`` applies each step's ``finish`` in order only when at most one step changes
  the image in ``forward`` (steps with ``identity_forward``, like ``noise``, do not
  count). A step's ``finish`` keeps pixels of the observation (the luminance for
  ``gray``, the known pixels for ``mask``), which is right only when the observation is
  that step's output; after several transforms (``gray`` then ``mask`` then
  ``downsample``) the observation holds pixels no single step produced, and pasting
  them back would re-degrade the result, so ``finish`` returns the restoration unchanged.

>>> import torch
>>> from dgp_toolkit.plugins.degradations.gray import Gray
>>> from dgp_toolkit.plugins.degradations.downsample import Downsample
>>> c = Compose([Gray(), Downsample(factor=2)])
>>> c.spec, c.observation_size(32)
(['gray', 'downsample:factor=2'], (16, 16))
"""

from __future__ import annotations

from typing import Iterable

import torch

from dgp_toolkit.plugins.degradations.base import Degradation, as_size, check_images


class Compose(torch.nn.Module):
    """Several degradations applied in order, with the interface of one :class:`Degradation`.

    ``spec`` is the list of the steps' specs (one ``--degrade`` each); equality compares
    the steps in order. An empty composition is the identity.
    """

    name = "compose"
    identity_forward = False

    def __init__(self, steps: Iterable[Degradation]) -> None:
        super().__init__()
        steps = list(steps)
        for step in steps:
            if not isinstance(step, torch.nn.Module) or not hasattr(step, "observe"):
                raise TypeError(f"compose: expected degradations, got {type(step).__name__}")
        self.steps = torch.nn.ModuleList(steps)
        self.identity_forward = all(getattr(s, "identity_forward", False) for s in steps)

    @property
    def spec(self) -> list[str]:
        """One spec per step, in order; each builds with ``parse_degradation``."""
        return [step.spec for step in self.steps]

    @property
    def options(self) -> list[dict]:
        """Each step's resolved options, in order."""
        return [step.options for step in self.steps]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Compose):
            return NotImplemented
        return list(self.steps) == list(other.steps)

    def __hash__(self) -> int:
        return hash(tuple(self.steps))

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self):
        return iter(self.steps)

    def __getitem__(self, index: int) -> Degradation:
        return self.steps[index]

    def extra_repr(self) -> str:
        return " + ".join(self.spec) or "identity"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_images(x, "compose")
        for step in self.steps:
            x = step(x)
        return x

    def degrade(self, clean: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Each step's ``degrade`` in order, sharing ``generator``."""
        x = check_images(clean, "compose")
        for step in self.steps:
            x = step.degrade(x, generator=generator)
        return x

    def _sizes(self, size) -> list[tuple[int, int]]:
        sizes = [as_size(size)]
        for step in self.steps:
            sizes.append(as_size(step.observation_size(sizes[-1])))
        return sizes

    def observation_size(self, size) -> tuple[int, int]:
        return self._sizes(size)[-1]

    def observe(self, image: torch.Tensor, *, size=None) -> torch.Tensor:
        image = check_images(image, "compose")
        sizes = self._sizes(size) if size is not None else [None] * (len(self.steps) + 1)
        for index in reversed(range(len(self.steps))):
            image = self.steps[index].observe(image, size=sizes[index])
        return image

    def finish(self, restored: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        active = [s for s in self.steps if not getattr(s, "identity_forward", False)]
        if len(active) > 1:
            return check_images(restored, "compose")
        for step in self.steps:
            restored = step.finish(restored, observed)
        return restored

    def check_image_size(self, width: int, height: int) -> None:
        for step in self.steps:
            step.check_image_size(width, height)
