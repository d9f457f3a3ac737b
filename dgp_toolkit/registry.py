"""The name registries: every degradation, prior, loss and schedule that plugins registered.

A :class:`Registry` maps each kind (``degradation``, ``prior``, ``loss``, ``schedule``) to
its names, and each name to its factory and the plugin that registered it; lookups of
unknown names are one-line usage errors that suggest the closest name. The registries are
filled by the plugin manager (:mod:`dgp_toolkit.plugin_manager`), which loads the built-in
plugins and the entry points, calls their hooks and isolates failures; this module knows
nothing about hooks, entry points or the command line.

The process-wide registry is built on first use (:func:`get_registry`); nothing happens at
import time. Tests rebuild it with :func:`reset_registry`.

>>> from dgp_toolkit.registry import get_registry
>>> "blur" in get_registry().names("degradation")
True
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dgp_toolkit.errors import DGPUsageError, PluginError

if TYPE_CHECKING:
    from dgp_toolkit.plugin_manager import PluginInfo

__all__ = [
    "KINDS",
    "Entry",
    "LazyFactory",
    "Registry",
    "did_you_mean",
    "get_degradation",
    "get_loss",
    "get_registry",
    "get_schedule",
    "parse_degradation",
    "reset_registry",
    "unknown_name_message",
]

#: The kinds of named things.
KINDS: tuple[str, ...] = ("degradation", "prior", "loss", "schedule")


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
            except SystemExit as exc:  # a plugin's sys.exit() must not end the command
                raise PluginError(f"lazy factory {self.target!r}: importing {module_name} "
                                  f"failed (SystemExit: it called sys.exit({exc.code!r}))") from None
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


@dataclass(frozen=True)
class Entry:
    """One registered name: its kind, factory and the plugin that provided it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: PluginInfo


class Registry:
    """Every named degradation, prior, loss and schedule, with the plugin behind each.

    Filled by the plugin manager one plugin at a time (:meth:`add`, all of a plugin's
    names or none) and emptied of a plugin that fails later (:meth:`forget`); read
    with :meth:`names`, :meth:`entry`, :meth:`factory` and :meth:`create`.
    """

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}

    # ----------------------------------------------------------------- filling
    def owner(self, kind: str, name: str) -> PluginInfo | None:
        """The plugin that registered ``name``, or ``None`` when the name is free."""
        entry = self._table(kind).get(name)
        return None if entry is None else entry.plugin

    def add(self, entries: Iterable[Entry]) -> None:
        """Add entries whose names were checked to be free (by the plugin manager)."""
        for entry in entries:
            self._table(entry.kind)[entry.name] = entry

    def forget(self, plugin: PluginInfo) -> None:
        """Remove every name that ``plugin`` registered."""
        for table in self._entries.values():
            for name in [n for n, e in table.items() if e.plugin is plugin]:
                del table[name]

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


# --------------------------------------------------------------------- the shared registry
def get_registry() -> Registry:
    """The process-wide registry: the shared plugin manager's, loaded on first call.

    Raises :class:`PluginError` when a built-in plugin is broken, or in strict mode when
    any plugin is.
    """
    from dgp_toolkit.plugin_manager import get_plugin_manager

    return get_plugin_manager().registry


def reset_registry() -> None:
    """Forget the loaded plugins and their names; the next :func:`get_registry` reloads them."""
    from dgp_toolkit.plugin_manager import reset_plugin_manager

    reset_plugin_manager()


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
