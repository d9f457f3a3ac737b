"""Where command output goes: results to stdout, everything else to stderr.

Consoles are created per call so that they write to the *current* ``sys.stdout`` and
``sys.stderr`` (Click's test runner swaps them).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click


class SeedType(click.ParamType):
    """The --seed of every command: an integer from 0 to ``max`` (engine.MAX_SEED, kept here so
    that the CLI's modules load without torch; a test checks the two agree). Not an IntRange,
    whose help would print the bound's 19 digits."""

    name = "integer"
    max = 2**63 - 1

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            seed = value
        else:
            try:
                seed = int(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not an integer", param, ctx)
        if not 0 <= seed <= self.max:
            self.fail(f"{seed} is not in the range 0 to 2**63 - 1", param, ctx)
        return seed


SEED = SeedType()


class NumberType(click.ParamType):
    """A finite float above ``low`` (``inclusive``: at or above). Not a FloatRange, which lets
    ``nan`` through (every comparison with it is false) and takes ``inf``, so that
    ``--iterations-scale inf`` failed deep in the engine and ``--max-minutes nan`` never stopped."""

    name = "number"

    def __init__(self, low: float = 0.0, inclusive: bool = False) -> None:
        self.low, self.inclusive = low, inclusive

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        above = number >= self.low if self.inclusive else number > self.low
        if not (math.isfinite(number) and above):
            bound = f">= {self.low:g}" if self.inclusive else f"> {self.low:g}"
            self.fail(f"{value!r} is not a finite number {bound}", param, ctx)
        return number


class FolderType(click.Path):
    """An output folder path; an empty one is refused (``-o "$UNSET"`` would write into the
    current folder)."""

    def __init__(self, **path_options: Any) -> None:
        super().__init__(path_type=Path, **path_options)

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("the folder name is empty", param, ctx)
        return super().convert(value, param, ctx)


FOLDER = FolderType()

POSITIVE = NumberType()
NON_NEGATIVE = NumberType(inclusive=True)


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
