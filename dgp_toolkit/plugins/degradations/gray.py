"""``gray``: colorization, the reference's luminance on [-1, 1] images repeated to 3 channels.

>>> import torch
>>> g = Gray()
>>> y = g(torch.rand(1, 3, 8, 8) * 2 - 1)
>>> bool((y[:, 0] == y[:, 1]).all() and (y[:, 1] == y[:, 2]).all())
True
"""

from __future__ import annotations

import torch

from dgp_toolkit.plugins.degradations.base import Degradation

#: The reference's luminance weights (ITU-R BT.601, rounded as in the reference).
LUMA_WEIGHTS = (0.2989, 0.5870, 0.1140)


def gray(x: torch.Tensor) -> torch.Tensor:
    """``0.2989 R + 0.5870 G + 0.1140 B`` of ``(B, 3, H, W)`` images, repeated to 3 channels.

    >>> gray(torch.ones(1, 3, 2, 2)).shape
    torch.Size([1, 3, 2, 2])
    """
    w = torch.tensor(LUMA_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True).expand(-1, 3, -1, -1)


def replace_luminance(restored: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``restored``'s colour (Lab a, b) on ``source``'s lightness (Lab L); both in [-1, 1].

    Computed in float32 (Lab is not reliable in half precision), returned in the input
    dtype, clipped to the RGB gamut.
    """
    from kornia.color import lab_to_rgb, rgb_to_lab

    dtype = restored.dtype
    work = torch.float64 if dtype == torch.float64 else torch.float32
    lab = rgb_to_lab(((restored.to(work) + 1) / 2).clamp(0, 1))
    lightness = rgb_to_lab(((source.to(work) + 1) / 2).clamp(0, 1))[:, :1]
    rgb = lab_to_rgb(torch.cat([lightness, lab[:, 1:]], dim=1), clip=True)
    return (rgb * 2 - 1).to(dtype)


class Gray(Degradation):
    """Colorization: the observation is the grey (luminance) image.

    ``observe`` converts the user's image to grey with the same weights (a grey image read
    as RGB is unchanged up to rounding); ``finish`` keeps the observed luminance and takes
    only the colour from the restoration (Lab L replaced by the input's L), as the
    reference scores colorization.
    """

    name = "gray"
    OPTIONS = {}
    task = "colorization"
    protocol = "colorization"
    default_fit = "resize"  # the whole photo: its colours come back over the whole frame

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gray(self.check_images(x))

    def observe(self, image, *, size=None):
        return gray(super().observe(image, size=size))

    def finish(self, restored: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        restored, observed = self.check_pair(restored, observed)
        return replace_luminance(restored, observed)

    def scores(self, restored, clean, observation):
        """Scored after putting back the observation's Lab L (the reference's rule)."""
        from dgp_toolkit.metrics import colorization_scores

        return colorization_scores(restored, clean, grey=observation)

    def full_resolution(self, frame):
        """The input's own luminance with the restored colour, over the part the prior saw."""
        import warnings

        import numpy as np

        from dgp_toolkit.metrics import put_luminance

        x0, y0, x1, y1 = frame.region
        with warnings.catch_warnings():  # out-of-gamut Lab values are clipped, as intended
            warnings.simplefilter("ignore", UserWarning)
            rgb = put_luminance(frame.restored, frame.source[y0:y1, x0:x1])
        covered = "the whole image" if frame.whole else f"its {x1 - x0}x{y1 - y0} centre crop"
        return (np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8),
                f"full-resolution colorization: the input's luminance with the restored colour ({covered})")
