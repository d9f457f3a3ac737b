"""Plugins made in a test: modules with ``@hookimpl`` functions, entry points naming them,
and a plugin manager loaded from exactly those (no installed entry points, no environment)."""

from __future__ import annotations

import sys
import types
from importlib.metadata import EntryPoint

from dgp_toolkit import hookimpl
from dgp_toolkit.plugin_manager import PluginManager


def make_module(monkeypatch, name, **functions):
    """A plugin module in ``sys.modules`` with the given (already decorated) functions."""
    module = types.ModuleType(name)
    for attr, fn in functions.items():
        setattr(module, attr, fn)
    monkeypatch.setitem(sys.modules, name, module)
    return module


def registrar(kind_hook, **things):
    """A ``@hookimpl`` for ``kind_hook`` registering ``things`` (name -> factory)."""

    def hook(register):
        for name, factory in things.items():
            register(name, factory)

    hook.__name__ = kind_hook
    return hookimpl(hook)


def entry_point(name, module):
    return EntryPoint(name=name, value=module, group="dgp_toolkit")


def load(*modules, eps=(), env=None):
    """A plugin manager with ``modules`` as its built-ins and ``eps`` as its entry points."""
    return PluginManager.load(default_plugins=list(modules), entry_points=list(eps), environ=env or {})


class Thing:
    """A thing."""

    def __init__(self, *, sigma: float = 1.0, size: int = 3):
        self.sigma, self.size = sigma, size
