"""Degradation parameters fitted with the image: ``blur:sigma=auto`` (blind deblurring).

An option given the value ``auto`` is not known: the restoration fits it together with the
latent and the generator. The degradation declares which options may be fitted, each with
a :class:`Learnable`: its starting value, valid range and learning rate (the plugin's
defaults; a preset may override them in a ``[learnable.NAME.OPTION]`` table). The engine
never optimizes the value itself but an unconstrained *raw* value, mapped into the range
by a scaled sigmoid (:meth:`Learnable.from_raw`): whatever Adam does to the raw value, the
value stays inside ``[low, high]`` and is never NaN.

What the engine calls (B images optimized together, each with its own values)::

    specs = learnable_specs(degradation, preset)          # [] when nothing is auto
    fitted = FittedValues(specs, batch=B, device=device)  # raw values, (B,) each
    opt = torch.optim.Adam(fitted.param_groups(stage=0), betas=(0.0, 0.999))
    ...
    generated = fitted.apply(degradation, G(z, emb))      # phi with each image's own values
    ...
    fitted.set_stage(opt, s_idx)                          # each stage's learning rate
    fitted.snapshot()                                     # per image {key: value}, at a stage end
    values, notes = fitted.report(i)                      # image i's fitted values, clamped + noted

and, for latent selection (no gradients, ``n`` candidates):
``apply_values(degradation, x, starting_values(specs, n))``. Without ``auto`` options every
one of these is the plain ``degradation(x)``, bit for bit.

>>> s = Learnable("sigma", init=2.0, low=0.3, high=4.0, lr=0.02, owner="blur")
>>> s.key, round(float(s.from_raw(s.to_raw(2.0))), 6)
('blur.sigma', 2.0)
>>> float(s.from_raw(torch.tensor(1e9))), float(s.from_raw(torch.tensor(float("nan"))))
(4.0, 2.0)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from dgp_toolkit.errors import DGPUsageError

__all__ = ["AUTO", "Learnable", "FittedValues", "apply_values", "is_auto", "learnable_specs",
           "parse_overrides", "starting_key", "starting_values", "OVERRIDE_KEYS"]

#: The option value that asks for the option to be fitted (``blur:sigma=auto``).
AUTO = "auto"
#: The keys a preset's ``[learnable.NAME.OPTION]`` table may set.
OVERRIDE_KEYS = ("init", "low", "high", "lr")
#: How close to a bound (as a fraction of the range) a fitted value counts as "at the bound".
BOUND_TOLERANCE = 1e-3
# The sigmoid's inverse is taken of a fraction kept this far inside (0, 1): finite raw values.
_EDGE = 1e-6


def is_auto(value: Any) -> bool:
    """``True`` for the option value ``auto`` (any case, surrounding spaces allowed).

    >>> is_auto("auto"), is_auto(" AUTO "), is_auto(2.0)
    (True, True, False)
    """
    return isinstance(value, str) and value.strip().lower() == AUTO


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclasses.dataclass(frozen=True)
class Learnable:
    """One fitted parameter: its starting value, valid range and learning rate.

    Args:
        name: the option it fits (``"sigma"``).
        init: the starting value, strictly inside the range.
        low, high: the valid range (``low < high``); fitted values stay inside it.
        lr: Adam's learning rate on the raw value (:meth:`to_raw`), one number, or one per
            stage of the schedule (``0`` leaves the value where it is in that stage: e.g.
            fit sigma in the first stages only).
        owner: the degradation's registered name (``"blur"``); set by the degradation.
        step: the position of that degradation in a composition (0 for a single one).
        label: the owner as results name it when a composition has it more than once:
            ``"blur@2"`` for step 2 (1-based); empty means the owner's name.

    :attr:`key` names it in results: ``"blur.sigma"``, or ``"blur@2.sigma"`` with a label.

    Raises :class:`DGPUsageError` (one line, naming the key) for a bad range, a starting
    value outside it or a negative or non-finite learning rate: presets set these.

    The raw value is ``logit((value - low) / (high - low))``: Adam's steps on it move the
    value by at most about ``lr * (high - low) / 4`` each, least near the bounds.
    """

    name: str
    init: float
    low: float
    high: float
    lr: float | tuple[float, ...]
    owner: str = ""
    step: int = 0
    label: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise DGPUsageError(f"a learnable parameter needs an option name, got {self.name!r}")
        where = self.key
        numbers = {k: _number(getattr(self, k)) for k in ("init", "low", "high")}
        for k, v in numbers.items():
            if v is None:
                raise DGPUsageError(f"{where}: {k} must be a finite number, got {getattr(self, k)!r}")
            object.__setattr__(self, k, v)
        if not self.low < self.high:
            raise DGPUsageError(f"{where}: the range must have low < high, got low {self.low:g} and high {self.high:g}")
        if not self.low < self.init < self.high:
            raise DGPUsageError(f"{where}: init {self.init:g} must be strictly inside its range "
                                f"{self.low:g} to {self.high:g}")
        lr = self.lr
        rates = list(lr) if isinstance(lr, (list, tuple)) else [lr]
        checked = [_number(r) for r in rates]
        if not rates or any(r is None or r < 0 for r in checked):
            raise DGPUsageError(f"{where}: lr must be a finite number >= 0 or a list of them (one per stage), got {lr!r}")
        object.__setattr__(self, "lr", tuple(checked) if isinstance(lr, (list, tuple)) else checked[0])

    @property
    def key(self) -> str:
        """``owner.name`` (``"blur.sigma"``), the label in place of the owner when set."""
        owner = self.label or self.owner
        return f"{owner}.{self.name}" if owner else self.name

    # -- the parameterisation ---------------------------------------------------------

    @property
    def raw_init(self) -> float:
        """The raw value of :attr:`init`."""
        return float(self.to_raw(self.init))

    def to_raw(self, value: float | torch.Tensor) -> torch.Tensor:
        """The unconstrained raw value of ``value`` (the inverse of :meth:`from_raw`).

        Values at or beyond a bound map to a large finite raw value, never an infinite one.
        """
        value = torch.as_tensor(value, dtype=torch.float64 if not isinstance(value, torch.Tensor) else None)
        fraction = ((value - self.low) / (self.high - self.low)).clamp(_EDGE, 1 - _EDGE)
        return torch.logit(fraction)

    def from_raw(self, raw: torch.Tensor) -> torch.Tensor:
        """``low + (high - low) * sigmoid(raw)``: differentiable, always in ``[low, high]``.

        A NaN raw value (a diverged step) gives :attr:`init` rather than NaN; the result is
        clamped against the rounding of ``low + (high - low) * 1``.
        """
        raw = torch.nan_to_num(torch.as_tensor(raw), nan=self.raw_init)
        return (self.low + (self.high - self.low) * torch.sigmoid(raw)).clamp(self.low, self.high)

    def lr_at(self, stage: int) -> float:
        """The learning rate in stage ``stage`` (0-based); one rate applies to every stage."""
        if isinstance(self.lr, tuple):
            return self.lr[stage] if stage < len(self.lr) else self.lr[-1]
        return float(self.lr)

    def fitted(self, value: float) -> tuple[float, str | None]:
        """A fitted value as it is reported: clamped to the range, never NaN, with a note
        when it is not a plain interior value (``None`` otherwise).

        >>> s = Learnable("sigma", init=2.0, low=0.3, high=4.0, lr=0.02, owner="blur")
        >>> s.fitted(1.5)
        (1.5, None)
        >>> s.fitted(0.3)[1]
        'blur.sigma ended at its lower bound 0.3 (range 0.3 to 4): the true value may lie below it, or the generator absorbed the degradation'
        """
        value = float(value)
        span = f"(range {self.low:g} to {self.high:g})"
        if not math.isfinite(value):
            return self.init, f"{self.key} was not finite; reported its starting value {self.init:g} {span}"
        if value < self.low or value > self.high:
            clamped = min(max(value, self.low), self.high)
            return clamped, f"{self.key} left its range ({value:g}); clamped to {clamped:g} {span}"
        tol = BOUND_TOLERANCE * (self.high - self.low)
        if value <= self.low + tol:
            return value, (f"{self.key} ended at its lower bound {self.low:g} {span}: the true value may lie below "
                           "it, or the generator absorbed the degradation")
        if value >= self.high - tol:
            return value, f"{self.key} ended at its upper bound {self.high:g} {span}: the true value may lie above it"
        return value, None

    # -- presets ----------------------------------------------------------------------

    def override(self, table: Mapping[str, Any] | None, where: str = "") -> "Learnable":
        """This parameter with a preset's ``init``, ``low``, ``high`` and ``lr`` applied.

        ``where`` prefixes error messages (``"preset deblurring.toml: "``). A starting
        value outside the merged range is an error, not moved silently.
        """
        if not table:
            return self
        unknown = sorted(set(table) - set(OVERRIDE_KEYS))
        if unknown:
            raise DGPUsageError(f"{where}[learnable.{self.owner}.{self.name}]: unknown keys {unknown}; "
                                f"expected some of {list(OVERRIDE_KEYS)}")
        try:
            return dataclasses.replace(self, **dict(table))
        except DGPUsageError as exc:
            raise DGPUsageError(f"{where}{exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """``key``, ``init``, ``low``, ``high``, ``lr`` (a list for per-stage rates): JSON-able."""
        return {"key": self.key, "init": self.init, "low": self.low, "high": self.high,
                "lr": list(self.lr) if isinstance(self.lr, tuple) else self.lr}


# --------------------------------------------------------------------------- presets
def parse_overrides(data: Any, source: str, n_stages: int | None = None) -> dict[str, dict[str, Any]]:
    """A preset's ``[learnable]`` table as ``{"blur.sigma": {"init": ..., ...}}``, validated.

    The table is ``[learnable.NAME.OPTION]`` with some of ``init``, ``low``, ``high`` (finite
    numbers) and ``lr`` (a number >= 0, or a list of ``n_stages`` of them). ``NAME`` must be
    a registered degradation and ``OPTION`` one of its options that can be ``auto``. Whether
    ``init`` lies inside the range is checked against the plugin's defaults when the
    restoration starts (:func:`learnable_specs`), where the merged values are known.

    >>> parse_overrides({"blur": {"sigma": {"init": 1.0, "lr": [0.05, 0.0]}}}, "mine.toml", 2)
    {'blur.sigma': {'init': 1.0, 'lr': [0.05, 0.0]}}
    """
    where = f"preset {source}: "
    if not isinstance(data, Mapping):
        raise DGPUsageError(f"{where}[learnable] must be a table of [learnable.NAME.OPTION] tables")
    result: dict[str, dict[str, Any]] = {}
    for name, options in data.items():
        if not isinstance(options, Mapping) or not all(isinstance(t, Mapping) for t in options.values()):
            raise DGPUsageError(f"{where}[learnable.{name}] must hold one [learnable.{name}.OPTION] table per option")
        learnable = _learnable_options(name, where)
        for option, table in options.items():
            label = f"{where}[learnable.{name}.{option}]"
            if learnable is not None and option not in learnable:
                can = ", ".join(learnable) or "none"
                raise DGPUsageError(f"{label}: {name}'s option {option!r} cannot be fitted "
                                    f"(options that can be auto: {can})")
            unknown = sorted(set(table) - set(OVERRIDE_KEYS))
            if unknown:
                raise DGPUsageError(f"{label}: unknown keys {unknown}; expected some of {list(OVERRIDE_KEYS)}")
            for key in ("init", "low", "high"):
                if key in table and _number(table[key]) is None:
                    raise DGPUsageError(f"{label}: {key} must be a finite number, got {table[key]!r}")
            if "lr" in table:
                _check_lr(table["lr"], label, n_stages)
            result[f"{name}.{option}"] = dict(table)
    return result


def _check_lr(lr: Any, label: str, n_stages: int | None) -> None:
    rates = lr if isinstance(lr, list) else [lr]
    if not rates or any(_number(r) is None or r < 0 for r in rates):
        raise DGPUsageError(f"{label}: lr must be a finite number >= 0 or a list of them, got {lr!r}")
    if isinstance(lr, list) and n_stages is not None and len(lr) != n_stages:
        raise DGPUsageError(f"{label}: lr has {len(lr)} entries but the schedule has {n_stages} stages")


def _learnable_options(name: str, where: str) -> list[str] | None:
    """The options of the registered degradation ``name`` that can be ``auto`` (``None``
    when its factory declares no option schema: nothing to check against)."""
    from dgp_toolkit.registry import get_registry

    try:
        factory = get_registry().factory("degradation", name)
    except DGPUsageError as exc:
        raise DGPUsageError(f"{where}[learnable.{name}]: {exc}") from None
    options = getattr(factory, "OPTIONS", None)
    if not isinstance(options, Mapping):
        return None
    return [k for k, o in options.items() if getattr(o, "learnable", None) is not None]


# --------------------------------------------------------------------------- the engine's side
def _steps(degradation: Any) -> list[Any]:
    from dgp_toolkit.plugins.degradations.compose import Compose

    return list(degradation.steps) if isinstance(degradation, Compose) else [degradation]


def learnable_specs(degradation: Any, preset: Any = None) -> list[Learnable]:
    """Every parameter to fit, in step order: each step's ``learnable_parameters()`` with
    ``step`` and ``key`` set and the preset's ``[learnable]`` overrides applied.

    ``degradation`` is a Degradation or a Compose; ``preset`` a
    :class:`~dgp_toolkit.presets.Preset` (its ``learnable`` table) or ``None``. An
    override for a degradation that fits nothing here (``blur:sigma=2`` with a preset
    that sets ``blur.sigma``) is not used. Each merged parameter is checked by its
    degradation (``check_learnable``: e.g. blur's kernel must cover the range), so a bad
    override is a :class:`DGPUsageError` naming the preset, before any image.

    >>> from dgp_toolkit.plugins.degradations.blur import Blur
    >>> [s.key for s in learnable_specs(Blur(sigma="auto"))], learnable_specs(Blur(sigma=2))
    (['blur.sigma'], [])
    """
    found = []
    for index, step in enumerate(_steps(degradation)):
        declared = getattr(step, "learnable_parameters", None)
        for name, spec in (declared() if callable(declared) else {}).items():
            found.append((index, step, name, spec))
    if not found:
        return []
    owners = [getattr(step, "name", "") for step in _steps(degradation)]
    overrides = dict(getattr(preset, "learnable", None) or {})
    where = f"preset {getattr(preset, 'source', None) or getattr(preset, 'name', '')}: " if preset is not None else ""
    specs = []
    for index, step, name, spec in found:
        owner = owners[index] or spec.owner
        label = owner if owners.count(owner) == 1 else f"{owner}@{index + 1}"
        spec = dataclasses.replace(spec, name=name, owner=owner, step=index, label="" if label == owner else label)
        spec = spec.override(overrides.get(f"{owner}.{name}"), where)
        check = getattr(step, "check_learnable", None)
        if callable(check):
            try:
                check(spec)
            except DGPUsageError as exc:
                raise DGPUsageError(f"{where}{exc}") from None
        specs.append(spec)
    return specs


def starting_key(specs: Sequence[Learnable]) -> tuple[tuple[str, float], ...]:
    """What latent selection's scores depend on besides the degradation's spec: each
    parameter's key and starting value (part of the batched engine's shared-candidate key).

    >>> starting_key([Learnable("sigma", 2.0, 0.3, 4.0, 0.02, owner="blur")])
    (('blur.sigma', 2.0),)
    """
    return tuple((s.key, s.init) for s in specs)


def starting_values(specs: Sequence[Learnable], batch: int, *, device: Any = None,
                    dtype: torch.dtype = torch.float32) -> dict[Learnable, torch.Tensor]:
    """Each parameter's starting value for ``batch`` images: ``{spec: (batch,) tensor}``."""
    return {s: torch.full((int(batch),), s.init, device=device, dtype=dtype) for s in specs}


def apply_values(degradation: Any, x: torch.Tensor, values: Mapping[Learnable, torch.Tensor] | None = None) -> torch.Tensor:
    """``degradation(x)`` with fitted values: each step gets its own as keyword tensors.

    ``values`` maps each :class:`Learnable` (from :func:`learnable_specs`) to a ``(B,)``
    tensor, one value per image of ``x`` (``(B, 3, H, W)``). Empty or ``None``: exactly
    ``degradation(x)``. A Compose runs its steps in order as its ``forward`` does, step
    ``k`` called as ``step(x, **its values)``.
    """
    if not values:
        return degradation(x)
    steps = _steps(degradation)
    per_step: dict[int, dict[str, torch.Tensor]] = {}
    for spec, value in values.items():
        if not 0 <= spec.step < len(steps):
            raise ValueError(f"{spec.key}: step {spec.step} is not in this degradation ({len(steps)} steps)")
        per_step.setdefault(spec.step, {})[spec.name] = value
    if len(steps) == 1 and steps[0] is degradation:
        return degradation(x, **per_step[0])
    from dgp_toolkit.plugins.degradations.base import check_images

    x = check_images(x, "compose")
    for index, step in enumerate(steps):
        x = step(x, **per_step[index]) if index in per_step else step(x)
    return x


class FittedValues(torch.nn.Module):
    """The raw values of every fitted parameter for ``batch`` images (one ``(B,)`` tensor
    per parameter, each image's entry its own): the engine optimizes these.

    ``FittedValues([], B)`` holds nothing and :meth:`apply` is then ``degradation(x)``.
    """

    def __init__(self, specs: Sequence[Learnable], batch: int, *, device: Any = None) -> None:
        super().__init__()
        self.specs = list(specs)
        self.batch = int(batch)
        self.raw = torch.nn.ParameterList(
            torch.nn.Parameter(torch.full((self.batch,), s.raw_init, device=device)) for s in self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def values(self) -> dict[Learnable, torch.Tensor]:
        """``{spec: (B,) values}``, in range, differentiable with respect to the raw values."""
        return {s: s.from_raw(r) for s, r in zip(self.specs, self.raw)}

    def apply(self, degradation: Any, x: torch.Tensor) -> torch.Tensor:
        """phi of ``x`` (``(B, 3, H, W)``) with each image's current values."""
        return apply_values(degradation, x, self.values())

    def param_groups(self, stage: int = 0) -> list[dict[str, Any]]:
        """One optimizer parameter group per parameter, at its learning rate in ``stage``
        (``base_lr`` too, which the engine's warm-up scales from)."""
        return [{"params": [r], "lr": s.lr_at(stage), "base_lr": s.lr_at(stage)}
                for s, r in zip(self.specs, self.raw)]

    def set_stage(self, optimizer: torch.optim.Optimizer, stage: int) -> None:
        """Set the learning rates of the groups :meth:`param_groups` made for ``stage``
        (they must be the optimizer's first groups, in order); a rate of 0 also stops the
        parameter's gradient."""
        for s, r, group in zip(self.specs, self.raw, optimizer.param_groups):
            group["lr"] = group["base_lr"] = s.lr_at(stage)
            r.requires_grad_(s.lr_at(stage) > 0)

    def snapshot(self) -> list[dict[str, float]]:
        """Per image ``{key: value}`` now (as reported: :meth:`Learnable.fitted`)."""
        return [self.report(i)[0] for i in range(self.batch)]

    def report(self, index: int) -> tuple[dict[str, float], list[str]]:
        """Image ``index``'s fitted values ``{key: value}`` and the notes about them."""
        values: dict[str, float] = {}
        notes: list[str] = []
        with torch.no_grad():
            for spec, value in self.values().items():
                fitted, note = spec.fitted(float(value[index]))
                values[spec.key] = fitted
                if note:
                    notes.append(note)
        return values, notes
