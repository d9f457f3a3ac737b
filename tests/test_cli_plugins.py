"""``dgp-tool plugins`` and ``dgp-tool degradations`` on the built-in plugins."""

from __future__ import annotations

import json

from dgp_toolkit.cli.app import COMMAND_PLUGINS
from dgp_toolkit.plugin_manager import DEFAULT_PLUGINS, REGISTERS_KEYS

BUILTIN_DEGRADATIONS = {"blur", "downsample", "gray", "mask", "noise"}


def test_plugins_json_lists_builtins(dgp):
    result = dgp("plugins", "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["entry_point"] for row in rows] == [*DEFAULT_PLUGINS, *COMMAND_PLUGINS]
    for row in rows:
        assert set(row) == {"entry_point", "distribution", "version", "registers", "error"}
        assert tuple(row["registers"]) == REGISTERS_KEYS
        assert row["distribution"] == "dgp-toolkit" and row["error"] is None
    by_name = {row["entry_point"]: row for row in rows}
    assert by_name["dgp_toolkit.cli.plugins"]["registers"]["commands"] == ["plugins"]
    assert by_name["dgp_toolkit.cli.degradations"]["registers"]["commands"] == ["degradations"]


def test_builtin_degradations_are_registered(dgp):
    rows = json.loads(dgp("plugins", "--json").stdout)
    registered = {name for row in rows for name in row["registers"]["degradations"]}
    assert BUILTIN_DEGRADATIONS <= registered


def test_plugins_table(dgp):
    result = dgp("plugins")
    assert result.exit_code == 0
    for text in ("entry point", "distribution", "dgp_toolkit.cli.plugins", "dgp-toolkit", "commands: plugins", "ok"):
        assert text in result.stdout
    assert result.stderr == ""


def test_degradations_json_has_options_types_and_defaults(dgp):
    result = dgp("degradations", "--json")
    assert result.exit_code == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert BUILTIN_DEGRADATIONS <= set(rows)
    blur = rows["blur"]
    assert blur["plugin"] == "dgp_toolkit.plugins.degradations"
    sigma = {o["name"]: o for o in blur["options"]}["sigma"]
    assert sigma["type"] == "float" and sigma["default"] == 2.0


def test_degradations_table(dgp):
    result = dgp("degradations")
    assert result.exit_code == 0, result.stderr
    for text in ("blur", "sigma", "float", "2.0", "mask", "downsample"):
        assert text in result.stdout


def test_python_api_matches_the_contract():
    import dgp_toolkit

    blur = dgp_toolkit.get_degradation("blur", sigma="2")
    assert blur.name == "blur"
    assert blur.options["sigma"] == 2.0
    assert dgp_toolkit.parse_degradation(blur.spec) == blur
    assert dgp_toolkit.parse_degradation("blur:sigma=2") == blur
    assert isinstance(blur, dgp_toolkit.Degradation)
