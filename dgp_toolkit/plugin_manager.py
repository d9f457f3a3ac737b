"""The plugin manager: one pluggy manager, built-in plugins and entry points, failure isolation.

Everything the toolkit can look up by name (degradations, priors, losses, schedules) comes
from a plugin, and so does every ``dgp-tool`` subcommand. Built-in plugins are the modules
in :data:`DEFAULT_PLUGINS`; third-party plugins are the entry points of the ``dgp_toolkit``
group. Both go through the same path (:meth:`PluginManager.add_plugin`):

1. register the module with the pluggy manager and check that every ``@hookimpl`` names
   a known hook (a misspelled hook is an error, not a silently ignored function);
2. call that plugin's hooks with a ``register`` callback that records what it registers
   (names must be new);
3. commit everything the plugin registered into the name registry
   (:class:`~dgp_toolkit.registry.Registry`), or nothing.

Commands are the command line's business: ``register_commands`` hooks are called only
when ``dgp-tool`` builds its group (:meth:`PluginManager.collect_commands`, with the CLI's
own command modules), so a Python caller of ``dgp_toolkit.restore(...)`` imports neither
click nor any ``dgp_toolkit.cli`` module. A plugin whose ``register_commands`` fails then
is skipped as a whole like any other failing plugin: its names leave the registry too.

A third-party plugin that fails any step is unregistered and skipped with one warning on
stderr naming its entry point and distribution and saying how to fix it; the rest of the
tool keeps working. ``DGP_TOOLKIT_STRICT_PLUGINS=1`` turns that warning into a
:class:`~dgp_toolkit.errors.PluginError`; ``DGP_TOOLKIT_DISABLE_PLUGINS=a,b`` does not load
the entry points named ``a`` and ``b``; ``DGP_TOOLKIT_TRACE_PLUGINS=1`` prints every hook
call on stderr. A failing built-in plugin is a bug in the toolkit and always raises.

The shared manager is loaded on first use and cached (:func:`get_plugin_manager`);
nothing happens at import time.

>>> from dgp_toolkit.plugin_manager import get_plugin_manager
>>> [p.entry_point for p in get_plugin_manager().plugins][:2]
['dgp_toolkit.plugins.degradations', 'dgp_toolkit.plugins.losses']
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from dgp_toolkit import hookspecs
from dgp_toolkit._version import __version__
from dgp_toolkit.errors import PluginError
from dgp_toolkit.registry import KINDS, Entry, LazyFactory, Registry, did_you_mean

__all__ = [
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "HOOK_NAMES",
    "REGISTERS_KEYS",
    "CommandEntry",
    "PluginInfo",
    "PluginManager",
    "get_plugin_manager",
    "list_plugins",
    "reset_plugin_manager",
]

#: Built-in plugins, registered in this order before any third-party plugin. Add a
#: module here (``dgp_toolkit.plugins.losses``, ``dgp_toolkit.priors.biggan.plugin`` ...)
#: and it is loaded exactly like an entry point. The command line's own command modules
#: are not here: ``dgp_toolkit.cli.app.COMMAND_PLUGINS`` lists them.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "dgp_toolkit.plugins.degradations",
    "dgp_toolkit.plugins.losses",
    "dgp_toolkit.plugins.schedules",
    "dgp_toolkit.priors.biggan.plugin",
    "dgp_toolkit.priors.dip_plugin",
)

#: Entry-point group scanned for third-party plugins (also pluggy's project name).
ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME

#: The distribution that built-in plugins are reported under.
BUILTIN_DISTRIBUTION = "dgp-toolkit"

_HOOK_OF_KIND = {
    "degradation": "register_degradations",
    "prior": "register_priors",
    "loss": "register_losses",
    "schedule": "register_schedules",
}
_PLURAL = {"degradation": "degradations", "prior": "priors", "loss": "losses", "schedule": "schedules"}
#: Keys of :attr:`PluginInfo.registers`, in display order.
REGISTERS_KEYS: tuple[str, ...] = (*(_PLURAL[k] for k in KINDS), "commands")
#: Every hook a plugin may implement.
HOOK_NAMES: tuple[str, ...] = (*_HOOK_OF_KIND.values(), "register_commands")

ENV_STRICT = "DGP_TOOLKIT_STRICT_PLUGINS"
ENV_DISABLE = "DGP_TOOLKIT_DISABLE_PLUGINS"
ENV_TRACE = "DGP_TOOLKIT_TRACE_PLUGINS"

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")

#: What a plugin's import or hook may raise and be skipped for. ``SystemExit`` too: a
#: plugin calling ``sys.exit()`` at import would otherwise end every command, ``--help``
#: included, silently. ``KeyboardInterrupt`` is not caught: Ctrl-C still stops the tool.
PLUGIN_FAILURES = (Exception, SystemExit)


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _describe_exc(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"SystemExit: it called sys.exit({exc.code!r})"
    message = _one_line(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


@dataclass
class PluginInfo:
    """What the plugin manager knows about one plugin (built-in or third-party).

    ``entry_point`` is the entry-point name (for built-ins: the module path);
    ``registers`` maps each of ``degradations``, ``priors``, ``losses``, ``schedules``,
    ``commands`` to the names this plugin provides (commands only once the command line
    collected them); ``error`` is ``None`` or the one-line reason the plugin was skipped.
    """

    entry_point: str
    distribution: str | None
    version: str | None
    builtin: bool = False
    registers: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in REGISTERS_KEYS})
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form used by ``dgp-tool plugins --json``."""
        return {
            "entry_point": self.entry_point,
            "distribution": self.distribution,
            "version": self.version,
            "registers": {k: list(v) for k, v in self.registers.items()},
            "error": self.error,
        }

    @property
    def label(self) -> str:
        dist = self.distribution or "an unknown distribution"
        version = f" {self.version}" if self.version else ""
        return f"plugin {self.entry_point!r} (distribution {dist}{version})"


@dataclass(frozen=True)
class CommandEntry:
    """One ``dgp-tool`` subcommand and the plugin that provided it."""

    name: str
    command: Any  # click.Command
    plugin: PluginInfo


class _Rejected(Exception):
    """A plugin failed a step; carries the one-line reason."""


class PluginManager:
    """The loaded plugins, what each registered, and the name registry they filled.

    Load one with :meth:`load` (or get the shared one with :func:`get_plugin_manager`).
    ``registry`` holds the names; ``plugins`` every plugin in load order (built-ins
    first) with its error, if any; ``disabled`` the entry points switched off;
    ``warnings`` the warnings printed; ``pm`` the pluggy manager.
    """

    def __init__(self, *, trace: bool = False, strict: bool = False) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        if trace:
            self.pm.add_hookcall_monitoring(_trace_before, _trace_after)
        self.registry = Registry()
        self.plugins: list[PluginInfo] = []
        self.disabled: list[str] = []
        self.warnings: list[str] = []
        self._strict = strict
        self._warn = True
        self._accepted: list[tuple[object, PluginInfo]] = []
        # None until the command line collects commands; from then on every plugin added
        # has its commands collected with the rest of what it registers.
        self._commands: dict[str, CommandEntry] | None = None
        self._scratch_group: Any = None  # click.Group that plugins add their commands to

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(
        cls,
        default_plugins: Iterable[str] | None = None,
        *,
        entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
        environ: Mapping[str, str] | None = None,
        warn: bool = True,
    ) -> PluginManager:
        """Load the built-in plugins, then every entry point of :data:`ENTRY_POINT_GROUP`.

        ``default_plugins`` defaults to :data:`DEFAULT_PLUGINS`, ``entry_points`` to the
        installed ones (``importlib.metadata.entry_points(group=...)``) and ``environ`` to
        ``os.environ`` (read for the strict, disable and trace switches). With
        ``warn=False`` a skipped plugin's warning is only kept in :attr:`warnings`.
        """
        environ = os.environ if environ is None else environ
        manager = cls(trace=_flag(environ, ENV_TRACE), strict=_flag(environ, ENV_STRICT))
        manager._warn = warn
        disabled = {n.strip() for n in environ.get(ENV_DISABLE, "").split(",") if n.strip()}

        manager.add_builtins(DEFAULT_PLUGINS if default_plugins is None else default_plugins)

        if entry_points is None:
            entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        for ep in entry_points:
            if ep.name in disabled:
                manager.disabled.append(ep.name)
                continue
            info = _info_from_entry_point(ep)
            try:
                plugin = ep.load()
            except PLUGIN_FAILURES as exc:
                manager._reject(info, f"import failed: {_describe_exc(exc)}", exc)
                continue
            manager.add_plugin(plugin, info)
        return manager

    def add_builtins(self, module_names: Iterable[str]) -> None:
        """Import and add built-in plugin modules (a broken one raises :class:`PluginError`)."""
        for module_name in module_names:
            info = PluginInfo(module_name, BUILTIN_DISTRIBUTION, __version__, builtin=True)
            try:
                module = importlib.import_module(module_name)
            except PLUGIN_FAILURES as exc:
                self._reject(info, f"import failed: {_describe_exc(exc)}", exc)
                continue
            self.add_plugin(module, info)

    def add_plugin(self, plugin: object, info: PluginInfo) -> bool:
        """Register one plugin object (usually a module); True if it was accepted.

        On failure the plugin is unregistered, nothing it registered is kept, and the
        failure is reported (warning, or :class:`PluginError` for built-ins and in strict
        mode).
        """
        pm = self.pm
        self._place(info)
        try:
            pm.register(plugin, name=info.entry_point)
        except pluggy.PluginValidationError as exc:
            if pm.is_registered(plugin):  # pluggy 1.6 keeps a plugin whose hook failed validation
                pm.unregister(plugin)
            self._reject(info, f"a hook does not match its specification: {_one_line(exc)}", exc)
            return False
        except ValueError as exc:  # pluggy: this name or object is registered already
            self._reject(info, f"cannot register: {_one_line(exc)}", exc)
            return False

        staged: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        try:
            self._check_hook_names(plugin)
            others = [p for p in pm.get_plugins() if p is not plugin]
            implemented = self._implemented(plugin)
            for kind in KINDS:
                if _HOOK_OF_KIND[kind] not in implemented:
                    continue
                caller = pm.subset_hook_caller(_HOOK_OF_KIND[kind], remove_plugins=others)
                problems: list[str] = []
                try:
                    caller(register=self._make_register(kind, info, staged, problems))
                except _Rejected:
                    raise
                except PLUGIN_FAILURES as exc:
                    if problems:  # the plugin's hook re-raised our own complaint
                        raise _Rejected(problems[0]) from exc
                    raise _Rejected(f"{_HOOK_OF_KIND[kind]} raised {_describe_exc(exc)}") from exc
                if problems:  # the plugin swallowed our exception; still a failure
                    raise _Rejected(problems[0])
            new_commands = []
            if self._commands is not None and "register_commands" in implemented:
                new_commands = self._collect_commands(plugin)
        except _Rejected as exc:
            pm.unregister(plugin)
            self._reject(info, str(exc), exc.__cause__)
            return False

        for kind in KINDS:
            self.registry.add(staged[kind].values())
            info.registers[_PLURAL[kind]] = list(staged[kind])
        self._commit_commands(new_commands, info)
        self._accepted.append((plugin, info))
        return True

    def _place(self, info: PluginInfo) -> None:
        # Built-ins are listed first, in the order they were added, whoever added them.
        if info in self.plugins:
            return
        if info.builtin:
            self.plugins.insert(sum(p.builtin for p in self.plugins), info)
        else:
            self.plugins.append(info)

    def _implemented(self, plugin: object) -> set[str]:
        return {caller.name for caller in self.pm.get_hookcallers(plugin) or []}

    def _check_hook_names(self, plugin: object) -> None:
        # Equivalent to pluggy's check_pending(), for this plugin only, with a hint.
        for caller in self.pm.get_hookcallers(plugin) or []:
            if caller.has_spec():
                continue
            if all(impl.optionalhook for impl in caller.get_hookimpls() if impl.plugin is plugin):
                continue
            guess = did_you_mean(caller.name, HOOK_NAMES)
            hint = f" (did you mean {guess!r}?)" if guess else ""
            raise _Rejected(
                f"unknown hook {caller.name!r}{hint}; the hooks are {', '.join(HOOK_NAMES)}"
            )

    def _make_register(
        self, kind: str, info: PluginInfo, staged: dict[str, dict[str, Entry]], problems: list[str]
    ) -> Callable[[str, Any], None]:
        def register(name: str, factory: Callable[..., Any] | str) -> None:
            message = None
            owner = self.registry.owner(kind, name) if isinstance(name, str) else None
            if not isinstance(name, str) or not _NAME_RE.match(name):
                message = (
                    f"{kind} name {name!r} is invalid "
                    "(use lowercase letters, digits, '-' and '_', starting with a letter or digit)"
                )
            elif owner is not None:
                message = f"{kind} name {name!r} is already registered by {owner.label}"
            elif name in staged[kind]:
                message = f"{kind} name {name!r} is registered twice by this plugin"
            elif isinstance(factory, str):
                try:
                    factory = LazyFactory(factory)
                except PluginError as exc:
                    message = str(exc)
            elif not callable(factory):
                message = f"the factory for {kind} {name!r} is not callable: {factory!r}"
            if message is not None:
                problems.append(message)
                raise PluginError(message)
            staged[kind][name] = Entry(kind, name, factory, info)  # type: ignore[arg-type]

        return register

    # ----------------------------------------------------------------- commands
    def collect_commands(self, builtin_modules: Iterable[str] = ()) -> dict[str, CommandEntry]:
        """Every ``dgp-tool`` subcommand: ``builtin_modules`` first, then the plugins'.

        Called by the command line only (it imports click). The first call adds the
        command line's own plugin modules as built-ins and calls ``register_commands`` of
        every plugin loaded so far; a third-party plugin whose hook fails, or that adds a
        command whose name is taken, is skipped as a whole (its names leave the registry).
        Later calls return the same commands.
        """
        if self._commands is None:
            import click

            self._scratch_group = click.Group("dgp-tool")
            self._commands = {}
            loaded = list(self._accepted)
            self.add_builtins(builtin_modules)
            for plugin, info in loaded:
                if "register_commands" in self._implemented(plugin):
                    self._add_commands_of_loaded(plugin, info)
        return dict(self._commands)

    def _add_commands_of_loaded(self, plugin: object, info: PluginInfo) -> None:
        try:
            new_commands = self._collect_commands(plugin)
        except _Rejected as exc:
            self.pm.unregister(plugin)
            self.registry.forget(info)
            self._accepted.remove((plugin, info))
            self._reject(info, str(exc), exc.__cause__)
            return
        self._commit_commands(new_commands, info)

    def _collect_commands(self, plugin: object) -> list[str]:
        """Call ``plugin``'s ``register_commands`` on the scratch group; the names it added.

        On failure the scratch group is put back as it was and :class:`_Rejected` raised.
        """
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        caller = self.pm.subset_hook_caller("register_commands", remove_plugins=others)
        before = dict(self._scratch_group.commands)
        try:
            try:
                caller(cli=self._scratch_group)
            except PLUGIN_FAILURES as exc:
                raise _Rejected(f"register_commands raised {_describe_exc(exc)}") from exc
            after = self._scratch_group.commands
            for name, command in before.items():
                if after.get(name) is not command:
                    owner = self._commands[name].plugin  # type: ignore[index]
                    raise _Rejected(f"command {name!r} is already provided by {owner.label}")
        except _Rejected:
            self._scratch_group.commands.clear()
            self._scratch_group.commands.update(before)
            raise
        return [name for name in after if name not in before]

    def _commit_commands(self, names: list[str], info: PluginInfo) -> None:
        for name in names:
            self._commands[name] = CommandEntry(name, self._scratch_group.commands[name], info)  # type: ignore[index]
        info.registers["commands"] = list(names)

    # ----------------------------------------------------------------- failures
    def _reject(self, info: PluginInfo, reason: str, exc: BaseException | None = None) -> None:
        reason = _one_line(reason)
        info.error = reason
        info.registers = {k: [] for k in REGISTERS_KEYS}
        self._place(info)
        if info.builtin:
            raise PluginError(f"built-in plugin {info.entry_point} is broken: {reason}") from exc
        if self._strict:
            raise PluginError(
                f"{info.label} failed: {reason} ({ENV_STRICT} is set; unset it to skip "
                f"broken plugins, or set {ENV_DISABLE}={info.entry_point})"
            ) from exc
        dist = info.distribution or info.entry_point
        message = (
            f"warning: skipped {info.label}: {reason}. Fix: upgrade or uninstall it "
            f"(pip install -U {dist} / pip uninstall {dist}), or set "
            f"{ENV_DISABLE}={info.entry_point} to stop loading it."
        )
        self.warnings.append(message)
        if self._warn:
            _print_warning(message)


def _info_from_entry_point(ep: importlib.metadata.EntryPoint) -> PluginInfo:
    dist = getattr(ep, "dist", None)
    name = version = None
    if dist is not None:
        try:
            name = dist.metadata["Name"]
            version = dist.version
        except Exception:  # broken metadata must not break loading
            pass
    return PluginInfo(ep.name, name, version)


def _print_warning(message: str) -> None:
    # Created per call so that the current sys.stderr (a test runner's) is used.
    from rich.console import Console

    Console(stderr=True, soft_wrap=True, highlight=False).print(message, style="yellow", markup=False)


def _trace_before(hook_name: str, hook_impls: list[Any], kwargs: dict[str, Any]) -> None:
    plugins = ", ".join(impl.plugin_name for impl in hook_impls)
    print(f"trace: {hook_name}() -> [{plugins}]", file=sys.stderr)


def _trace_after(outcome: Any, hook_name: str, hook_impls: list[Any], kwargs: dict[str, Any]) -> None:
    exc = outcome.exception
    status = f"raised {_describe_exc(exc)}" if exc is not None else "ok"
    print(f"trace: {hook_name}() {status}", file=sys.stderr)


# --------------------------------------------------------------------- the shared manager
_manager: PluginManager | None = None
_loading = False
_lock = threading.RLock()


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, loaded on first call and cached.

    Raises :class:`PluginError` when a built-in plugin is broken, or in strict mode when
    any plugin is.
    """
    global _manager, _loading
    with _lock:
        if _manager is None:
            if _loading:
                raise PluginError(
                    "get_registry() was called while the registry is being built "
                    "(a plugin hook must not look names up; do it when the object is used)"
                )
            _loading = True
            try:
                _manager = PluginManager.load()
            finally:
                _loading = False
        return _manager


def reset_plugin_manager() -> None:
    """Forget the shared manager; the next :func:`get_plugin_manager` loads the plugins again."""
    global _manager
    with _lock:
        _manager = None


def list_plugins() -> list[dict[str, Any]]:
    """Every plugin, built-ins first, as in ``dgp-tool plugins --json``."""
    return [info.as_dict() for info in get_plugin_manager().plugins]
