"""dgp-toolkit: restore and edit images with a deep generative prior (DGP, Pan et al. 2020).

The public Python API. Names are imported on first use, so ``import dgp_toolkit`` is
cheap and does not import torch.

>>> import dgp_toolkit
>>> blur = dgp_toolkit.get_degradation("blur", sigma="2")      # doctest: +SKIP
>>> dgp_toolkit.parse_degradation(blur.spec) == blur            # doctest: +SKIP
True
>>> [p["entry_point"] for p in dgp_toolkit.list_plugins()][:1]
['dgp_toolkit.plugins.degradations']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dgp_toolkit._version import __version__
from dgp_toolkit.errors import DGPError, DGPUsageError, PluginError
from dgp_toolkit.hookspecs import hookimpl

# Public names provided by other modules, imported when first accessed: name -> module.
# Adding a public name is one line here.
_LAZY: dict[str, str] = {
    "get_degradation": "dgp_toolkit.registry",
    "parse_degradation": "dgp_toolkit.registry",
    "get_loss": "dgp_toolkit.registry",
    "get_schedule": "dgp_toolkit.registry",
    "list_plugins": "dgp_toolkit.plugin_manager",
    "get_registry": "dgp_toolkit.registry",
    "Degradation": "dgp_toolkit.plugins.degradations.base",
    "Option": "dgp_toolkit.plugins.degradations.base",
    "Learnable": "dgp_toolkit.learnable",
    "load_prior": "dgp_toolkit.priors",
    "restore": "dgp_toolkit.restoration",
    "restore_many": "dgp_toolkit.restoration",
    "RestoreResult": "dgp_toolkit.restoration",
    "RestoreFailure": "dgp_toolkit.restoration",
    "RunOptions": "dgp_toolkit.engine",
    "jitter": "dgp_toolkit.manipulate",
    "transfer": "dgp_toolkit.manipulate",
    "morph": "dgp_toolkit.manipulate",
    "sample": "dgp_toolkit.manipulate",
}

__all__ = [
    "DGPError",
    "DGPUsageError",
    "PluginError",
    "__version__",
    "hookimpl",
    *_LAZY,
]

if TYPE_CHECKING:  # let type checkers and IDEs see the lazy names
    from dgp_toolkit.learnable import Learnable
    from dgp_toolkit.plugins.degradations.base import Degradation, Option
    from dgp_toolkit.manipulate import jitter, morph, sample, transfer
    from dgp_toolkit.plugin_manager import list_plugins
    from dgp_toolkit.priors import load_prior
    from dgp_toolkit.registry import (
        get_degradation,
        get_loss,
        get_registry,
        get_schedule,
        parse_degradation,
    )
    from dgp_toolkit.engine import RunOptions
    from dgp_toolkit.restoration import RestoreFailure, RestoreResult, restore, restore_many


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'dgp_toolkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    # The public names (for tab completion), not the helpers this module imports (Any, importlib).
    return sorted(set(__all__) | {name for name in globals() if name.startswith("__")})
