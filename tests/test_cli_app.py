"""The dgp-tool group: help, version, exit codes, error mapping, fast help."""

from __future__ import annotations

import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from dgp_toolkit import __version__
from dgp_toolkit.cli import make_cli
from dgp_toolkit.cli.signals import Terminated
from dgp_toolkit.errors import DGPError, DGPUsageError


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(dgp, flag):
    result = dgp(flag)
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: dgp-tool")
    for text in ("deep generative prior", "plugins", "degradations", "--debug", "--version",
                 "DGP_TOOLKIT_STRICT_PLUGINS"):
        assert text in result.stdout
    assert result.stderr == ""


def test_subcommand_help_accepts_h(dgp):
    result = dgp("plugins", "-h")
    assert result.exit_code == 0 and "--json" in result.stdout


def test_version(dgp):
    result = dgp("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"dgp-tool {__version__}"


def test_unknown_command_is_a_usage_error(dgp):
    result = dgp("plugin")
    assert result.exit_code == 2
    assert "No such command 'plugin'" in result.stderr and "plugins" in result.stderr


def make_group_with(callback, name="boom"):
    cli = make_cli()
    cli.add_command(click.Command(name, callback=callback))
    return cli


def raiser(exc):
    def callback():
        raise exc

    return callback


@pytest.mark.parametrize(
    "exc, code, line",
    [
        (DGPUsageError("unknown degradation 'blurr'; did you mean 'blur'?"), 2,
         "Error: unknown degradation 'blurr'; did you mean 'blur'?"),
        (DGPError("weights file is truncated"), 1, "Error: weights file is truncated"),
        (KeyboardInterrupt(), 130, "Interrupted."),
        (Terminated(), 143, "Terminated."),
        (RuntimeError("CUDA out of\nmemory"), 1,
         "Error: unexpected RuntimeError: CUDA out of memory (run `dgp-tool --debug ...` for the traceback)"),
    ],
)
def test_exceptions_become_one_line_and_an_exit_code(exc, code, line):
    result = CliRunner().invoke(make_group_with(raiser(exc)), ["boom"])
    assert result.exit_code == code
    assert result.stdout == ""
    assert result.stderr.strip() == line
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback():
    result = CliRunner().invoke(make_group_with(raiser(RuntimeError("kaput"))), ["--debug", "boom"])
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "kaput" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "Error: unexpected RuntimeError: kaput"


def test_debug_env_var_shows_the_traceback():
    cli = make_group_with(raiser(ValueError("bad")))
    result = CliRunner().invoke(cli, ["boom"], env={"DGP_TOOLKIT_DEBUG": "1"})
    assert result.exit_code == 1 and "Traceback" in result.stderr


def test_click_exits_pass_through():
    def callback():
        click.get_current_context().exit(3)

    result = CliRunner().invoke(make_group_with(callback), ["boom"])
    assert result.exit_code == 3 and result.stderr == ""


def test_plugin_registry_failure_in_main_is_one_line(dgp, monkeypatch):
    from dgp_toolkit import plugin_manager

    monkeypatch.setattr(plugin_manager, "DEFAULT_PLUGINS", (*plugin_manager.DEFAULT_PLUGINS, "no_such_builtin_xyz"))
    result = dgp("--help")
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("Error: built-in plugin no_such_builtin_xyz is broken")
    assert len(result.stderr.strip().splitlines()) == 1


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "import dgp_toolkit, dgp_toolkit.cli\n"
        "cli = dgp_toolkit.cli.make_cli()\n"
        "result = CliRunner().invoke(cli, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "for args in (['plugins', '--help'], ['degradations', '--help'], ['plugins', '--json']):\n"
        "    assert CliRunner().invoke(cli, args).exit_code == 0, args\n"
        "print('torch' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DGP_TOOLKIT_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_console_script_runs():
    exe = os.path.join(os.path.dirname(sys.executable), "dgp-tool")
    if not os.path.exists(exe):
        pytest.skip("dgp-tool console script is not installed in this environment")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == f"dgp-tool {__version__}"
