"""``noise``: additive Gaussian noise (denoising), added only by ``degrade``.

``forward`` is the identity, so the restoration is fitted to the noisy observation and
the generative prior does the denoising.

>>> import torch
>>> n = Noise(sigma=0.1)
>>> x = torch.zeros(1, 3, 8, 8)
>>> bool((n(x) == x).all()), bool((n.degrade(x) != x).any())
(True, True)
"""

from __future__ import annotations

import torch

from dgp_toolkit.plugins.degradations.base import Degradation, Option


class Noise(Degradation):
    """Gaussian noise of standard deviation ``sigma`` on the [0, 1] scale (``2 * sigma`` on [-1, 1]).

    ``degrade`` clips the result to [-1, 1], as saving the noisy image would.
    """

    name = "noise"
    task = "denoising"
    identity_forward = True
    OPTIONS = {
        "sigma": Option(float, 0.1, "noise standard deviation on the [0, 1] intensity scale",
                        check=lambda v: 0 <= v <= 1, allowed="between 0 and 1"),
    }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.check_images(x)

    def degrade(self, clean: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        clean = self.check_images(clean)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"noise: generator must be a torch.Generator, got {type(generator).__name__}")
        # Draw in float32 on the generator's device so a seed gives the same noise whatever
        # the image's dtype; then move to the image.
        device = generator.device if generator is not None else clean.device
        noise = torch.randn(clean.shape, generator=generator, device=device, dtype=torch.float32)
        with torch.no_grad():
            noisy = clean.float() + noise.to(clean.device) * (2 * self._options["sigma"])
            return noisy.clamp(-1, 1).to(clean.dtype)
