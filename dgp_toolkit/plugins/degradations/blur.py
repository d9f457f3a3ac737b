"""``blur``: Gaussian blur with reflect padding (deblurring).

>>> import torch
>>> b = Blur(sigma=1.0)
>>> b.options["size"], b(torch.zeros(1, 3, 16, 16)).shape
(5, torch.Size([1, 3, 16, 16]))
"""

from __future__ import annotations

import math

import torch

from dgp_toolkit.plugins.degradations.base import Degradation, Option


def default_kernel_size(sigma: float) -> int:
    """The odd integer nearest ``4 * sigma + 1`` (ties go up), at least 3.

    >>> default_kernel_size(2.0), default_kernel_size(1.3), default_kernel_size(0.1)
    (9, 7, 3)
    """
    return max(3, 2 * math.floor(2 * sigma + 0.5) + 1)


class Blur(Degradation):
    """Gaussian blur of standard deviation ``sigma`` pixels over a ``size`` x ``size`` window.

    Borders are reflected, so the image needs more than ``size // 2`` pixels per side.
    ``degrade`` is ``forward`` (no noise; compose with ``noise`` for a noisy blur).
    """

    name = "blur"
    OPTIONS = {
        "sigma": Option(float, 2.0, "Gaussian standard deviation in pixels",
                        check=lambda v: 0 < v <= 100, allowed="greater than 0 and at most 100"),
        "size": Option(int, None, "kernel width in pixels (odd)",
                       check=lambda v: v >= 3 and v % 2 == 1, allowed="odd and at least 3",
                       default_text="odd integer nearest 4*sigma+1"),
    }

    def resolve_options(self, options):
        if options["size"] is None:
            options["size"] = default_kernel_size(options["sigma"])
        return options

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from kornia.filters import gaussian_blur2d

        x = self.check_images(x)
        size, sigma = self._options["size"], self._options["sigma"]
        if min(x.shape[-2:]) <= size // 2:
            largest = 2 * min(x.shape[-2:]) - 1
            raise self.usage_error(f"a {size}x{size} kernel (sigma {sigma:g}) needs images larger than "
                                   f"{size // 2} px per side for reflect padding, got {x.shape[-1]}x{x.shape[-2]}; "
                                   f"use a smaller sigma or size (at most {largest} here)")
        sigmas = torch.tensor([[sigma, sigma]], device=x.device, dtype=x.dtype)
        return gaussian_blur2d(x, (size, size), sigmas, border_type="reflect")
