"""The plugin engine: loading, failure isolation, lookups, the shared registry."""

from __future__ import annotations

import inspect
import subprocess
import sys
import types
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import dgp_toolkit
from dgp_toolkit import hookimpl, hookspecs, registry as reg
from dgp_toolkit.errors import DGPUsageError, PluginError
from dgp_toolkit.registry import DEFAULT_PLUGINS, LazyFactory, Registry, get_registry, reset_registry


def make_module(monkeypatch, name, **functions):
    """A plugin module in ``sys.modules`` with the given (already decorated) functions."""
    module = types.ModuleType(name)
    for attr, fn in functions.items():
        setattr(module, attr, fn)
    monkeypatch.setitem(sys.modules, name, module)
    return module


def registrar(kind_hook, **things):
    """A ``@hookimpl`` for ``kind_hook`` registering ``things`` (name -> factory)."""

    def hook(register):
        for name, factory in things.items():
            register(name, factory)

    hook.__name__ = kind_hook
    return hookimpl(hook)


def entry_point(name, module):
    return EntryPoint(name=name, value=module, group="dgp_toolkit")


def build(monkeypatch, *modules, eps=(), env=None):
    return Registry.build(default_plugins=list(modules), entry_points=list(eps), environ=env or {})


class Thing:
    """A thing."""

    def __init__(self, *, sigma: float = 1.0, size: int = 3):
        self.sigma, self.size = sigma, size


# ----------------------------------------------------------------------------- lookups
def test_unknown_names_list_choices_and_guess(monkeypatch):
    things = {n: Thing for n in ("blur", "downsample", "gray", "mask", "noise")}
    make_module(monkeypatch, "fake_builtin", register_degradations=registrar("register_degradations", **things))
    registry = build(monkeypatch, "fake_builtin")
    with pytest.raises(DGPUsageError) as info:
        registry.create("degradation", "blurr")
    assert str(info.value) == (
        "unknown degradation 'blurr'; did you mean 'blur'? (choices: blur, downsample, gray, mask, noise)"
    )
    with pytest.raises(DGPUsageError) as info:
        registry.entry("degradation", "zzzzzz")
    assert "did you mean" not in str(info.value) and "choices: blur," in str(info.value)
    with pytest.raises(DGPUsageError, match=r"unknown loss 'l2' \(choices: none registered\)"):
        registry.create("loss", "l2")
    with pytest.raises(ValueError, match="unknown kind"):
        registry.names("colour")


def test_create_passes_options_and_checks_their_names(monkeypatch):
    make_module(monkeypatch, "fake_builtin", register_losses=registrar("register_losses", thing=Thing))
    registry = build(monkeypatch, "fake_builtin")
    thing = registry.create("loss", "thing", sigma=2.5)
    assert isinstance(thing, Thing) and thing.sigma == 2.5 and thing.size == 3
    with pytest.raises(DGPUsageError) as info:
        registry.create("loss", "thing", sigmaa=2)
    assert str(info.value) == "loss 'thing' has no option 'sigmaa'; did you mean 'sigma'? (options: sigma, size)"


def test_factories_with_var_kwargs_validate_themselves(monkeypatch):
    seen = {}

    def factory(**options):
        seen.update(options)
        return "built"

    make_module(monkeypatch, "fake_builtin", register_schedules=registrar("register_schedules", s=factory))
    assert build(monkeypatch, "fake_builtin").create("schedule", "s", anything="1") == "built"
    assert seen == {"anything": "1"}


def test_lazy_factory_imports_only_when_used(monkeypatch, tmp_path):
    (tmp_path / "lazy_target_mod.py").write_text("class Heavy:\n    '''Heavy.'''\n    def __init__(self, n=1):\n        self.n = n\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    make_module(
        monkeypatch, "fake_builtin",
        register_degradations=registrar("register_degradations", heavy="lazy_target_mod:Heavy"),
    )
    registry = build(monkeypatch, "fake_builtin")
    assert isinstance(registry.entry("degradation", "heavy").factory, LazyFactory)
    assert "lazy_target_mod" not in sys.modules
    assert registry.create("degradation", "heavy", n=5).n == 5
    assert "lazy_target_mod" in sys.modules
    monkeypatch.delitem(sys.modules, "lazy_target_mod")


def test_a_lazy_factory_whose_module_calls_sys_exit_is_a_plugin_error(monkeypatch, tmp_path):
    (tmp_path / "lazy_exit_mod.py").write_text("import sys\nsys.exit(4)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match=r"importing lazy_exit_mod failed \(SystemExit: it called sys.exit\(4\)\)"):
        LazyFactory("lazy_exit_mod:Thing")()


@pytest.mark.parametrize("target", ["no_colon", ":x", "mod:"])
def test_lazy_factory_needs_module_and_attribute(target):
    with pytest.raises(PluginError):
        LazyFactory(target)


# ----------------------------------------------------------------------------- built-ins
def test_two_builtin_registrations_of_one_name_raise(monkeypatch):
    make_module(monkeypatch, "fake_a", register_degradations=registrar("register_degradations", blur=Thing))
    make_module(monkeypatch, "fake_b", register_degradations=registrar("register_degradations", blur=Thing))
    with pytest.raises(PluginError) as info:
        build(monkeypatch, "fake_a", "fake_b")
    message = str(info.value)
    assert "built-in plugin fake_b is broken" in message
    assert "'blur' is already registered by plugin 'fake_a'" in message


def test_builtin_that_fails_to_import_raises(monkeypatch):
    with pytest.raises(PluginError, match="built-in plugin no_such_module_xyz is broken: import failed"):
        build(monkeypatch, "no_such_module_xyz")


def test_real_default_plugins_load_cleanly():
    registry = Registry.build(entry_points=[], environ={})
    assert [p.entry_point for p in registry.plugins] == list(DEFAULT_PLUGINS)
    assert all(p.error is None and p.distribution == "dgp-toolkit" for p in registry.plugins)
    assert {"plugins", "degradations"} <= set(registry.commands)
    assert registry.warnings == []


# ----------------------------------------------------------------------------- third party
def test_third_party_plugin_is_attributed(monkeypatch):
    def commands(cli):
        import click

        cli.add_command(click.Command("hello", callback=lambda: None))

    make_module(
        monkeypatch, "fake_party",
        register_losses=registrar("register_losses", l1=Thing, l2=Thing),
        register_commands=hookimpl(commands, specname="register_commands"),
    )
    registry = build(monkeypatch, eps=[entry_point("party", "fake_party")])
    (info,) = registry.plugins
    assert info.as_dict() == {
        "entry_point": "party",
        "distribution": None,
        "version": None,
        "registers": {"degradations": [], "priors": [], "losses": ["l1", "l2"], "schedules": [], "commands": ["hello"]},
        "error": None,
    }
    assert registry.commands["hello"].plugin is info
    assert registry.entry("loss", "l2").plugin is info


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
        ({"register_commands": hookimpl(lambda cli: cli.unknown_method(), specname="register_commands")},
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
    registry = build(monkeypatch, eps=[entry_point("bad", "fake_bad"), entry_point("good", "fake_good")])
    bad, good = registry.plugins
    assert reason in bad.error
    assert bad.registers == {k: [] for k in reg.REGISTERS_KEYS}
    assert good.error is None and registry.names("loss") == ["good"]  # nothing of bad's kept
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and len(err.strip().splitlines()) == 1
    assert "plugin 'bad'" in err and reason in err and "DGP_TOOLKIT_DISABLE_PLUGINS=bad" in err
    assert registry.warnings == [err.strip()]
    # the manager no longer calls it
    assert not registry.plugin_manager.has_plugin("bad")


def test_ctrl_c_in_a_plugin_hook_still_stops_the_loading(monkeypatch):
    def hook(register):
        raise KeyboardInterrupt

    make_module(monkeypatch, "fake_ctrl_c", register_losses=hookimpl(hook, specname="register_losses"))
    with pytest.raises(KeyboardInterrupt):
        build(monkeypatch, eps=[entry_point("ctrl_c", "fake_ctrl_c")])


def test_clash_with_an_existing_name_skips_the_later_plugin(monkeypatch, capsys):
    make_module(monkeypatch, "fake_builtin", register_degradations=registrar("register_degradations", blur=Thing))
    make_module(
        monkeypatch, "fake_clash",
        register_losses=registrar("register_losses", fine=Thing),
        register_degradations=registrar("register_degradations", blur=Thing),
    )
    registry = build(monkeypatch, "fake_builtin", eps=[entry_point("clash", "fake_clash")])
    assert registry.entry("degradation", "blur").plugin.entry_point == "fake_builtin"
    assert registry.names("loss") == []  # the clashing plugin's other names are rolled back
    assert "'blur' is already registered by plugin 'fake_builtin'" in capsys.readouterr().err


def test_command_clash_skips_the_plugin(monkeypatch, capsys):
    import click

    def commands(cli):
        cli.add_command(click.Command("plugins", callback=lambda: None))
        cli.add_command(click.Command("extra", callback=lambda: None))

    make_module(monkeypatch, "fake_cmd", register_commands=hookimpl(commands, specname="register_commands"))
    registry = Registry.build(entry_points=[entry_point("cmd", "fake_cmd")], environ={})
    assert registry.commands["plugins"].plugin.entry_point == "dgp_toolkit.cli.plugins"
    assert "extra" not in registry.commands
    err = capsys.readouterr().err
    assert "command 'plugins' is already provided by plugin 'dgp_toolkit.cli.plugins'" in err


def test_plugin_that_swallows_the_clash_error_is_still_skipped(monkeypatch, capsys):
    def sneaky(register):
        register("x", Thing)
        try:
            register("x", Thing)
        except PluginError:
            pass

    make_module(monkeypatch, "fake_sneaky", register_losses=hookimpl(sneaky, specname="register_losses"))
    registry = build(monkeypatch, eps=[entry_point("sneaky", "fake_sneaky")])
    assert registry.names("loss") == []
    assert "registered twice" in registry.plugins[0].error


def test_same_module_under_two_entry_points(monkeypatch, capsys):
    make_module(monkeypatch, "fake_twice", register_losses=registrar("register_losses", once=Thing))
    registry = build(monkeypatch, eps=[entry_point("one", "fake_twice"), entry_point("two", "fake_twice")])
    assert [p.error is None for p in registry.plugins] == [True, False]
    assert registry.names("loss") == ["once"]


def test_strict_mode_raises(monkeypatch):
    make_module(monkeypatch, "fake_bad", register_degradation=registrar("register_degradation"))
    with pytest.raises(PluginError) as info:
        build(monkeypatch, eps=[entry_point("bad", "fake_bad")], env={"DGP_TOOLKIT_STRICT_PLUGINS": "1"})
    assert "plugin 'bad'" in str(info.value) and "DGP_TOOLKIT_STRICT_PLUGINS" in str(info.value)
    # "0" is off
    build(monkeypatch, eps=[entry_point("bad", "fake_bad")], env={"DGP_TOOLKIT_STRICT_PLUGINS": "0"})


def test_disable_skips_loading(monkeypatch, capsys):
    eps = [entry_point("broken", "no_such_module_abc"), entry_point("other", "no_such_module_def")]
    registry = build(monkeypatch, eps=eps, env={"DGP_TOOLKIT_DISABLE_PLUGINS": " broken, other "})
    assert registry.plugins == [] and registry.disabled == ["broken", "other"]
    assert capsys.readouterr().err == ""


def test_trace_prints_hook_calls(monkeypatch, capsys):
    make_module(monkeypatch, "fake_builtin", register_losses=registrar("register_losses", x=Thing))
    build(monkeypatch, "fake_builtin", env={"DGP_TOOLKIT_TRACE_PLUGINS": "1"})
    err = capsys.readouterr().err
    assert "trace: register_losses() -> [fake_builtin]" in err
    assert "trace: register_losses() ok" in err


# ----------------------------------------------------------------------------- shared registry
def test_get_registry_is_cached_and_reset_rebuilds():
    first = get_registry()
    assert get_registry() is first
    reset_registry()
    assert get_registry() is not first


def test_plugin_hook_may_not_use_the_registry_while_it_is_built(monkeypatch, capsys):
    make_module(
        monkeypatch, "fake_reentrant",
        register_losses=hookimpl(lambda register: get_registry(), specname="register_losses"),
    )
    monkeypatch.setattr(reg, "DEFAULT_PLUGINS", (*DEFAULT_PLUGINS, "fake_reentrant"))
    with pytest.raises(PluginError, match="while the registry is being built"):
        get_registry()


def test_nothing_is_built_at_import_time():
    code = (
        "import sys, dgp_toolkit, dgp_toolkit.registry as r, dgp_toolkit.cli;"
        "assert r._registry is None; assert 'torch' not in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_public_api_is_lazy_and_complete():
    for name in ("get_degradation", "parse_degradation", "get_loss", "get_schedule", "list_plugins",
                 "hookimpl", "DGPError", "DGPUsageError", "PluginError", "__version__"):
        assert name in dgp_toolkit.__all__
        assert getattr(dgp_toolkit, name) is not None
    assert dgp_toolkit.get_loss is reg.get_loss
    assert isinstance(dgp_toolkit.list_plugins(), list)
    with pytest.raises(AttributeError):
        dgp_toolkit.no_such_name  # noqa: B018
    public = [name for name in dir(dgp_toolkit) if not name.startswith("_")]
    assert public == sorted(n for n in dgp_toolkit.__all__ if not n.startswith("_"))  # not Any, importlib


# ----------------------------------------------------------------------------- hook contract
HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("register_")]


def test_the_five_hooks():
    assert sorted(HOOKS) == sorted(reg._HOOK_NAMES)
    assert len(HOOKS) == 5


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_and_tested(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert "Called" in doc and "Args:" in doc, f"{hook} needs a docstring saying when it is called and its args"
    tests = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    assert tests.count(hook) >= 2, f"{hook} has no test"
    readme = Path(__file__).resolve().parents[1] / "README.md"
    assert hook in readme.read_text(), f"{hook} is not in the README's 'Write a plugin'"
