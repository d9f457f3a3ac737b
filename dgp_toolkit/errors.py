"""Exception types shared by the whole toolkit.

The command line maps them to exit codes: :class:`DGPUsageError` is a user mistake
(exit 2), any other :class:`DGPError` a runtime failure (exit 1). Both carry one
readable line; the traceback is shown only with ``--debug``.
"""


class DGPError(Exception):
    """A runtime failure with a one-line, user-facing message (exit code 1)."""


class DGPUsageError(DGPError, ValueError):
    """A user mistake: bad name, bad option value, wrong file (exit code 2).

    Subclasses ``ValueError`` so that Python callers can catch it the usual way.
    """


class PluginError(DGPError):
    """A plugin failed to load or to register (a warning unless strict mode is on)."""
