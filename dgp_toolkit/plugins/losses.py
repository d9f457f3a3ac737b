"""The built-in loss terms of DGP's objective (DGP-METHOD.md section 2).

A loss is a callable on a :class:`LossState` returning one value per image, a tensor of
shape ``(B,)``: the engine optimizes B images together and sums their losses, so a loss
must never mix the images of a batch (reduce over every dimension but the first). The schedule
gives each loss its weight per stage; a weight of 0 skips the loss (and, for
``discriminator``, the discriminator forward).

==================  ==========================================================================
``discriminator``   sum over the last ``ftr_num`` D features of mean |D_i(phi(G(z))) - D_i(y)|
``mse``             mean squared error between phi(G(z)) and the observation y
``l1``              mean absolute error between phi(G(z)) and y
``nll``             mean(z^2 / 2): keeps the latent near the prior's Gaussian
==================  ==========================================================================
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from dgp_toolkit.hookspecs import hookimpl


@dataclasses.dataclass
class LossState:
    """What a loss sees at one optimization step, for a batch of B images.

    ``generated`` is the degraded generated image phi(G(z)), ``target`` the observation,
    ``z`` the latent, ``target_features`` the discriminator features of the target
    (computed once per run), ``ftr_num`` the number of D features this stage uses.
    ``features()`` computes (once per step, on first use) D's features of ``generated``.
    """

    generated: Any
    target: Any
    z: Any
    target_features: list
    ftr_num: int
    feature_fn: Callable[[Any], list]
    _features: list | None = None

    def features(self) -> list:
        if self._features is None:
            self._features = self.feature_fn(self.generated)
        return self._features


def per_image_mean(x: Any):
    """The mean over every dimension but the first: one value per image, shape ``(B,)``."""
    return x.reshape(x.shape[0], -1).mean(dim=1)


class DiscriminatorLoss:
    """L1 distance between discriminator features of phi(G(z)) and of the observation,
    over the last ``ftr_num`` features (``ftr_num`` comes from the stage)."""

    name = "discriminator"

    def __call__(self, state: LossState):
        feats, target = state.features(), state.target_features
        n = min(state.ftr_num, len(feats))
        total = state.generated.new_zeros(state.generated.shape[0])  # zeros when no feature is used (ftr_num 0)
        for i in range(1, n + 1):
            total = total + per_image_mean((feats[-i] - target[-i]).abs())
        return total


class MSELoss:
    """Mean squared error between phi(G(z)) and the observation."""

    name = "mse"

    def __call__(self, state: LossState):
        return per_image_mean((state.generated - state.target).pow(2))


class L1Loss:
    """Mean absolute error between phi(G(z)) and the observation."""

    name = "l1"

    def __call__(self, state: LossState):
        return per_image_mean((state.generated - state.target).abs())


class NLLLoss:
    """Negative log-likelihood of the latent under N(0, I), up to a constant: mean(z^2/2)."""

    name = "nll"

    def __call__(self, state: LossState):
        return per_image_mean(state.z.pow(2).mul(0.5))


BUILTIN_LOSSES = {cls.name: cls for cls in (DiscriminatorLoss, MSELoss, L1Loss, NLLLoss)}


@hookimpl
def register_losses(register) -> None:
    """Register the built-in losses (``discriminator``, ``mse``, ``l1``, ``nll``)."""
    for name, cls in BUILTIN_LOSSES.items():
        register(name, cls)
