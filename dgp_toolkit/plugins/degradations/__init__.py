"""The built-in degradations, registered through the same hook as third-party ones.

==============  ======================================================================
``gray``        colorization (reference luminance weights); ``finish`` keeps the input's L
``mask``        inpainting (centred square, ``box=x/y/w/h`` or ``file=PATH``)
``downsample``  super-resolution by ``factor`` 2, 4 or 8 (reference Lanczos filters)
``blur``        Gaussian blur (``sigma``, ``size``)
``noise``       additive Gaussian noise (``sigma`` on [0, 1]); only in ``degrade``
==============  ======================================================================

Importing this package is cheap: the modules (and torch, kornia) are imported when the
hook runs or when a name below is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from dgp_toolkit.hookspecs import hookimpl

#: registered name -> (module, class)
BUILTINS = {
    "gray": ("gray", "Gray"),
    "mask": ("mask", "Mask"),
    "downsample": ("downsample", "Downsample"),
    "blur": ("blur", "Blur"),
    "noise": ("noise", "Noise"),
}

_EXPORTS = {"Degradation": "base", "Option": "base", "check_images": "base", "Compose": "compose"}
_EXPORTS.update({cls: module for module, cls in BUILTINS.values()})

__all__ = ["BUILTINS", "register_degradations", *_EXPORTS]


def _load(module: str, attribute: str) -> Any:
    return getattr(importlib.import_module(f"{__name__}.{module}"), attribute)


@hookimpl
def register_degradations(register) -> None:
    """Register the built-in degradations (their classes are the factories).

    Registered as lazy ``"module:attr"`` references so that building the registry (for
    ``dgp-tool --help``) does not import torch.
    """
    for name, (module, cls) in BUILTINS.items():
        register(name, f"{__name__}.{module}:{cls}")


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return _load(_EXPORTS[name], name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
