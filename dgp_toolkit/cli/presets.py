"""``dgp-tool presets``: the built-in presets per prior family, with their task and length."""

from __future__ import annotations

import click

from dgp_toolkit.hookspecs import hookimpl


@click.command("presets")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (for scripts) instead of a table.")
def presets_command(as_json: bool) -> None:
    """List the built-in presets: per prior family, each task's stages and iterations.

    `dgp-tool restore` picks the preset from the degradations (gray: colorization, mask:
    inpainting, downsample: super-resolution, blur: deblurring, noise: denoising, several:
    hybrid, none: reconstruction) and the prior's family; --preset NAME or --preset
    FILE.toml overrides it.

    \b
    JSON form: a list of {"family", "name", "task", "stages", "iterations",
    "select_num", "description"}.
    """
    from dgp_toolkit.cli.output import echo_json, stdout_console
    from dgp_toolkit.presets import list_presets

    rows = list_presets()
    if as_json:
        echo_json(rows)
        return
    from rich.table import Table

    table = Table(title="presets (--preset NAME or FILE.toml)", title_justify="left")
    for column in ("family", "name", "task", "stages", "iterations", "candidates", "description"):
        table.add_column(column, overflow="fold", justify="right" if column in ("stages", "iterations", "candidates")
                         else "left")
    previous = None
    for row in rows:
        family = row["family"] if row["family"] != previous else ""
        previous = row["family"]
        table.add_row(family, row["name"], row["task"], str(row["stages"]), str(row["iterations"]),
                      str(row["select_num"]), row["description"] or "-")
    stdout_console().print(table)


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(presets_command)
