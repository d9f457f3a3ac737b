"""Generative priors: what ``load_prior`` returns, from the ``register_priors`` hook.

A prior is a pretrained generator with an ordered list of fine-tunable stages, its latent
size, classes and class names, resolution, ``sample(n)`` of latents and, when it has one,
the discriminator's feature list. The built-in ones are BigGANs
(:class:`dgp_toolkit.priors.biggan.prior.BigGANPrior`); ``dgp-tool weights list`` shows
which are installed.

Importing this package does not import torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["load_prior"]


def load_prior(name: str = "biggan", *, device: str = "cpu", weights: str | Path | None = None) -> Any:
    """Load the prior ``name`` on ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``).

    ``weights`` (BigGAN priors) is a folder holding an official ``G_ema_*.pth`` +
    ``D_*.pth`` pair, or a prior file, used without importing it. Unknown names raise
    :class:`~dgp_toolkit.errors.DGPUsageError` with a suggestion; missing weights raise
    :class:`~dgp_toolkit.errors.DGPError` saying how to get them.

    >>> import dgp_toolkit
    >>> prior = dgp_toolkit.load_prior("biggan", device="auto")   # doctest: +SKIP
    >>> prior.generate(prior.sample(2), "cat").shape              # doctest: +SKIP
    torch.Size([2, 3, 32, 32])
    """
    from dgp_toolkit.registry import get_registry

    options: dict[str, Any] = {"device": device}
    if weights is not None:
        options["weights"] = weights
    return get_registry().create("prior", name, **options)
