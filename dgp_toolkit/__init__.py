"""dgp-toolkit: restore and edit images with a deep generative prior (placeholder, filled by the foundation work)."""

from dgp_toolkit._version import __version__
from dgp_toolkit.hookspecs import hookimpl

__all__ = ["__version__", "hookimpl"]
