"""The ``dgp-tool`` command line.

:func:`make_cli` builds the Click group (built-in and plugin commands alike come from
the plugin registry); :func:`main` is the console-script entry point. Importing this
package does not import torch, so ``dgp-tool --help`` stays fast.
"""

from dgp_toolkit.cli.app import DGPGroup, main, make_cli

__all__ = ["DGPGroup", "main", "make_cli"]
