"""``downsample``: super-resolution by 2, 4 or 8, with the reference's two Lanczos filters.

- ``forward`` (applied to generated images): a separable Lanczos-2 antialiasing kernel of
  ``4 * factor`` taps sampled at half-pixel phase, as a strided depthwise convolution with
  replicated borders, then bilinear upsampling back to the input size.
- ``degrade`` (a clean image to a simulated observation): Pillow-style antialiased
  Lanczos-3 downscaling (what the reference used for its targets: ``Image.LANCZOS``) as
  two resampling matrices, then the same bilinear upsampling.
- ``observe``: a real low-resolution input (``size / factor``) is upsampled bilinearly; a
  full-size input passes through.

>>> import torch
>>> d = Downsample(factor=4)
>>> d(torch.zeros(1, 3, 32, 32)).shape, d.observation_size(32)
(torch.Size([1, 3, 32, 32]), (8, 8))
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from dgp_toolkit.plugins.degradations.base import Degradation, Option, as_size


def _sinc(t: np.ndarray) -> np.ndarray:
    return np.sinc(t)  # normalised: sin(pi t) / (pi t), 1 at 0


@functools.lru_cache(maxsize=16)
def lanczos2_kernel(factor: int) -> np.ndarray:
    """The 1-D Lanczos-2 antialiasing kernel of the reference for ``factor``: ``4 * factor``
    taps at half-pixel phase, ``sinc(t) * sinc(t / 2)`` with ``t`` in input pixels divided by
    ``factor``, normalised to sum 1 (the 2-D kernel is its outer product).

    >>> k = lanczos2_kernel(2)
    >>> len(k), round(float(k.sum()), 6), bool(np.allclose(k, k[::-1]))
    (8, 1.0, True)
    """
    taps = np.arange(4 * factor, dtype=np.float64)
    t = (taps + 0.5 - 2 * factor) / factor
    kernel = _sinc(t) * _sinc(t / 2)
    kernel = kernel / kernel.sum()
    kernel.setflags(write=False)
    return kernel


def lanczos2_downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Antialiased downscale of ``(B, C, H, W)`` by ``factor`` (even) with :func:`lanczos2_kernel`.

    Differentiable; output ``(B, C, H // factor, W // factor)``.

    >>> lanczos2_downsample(torch.ones(1, 3, 16, 16), 4).shape
    torch.Size([1, 3, 4, 4])
    """
    channels = x.shape[1]
    k = torch.tensor(lanczos2_kernel(factor), device=x.device, dtype=x.dtype)
    pad = (len(k) - factor) // 2  # keeps the output exactly H // factor
    x = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(channels, 1, 1, -1), stride=(1, factor), groups=channels)
    x = F.conv2d(x, k.view(1, 1, -1, 1).expand(channels, 1, -1, 1), stride=(factor, 1), groups=channels)
    return x


def _lanczos3(t: np.ndarray) -> np.ndarray:
    return np.where(np.abs(t) < 3, _sinc(t) * _sinc(t / 3), 0.0)


@functools.lru_cache(maxsize=64)
def pil_lanczos_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` resampling weights of Pillow's antialiased ``LANCZOS`` resize.

    Output pixel ``i`` is centred at input coordinate ``(i + 0.5) * n_in / n_out``; the
    Lanczos-3 window is widened by the scale when shrinking, cut at the borders and
    renormalised (Pillow's scheme, so results match it up to its 8-bit rounding).

    >>> m = pil_lanczos_matrix(8, 2)
    >>> m.shape, bool(np.allclose(m.sum(axis=1), 1))
    ((2, 8), True)
    """
    scale = n_in / n_out
    filter_scale = max(scale, 1.0)
    support = 3.0 * filter_scale
    weights = np.zeros((n_out, n_in), dtype=np.float64)
    for i in range(n_out):
        centre = (i + 0.5) * scale
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), n_in)
        j = np.arange(lo, hi, dtype=np.float64)
        w = _lanczos3((j - centre + 0.5) / filter_scale)
        total = w.sum()
        if total != 0:
            w = w / total
        weights[i, lo:hi] = w
    weights.setflags(write=False)
    return weights


def pil_lanczos_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(B, C, H, W)`` to ``size = (height, width)`` like Pillow's ``Image.LANCZOS``.

    Horizontal pass first, then vertical, each clipped to [-1, 1] as Pillow clips to the
    8-bit range between and after its passes. Differentiable (almost everywhere).

    >>> pil_lanczos_resize(torch.zeros(1, 3, 16, 16), (4, 4)).shape
    torch.Size([1, 3, 4, 4])
    """
    height, width = size
    if width != x.shape[-1]:
        mw = torch.tensor(pil_lanczos_matrix(x.shape[-1], width), device=x.device, dtype=x.dtype)
        x = torch.einsum("bchw,ow->bcho", x, mw).clamp(-1, 1)
    if height != x.shape[-2]:
        mh = torch.tensor(pil_lanczos_matrix(x.shape[-2], height), device=x.device, dtype=x.dtype)
        x = torch.einsum("bchw,oh->bcow", x, mh).clamp(-1, 1)
    return x


def bilinear_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize without corner alignment (the reference's upsampling back)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class Downsample(Degradation):
    """Super-resolution: the observation is the image shrunk ``factor`` times.

    Inside the restoration every image stays at the prior's size: ``forward`` shrinks with
    the Lanczos-2 kernel and enlarges back bilinearly, and a real low-resolution input is
    enlarged the same way by ``observe``.
    """

    name = "downsample"
    task = "super-resolution"
    OPTIONS = {
        "factor": Option(int, 4, "downscaling factor", choices=(2, 4, 8)),
    }

    @property
    def factor(self) -> int:
        return self._options["factor"]

    def _low_size(self, height: int, width: int) -> tuple[int, int]:
        f = self.factor
        if height < f or width < f:
            raise ValueError(f"{self.spec}: images must be at least {f}x{f} px, got {width}x{height}")
        return (height // f, width // f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.check_images(x)
        self._low_size(*x.shape[-2:])
        return bilinear_resize(lanczos2_downsample(x, self.factor), tuple(x.shape[-2:]))

    def degrade(self, clean: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        clean = self.check_images(clean)
        low = self._low_size(*clean.shape[-2:])
        with torch.no_grad():
            return bilinear_resize(pil_lanczos_resize(clean, low), tuple(clean.shape[-2:]))

    def observation_size(self, size):
        height, width = as_size(size)
        return self._low_size(height, width)

    def observe(self, image, *, size=None):
        image = self.check_images(image)
        h, w = image.shape[-2:]
        if size is None:
            return bilinear_resize(image, (h * self.factor, w * self.factor))
        full = as_size(size)
        if (h, w) == full:
            return image
        if (h, w) == self.observation_size(full):
            return bilinear_resize(image, full)
        low_h, low_w = self.observation_size(full)
        raise self.usage_error(
            f"factor {self.factor} expects a low-resolution input of {low_w}x{low_h} px "
            f"(or a full-size one of {full[1]}x{full[0]}), got {w}x{h}")

