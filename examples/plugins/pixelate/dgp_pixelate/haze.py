"""The ``haze`` degradation: a white veil over the image, of unknown thickness if need be.

``haze:amount=auto`` declares ``amount`` learnable: the restoration fits it with the image
(dehazing when the veil's thickness is unknown). Everything a third-party plugin needs for
that is the ``learnable=`` of the option and a ``forward`` that takes the fitted values::

>>> import torch
>>> h = Haze(amount="auto")
>>> h.spec, list(h.learnable_parameters())
('haze:amount=auto', ['amount'])
>>> h(torch.zeros(2, 3, 4, 4), amount=torch.tensor([0.0, 0.5]))[:, 0, 0, 0]
tensor([0.0000, 0.5000])
"""

from __future__ import annotations

import torch

from dgp_toolkit import Degradation, Option
from dgp_toolkit.learnable import AUTO, Learnable


class Haze(Degradation):
    """Haze: each pixel moved ``amount`` of the way to white, ``(1 - amount) * x + amount``.

    ``amount=auto`` fits it with the image, from 0 to 0.9, starting at 0.3; each image of a
    batch gets its own (``forward(x, amount=(B,) tensor)``).
    """

    name = "haze"
    OPTIONS = {
        "amount": Option(float, 0.3, "thickness of the veil (auto: fitted with the image)",
                         check=lambda v: 0 <= v < 1, allowed="from 0 up to (not including) 1",
                         learnable=Learnable("amount", init=0.3, low=0.0, high=0.9, lr=0.02)),
    }

    def forward(self, x: torch.Tensor, **values: torch.Tensor) -> torch.Tensor:
        x = self.check_images(x)
        if self.options["amount"] != AUTO:
            self.resolve_values(x, values)  # a fixed amount takes no fitted value
            return x + self.options["amount"] * (1 - x)
        amount = self.resolve_values(x, values)["amount"].to(x.dtype).view(-1, 1, 1, 1)
        return x + amount * (1 - x)
