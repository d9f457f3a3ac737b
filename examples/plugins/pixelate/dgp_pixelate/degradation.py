"""The ``pixelate`` degradation: average over ``size`` x ``size`` blocks.

>>> import torch
>>> p = Pixelate(size="2")
>>> p.spec
'pixelate:size=2'
>>> p(torch.arange(16.0).reshape(1, 1, 4, 4).expand(1, 3, 4, 4) / 16)[0, 0, :2, :2]
tensor([[0.1562, 0.1562],
        [0.1562, 0.1562]])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dgp_toolkit import Degradation, Option


class Pixelate(Degradation):
    """Pixelation: the mean of each ``size`` x ``size`` block, repeated over the block.

    Differentiable (an average pool, then nearest upsampling). Partial blocks at the
    right and bottom edges average the pixels they have.
    """

    name = "pixelate"
    OPTIONS = {
        "size": Option(int, 4, "block size in pixels", check=lambda v: 1 <= v <= 256,
                       allowed="between 1 and 256"),
    }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.check_images(x)
        size = self.options["size"]
        height, width = x.shape[-2:]
        blocks = F.avg_pool2d(x, kernel_size=size, stride=size, ceil_mode=True)
        return F.interpolate(blocks, scale_factor=size, mode="nearest")[..., :height, :width]
