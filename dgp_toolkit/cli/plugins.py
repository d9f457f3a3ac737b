"""``dgp-tool plugins``: every plugin, built-in or installed, and what it registers."""

from __future__ import annotations

import click

from dgp_toolkit.hookspecs import hookimpl


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (for scripts) instead of a table.")
def plugins_command(as_json: bool) -> None:
    """List the loaded plugins and what each registers.

    Built-in plugins are listed under the distribution dgp-toolkit. A plugin that
    failed to load is listed with its error (and was skipped). Under
    DGP_TOOLKIT_STRICT_PLUGINS=1 every plugin is listed all the same, and then the
    command exits 1 if one failed.

    \b
    JSON form: a list of {"entry_point", "distribution", "version",
    "registers": {"degradations", "priors", "losses", "schedules", "commands"},
    "error": null or a string}.
    """
    from dgp_toolkit.cli.output import echo_json, stderr_console, stdout_console
    from dgp_toolkit.plugin_manager import ENV_DISABLE, get_plugin_manager

    root = click.get_current_context().find_root().command  # make_cli's group: its plugin manager
    manager = getattr(root, "plugin_manager", None) or get_plugin_manager()
    rows = [info.as_dict() for info in manager.plugins]
    if as_json:
        echo_json(rows)
    else:
        from rich import box
        from rich.table import Table

        table = Table(title="dgp-toolkit plugins", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("entry point", overflow="fold")
        table.add_column("distribution", overflow="fold")
        table.add_column("version", no_wrap=True)
        table.add_column("registers", ratio=1)
        table.add_column("status", overflow="fold")
        for row in rows:
            registers = "\n".join(
                f"{kind}: {', '.join(names)}" for kind, names in row["registers"].items() if names
            )
            status = "ok" if row["error"] is None else f"skipped: {row['error']}"
            table.add_row(
                row["entry_point"],
                row["distribution"] or "?",
                row["version"] or "?",
                registers or "-",
                status,
                style=None if row["error"] is None else "red",
            )
        stdout_console().print(table)
    if manager.disabled:
        stderr_console().print(
            f"disabled by {ENV_DISABLE}: {', '.join(manager.disabled)}", markup=False
        )
    strict_error = getattr(root, "strict_error", None)
    if strict_error is not None:
        raise strict_error


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(plugins_command)
