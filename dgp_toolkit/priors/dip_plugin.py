"""The built-in ``dip`` prior plugin: the deep image prior (see :mod:`dgp_toolkit.priors.dip`).

The factory is given lazily, so loading the plugin does not import torch.
"""

from __future__ import annotations

from typing import Any

from dgp_toolkit.hookspecs import hookimpl


@hookimpl
def register_priors(register: Any) -> None:
    """Register ``dip``: ``load_dip(device="cpu", weights=None, base="biggan", seed=0)``."""
    register("dip", "dgp_toolkit.priors.dip:load_dip")
