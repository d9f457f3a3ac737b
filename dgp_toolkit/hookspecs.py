"""The hook specifications of dgp-toolkit.

A plugin is a module (or object) with functions decorated by :data:`hookimpl` whose
names are the hooks below. Every hook receives a ``register`` callback instead of
returning values, so that one plugin can register any number of things and the plugin
manager can attribute each registration to the plugin that made it (for clear
errors about name clashes).

Third-party plugins are found through the ``dgp_toolkit`` entry-point group::

    [project.entry-points.dgp_toolkit]
    my_plugin = "my_package.my_module"

Implementations may accept a subset of a hook's arguments (pluggy passes only the
ones asked for), so the specs below can grow without breaking plugins.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import pluggy

PROJECT_NAME = "dgp_toolkit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class Register(Protocol):
    """The callback handed to every ``register_*`` hook: ``register(name, factory)``.

    ``name`` is the public name (``[a-z0-9][a-z0-9_-]*``) used on the command line and
    in Python; ``factory(**options)`` builds the object. Registering a name that is
    already taken raises :class:`dgp_toolkit.errors.PluginError`.
    """

    def __call__(self, name: str, factory: Callable[..., Any]) -> None: ...


@hookspec
def register_degradations(register: Register) -> None:
    """Register degradation operators.

    Called once, the first time the registry is needed (any command or Python call that
    looks up a degradation). ``factory(**options)`` must return a
    :class:`dgp_toolkit.Degradation` (an ``nn.Module`` with ``forward``, ``degrade``,
    ``observe`` and ``finish``). Options arrive as strings from the command line
    (``blur:sigma=2``) or as Python values; the factory converts them (the
    ``Degradation`` base class does so from its declared option schema).

    Example::

        @hookimpl
        def register_degradations(register):
            register("pixelate", Pixelate)
    """


@hookspec
def register_priors(register: Register) -> None:
    """Register generative priors.

    Called once, when the registry is first needed. ``factory(**options)`` returns a
    prior (see ``dgp_toolkit.priors``); options include ``device``. ``load_prior(name)``
    and ``--prior NAME`` look names up here.
    """


@hookspec
def register_losses(register: Register) -> None:
    """Register loss terms.

    Called once, when the registry is first needed. ``factory(**options)`` returns a
    callable ``loss(state) -> scalar tensor`` on the optimization state (degraded
    generated image, target, cached target features, latent). Weights per stage come
    from the schedule, not from the loss.
    """


@hookspec
def register_schedules(register: Register) -> None:
    """Register optimization schedules.

    Called once, when the registry is first needed. ``factory(**options)`` returns a
    schedule: the list of stages (iterations, trainable generator stages and their
    learning rates, latent learning rate, loss weights, number of D features),
    serialisable to and from JSON/TOML.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add Click commands to the ``dgp-tool`` group.

    Called while the command-line application is built (inside the group factory, never
    at import time). ``cli`` is the ``click.Group``; use ``cli.add_command(cmd)`` or the
    ``@cli.command()`` decorator. A command whose name is already taken is skipped with a
    warning.
    """
