"""``dgp-tool presets``: the built-in presets per prior family, with their task and length."""

from __future__ import annotations

import click

from dgp_toolkit.hookspecs import hookimpl


@click.command("presets")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (for scripts) instead of a table.")
@click.option("--show", "show", default=None, metavar="NAME",
              help="Print preset NAME's TOML file (comments and measured figures included): "
                   "the start of your own, e.g. `dgp-tool presets --show inpainting > mine.toml`, "
                   "then `restore --preset mine.toml`.")
@click.option("--family", default="biggan-32", show_default=True, metavar="FAMILY",
              help="The prior family of --show: biggan-32 (the embedded prior) or biggan-imagenet.")
def presets_command(as_json: bool, show: str | None, family: str) -> None:
    """List the built-in presets: per prior family, each task's stages and iterations.

    `dgp-tool restore` picks the preset from the degradations (gray: colorization, mask:
    inpainting, downsample: super-resolution, blur: deblurring, noise: denoising, several:
    hybrid, none: reconstruction) and the prior's family; --preset NAME or --preset
    FILE.toml overrides it.

    \b
    JSON form: a list of {"family", "name", "task", "stages", "iterations",
    "select_num", "runs", "description"} (runs: restorations averaged).
    """
    from dgp_toolkit.cli.output import echo_json, stdout_console
    from dgp_toolkit.errors import DGPUsageError
    from dgp_toolkit.presets import list_presets, preset_text

    if show is not None:
        if as_json:
            raise DGPUsageError("give --show NAME or --json, not both")
        click.echo(preset_text(show, family), nl=False)
        return
    rows = list_presets()
    if as_json:
        echo_json(rows)
        return
    from rich import box
    from rich.table import Table

    console = stdout_console()
    families = list(dict.fromkeys(row["family"] for row in rows))
    console.print("presets (--preset NAME or FILE.toml); the task is the name unless shown")
    for listed in families:
        # one table per family, short columns kept whole: the description takes what is
        # left of the width, so the table reads at 80 columns (a pipe) as on a terminal
        table = Table(title=f"family {listed}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("name", no_wrap=True)
        for column in ("stages", "iterations", "candidates", "runs"):
            table.add_column(column, justify="right", no_wrap=True)
        table.add_column("description", ratio=1, overflow="fold")
        for row in (r for r in rows if r["family"] == listed):
            name = row["name"] if row["task"] == row["name"] else f"{row['name']} ({row['task']})"
            table.add_row(name, str(row["stages"]), str(row["iterations"]), str(row["select_num"]),
                          str(row["runs"]), row["description"] or "-")
        console.print(table)


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(presets_command)
