"""The plugin manager: loading, failure isolation, commands collected by the CLI only,
the shared manager, and the hook contract."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from fake_plugins import Thing, entry_point, load, make_module, registrar

from dgp_toolkit import hookimpl, hookspecs
from dgp_toolkit import plugin_manager as pmod
from dgp_toolkit.cli.app import COMMAND_PLUGINS
from dgp_toolkit.errors import PluginError
from dgp_toolkit.plugin_manager import DEFAULT_PLUGINS, PluginManager, get_plugin_manager
from dgp_toolkit.registry import get_registry

ROOT = Path(__file__).resolve().parents[1]


def command_hook(*names):
    """A ``register_commands`` hook adding do-nothing commands ``names``."""

    def register_commands(cli):
        for name in names:
            cli.add_command(click.Command(name, callback=lambda: None))

    return hookimpl(register_commands)


# ----------------------------------------------------------------------------- built-ins
def test_two_builtin_registrations_of_one_name_raise(monkeypatch):
    make_module(monkeypatch, "fake_a", register_degradations=registrar("register_degradations", blur=Thing))
    make_module(monkeypatch, "fake_b", register_degradations=registrar("register_degradations", blur=Thing))
    with pytest.raises(PluginError) as info:
        load("fake_a", "fake_b")
    message = str(info.value)
    assert "built-in plugin fake_b is broken" in message
    assert "'blur' is already registered by plugin 'fake_a'" in message


def test_builtin_that_fails_to_import_raises(monkeypatch):
    with pytest.raises(PluginError, match="built-in plugin no_such_module_xyz is broken: import failed"):
        load("no_such_module_xyz")


def test_real_default_plugins_load_cleanly_and_name_no_cli_module():
    manager = PluginManager.load(entry_points=[], environ={})
    assert [p.entry_point for p in manager.plugins] == list(DEFAULT_PLUGINS)
    assert not any(name.startswith("dgp_toolkit.cli") for name in DEFAULT_PLUGINS)
    assert all(p.error is None and p.distribution == "dgp-toolkit" for p in manager.plugins)
    assert {"blur", "gray", "mask"} <= set(manager.registry.names("degradation"))
    assert manager.warnings == []


def test_the_cli_adds_its_command_modules_after_the_builtins(monkeypatch):
    make_module(monkeypatch, "fake_party", register_losses=registrar("register_losses", x=Thing))
    manager = PluginManager.load(entry_points=[entry_point("party", "fake_party")], environ={})
    commands = manager.collect_commands(COMMAND_PLUGINS)
    assert [p.entry_point for p in manager.plugins] == [*DEFAULT_PLUGINS, *COMMAND_PLUGINS, "party"]
    assert {"plugins", "degradations", "restore", "weights"} <= set(commands)
    assert commands["plugins"].plugin.entry_point == "dgp_toolkit.cli.plugins"
    assert manager.collect_commands(COMMAND_PLUGINS) == commands  # collected once


# ----------------------------------------------------------------------------- third party
def test_third_party_plugin_is_attributed(monkeypatch):
    make_module(
        monkeypatch, "fake_party",
        register_losses=registrar("register_losses", l1=Thing, l2=Thing),
        register_commands=command_hook("hello"),
    )
    manager = load(eps=[entry_point("party", "fake_party")])
    (info,) = manager.plugins
    assert info.registers["commands"] == []  # not collected until the command line asks
    commands = manager.collect_commands()
    assert info.as_dict() == {
        "entry_point": "party",
        "distribution": None,
        "version": None,
        "registers": {"degradations": [], "priors": [], "losses": ["l1", "l2"], "schedules": [], "commands": ["hello"]},
        "error": None,
    }
    assert commands["hello"].plugin is info
    assert manager.registry.entry("loss", "l2").plugin is info


@pytest.mark.parametrize(
    "functions, reason",
    [
        ({"register_degradation": registrar("register_degradation", x=Thing)},
         "unknown hook 'register_degradation' (did you mean 'register_degradations'?)"),
        ({"register_losses": registrar("register_losses", blur=Thing, **{"Bad Name": Thing})},
         "loss name 'Bad Name' is invalid"),
        ({"register_losses": registrar("register_losses", a=Thing, b=42)},
         "the factory for loss 'b' is not callable"),
        ({"register_priors": hookimpl(lambda register: 1 / 0, specname="register_priors")},
         "register_priors raised ZeroDivisionError: division by zero"),
        ({"register_priors": hookimpl(lambda reg: None, specname="register_priors")},
         "a hook does not match its specification"),
        ({"register_commands": hookimpl(lambda cli: cli.unknown_method(), specname="register_commands"),
          "register_schedules": registrar("register_schedules", dropped=Thing)},
         "register_commands raised AttributeError"),
        ({"register_losses": hookimpl(lambda register: sys.exit(3), specname="register_losses")},
         "register_losses raised SystemExit: it called sys.exit(3)"),
        ({"register_commands": hookimpl(lambda cli: sys.exit("bye"), specname="register_commands")},
         "register_commands raised SystemExit: it called sys.exit('bye')"),
    ],
)
def test_failing_third_party_plugin_is_skipped_with_one_warning(monkeypatch, capsys, functions, reason):
    make_module(monkeypatch, "fake_bad", **functions)
    make_module(monkeypatch, "fake_good", register_losses=registrar("register_losses", good=Thing))
    manager = load(eps=[entry_point("bad", "fake_bad"), entry_point("good", "fake_good")])
    manager.collect_commands()
    bad, good = manager.plugins
    assert reason in bad.error
    assert bad.registers == {k: [] for k in pmod.REGISTERS_KEYS}
    assert good.error is None and manager.registry.names("loss") == ["good"]  # nothing of bad's kept
    assert manager.registry.names("schedule") == []
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and len(err.strip().splitlines()) == 1
    assert "plugin 'bad'" in err and reason in err and "DGP_TOOLKIT_DISABLE_PLUGINS=bad" in err
    assert manager.warnings == [err.strip()]
    # the manager no longer calls it
    assert not manager.pm.has_plugin("bad")


def test_ctrl_c_in_a_plugin_hook_still_stops_the_loading(monkeypatch):
    def hook(register):
        raise KeyboardInterrupt

    make_module(monkeypatch, "fake_ctrl_c", register_losses=hookimpl(hook, specname="register_losses"))
    with pytest.raises(KeyboardInterrupt):
        load(eps=[entry_point("ctrl_c", "fake_ctrl_c")])


def test_clash_with_an_existing_name_skips_the_later_plugin(monkeypatch, capsys):
    make_module(monkeypatch, "fake_builtin", register_degradations=registrar("register_degradations", blur=Thing))
    make_module(
        monkeypatch, "fake_clash",
        register_losses=registrar("register_losses", fine=Thing),
        register_degradations=registrar("register_degradations", blur=Thing),
    )
    manager = load("fake_builtin", eps=[entry_point("clash", "fake_clash")])
    assert manager.registry.entry("degradation", "blur").plugin.entry_point == "fake_builtin"
    assert manager.registry.names("loss") == []  # the clashing plugin's other names are rolled back
    assert "'blur' is already registered by plugin 'fake_builtin'" in capsys.readouterr().err


def test_command_clash_skips_the_plugin_with_its_names(monkeypatch, capsys):
    make_module(monkeypatch, "fake_cmd", register_commands=command_hook("plugins", "extra"),
                register_losses=registrar("register_losses", cmd_loss=Thing))
    make_module(monkeypatch, "fake_after", register_commands=command_hook("after"))
    manager = PluginManager.load(entry_points=[entry_point("cmd", "fake_cmd"), entry_point("after", "fake_after")],
                                 environ={})
    assert "cmd_loss" in manager.registry.names("loss")
    commands = manager.collect_commands(COMMAND_PLUGINS)
    assert commands["plugins"].plugin.entry_point == "dgp_toolkit.cli.plugins"
    assert "extra" not in commands and "after" in commands  # the scratch group was put back
    assert "cmd_loss" not in manager.registry.names("loss")
    err = capsys.readouterr().err
    assert "command 'plugins' is already provided by plugin 'dgp_toolkit.cli.plugins'" in err


def test_a_plugin_loaded_after_collection_gets_its_commands_at_once(monkeypatch):
    make_module(monkeypatch, "fake_late", register_commands=command_hook("late"))
    manager = load()
    manager.collect_commands()
    make_module(monkeypatch, "fake_late2", register_commands=command_hook("late"))
    assert manager.add_plugin(sys.modules["fake_late"], pmod.PluginInfo("late", None, None))
    assert "late" in manager.collect_commands()
    assert not manager.add_plugin(sys.modules["fake_late2"], pmod.PluginInfo("late2", None, None))


def test_plugin_that_swallows_the_clash_error_is_still_skipped(monkeypatch, capsys):
    def sneaky(register):
        register("x", Thing)
        try:
            register("x", Thing)
        except PluginError:
            pass

    make_module(monkeypatch, "fake_sneaky", register_losses=hookimpl(sneaky, specname="register_losses"))
    manager = load(eps=[entry_point("sneaky", "fake_sneaky")])
    assert manager.registry.names("loss") == []
    assert "registered twice" in manager.plugins[0].error


def test_same_module_under_two_entry_points(monkeypatch, capsys):
    make_module(monkeypatch, "fake_twice", register_losses=registrar("register_losses", once=Thing))
    manager = load(eps=[entry_point("one", "fake_twice"), entry_point("two", "fake_twice")])
    assert [p.error is None for p in manager.plugins] == [True, False]
    assert manager.registry.names("loss") == ["once"]


def test_strict_mode_raises(monkeypatch):
    make_module(monkeypatch, "fake_bad", register_degradation=registrar("register_degradation"))
    with pytest.raises(PluginError) as info:
        load(eps=[entry_point("bad", "fake_bad")], env={"DGP_TOOLKIT_STRICT_PLUGINS": "1"})
    assert "plugin 'bad'" in str(info.value) and "DGP_TOOLKIT_STRICT_PLUGINS" in str(info.value)
    # "0" is off
    load(eps=[entry_point("bad", "fake_bad")], env={"DGP_TOOLKIT_STRICT_PLUGINS": "0"})


def test_disable_skips_loading(monkeypatch, capsys):
    eps = [entry_point("broken", "no_such_module_abc"), entry_point("other", "no_such_module_def")]
    manager = load(eps=eps, env={"DGP_TOOLKIT_DISABLE_PLUGINS": " broken, other "})
    assert manager.plugins == [] and manager.disabled == ["broken", "other"]
    assert capsys.readouterr().err == ""


def test_trace_prints_hook_calls(monkeypatch, capsys):
    make_module(monkeypatch, "fake_builtin", register_losses=registrar("register_losses", x=Thing))
    load("fake_builtin", env={"DGP_TOOLKIT_TRACE_PLUGINS": "1"})
    err = capsys.readouterr().err
    assert "trace: register_losses() -> [fake_builtin]" in err
    assert "trace: register_losses() ok" in err


# ----------------------------------------------------------------------------- shared manager
def test_the_shared_registry_is_the_shared_managers():
    assert get_registry() is get_plugin_manager().registry


def test_plugin_hook_may_not_use_the_registry_while_it_is_built(monkeypatch, capsys):
    make_module(
        monkeypatch, "fake_reentrant",
        register_losses=hookimpl(lambda register: get_registry(), specname="register_losses"),
    )
    monkeypatch.setattr(pmod, "DEFAULT_PLUGINS", (*DEFAULT_PLUGINS, "fake_reentrant"))
    with pytest.raises(PluginError, match="while the registry is being built"):
        get_registry()


def test_nothing_is_built_at_import_time():
    code = (
        "import sys, dgp_toolkit, dgp_toolkit.plugin_manager as m, dgp_toolkit.registry, dgp_toolkit.cli;"
        "assert m._manager is None; assert 'torch' not in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_python_restore_imports_no_click_and_no_cli_module(tiny_files):
    """A Python caller of restore() loads the plugins but never the command line."""
    from dgp_toolkit.priors.biggan.variants import ENV_EMBEDDED

    weights, preset = tiny_files
    code = f"""
import json, sys
import numpy as np
import dgp_toolkit
result = dgp_toolkit.restore(np.full((32, 32, 3), 120, np.uint8), ["blur"], "biggan", preset={str(preset)!r},
                             iterations_scale=0.5)
assert result.image.size == (32, 32)
cli = sorted(m for m in sys.modules if m == "click" or m.startswith(("click.", "dgp_toolkit.cli")))
print(json.dumps({{"cli": cli, "plugins": [p["entry_point"] for p in dgp_toolkit.list_plugins()]}}))
"""
    # Installed third-party plugins may import click themselves: this checks the toolkit's own code.
    installed = [ep.name for ep in pmod.importlib.metadata.entry_points(group=pmod.ENTRY_POINT_GROUP)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DGP_TOOLKIT_")}
    env.update({ENV_EMBEDDED: str(weights), "DGP_TOOLKIT_DISABLE_PLUGINS": ",".join(installed),
                "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])})
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"cli": [], "plugins": list(DEFAULT_PLUGINS)}


# ----------------------------------------------------------------------------- hook contract
HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("register_")]


def test_the_five_hooks():
    assert sorted(HOOKS) == sorted(pmod.HOOK_NAMES)
    assert len(HOOKS) == 5


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_and_tested(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert "Called" in doc and "Args:" in doc, f"{hook} needs a docstring saying when it is called and its args"
    tests = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    assert tests.count(hook) >= 2, f"{hook} has no test"
    guide = ROOT / "docs" / "plugins.md"
    assert hook in guide.read_text(), f"{hook} is not in docs/plugins.md"


@pytest.mark.parametrize("module", ["dgp_toolkit.registry", "dgp_toolkit.plugin_manager"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
