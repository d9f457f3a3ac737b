"""The name registries: lookups, options, lazy factories, the shared registry and the public API."""

from __future__ import annotations

import sys

import pytest
from fake_plugins import Thing, load, make_module, registrar

import dgp_toolkit
from dgp_toolkit import registry as reg
from dgp_toolkit.errors import DGPUsageError, PluginError
from dgp_toolkit.registry import LazyFactory, get_registry, reset_registry


# ----------------------------------------------------------------------------- lookups
def test_unknown_names_list_choices_and_guess(monkeypatch):
    things = {n: Thing for n in ("blur", "downsample", "gray", "mask", "noise")}
    make_module(monkeypatch, "fake_builtin", register_degradations=registrar("register_degradations", **things))
    registry = load("fake_builtin").registry
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
    registry = load("fake_builtin").registry
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
    assert load("fake_builtin").registry.create("schedule", "s", anything="1") == "built"
    assert seen == {"anything": "1"}


def test_lazy_factory_imports_only_when_used(monkeypatch, tmp_path):
    (tmp_path / "lazy_target_mod.py").write_text("class Heavy:\n    '''Heavy.'''\n    def __init__(self, n=1):\n        self.n = n\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    make_module(
        monkeypatch, "fake_builtin",
        register_degradations=registrar("register_degradations", heavy="lazy_target_mod:Heavy"),
    )
    registry = load("fake_builtin").registry
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


def test_forget_removes_only_that_plugins_names(monkeypatch):
    make_module(monkeypatch, "fake_a", register_losses=registrar("register_losses", a1=Thing, a2=Thing))
    make_module(monkeypatch, "fake_b", register_losses=registrar("register_losses", b1=Thing))
    manager = load("fake_a", "fake_b")
    a, _ = manager.plugins
    assert manager.registry.owner("loss", "a1") is a and manager.registry.owner("loss", "zz") is None
    manager.registry.forget(a)
    assert manager.registry.names("loss") == ["b1"]


# ----------------------------------------------------------------------------- shared registry
def test_get_registry_is_cached_and_reset_rebuilds():
    first = get_registry()
    assert get_registry() is first
    reset_registry()
    assert get_registry() is not first


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
