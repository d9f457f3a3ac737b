"""``blur``: Gaussian blur with reflect padding (deblurring); ``sigma=auto`` fits the width.

>>> import torch
>>> b = Blur(sigma=1.0)
>>> b.options["size"], b(torch.zeros(1, 3, 16, 16)).shape
(5, torch.Size([1, 3, 16, 16]))

Blind: each image blurred with its own sigma, differentiably (the kernel is fixed from the
top of sigma's range)::

>>> blind = Blur(sigma="auto")
>>> blind.spec, blind(torch.zeros(2, 3, 32, 32), sigma=torch.tensor([1.0, 2.5])).shape
('blur:sigma=auto,size=17', torch.Size([2, 3, 32, 32]))
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dgp_toolkit.learnable import AUTO, Learnable
from dgp_toolkit.plugins.degradations.base import Degradation, Option

#: sigma=auto: the plugin's starting value, range and learning rate (a preset may override
#: them). 0.3 px is no visible blur (the kernel's side taps are 0.4% of the centre); 4 px
#: is more than 32-px images can lose and still be recognised.
SIGMA_LEARNABLE = Learnable("sigma", init=2.0, low=0.3, high=4.0, lr=0.02)


def gaussian_taps(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """Normalised 1-D Gaussian taps, one row per sigma: ``(B,)`` sigmas -> ``(B, size)``.

    The same taps as kornia's ``get_gaussian_kernel1d`` (odd ``size``), differentiable in
    ``sigma``.

    >>> gaussian_taps(torch.tensor([1.0]), 3)
    tensor([[0.2741, 0.4519, 0.2741]])
    """
    offsets = torch.arange(size, device=sigma.device, dtype=sigma.dtype) - size // 2
    taps = torch.exp(-offsets.square()[None, :] / (2 * sigma[:, None].square()))
    return taps / taps.sum(dim=1, keepdim=True)


def gaussian_blur_per_image(x: torch.Tensor, sigma: torch.Tensor, size: int) -> torch.Tensor:
    """Blur image ``i`` of ``x`` (``(B, C, H, W)``) with ``sigma[i]`` over a ``size`` window,
    reflect padding: a separable depthwise convolution with one kernel per image and channel
    (the images travel as channels of one batch of 1, so no image sees another's kernel).

    The taps are computed in float32 (float64 for float64 images) and cast to the images'
    dtype.
    """
    batch, channels, height, width = x.shape
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    taps = gaussian_taps(sigma.to(device=x.device, dtype=dtype), size).to(x.dtype)
    taps = taps.repeat_interleave(channels, dim=0)  # (B * C, size): image i's taps for each channel
    r = size // 2
    y = F.pad(x.reshape(1, batch * channels, height, width), (r, r, r, r), mode="reflect")
    y = F.conv2d(y, taps.view(-1, 1, 1, size), groups=batch * channels)
    y = F.conv2d(y, taps.view(-1, 1, size, 1), groups=batch * channels)
    return y.view(batch, channels, height, width)


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

    ``sigma=auto`` (blind deblurring): sigma is fitted with the image, from 0.3 to 4 px,
    starting at 2 (:data:`SIGMA_LEARNABLE`); the kernel size defaults to the one for the
    top of that range and must cover it. ``forward(x, sigma=s)`` then blurs image ``i``
    with ``s[i]``; without ``sigma`` every image takes the starting value.
    """

    name = "blur"
    task = "deblurring"
    OPTIONS = {
        "sigma": Option(float, 2.0, "Gaussian standard deviation in pixels (auto: fitted with the image)",
                        check=lambda v: 0 < v <= 100, allowed="greater than 0 and at most 100",
                        learnable=SIGMA_LEARNABLE),
        "size": Option(int, None, "kernel width in pixels (odd)",
                       check=lambda v: v >= 3 and v % 2 == 1, allowed="odd and at least 3",
                       default_text="odd integer nearest 4*sigma+1 (sigma=auto: of the range's top)"),
    }

    def resolve_options(self, options):
        if options["size"] is None:
            top = SIGMA_LEARNABLE.high if options["sigma"] == AUTO else options["sigma"]
            options["size"] = default_kernel_size(top)
        elif options["sigma"] == AUTO:
            self._check_kernel_covers(options["size"], SIGMA_LEARNABLE.high)
        return options

    def _check_kernel_covers(self, size: int, high: float) -> None:
        needed = default_kernel_size(high)
        if size < needed:
            raise self.usage_error(f"a {size}x{size} kernel cannot fit sigma=auto up to {high:g} "
                                   f"(that needs size={needed} or more); give a larger size or leave size out")

    def check_learnable(self, learnable: Learnable) -> None:
        """The range's bounds must be valid sigmas and the kernel must cover its top."""
        super().check_learnable(learnable)
        self._check_kernel_covers(self._options["size"], learnable.high)

    def forward(self, x: torch.Tensor, **values: torch.Tensor) -> torch.Tensor:
        from kornia.filters import gaussian_blur2d

        x = self.check_images(x)
        size, sigma = self._options["size"], self._options["sigma"]
        if min(x.shape[-2:]) <= size // 2:
            largest = 2 * min(x.shape[-2:]) - 1
            shown = "auto" if sigma == AUTO else f"{sigma:g}"
            raise self.usage_error(f"a {size}x{size} kernel (sigma {shown}) needs images larger than "
                                   f"{size // 2} px per side for reflect padding, got {x.shape[-1]}x{x.shape[-2]}; "
                                   f"use a smaller sigma or size (at most {largest} here)")
        if sigma != AUTO:
            self.resolve_values(x, values)  # a value for a fixed sigma is a TypeError
            sigmas = torch.tensor([[sigma, sigma]], device=x.device, dtype=x.dtype)
            return gaussian_blur2d(x, (size, size), sigmas, border_type="reflect")
        return gaussian_blur_per_image(x, self.resolve_values(x, values)["sigma"], size)
