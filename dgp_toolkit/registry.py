"""The plugin engine: one pluggy manager, built-in plugins and entry points, one registry.

Everything the toolkit can look up by name (degradations, priors, losses, schedules) and
every ``dgp-tool`` subcommand comes from a plugin. Built-in plugins are the modules in
:data:`DEFAULT_PLUGINS`; third-party plugins are the entry points of the ``dgp_toolkit``
group. Both go through the same path (:meth:`Registry.build`):

1. register the module with the pluggy manager and check that every ``@hookimpl`` names
   a known hook (a misspelled hook is an error, not a silently ignored function);
2. call that plugin's hooks with a ``register`` callback that records what it registers
   (names must be new), and ``register_commands`` with a scratch ``click.Group``;
3. commit everything the plugin registered, or nothing.

A third-party plugin that fails any step is unregistered and skipped with one warning on
stderr naming its entry point and distribution and saying how to fix it; the rest of the
tool keeps working. ``DGP_TOOLKIT_STRICT_PLUGINS=1`` turns that warning into a
:class:`~dgp_toolkit.errors.PluginError`; ``DGP_TOOLKIT_DISABLE_PLUGINS=a,b`` does not load
the entry points named ``a`` and ``b``; ``DGP_TOOLKIT_TRACE_PLUGINS=1`` prints every hook
call on stderr. A failing built-in plugin is a bug in the toolkit and always raises.

The registry is built on first use and cached (:func:`get_registry`); nothing happens at
import time. Tests rebuild it with :func:`reset_registry`.

>>> from dgp_toolkit.registry import get_registry
>>> "plugins" in get_registry().commands
True
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
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
from dgp_toolkit.errors import DGPUsageError, PluginError

__all__ = [
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "KINDS",
    "LazyFactory",
    "PluginInfo",
    "Registry",
    "get_degradation",
    "get_loss",
    "get_registry",
    "get_schedule",
    "list_plugins",
    "parse_degradation",
    "reset_registry",
]

#: Built-in plugins, registered in this order before any third-party plugin. Add a
#: module here (``dgp_toolkit.plugins.losses``, ``dgp_toolkit.priors.biggan.plugin``,
#: ``dgp_toolkit.cli.restore`` ...) and it is loaded exactly like an entry point.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "dgp_toolkit.plugins.degradations",
    "dgp_toolkit.plugins.losses",
    "dgp_toolkit.plugins.schedules",
    "dgp_toolkit.cli.plugins",
    "dgp_toolkit.cli.degradations",
    "dgp_toolkit.priors.biggan.plugin",
    "dgp_toolkit.priors.dip_plugin",
    "dgp_toolkit.cli.weights",
    "dgp_toolkit.cli.train",
    "dgp_toolkit.cli.restore",
    "dgp_toolkit.cli.presets",
    "dgp_toolkit.cli.manipulate",
)

#: Entry-point group scanned for third-party plugins (also pluggy's project name).
ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME

#: The distribution that built-in plugins are reported under.
BUILTIN_DISTRIBUTION = "dgp-toolkit"

#: The kinds of named things, with the hook that registers each and its plural.
KINDS: tuple[str, ...] = ("degradation", "prior", "loss", "schedule")
_HOOK_OF_KIND = {
    "degradation": "register_degradations",
    "prior": "register_priors",
    "loss": "register_losses",
    "schedule": "register_schedules",
}
_PLURAL = {"degradation": "degradations", "prior": "priors", "loss": "losses", "schedule": "schedules"}
#: Keys of :attr:`PluginInfo.registers`, in display order.
REGISTERS_KEYS: tuple[str, ...] = (*(_PLURAL[k] for k in KINDS), "commands")
_HOOK_NAMES = (*_HOOK_OF_KIND.values(), "register_commands")

ENV_STRICT = "DGP_TOOLKIT_STRICT_PLUGINS"
ENV_DISABLE = "DGP_TOOLKIT_DISABLE_PLUGINS"
ENV_TRACE = "DGP_TOOLKIT_TRACE_PLUGINS"

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")

#: What a plugin's import or hook may raise and be skipped for. ``SystemExit`` too: a
#: plugin calling ``sys.exit()`` at import would otherwise end every command, ``--help``
#: included, silently. ``KeyboardInterrupt`` is not caught: Ctrl-C still stops the tool.
_PLUGIN_FAILURES = (Exception, SystemExit)


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _describe_exc(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"SystemExit: it called sys.exit({exc.code!r})"
    message = _one_line(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    """The closest of ``choices`` to a mistyped ``name``, or ``None``.

    >>> did_you_mean("blurr", ["blur", "gray", "mask"])
    'blur'
    """
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    if name.lower() in lowered:
        return lowered[name.lower()]
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_name_message(what: str, name: str, choices: Iterable[str]) -> str:
    """``unknown degradation 'blurr'; did you mean 'blur'? (choices: blur, gray)``."""
    choices = sorted(choices)
    guess = did_you_mean(name, choices)
    hint = f"; did you mean {guess!r}?" if guess else ""
    listing = ", ".join(choices) if choices else "none registered"
    return f"unknown {what} {name!r}{hint} (choices: {listing})"


class LazyFactory:
    """A factory given as ``"package.module:attribute"``, imported on first use.

    Plugins register heavy classes (anything importing torch) this way so that listing
    commands or rendering ``dgp-tool --help`` does not import them.

    >>> f = LazyFactory("fractions:Fraction")
    >>> f(3, 4)
    Fraction(3, 4)
    """

    def __init__(self, target: str) -> None:
        module, sep, attr = target.partition(":")
        if not sep or not module or not attr:
            raise PluginError(f"lazy factory {target!r} must look like 'package.module:attribute'")
        self.target = target
        self._loaded: Callable[..., Any] | None = None

    def load(self) -> Callable[..., Any]:
        """Import and return the real factory (cached)."""
        if self._loaded is None:
            module_name, _, attr = self.target.partition(":")
            try:
                obj: Any = importlib.import_module(module_name)
            except SystemExit as exc:
                raise PluginError(f"lazy factory {self.target!r}: importing {module_name} "
                                  f"failed ({_describe_exc(exc)})") from None
            for part in attr.split("."):
                obj = getattr(obj, part)
            if not callable(obj):
                raise PluginError(f"lazy factory {self.target!r} is not callable")
            self._loaded = obj
        return self._loaded

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.load()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"LazyFactory({self.target!r})"


def resolve_factory(factory: Callable[..., Any]) -> Callable[..., Any]:
    """The real factory behind ``factory`` (loads a :class:`LazyFactory`)."""
    return factory.load() if isinstance(factory, LazyFactory) else factory


@dataclass
class PluginInfo:
    """What the registry knows about one plugin (built-in or third-party).

    ``entry_point`` is the entry-point name (for built-ins: the module path);
    ``registers`` maps each of ``degradations``, ``priors``, ``losses``, ``schedules``,
    ``commands`` to the names this plugin provides; ``error`` is ``None`` or the
    one-line reason the plugin was skipped.
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
class Entry:
    """One registered name: its kind, factory and the plugin that provided it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: PluginInfo


@dataclass(frozen=True)
class CommandEntry:
    """One ``dgp-tool`` subcommand and the plugin that provided it."""

    name: str
    command: Any  # click.Command
    plugin: PluginInfo


class _Rejected(Exception):
    """A plugin failed a step; carries the one-line reason."""


class Registry:
    """Every named degradation, prior, loss, schedule and command, and their plugins.

    Build it with :meth:`build` (or get the shared one with :func:`get_registry`).
    """

    def __init__(self, *, trace: bool = False) -> None:
        self.plugin_manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.plugin_manager.add_hookspecs(hookspecs)
        if trace:
            self.plugin_manager.add_hookcall_monitoring(_trace_before, _trace_after)
        self.plugins: list[PluginInfo] = []
        self.disabled: list[str] = []
        self.warnings: list[str] = []
        self.commands: dict[str, CommandEntry] = {}
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self._strict = False
        self._warn = True
        # Plugins add their commands here first, so that clashes are found while loading.
        import click

        self._scratch_group = click.Group("dgp-tool")

    # ----------------------------------------------------------------- building
    @classmethod
    def build(
        cls,
        default_plugins: Iterable[str] | None = None,
        *,
        entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
        environ: Mapping[str, str] | None = None,
        warn: bool = True,
    ) -> Registry:
        """Load the built-in plugins, then every entry point of :data:`ENTRY_POINT_GROUP`.

        ``default_plugins`` defaults to :data:`DEFAULT_PLUGINS`, ``entry_points`` to the
        installed ones (``importlib.metadata.entry_points(group=...)``) and ``environ`` to
        ``os.environ`` (read for the strict, disable and trace switches). With
        ``warn=False`` a skipped plugin's warning is only kept in :attr:`warnings`.
        """
        environ = os.environ if environ is None else environ
        registry = cls(trace=_flag(environ, ENV_TRACE))
        registry._strict = _flag(environ, ENV_STRICT)
        registry._warn = warn
        disabled = {n.strip() for n in environ.get(ENV_DISABLE, "").split(",") if n.strip()}

        for module_name in DEFAULT_PLUGINS if default_plugins is None else default_plugins:
            info = PluginInfo(module_name, BUILTIN_DISTRIBUTION, __version__, builtin=True)
            try:
                module = importlib.import_module(module_name)
            except _PLUGIN_FAILURES as exc:
                registry._reject(info, f"import failed: {_describe_exc(exc)}", exc)
                continue
            registry.add_plugin(module, info)

        if entry_points is None:
            entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        for ep in entry_points:
            if ep.name in disabled:
                registry.disabled.append(ep.name)
                continue
            info = _info_from_entry_point(ep)
            try:
                plugin = ep.load()
            except _PLUGIN_FAILURES as exc:
                registry._reject(info, f"import failed: {_describe_exc(exc)}", exc)
                continue
            registry.add_plugin(plugin, info)
        return registry

    def add_plugin(self, plugin: object, info: PluginInfo) -> bool:
        """Register one plugin object (usually a module); True if it was accepted.

        On failure the plugin is unregistered, nothing it registered is kept, and the
        failure is reported (warning, or :class:`PluginError` for built-ins and in strict
        mode).
        """
        pm = self.plugin_manager
        self.plugins.append(info)
        try:
            pm.register(plugin, name=info.entry_point)
        except pluggy.PluginValidationError as exc:
            if pm.is_registered(plugin):  # pluggy keeps the plugin and its hooks before the bad one
                pm.unregister(plugin)
            self._reject(info, f"a hook does not match its specification: {_one_line(exc)}", exc)
            return False
        except ValueError as exc:  # pluggy: this name or object is registered already
            self._reject(info, f"cannot register: {_one_line(exc)}", exc)
            return False

        staged: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        commands_before = dict(self._scratch_group.commands)
        try:
            self._check_hook_names(plugin)
            others = [p for p in pm.get_plugins() if p is not plugin]
            implemented = {caller.name for caller in pm.get_hookcallers(plugin) or []}
            for kind in KINDS:
                if _HOOK_OF_KIND[kind] not in implemented:
                    continue
                caller = pm.subset_hook_caller(_HOOK_OF_KIND[kind], remove_plugins=others)
                problems: list[str] = []
                try:
                    caller(register=self._make_register(kind, info, staged, problems))
                except _Rejected:
                    raise
                except _PLUGIN_FAILURES as exc:
                    if problems:  # the plugin's hook re-raised our own complaint
                        raise _Rejected(problems[0]) from exc
                    raise _Rejected(f"{_HOOK_OF_KIND[kind]} raised {_describe_exc(exc)}") from exc
                if problems:  # the plugin swallowed our exception; still a failure
                    raise _Rejected(problems[0])
            new_commands = []
            if "register_commands" in implemented:
                new_commands = self._collect_commands(plugin, others, commands_before)
        except _Rejected as exc:
            self._scratch_group.commands.clear()
            self._scratch_group.commands.update(commands_before)
            pm.unregister(plugin)
            self._reject(info, str(exc), exc.__cause__)
            return False

        for kind in KINDS:
            self._entries[kind].update(staged[kind])
            info.registers[_PLURAL[kind]] = list(staged[kind])
        for name in new_commands:
            self.commands[name] = CommandEntry(name, self._scratch_group.commands[name], info)
        info.registers["commands"] = list(new_commands)
        return True

    def _check_hook_names(self, plugin: object) -> None:
        # Equivalent to pluggy's check_pending(), for this plugin only, with a hint.
        for caller in self.plugin_manager.get_hookcallers(plugin) or []:
            if caller.has_spec():
                continue
            if all(impl.optionalhook for impl in caller.get_hookimpls() if impl.plugin is plugin):
                continue
            guess = did_you_mean(caller.name, _HOOK_NAMES)
            hint = f" (did you mean {guess!r}?)" if guess else ""
            raise _Rejected(
                f"unknown hook {caller.name!r}{hint}; the hooks are {', '.join(_HOOK_NAMES)}"
            )

    def _make_register(
        self, kind: str, info: PluginInfo, staged: dict[str, dict[str, Entry]], problems: list[str]
    ) -> Callable[[str, Any], None]:
        def register(name: str, factory: Callable[..., Any] | str) -> None:
            message = None
            if not isinstance(name, str) or not _NAME_RE.match(name):
                message = (
                    f"{kind} name {name!r} is invalid "
                    "(use lowercase letters, digits, '-' and '_', starting with a letter or digit)"
                )
            elif name in self._entries[kind]:
                owner = self._entries[kind][name].plugin
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

    def _collect_commands(
        self, plugin: object, others: list[object], before: dict[str, Any]
    ) -> list[str]:
        caller = self.plugin_manager.subset_hook_caller("register_commands", remove_plugins=others)
        try:
            caller(cli=self._scratch_group)
        except _PLUGIN_FAILURES as exc:
            raise _Rejected(f"register_commands raised {_describe_exc(exc)}") from exc
        after = self._scratch_group.commands
        for name, command in before.items():
            if after.get(name) is not command:
                owner = self.commands[name].plugin
                raise _Rejected(f"command {name!r} is already provided by {owner.label}")
        return [name for name in after if name not in before]

    def _reject(self, info: PluginInfo, reason: str, exc: BaseException | None = None) -> None:
        reason = _one_line(reason)
        info.error = reason
        info.registers = {k: [] for k in REGISTERS_KEYS}
        if info not in self.plugins:
            self.plugins.append(info)
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

    # ----------------------------------------------------------------- lookups
    def names(self, kind: str) -> list[str]:
        """The registered names of one kind, sorted."""
        return sorted(self._table(kind))

    def entry(self, kind: str, name: str) -> Entry:
        """The registration of ``name``; unknown names raise :class:`DGPUsageError`."""
        table = self._table(kind)
        try:
            return table[name]
        except (KeyError, TypeError):
            raise DGPUsageError(unknown_name_message(kind, str(name), table)) from None

    def factory(self, kind: str, name: str) -> Callable[..., Any]:
        """The factory of ``name`` (a lazily given factory is imported now)."""
        return resolve_factory(self.entry(kind, name).factory)

    def create(self, kind: str, name: str, /, **options: Any) -> Any:
        """Build ``name`` with keyword ``options``.

        An option the factory does not accept is a :class:`DGPUsageError` listing the
        accepted ones (factories with ``**kwargs`` check their options themselves).
        """
        factory = self.factory(kind, name)
        _check_options(kind, name, factory, options)
        return factory(**options)

    def _table(self, kind: str) -> dict[str, Entry]:
        try:
            return self._entries[kind]
        except KeyError:
            raise ValueError(f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}") from None


def _check_options(kind: str, name: str, factory: Callable[..., Any], options: Mapping[str, Any]) -> None:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    params = signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    accepted = [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    for key in options:
        if key not in accepted:
            guess = did_you_mean(key, accepted)
            hint = f"; did you mean {guess!r}?" if guess else ""
            listing = ", ".join(accepted) if accepted else "none"
            raise DGPUsageError(f"{kind} {name!r} has no option {key!r}{hint} (options: {listing})")


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


# --------------------------------------------------------------------- the shared registry
_registry: Registry | None = None
_building = False
_lock = threading.RLock()


def get_registry() -> Registry:
    """The process-wide registry, built on first call and cached.

    Raises :class:`PluginError` when a built-in plugin is broken, or in strict mode when
    any plugin is.
    """
    global _registry, _building
    with _lock:
        if _registry is None:
            if _building:
                raise PluginError(
                    "get_registry() was called while the registry is being built "
                    "(a plugin hook must not look names up; do it when the object is used)"
                )
            _building = True
            try:
                _registry = Registry.build()
            finally:
                _building = False
        return _registry


def reset_registry() -> None:
    """Forget the cached registry; the next :func:`get_registry` builds a new one."""
    global _registry
    with _lock:
        _registry = None


# --------------------------------------------------------------------- public shortcuts
def get_degradation(name: str, /, **options: Any) -> Any:
    """Build the degradation ``name`` with ``options`` (strings or Python values).

    >>> import dgp_toolkit
    >>> dgp_toolkit.get_degradation("blurr")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dgp_toolkit.errors.DGPUsageError: unknown degradation 'blurr'; did you mean 'blur'? ...
    """
    return get_registry().create("degradation", name, **options)


def parse_degradation(spec: str) -> Any:
    """Build a degradation from its command-line spec, exactly as ``--degrade`` does.

    ``parse_degradation("blur:sigma=2")`` equals ``get_degradation("blur", sigma="2")``,
    and ``parse_degradation(d.spec)`` rebuilds a degradation equal to ``d``.
    """
    from dgp_toolkit.specs import parse_spec

    name, options = parse_spec(spec)
    return get_degradation(name, **options)


def get_loss(name: str, /, **options: Any) -> Any:
    """Build the loss term ``name`` with ``options``."""
    return get_registry().create("loss", name, **options)


def get_schedule(name: str, /, **options: Any) -> Any:
    """Build the optimization schedule ``name`` with ``options``."""
    return get_registry().create("schedule", name, **options)


def list_plugins() -> list[dict[str, Any]]:
    """Every plugin, built-ins first, as in ``dgp-tool plugins --json``."""
    return [info.as_dict() for info in get_registry().plugins]
