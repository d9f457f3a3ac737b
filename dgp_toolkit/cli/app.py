"""The ``dgp-tool`` group: its factory, its error handling and the console entry point.

Every subcommand, built-in or from a plugin, runs inside :meth:`DGPGroup.invoke`, which
turns exceptions into exit codes in one place:

==============================  =========  ===========================================
raised                          exit code  shown on stderr
==============================  =========  ===========================================
``DGPUsageError``               2          ``Error: <message>``
other ``DGPError``              1          ``Error: <message>``
``KeyboardInterrupt``           130        ``Interrupted.``
any other exception             1          one line; the traceback only with ``--debug``
``click`` exceptions            Click's    Click's usual message
==============================  =========  ===========================================
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from dgp_toolkit._version import __version__
from dgp_toolkit.errors import DGPError, DGPUsageError

PROG_NAME = "dgp-tool"
ENV_DEBUG = "DGP_TOOLKIT_DEBUG"
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

#: The command line's own commands: built-in plugins (one module per command family) that
#: implement only ``register_commands``. Loaded when the group is built, never by the
#: Python API, and listed by ``dgp-tool plugins`` right after the other built-ins.
COMMAND_PLUGINS: tuple[str, ...] = (
    "dgp_toolkit.cli.plugins",
    "dgp_toolkit.cli.degradations",
    "dgp_toolkit.cli.weights",
    "dgp_toolkit.cli.train",
    "dgp_toolkit.cli.restore",
    "dgp_toolkit.cli.presets",
    "dgp_toolkit.cli.manipulate",
)

HELP = """Restore and edit images with a deep generative prior (DGP).

DGP inverts a pretrained GAN: it searches for the latent code, and then fine-tunes the
generator stage by stage, so that the degraded generated image matches your degraded
photo. The restored image is the generator's output.

Degradations, priors, losses, schedules and subcommands all come from plugins; see
`dgp-tool plugins` and `dgp-tool degradations`.
"""

EPILOG = """\b
Environment:
  DGP_TOOLKIT_STRICT_PLUGINS=1     a broken plugin is an error, not a warning
  DGP_TOOLKIT_DISABLE_PLUGINS=a,b  do not load the plugins (entry points) a and b
  DGP_TOOLKIT_TRACE_PLUGINS=1      print every plugin hook call on stderr
  DGP_TOOLKIT_DEBUG=1              same as --debug
"""


class CLIError(click.ClickException):
    """A one-line error with a chosen exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Interrupted(click.ClickException):
    """Ctrl-C: exit 130 with one line, no traceback."""

    exit_code = 130

    def __init__(self) -> None:
        super().__init__("interrupted")

    def show(self, file: Any = None) -> None:
        click.echo("Interrupted.", err=True)


def _debug_enabled(ctx: click.Context | None = None) -> bool:
    if ctx is not None and ctx.find_root().params.get("debug"):
        return True
    return os.environ.get(ENV_DEBUG, "").strip().lower() not in ("", "0", "false", "no", "off")


def _print_traceback() -> None:
    from dgp_toolkit.cli.output import stderr_console

    stderr_console().print_exception()


def translate_exception(exc: BaseException, debug: bool) -> click.ClickException:
    """Map an exception raised by a command to the Click exception that reports it."""
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted()
    if isinstance(exc, DGPUsageError):
        return CLIError(str(exc), 2)
    if isinstance(exc, DGPError):
        return CLIError(str(exc), 1)
    hint = "" if debug else f" (run `{PROG_NAME} --debug ...` for the traceback)"
    message = " ".join(str(exc).split())
    return CLIError(f"unexpected {type(exc).__name__}: {message}{hint}", 1)


class DGPGroup(click.Group):
    """A ``click.Group`` that maps exceptions to one-line errors and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except (Exception, KeyboardInterrupt) as exc:
            debug = _debug_enabled(ctx)
            if debug and not isinstance(exc, (KeyboardInterrupt, DGPError)):
                _print_traceback()
            raise translate_exception(exc, debug) from exc


def make_cli() -> click.Group:
    """Build the ``dgp-tool`` group with every command of every loaded plugin.

    Loads the plugins if needed and collects their commands (:data:`COMMAND_PLUGINS`
    first), so plugin warnings are printed now; raises
    :class:`~dgp_toolkit.errors.PluginError` if a built-in plugin is broken or, in strict
    mode, any plugin is. Each call returns a new group.

    >>> from click.testing import CliRunner
    >>> CliRunner().invoke(make_cli(), ["--version"]).output.startswith("dgp-tool ")
    True
    """

    @click.group(
        PROG_NAME,
        cls=DGPGroup,
        help=HELP,
        epilog=EPILOG,
        context_settings=CONTEXT_SETTINGS,
    )
    @click.option(
        "--debug",
        is_flag=True,
        help=f"Show the full traceback of unexpected errors (also {ENV_DEBUG}=1).",
    )
    @click.version_option(__version__, "--version", prog_name=PROG_NAME, message="%(prog)s %(version)s")
    def cli(debug: bool) -> None:
        pass

    from dgp_toolkit.plugin_manager import get_plugin_manager

    for name, entry in get_plugin_manager().collect_commands(COMMAND_PLUGINS).items():
        cli.add_command(entry.command, name)
    return cli


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point of ``dgp-tool``; exits with the command's exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        cli = make_cli()
    except KeyboardInterrupt:
        Interrupted().show()
        sys.exit(130)
    except Exception as exc:
        debug = "--debug" in args or _debug_enabled()
        if debug and not isinstance(exc, DGPError):
            _print_traceback()
        error = translate_exception(exc, debug)
        error.show()
        sys.exit(error.exit_code)
    cli.main(args=args, prog_name=PROG_NAME)
