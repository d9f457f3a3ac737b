"""The hook specifications of dgp-toolkit.

A plugin is a module (or object) with functions decorated by :data:`hookimpl` whose
names are the hooks below. Every hook receives a ``register`` callback instead of
returning values, so that one plugin can register any number of things and the plugin
manager can attribute each registration to the plugin that made it (for clear
errors about name clashes).

Third-party plugins are found through the ``dgp_toolkit`` entry-point group::

    [project.entry-points.dgp_toolkit]
    my_plugin = "my_package.my_module"

When the hooks are called: once per registry build, that is the first time a command
or a Python call (``get_degradation``, ``list_plugins`` ...) needs the registry, plugin
by plugin (built-ins first, then entry points); ``register_commands`` only when
``dgp-tool`` builds its command group (see :mod:`dgp_toolkit.plugin_manager`). A plugin whose import fails, whose hook
raises, that registers a name already taken, or that defines a ``@hookimpl`` function
whose name is not one of the hooks below (a typo) is skipped as a whole, with one
warning naming it (an error under ``DGP_TOOLKIT_STRICT_PLUGINS=1``).

Implementations may accept a subset of a hook's arguments (pluggy passes only the
ones asked for), so the specs below can grow without breaking plugins. None of the
hooks returns anything (``firstresult`` is not used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

import pluggy

if TYPE_CHECKING:  # click is only needed by type checkers here
    import click

PROJECT_NAME = "dgp_toolkit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class Register(Protocol):
    """The callback handed to every ``register_*`` hook: ``register(name, factory)``.

    ``name`` is the public name (``[a-z0-9][a-z0-9_-]*``) used on the command line and
    in Python; ``factory(**options)`` builds the object. ``factory`` may also be a
    string ``"package.module:attribute"``: it is imported only when first used, which
    keeps ``dgp-tool --help`` from importing torch. Registering a name that is already
    taken (or invalid) raises :class:`dgp_toolkit.errors.PluginError` and the whole
    plugin is skipped.
    """

    def __call__(self, name: str, factory: Callable[..., Any] | str) -> None: ...


@hookspec
def register_degradations(register: Register) -> None:
    """Register degradation operators.

    Called once, the first time the registry is needed (any command or Python call that
    looks up a degradation). ``factory(**options)`` must return a
    :class:`dgp_toolkit.Degradation` (an ``nn.Module`` with ``forward``, ``degrade``,
    ``observe`` and ``finish``). Options arrive as strings from the command line
    (``blur:sigma=2``) or as Python values; the factory converts them (the
    ``Degradation`` base class does so from its declared option schema).

    A degradation may let the restoration fit some of its options (``blur:sigma=auto``):
    such an option is declared with ``Option(..., learnable=Learnable(...))`` (starting
    value, valid range, learning rate; a preset may override them in a
    ``[learnable.NAME.OPTION]`` table), ``learnable_parameters()`` returns the ``auto``
    ones, ``forward(x, **values)`` takes one fitted value per image as ``(B,)`` tensors,
    and ``degrade`` refuses ``auto``. The contract is in the docstring of
    ``dgp_toolkit.plugins.degradations.base`` and tested by
    ``dgp_toolkit.testing.DegradationContract`` (``learnable_options``).

    Example::

        @hookimpl
        def register_degradations(register):
            register("pixelate", "my_package.pixelate:Pixelate")  # imported lazily

    Args:
        register: ``register(name, factory)``; see :class:`Register`.
    """


@hookspec
def register_priors(register: Register) -> None:
    """Register generative priors.

    Called once, when the registry is first needed. ``factory(**options)`` returns a
    prior (see ``dgp_toolkit.priors``); options include ``device``. ``load_prior(name)``
    and ``--prior NAME`` look names up here.

    Args:
        register: ``register(name, factory)``; see :class:`Register`.
    """


@hookspec
def register_losses(register: Register) -> None:
    """Register loss terms.

    Called once, when the registry is first needed. ``factory(**options)`` returns a
    callable ``loss(state) -> tensor of shape (B,)`` on the optimization state of a batch
    of B images (degraded generated images, targets, cached target features, latents):
    one value per image, never mixing the images (the engine sums them, and each image's
    optimization must stay its own). A scalar is accepted for a batch of one. Weights per
    stage come
    from the schedule, not from the loss. ``dgp_toolkit.get_loss(name, **options)``
    looks names up here.

    Args:
        register: ``register(name, factory)``; see :class:`Register`.
    """


@hookspec
def register_schedules(register: Register) -> None:
    """Register optimization schedules.

    Called once, when the registry is first needed. ``factory(**options)`` returns a
    schedule: the list of stages (iterations, trainable generator stages and their
    learning rates, latent learning rate, loss weights, number of D features),
    serialisable to and from JSON/TOML. ``dgp_toolkit.get_schedule(name, **options)``
    looks names up here.

    Args:
        register: ``register(name, factory)``; see :class:`Register`.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add Click commands to the ``dgp-tool`` group.

    Called once, when ``dgp-tool`` builds its command group (never at import time and
    never for Python API calls), with a ``click.Group``;
    use ``cli.add_command(cmd)`` or the ``@cli.command()`` decorator. The commands it
    gains are added to the ``dgp-tool`` group that :func:`dgp_toolkit.cli.make_cli`
    builds, and run with the toolkit's error handling (a
    :class:`~dgp_toolkit.errors.DGPUsageError` exits 2, a
    :class:`~dgp_toolkit.errors.DGPError` exits 1, both as one line). Replacing a
    command that another plugin already added is a name clash: the plugin is skipped
    (with everything else it registered).
    Import heavy modules inside the command function, not at module level.

    Example::

        @hookimpl
        def register_commands(cli):
            @cli.command("hello")
            def hello():
                \"\"\"Say hello.\"\"\"
                click.echo("hello")

    Args:
        cli: the group to add commands to.
    """
