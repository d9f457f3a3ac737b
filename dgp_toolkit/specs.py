"""The degradation spec grammar: ``NAME[:key=value[,key=value...]]``.

One spec names one degradation and its options, the way the command line writes it
(``--degrade blur:sigma=2``). The rules:

- ``NAME`` is everything before the first ``:``; options follow, separated by ``,``.
- Every option is ``key=value``; keys are Python identifiers and appear once.
- Tuple values are written with ``/``: ``mask:box=8/8/16/16``.
- A value containing ``,``, ``:`` or ``"`` (or leading/trailing spaces) is written in
  double quotes; a ``"`` inside quotes is doubled (``""``), backslashes are literal so
  Windows paths need no escaping: ``mask:file="C:\\masks\\a,b.png"``.

:func:`parse_spec` turns text into ``(name, options)`` with string values (the
degradation converts them through its option schema); :func:`format_spec` writes the
canonical text back, quoting where needed, so that
``parse_spec(format_spec(name, options))`` gives the same name and (stringified) options.

>>> parse_spec("mask:box=8/8/16/16")
('mask', {'box': '8/8/16/16'})
>>> format_spec("mask", {"file": "C:\\\\x,y.png"})
'mask:file="C:\\\\x,y.png"'
>>> split_tuple("8/8/16/16")
['8', '8', '16', '16']
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from dgp_toolkit.errors import DGPUsageError

__all__ = ["format_spec", "format_value", "parse_spec", "split_tuple"]

# Characters that force a value into quotes when it is written.
_QUOTE_TRIGGERS = frozenset(',:"')
# Characters a name may not contain (they belong to the grammar or to the shell).
_NAME_FORBIDDEN = frozenset(',="/ \t\n')


def _fail(text: str, why: str) -> DGPUsageError:
    return DGPUsageError(
        f"malformed degradation spec {text!r}: {why} "
        f"(expected NAME[:key=value[,key=value...]], e.g. blur:sigma=2)"
    )


def parse_spec(text: str) -> tuple[str, dict[str, str]]:
    """Split a spec such as ``"blur:sigma=2,size=9"`` into its name and string options.

    Values keep their text (``"8/8/16/16"`` stays a string; see :func:`split_tuple`);
    quoted values lose their quotes. Raises :class:`~dgp_toolkit.errors.DGPUsageError`
    for an empty name, an option without ``=``, an unterminated quote, a duplicate key,
    an empty option between commas, or an unquoted ``:`` or ``"`` inside a value.

    >>> parse_spec("blur")
    ('blur', {})
    >>> parse_spec('mask:file="a,b.png",fit=crop')
    ('mask', {'file': 'a,b.png', 'fit': 'crop'})
    """
    if not isinstance(text, str):
        raise DGPUsageError(f"a degradation spec must be a string, not {type(text).__name__}")
    name, sep, rest = text.partition(":")
    name = name.strip()
    if not name:
        raise _fail(text, "the name is empty")
    bad = sorted(set(name) & _NAME_FORBIDDEN)
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise _fail(text, f"the name {name!r} contains {shown}")
    options: dict[str, str] = {}
    if not sep or not rest.strip():
        return name, options

    i, n = 0, len(rest)
    while True:
        # One `key=value` item, starting at rest[i].
        eq = rest.find("=", i)
        comma = rest.find(",", i)
        if eq < 0 or (0 <= comma < eq):
            item = rest[i : comma if comma >= 0 else n].strip()
            if not item:
                raise _fail(text, "an option is empty (two commas in a row, or a trailing comma)")
            raise _fail(text, f"option {item!r} has no '=' (write key=value)")
        key = rest[i:eq].strip()
        if not key.isidentifier():
            raise _fail(text, f"option key {key!r} is not a valid name")
        if key in options:
            raise _fail(text, f"option {key!r} is given twice")
        j = eq + 1
        while j < n and rest[j] in " \t":
            j += 1
        if j < n and rest[j] == '"':
            value, j = _read_quoted(text, rest, j + 1, key)
            while j < n and rest[j] in " \t":
                j += 1
            if j < n and rest[j] != ",":
                raise _fail(text, f"unexpected text {rest[j:]!r} after the quoted value of {key!r}")
        else:
            end = rest.find(",", j)
            end = n if end < 0 else end
            value = rest[j:end].strip()
            for char in ':"':
                if char in value:
                    raise _fail(
                        text,
                        f"the value of {key!r} contains {char!r}; put the value in double quotes "
                        f'({key}="...") or separate options with \',\'',
                    )
            j = end
        options[key] = value
        if j >= n:
            return name, options
        i = j + 1  # skip the comma
        if i >= n or not rest[i:].strip():
            raise _fail(text, "an option is empty (two commas in a row, or a trailing comma)")


def _read_quoted(text: str, rest: str, start: int, key: str) -> tuple[str, int]:
    """Read a double-quoted value whose first character is ``rest[start]``.

    Returns the value and the index just past the closing quote; ``""`` is one quote.
    """
    out: list[str] = []
    j = start
    while True:
        q = rest.find('"', j)
        if q < 0:
            raise _fail(text, f"the quoted value of {key!r} has no closing '\"'")
        out.append(rest[j:q])
        if q + 1 < len(rest) and rest[q + 1] == '"':
            out.append('"')
            j = q + 2
            continue
        return "".join(out), q + 1


def format_value(value: Any) -> str:
    """Write one option value as spec text (without quoting).

    Strings and paths are kept; booleans become ``true``/``false``; floats use the
    shortest text that reads back to the same float; tuples and lists are joined with
    ``/``. Elements of a tuple may not themselves contain ``/``.

    >>> format_value((8, 8, 16, 16))
    '8/8/16/16'
    >>> format_value(0.1), format_value(True), format_value(4)
    ('0.1', 'true', '4')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DGPUsageError(f"option value {value!r} is not a finite number")
        return repr(value)
    if isinstance(value, (tuple, list)):
        parts = [format_value(v) for v in value]
        for part in parts:
            if "/" in part:
                raise DGPUsageError(
                    f"tuple element {part!r} contains '/', which separates tuple elements"
                )
        return "/".join(parts)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, str):
        return value
    if value is None:
        raise DGPUsageError("an option value of None cannot be written; leave the option out")
    # ints, numpy scalars, enums with a useful str(), ...
    return str(value)


def _quote_if_needed(text: str) -> str:
    if text == "" or text != text.strip() or (_QUOTE_TRIGGERS & set(text)):
        return '"' + text.replace('"', '""') + '"'
    return text


def format_spec(name: str, options: Mapping[str, Any] | None = None) -> str:
    """Write ``name`` and ``options`` as a spec that :func:`parse_spec` reads back.

    Options whose value is ``None`` are left out (they mean "the default"). Keys keep
    their order. Values with ``,``, ``:``, ``"`` or edge spaces are quoted.

    >>> format_spec("blur", {"sigma": 2.0, "size": None})
    'blur:sigma=2.0'
    >>> format_spec("mask", {"box": (8, 8, 16, 16)})
    'mask:box=8/8/16/16'
    >>> parse_spec(format_spec("mask", {"file": 'odd "name", v2.png'}))
    ('mask', {'file': 'odd "name", v2.png'})
    """
    name = name.strip() if isinstance(name, str) else name
    if not isinstance(name, str) or not name or ":" in name or (set(name) & _NAME_FORBIDDEN):
        raise DGPUsageError(f"invalid degradation name {name!r} for a spec")
    items = []
    for key, value in (options or {}).items():
        if not isinstance(key, str) or not key.isidentifier():
            raise DGPUsageError(f"invalid option key {key!r} for a spec")
        if value is None:
            continue
        items.append(f"{key}={_quote_if_needed(format_value(value))}")
    return name + (":" + ",".join(items) if items else "")


def split_tuple(value: str | tuple | list) -> list[str]:
    """Split a ``/``-separated tuple value into its parts (already-split values pass).

    >>> split_tuple("8/8/16/16")
    ['8', '8', '16', '16']
    >>> split_tuple((1, 2))
    ['1', '2']
    """
    if isinstance(value, (tuple, list)):
        return [format_value(v) for v in value]
    return [part.strip() for part in str(value).split("/")]
