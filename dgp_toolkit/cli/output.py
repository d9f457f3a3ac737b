"""Where command output goes: results to stdout, everything else to stderr.

Consoles are created per call so that they write to the *current* ``sys.stdout`` and
``sys.stderr`` (Click's test runner swaps them).
"""

from __future__ import annotations

import json
from typing import Any

import click

# The --seed range of every command: engine.MAX_SEED (kept here so that the CLI's modules
# load without torch; a test checks the two agree).
SEED = click.IntRange(0, 2**63 - 1)


def stdout_console() -> Any:
    """A rich console on stdout, for results (tables)."""
    from rich.console import Console

    return Console(highlight=False)


def stderr_console() -> Any:
    """A rich console on stderr, for progress, warnings and logs."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def echo_json(data: Any) -> None:
    """Write ``data`` as indented JSON on stdout (for scripts)."""
    click.echo(json.dumps(data, indent=2, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    return str(value)
