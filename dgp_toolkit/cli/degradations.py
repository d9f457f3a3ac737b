"""``dgp-tool degradations``: each degradation with its options, types and defaults."""

from __future__ import annotations

import inspect
from typing import Any, Callable

import click

from dgp_toolkit.hookspecs import hookimpl


def describe_options(factory: Callable[..., Any]) -> list[dict[str, Any]]:
    """The options a degradation factory accepts, one dict each.

    Keys: ``name``, ``type``, ``default`` (a JSON-able value or ``None``),
    ``default_text``, ``help``, ``allowed``. Uses the factory's ``describe()``
    classmethod (the ``Degradation`` base class provides it), else its signature.
    """
    describe = getattr(factory, "describe", None)
    if callable(describe):
        rows = []
        for row in describe():
            row = dict(row)
            default = row.get("default")
            rows.append({
                "name": str(row.get("name", "?")),
                "type": str(row.get("type", "")),
                "default": _jsonable(default),
                "default_text": str(row.get("default_text", "-" if default is None else default)),
                "help": str(row.get("help", "")),
                "allowed": str(row.get("allowed", "")),
            })
        return rows
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return []
    rows = []
    for p in params:
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        annotation = p.annotation
        if annotation is p.empty:
            type_name = ""
        else:
            type_name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
        default = None if p.default is p.empty else p.default
        rows.append({
            "name": p.name,
            "type": type_name,
            "default": _jsonable(default),
            "default_text": "required" if p.default is p.empty else repr(p.default),
            "help": "",
            "allowed": "",
        })
    return rows


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return str(value)


def _summary(factory: Callable[..., Any]) -> str:
    doc = inspect.getdoc(factory) or ""
    first_paragraph = doc.strip().split("\n\n")[0]
    return " ".join(first_paragraph.replace("``", "").split())


@click.command("degradations")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (for scripts) instead of a table.")
def degradations_command(as_json: bool) -> None:
    """List the degradations, with their options, types and defaults.

    Use them with --degrade NAME[:key=value,...], e.g. --degrade blur:sigma=2 or
    --degrade mask:box=8/8/16/16; quote a value containing ',' or ':' with double
    quotes.

    \b
    JSON form: a list of {"name", "plugin", "summary", "options": [{"name", "type",
    "default", "default_text", "help", "allowed"}]}.
    """
    from dgp_toolkit.cli.output import echo_json, stdout_console
    from dgp_toolkit.registry import get_registry

    registry = get_registry()
    rows = []
    for name in registry.names("degradation"):
        entry = registry.entry("degradation", name)
        factory = registry.factory("degradation", name)
        rows.append({
            "name": name,
            "plugin": entry.plugin.entry_point,
            "summary": _summary(factory),
            "options": describe_options(factory),
        })
    if as_json:
        echo_json(rows)
        return
    from rich import box
    from rich.table import Table

    table = Table(title="degradations (--degrade NAME:key=value,...)", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    table.add_column("name", no_wrap=True)
    table.add_column("option", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("default", overflow="fold")
    table.add_column("description", ratio=1, overflow="fold")
    for row in rows:
        table.add_row(row["name"], "", "", "", row["summary"] or "-", end_section=not row["options"])
        for i, option in enumerate(row["options"]):
            description = option["help"]
            if option["allowed"]:
                description = f"{description} ({option['allowed']})" if description else option["allowed"]
            table.add_row(
                "",
                option["name"],
                option["type"],
                option["default_text"],
                description,
                end_section=i == len(row["options"]) - 1,
            )
    stdout_console().print(table)


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(degradations_command)
