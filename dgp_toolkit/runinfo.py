"""Run information: what a restoration records about itself, so that it can be reproduced
(the resolved configuration, library versions) and written as JSON."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Any

import numpy as np

__all__ = ["versions", "preset_dict", "run_config", "json_safe"]


def versions() -> dict[str, str]:
    """Versions of Python, the toolkit and the libraries a result depends on."""
    out = {"python": platform.python_version()}
    for dist in ("dgp-toolkit", "torch", "numpy", "pillow", "scikit-image", "kornia", "safetensors"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def preset_dict(preset: Any) -> Any:
    """A preset as a plain dict (its ``to_dict``), else its text."""
    for attr in ("to_dict", "as_dict"):
        method = getattr(preset, attr, None)
        if callable(method):
            return method()
    return str(preset)


def run_config(setup: Any, inp: Any, res: Any, **run: Any) -> dict[str, Any]:
    """A restoration's full resolved configuration (its ``config``, written to NAME_run.json):
    input, degradations, prior, weights, device, preset, class, the run options in ``run``,
    the engine's own description, how it stopped, timings and versions."""
    prior = setup.prior
    describe = getattr(prior, "describe", None)
    class_index = run.pop("class_index")
    names = getattr(prior, "class_names", ())
    return {
        "input": {"source": inp.source, "size": list(inp.size)},
        "degradations": list(setup.specs),
        "prior": describe() if callable(describe) else {"name": getattr(prior, "name", str(prior))},
        "weights": setup.weights,
        "device": str(prior.device),
        "preset": {"name": getattr(setup.preset, "name", None), "resolved": preset_dict(setup.preset)},
        "class": {"given": setup.label, "index": class_index,
                  "name": names[class_index] if 0 <= class_index < len(names) else None},
        **run,
        "engine": dict(res.config or {}),
        "stopped": res.stopped,
        "message": res.message or "",
        "timings": dict(res.timings or {}),
        "versions": versions(),
    }


def json_safe(value: Any) -> Any:
    """``value`` with JSON-only types: non-finite floats become ``None``, paths and other
    objects strings, tuples lists, numpy and 0-d torch scalars Python numbers.

    >>> json_safe({"psnr": float("inf"), "size": (2, 3), "mean": np.float32(0.5)})
    {'psnr': None, 'size': [2, 3], 'mean': 0.5}
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:
        return json_safe(item())
    return str(value)
