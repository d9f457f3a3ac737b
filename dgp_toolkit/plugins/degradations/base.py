"""The degradation contract: the :class:`Degradation` base class and its option schema.

A degradation is the known, differentiable operator phi of DGP: the restoration fits
``forward(G(z))`` to an observed image. Every degradation, built-in or third-party,
subclasses :class:`Degradation`, declares its options in ``OPTIONS`` and gets, for free:
conversion of command-line strings, validation with one-line errors, ``.options``,
``.spec``, equality, ``describe()`` and ``from_spec()``.

Learnable parameters (blind restoration, e.g. ``blur:sigma=auto``): an option declared
with ``Option(..., learnable=Learnable(...))`` also accepts the value ``auto``, meaning
"unknown: fit it with the image". The contract for such a degradation:

- :meth:`Degradation.learnable_parameters` returns ``{option: Learnable}`` for the options
  given ``auto`` (empty otherwise): the starting value, valid range and learning rate, the
  plugin's defaults that a preset's ``[learnable.NAME.OPTION]`` table may override;
- ``forward(x, **values)`` takes the fitted values as keyword tensors of shape ``(B,)``,
  image ``i`` of ``x`` degraded with entry ``i`` (and only it), differentiably; an option
  whose value is left out takes its starting value; with no ``auto`` option, ``forward(x)``
  is unchanged and a value passed anyway is a ``TypeError``
  (:meth:`Degradation.resolve_values` does the checks);
- ``degrade`` refuses ``auto`` (a simulation needs the true value) with a
  :class:`DGPUsageError` (:meth:`Degradation.check_simulable`); ``observe`` and ``finish``
  work as for a fixed value;
- :meth:`Degradation.check_learnable` may refuse a range it cannot work with (blur's
  kernel, fixed from the top of the range when the degradation is built, must cover it).

``auto`` for an option that cannot be fitted is a one-line :class:`DGPUsageError` (exit 2).
:class:`dgp_toolkit.testing.DegradationContract` tests all of this (``learnable_options``);
:mod:`dgp_toolkit.learnable` is the engine's side.

Example::

    >>> import torch
    >>> from dgp_toolkit.plugins.degradations.base import Degradation, Option
    >>> class Darken(Degradation):
    ...     name = "darken"
    ...     OPTIONS = {"amount": Option(float, 0.5, "fraction of brightness kept",
    ...                                 check=lambda v: 0 <= v <= 1, allowed="between 0 and 1")}
    ...     def forward(self, x):
    ...         x = self.check_images(x)
    ...         return (x + 1) * self.options["amount"] - 1
    >>> d = Darken(amount="0.25")
    >>> d.spec
    'darken:amount=0.25'
    >>> d(torch.zeros(1, 3, 4, 4)).shape
    torch.Size([1, 3, 4, 4])

The same with its amount fitted (``darken:amount=auto``)::

    >>> from dgp_toolkit.learnable import Learnable
    >>> class FadedDarken(Darken):
    ...     name = "faded"
    ...     OPTIONS = {"amount": Option(float, 0.5, "fraction of brightness kept",
    ...                                 check=lambda v: 0 <= v <= 1, allowed="between 0 and 1",
    ...                                 learnable=Learnable("amount", init=0.5, low=0.05, high=1.0, lr=0.02))}
    ...     def forward(self, x, **values):
    ...         x = self.check_images(x)
    ...         if self.options["amount"] != "auto":
    ...             return super().forward(x, **values)
    ...         amount = self.resolve_values(x, values)["amount"]
    ...         return (x + 1) * amount.view(-1, 1, 1, 1) - 1
    >>> f = FadedDarken(amount="auto")
    >>> f.spec, list(f.learnable_parameters())
    ('faded:amount=auto', ['amount'])
    >>> f(torch.zeros(2, 3, 4, 4), amount=torch.tensor([0.25, 1.0]))[:, 0, 0, 0]
    tensor([-0.7500,  0.0000])
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import torch

from dgp_toolkit.errors import DGPUsageError
from dgp_toolkit.learnable import AUTO, Learnable, is_auto
from dgp_toolkit.specs import format_spec, format_value, parse_spec

__all__ = ["Option", "Degradation", "check_images", "as_size"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_TYPE_WORDS = {float: "a number", int: "an integer", bool: "true or false", str: "a string", Path: "a path"}
_TYPE_NAMES = {float: "float", int: "int", bool: "bool", str: "str", Path: "path"}


class _Invalid(Exception):
    """Internal: a value that does not convert; carries the description of what is allowed."""


@dataclass(frozen=True)
class Option:
    """One declared option of a degradation.

    Args:
        type: ``float``, ``int``, ``bool``, ``str`` or ``pathlib.Path``: the type that
            command-line strings are converted to (Python values of that type pass as is).
        default: the value when the option is not given. ``None`` means "absent" (it is
            then left out of ``.spec``) or "computed": a subclass fills it in
            :meth:`Degradation.resolve_options`; say how in ``default_text``.
        help: one line for ``dgp-tool degradations``.
        choices: the only values allowed (after conversion).
        length: when set, the value is a tuple of ``length`` items of ``type``, written
            ``a/b/c`` on the command line.
        check: a predicate on the converted value (each item for tuples is *not* checked
            separately: the predicate receives the whole value).
        allowed: words for what ``check`` accepts ("a number > 0"), used in errors.
        default_text: how to show a computed default ("odd integer nearest 4*sigma+1").
        metavar: how a tuple is written, for messages (``"x/y/w/h"``).
        learnable: when set, the option also accepts ``auto`` (fitted with the image):
            its starting value, range and learning rate (see :mod:`dgp_toolkit.learnable`;
            ``auto`` is kept as the value ``"auto"``).

    Example::

        >>> Option(float, 2.0, "Gaussian std in pixels", check=lambda v: v > 0,
        ...        allowed="a number > 0").convert("1.5", owner="blur", name="sigma")
        1.5
    """

    type: type
    default: Any = None
    help: str = ""
    choices: tuple | None = None
    length: int | None = None
    check: Callable[[Any], bool] | None = None
    allowed: str | None = None
    default_text: str | None = None
    metavar: str | None = None
    learnable: Learnable | None = None

    def type_name(self) -> str:
        """Short type name for listings: ``float``, ``int``, ``path``, ``int/int/int/int``."""
        base = _TYPE_NAMES.get(self.type, getattr(self.type, "__name__", str(self.type)))
        if self.length:
            return f"{base} {self.metavar}" if self.metavar else "/".join([base] * self.length)
        return base

    def allowed_text(self) -> str:
        """What a valid value looks like, in words (for errors and listings)."""
        if self.choices is not None:
            return "one of " + ", ".join(_format_value(c) for c in self.choices)
        if self.length:
            what = _TYPE_WORDS.get(self.type, self.type_name()).split(" ", 1)[-1]
            text = f"{self.length} {what}s written " + (self.metavar or "/".join("abcdefghij"[: self.length]))
        else:
            text = _TYPE_WORDS.get(self.type, self.type_name())
        if self.allowed:
            text = f"{text}, {self.allowed}"
        if self.learnable is not None:
            s = self.learnable
            text = f"{text}; or auto (fitted with the image, from {s.low:g} to {s.high:g}, starting at {s.init:g})"
        return text

    def convert(self, value: Any, *, owner: str, name: str) -> Any:
        """Convert a command-line string or Python value, then validate it.

        Raises :class:`DGPUsageError` naming ``owner`` (the degradation), the option,
        the bad value and what is allowed.
        """
        if value is None:
            return None
        if self.learnable is not None and is_auto(value):
            return AUTO
        try:
            if self.length:
                items = value.split("/") if isinstance(value, str) else value
                if isinstance(items, (str, bytes)) or not hasattr(items, "__len__"):
                    raise _Invalid
                if len(items) != self.length:
                    raise _Invalid
                result: Any = tuple(_convert_scalar(self.type, item) for item in items)
            else:
                result = _convert_scalar(self.type, value)
        except _Invalid:
            raise self._error(owner, name, value) from None
        if self.choices is not None and result not in self.choices:
            raise self._error(owner, name, value)
        if self.check is not None:
            try:
                ok = bool(self.check(result))
            except (TypeError, ValueError, ArithmeticError):
                ok = False
            if not ok:
                raise self._error(owner, name, value)
        return result

    def _error(self, owner: str, name: str, value: Any) -> DGPUsageError:
        shown = value if isinstance(value, str) else _format_value(value)
        return DGPUsageError(f"{owner}: option '{name}' must be {self.allowed_text()}; got '{shown}'")


def _convert_scalar(kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _Invalid
    if kind is int:
        if isinstance(value, bool):
            raise _Invalid
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise _Invalid from None
        raise _Invalid
    if kind is float:
        if isinstance(value, bool):
            raise _Invalid
        if isinstance(value, (int, float)):
            result = float(value)
        elif isinstance(value, str):
            try:
                result = float(value.strip())
            except ValueError:
                raise _Invalid from None
        else:
            raise _Invalid
        if not math.isfinite(result):
            raise _Invalid
        return result
    if kind is Path:
        if isinstance(value, (str, Path)) and str(value).strip():
            return Path(str(value)).expanduser()
        raise _Invalid
    if kind is str:
        if isinstance(value, str):
            return value
        raise _Invalid
    try:  # any other callable type: let it convert and treat its errors as invalid values
        return kind(value)
    except (TypeError, ValueError):
        raise _Invalid from None


def _format_value(value: Any) -> str:
    """The command-line text of an option value (tuples joined with '/')."""
    return format_value(value)


def as_size(size: int | tuple[int, int] | torch.Size) -> tuple[int, int]:
    """``(height, width)`` from an int (square) or a pair.

    >>> as_size(32), as_size((24, 32))
    ((32, 32), (24, 32))
    """
    if isinstance(size, bool):
        raise TypeError(f"expected an image size, got {size!r}")
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


def check_images(x: Any, owner: str = "degradation") -> torch.Tensor:
    """Check that ``x`` is a float ``(B, 3, H, W)`` tensor; return it.

    Raises ``TypeError`` for a non-tensor or a non-floating dtype and ``ValueError`` for
    a wrong shape (these are programming errors, not user mistakes).

    >>> check_images(torch.zeros(2, 3, 8, 8)).shape
    torch.Size([2, 3, 8, 8])
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{owner}: expected a torch.Tensor of images, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{owner}: expected a floating-point tensor in [-1, 1], got dtype {x.dtype}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{owner}: expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
    return x


class Degradation(torch.nn.Module):
    """Base class of every degradation (the operator phi of DGP).

    Subclasses set ``name`` and ``OPTIONS`` and implement :meth:`forward`; they may
    override :meth:`degrade`, :meth:`observe`, :meth:`finish`,
    :meth:`observation_size`, :meth:`check_image_size` and :meth:`resolve_options`.
    Build one with keyword options (strings from the command line or Python values):
    ``Blur(sigma="1.5")``. All tensors are ``(B, 3, H, W)`` in [-1, 1]; no method holds
    device-specific state (everything is made on the input's device and dtype).

    Attributes:
        name: the registered name.
        OPTIONS: ``{option name: Option}`` in the order they are shown and written.
        identity_forward: ``True`` when ``forward`` is the identity (the degradation acts
            only in ``degrade``, like noise). :class:`Compose` uses it to decide which
            ``finish`` steps still apply.
        task: the task (a preset name, e.g. ``deblurring``) this degradation calls for
            when it is the only one; ``None``: ``hybrid``. The presets' one task table.
        protocol: how a result is scored against a clean image (:meth:`scores`), named in
            the metrics: ``plain`` by default.
        default_fit: how an input of another size is fitted to the prior when the user
            does not say (``crop``; a task whose :meth:`full_resolution` finishes the whole
            photo at its own size takes the whole frame: ``resize``).
    """

    name: ClassVar[str] = ""
    OPTIONS: ClassVar[dict[str, Option]] = {}
    identity_forward: ClassVar[bool] = False
    task: ClassVar[str | None] = None
    protocol: ClassVar[str] = "plain"
    default_fit: ClassVar[str] = "crop"

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self._options = dict(self.resolve_options(self.convert_options(options)))

    # -- options --------------------------------------------------------------------

    @classmethod
    def convert_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """Convert and validate ``options`` against ``OPTIONS``; fill the defaults.

        Unknown names raise :class:`DGPUsageError` listing the valid ones with a
        did-you-mean. Cross-option rules belong in :meth:`resolve_options`.
        """
        owner = cls.name or cls.__name__
        unknown = [key for key in options if key not in cls.OPTIONS]
        if unknown:
            key = unknown[0]
            valid = ", ".join(cls.OPTIONS) or "none"
            close = difflib.get_close_matches(key, list(cls.OPTIONS), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise DGPUsageError(f"{owner}: unknown option '{key}' (valid options: {valid}){hint}")
        result = {}
        for key, option in cls.OPTIONS.items():
            value = options.get(key)
            try:
                result[key] = option.default if value is None else option.convert(value, owner=owner, name=key)
            except DGPUsageError:
                if is_auto(value):  # not a value this option takes, and it cannot be fitted
                    raise cls._auto_error(key) from None
                raise
        return result

    @classmethod
    def _auto_error(cls, key: str) -> DGPUsageError:
        owner = cls.name or cls.__name__
        fitted = [k for k, o in cls.OPTIONS.items() if o.learnable is not None]
        which = (f"only {', '.join(fitted)} can be" if fitted else f"{owner} has no option that can be")
        return DGPUsageError(f"{owner}: option '{key}' cannot be auto ({which} fitted with the image); "
                             f"give it a value: {cls.OPTIONS[key].allowed_text()}")

    def resolve_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Fill computed defaults and check rules between options (hook for subclasses).

        Receives the converted options, returns the resolved ones that become
        ``.options``. Raise :meth:`usage_error` for a bad combination.
        """
        return options

    def usage_error(self, message: str) -> DGPUsageError:
        """A :class:`DGPUsageError` whose message starts with this degradation's name."""
        return DGPUsageError(f"{self.name or type(self).__name__}: {message}")

    @property
    def options(self) -> dict[str, Any]:
        """The resolved options (a copy): Python values, tuples for ``a/b/c`` options."""
        return dict(self._options)

    @property
    def spec(self) -> str:
        """``NAME[:key=value,...]`` that builds an equal object; ``None`` options left out.

        Written by :func:`dgp_toolkit.specs.format_spec` (tuples joined with ``/``, values
        with ``,`` or ``:`` in double quotes).
        """
        return format_spec(self.name, self._options)

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """One dict per option: ``name``, ``type``, ``default``, ``default_text``, ``help``, ``allowed``.

        >>> [o["name"] for o in Degradation.describe()]
        []
        """
        rows = []
        for key, option in cls.OPTIONS.items():
            if option.default_text is not None:
                default_text = option.default_text
            elif option.default is None:
                default_text = "-"
            else:
                default_text = _format_value(option.default)
            rows.append({
                "name": key,
                "type": option.type_name(),
                "default": option.default,
                "default_text": default_text,
                "help": option.help,
                "allowed": option.allowed_text(),
            })
        return rows

    @classmethod
    def from_spec(cls, text: str) -> "Degradation":
        """Build this class from its spec (without the registry); the name must match.

        >>> from dgp_toolkit.plugins.degradations.blur import Blur
        >>> Blur.from_spec("blur:sigma=1") == Blur(sigma=1.0)
        True
        """
        name, options = parse_spec(text)
        if name != cls.name:
            raise DGPUsageError(f"spec '{text}' names '{name}', not '{cls.name}'")
        return cls(**options)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Degradation):
            return NotImplemented
        return type(self) is type(other) and self.name == other.name and self._options == other._options

    def __hash__(self) -> int:
        return hash((type(self), self.name, tuple(self._options.items())))

    def extra_repr(self) -> str:
        return self.spec

    # -- learnable parameters ---------------------------------------------------------

    def learnable_parameters(self) -> dict[str, Learnable]:
        """``{option: Learnable}`` for the options given ``auto``; empty when none is.

        The default reads the ``learnable`` of each ``auto`` option's :class:`Option`, its
        ``owner`` set to this degradation's name. Override it for ranges that depend on
        other options.
        """
        owner = self.name or type(self).__name__
        return {key: dataclasses.replace(option.learnable, name=key, owner=owner)
                for key, option in self.OPTIONS.items()
                if option.learnable is not None and self._options.get(key) == AUTO}

    def check_learnable(self, learnable: Learnable) -> None:
        """Refuse a parameter (the plugin's, or after a preset's override) this object cannot
        fit over its whole range: a :meth:`usage_error`. The default checks that both
        bounds are values the option accepts."""
        option = self.OPTIONS.get(learnable.name)
        if option is None or option.learnable is None or self._options.get(learnable.name) != AUTO:
            raise self.usage_error(f"option '{learnable.name}' is not auto here; nothing to fit")
        for bound in ("low", "high"):
            value = getattr(learnable, bound)
            try:
                option.convert(value, owner=self.name, name=learnable.name)
            except DGPUsageError as exc:
                raise self.usage_error(f"the range of {learnable.name} to fit reaches {value:g}: {exc}") from None

    def resolve_values(self, x: torch.Tensor, values: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The value of every ``auto`` option for a batch ``x``: ``{option: (B,) tensor}``
        on ``x``'s device, from ``values`` (``(B,)`` tensors, or one number for every
        image) or the starting value where one is left out.

        A name that is not an ``auto`` option is a ``TypeError``, a tensor of another
        shape a ``ValueError`` (programming errors: the engine passes these).
        """
        owner = self.name or type(self).__name__
        learnable = self.learnable_parameters()
        unknown = sorted(set(values) - set(learnable))
        if unknown:
            have = f"the options fitted here: {', '.join(learnable)}" if learnable else "no option is auto here"
            raise TypeError(f"{owner}: got fitted values for {', '.join(unknown)}, but {have}")
        batch = x.shape[0]
        out = {}
        for key, spec in learnable.items():
            value = values.get(key)
            if value is None:
                out[key] = torch.full((batch,), spec.init, device=x.device, dtype=x.dtype)
                continue
            value = torch.as_tensor(value, device=x.device, dtype=None if isinstance(value, torch.Tensor) else x.dtype)
            if value.ndim == 0:
                value = value.expand(batch)
            if tuple(value.shape) != (batch,):
                raise ValueError(f"{owner}: the fitted values of {key} must have shape ({batch},), one per image; "
                                 f"got {tuple(value.shape)}")
            out[key] = value
        return out

    def check_simulable(self) -> None:
        """Raise a :class:`DGPUsageError` when an option is ``auto``: a simulated observation
        needs the true value, which ``auto`` leaves unknown."""
        learnable = self.learnable_parameters()
        if learnable:
            names = ", ".join(f"{k}=auto" for k in learnable)
            example = format_spec(self.name, {k: (learnable[k].init if k in learnable else v)
                                              for k, v in self._options.items()})
            raise self.usage_error(f"cannot simulate an observation with {names} (the value is unknown); "
                                   f"give the simulation its own spec with the true value, e.g. "
                                   f"--simulate-with {example}")

    # -- the four methods -----------------------------------------------------------

    def check_images(self, x: Any) -> torch.Tensor:
        """:func:`check_images` with this degradation's name in the messages."""
        return check_images(x, self.name or type(self).__name__)

    def check_pair(self, restored: Any, observed: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Check the arguments of :meth:`finish`; an observation of batch 1 is broadcast."""
        restored = self.check_images(restored)
        observed = self.check_images(observed)
        if observed.shape[0] == 1 and restored.shape[0] > 1:
            observed = observed.expand(restored.shape[0], -1, -1, -1)
        if observed.shape != restored.shape:
            raise ValueError(f"{self.name}: finish needs restored and observed images of one shape, "
                             f"got {tuple(restored.shape)} and {tuple(observed.shape)}")
        return restored, observed.to(device=restored.device, dtype=restored.dtype)

    def forward(self, x: torch.Tensor, **values: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """The differentiable phi, applied to generated images ``(B, 3, H, W)`` in [-1, 1]
        (with the fitted values of ``auto`` options as ``(B,)`` keyword tensors)."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def degrade(self, clean: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """A simulated observation of a clean image (default: ``forward`` without gradients).

        Subclasses that add randomness draw it from ``generator`` when one is given; those
        that override it call :meth:`check_simulable` first.
        """
        self.check_simulable()
        with torch.no_grad():
            return self(clean)

    def observe(self, image: torch.Tensor, *, size: int | tuple[int, int] | None = None) -> torch.Tensor:
        """Turn a user's already-degraded image into the target for ``forward(G(z))``.

        ``size`` is the prior's resolution (int or ``(height, width)``) when known; the
        image is expected at :meth:`observation_size` of it. Default: the identity.
        """
        image = self.check_images(image)
        if size is not None:
            expected = self.observation_size(size)
            if tuple(image.shape[-2:]) != expected:
                raise self.usage_error(
                    f"expected an observed image of {expected[1]}x{expected[0]} px, "
                    f"got {image.shape[-1]}x{image.shape[-2]}")
        return image

    def finish(self, restored: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """Task post-processing of the restored image given the observation (default: identity)."""
        return self.check_images(restored)

    def scores(self, restored: torch.Tensor, clean: torch.Tensor, observation: torch.Tensor) -> dict[str, float]:
        """PSNR and SSIM of ``restored`` against ``clean`` (``(1, 3, R, R)`` in [-1, 1]), by
        this task's rule (``observation`` is what was observed); default: plain scores."""
        from dgp_toolkit.metrics import scores

        return scores(restored, clean)

    def full_resolution(self, frame: Any) -> tuple[Any, str] | None:
        """The result at the input's own resolution, or ``None`` (the default: none).

        ``frame`` is a :class:`dgp_toolkit.images.FullFrame`: the input, the finished
        restoration stretched back over the part of it the prior saw, and that geometry.
        Returns ``(H x W x 3 uint8 array, one-line note)``. Called for a real (not
        simulated) input larger than the prior, when this is the only degradation.
        """
        return None

    def observation_size(self, size: int | tuple[int, int]) -> tuple[int, int]:
        """``(height, width)`` of a real observation for a prior of ``size`` (default: the same).

        The engine fits a user's degraded image to this size before :meth:`observe`.
        """
        return as_size(size)

    def check_image_size(self, width: int, height: int) -> None:
        """Called with the user's image size (before fitting); raise if it cannot work."""
