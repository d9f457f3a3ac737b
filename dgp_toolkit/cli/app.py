"""The ``dgp-tool`` group: its factory, its error handling and the console entry point.

Every subcommand, built-in or from a plugin, runs inside :meth:`DGPGroup.invoke`, which
turns exceptions into exit codes in one place:

==============================  =========  ===========================================
raised                          exit code  shown on stderr
==============================  =========  ===========================================
``DGPUsageError``               2          ``Error: <message>``
other ``DGPError``              1          ``Error: <message>``
``KeyboardInterrupt``           130        ``Interrupted.``
SIGTERM (``Terminated``)        143        ``Terminated.``
any other exception             1          one line; the traceback only with ``--debug``
``click`` exceptions            Click's    Click's usual message
==============================  =========  ===========================================

SIGTERM is handled as Ctrl-C (:mod:`dgp_toolkit.cli.signals`): the same clean-up, exit 143.
Under ``DGP_TOOLKIT_STRICT_PLUGINS`` a broken plugin stops every command (exit 1) except
``plugins``, which lists every plugin with its error and then exits 1.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from dgp_toolkit._version import __version__
from dgp_toolkit.cli.signals import SIGTERM_EXIT_CODE, Terminated, sigterm_as_interrupt
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
    """Ctrl-C (exit 130) or SIGTERM (exit 143): one line, no traceback."""

    def __init__(self, terminated: bool = False) -> None:
        super().__init__("terminated" if terminated else "interrupted")
        self.exit_code = SIGTERM_EXIT_CODE if terminated else 130

    def show(self, file: Any = None) -> None:
        click.echo("Terminated." if self.exit_code == SIGTERM_EXIT_CODE else "Interrupted.", err=True)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def _debug_enabled(ctx: click.Context | None = None) -> bool:
    if ctx is not None and ctx.find_root().params.get("debug"):
        return True
    return _env_flag(ENV_DEBUG)


def _print_traceback() -> None:
    from dgp_toolkit.cli.output import stderr_console

    stderr_console().print_exception()


def translate_exception(exc: BaseException, debug: bool) -> click.ClickException:
    """Map an exception raised by a command to the Click exception that reports it."""
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted(terminated=isinstance(exc, Terminated))
    if isinstance(exc, DGPUsageError):
        return CLIError(str(exc), 2)
    if isinstance(exc, DGPError):
        return CLIError(str(exc), 1)
    hint = "" if debug else f" (run `{PROG_NAME} --debug ...` for the traceback)"
    message = " ".join(str(exc).split())
    return CLIError(f"unexpected {type(exc).__name__}: {message}{hint}", 1)


class DGPGroup(click.Group):
    """A ``click.Group`` that maps exceptions to one-line errors and exit codes.

    ``plugin_manager`` is the plugin manager its commands came from; ``strict_error``, when
    set, is what strict mode raised for a broken plugin: every command but ``plugins``
    stops with it.
    """

    plugin_manager: Any = None
    strict_error: Exception | None = None

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        if self.strict_error is not None and args[:1] != ["plugins"]:
            raise self.strict_error  # also for a name no plugin provides: it may be the broken one's
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with sigterm_as_interrupt():
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
    :class:`~dgp_toolkit.errors.PluginError` if a built-in plugin is broken. In strict
    mode a broken third-party plugin makes every command but ``plugins`` fail (see
    :func:`load_plugins`). Each call returns a new group.

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

    cli.plugin_manager, commands, cli.strict_error = load_plugins()
    for name, entry in commands.items():
        cli.add_command(entry.command, name)
    return cli


def load_plugins() -> tuple[Any, dict[str, Any], Exception | None]:
    """The plugin manager, the commands it collected, and the error strict mode raised for a
    broken plugin (or ``None``).

    Under ``DGP_TOOLKIT_STRICT_PLUGINS`` a broken plugin stops the shared manager from
    loading; the plugins are then loaded again the lenient way, without warnings, so that
    ``dgp-tool plugins`` can list every one with its error. A broken built-in plugin
    still raises.
    """
    from dgp_toolkit.errors import PluginError
    from dgp_toolkit.plugin_manager import ENV_STRICT, PluginManager, get_plugin_manager

    try:
        manager = get_plugin_manager()
        return manager, manager.collect_commands(COMMAND_PLUGINS), None
    except PluginError as exc:
        if not _env_flag(ENV_STRICT):
            raise
        lenient = {k: v for k, v in os.environ.items() if k != ENV_STRICT}
        manager = PluginManager.load(environ=lenient, warn=False)
        return manager, manager.collect_commands(COMMAND_PLUGINS), exc


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
