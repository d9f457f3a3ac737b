"""Optimization schedules: the stages of a DGP run (DGP-METHOD.md section 4).

A schedule is a list of :class:`Stage`; each stage runs ``iterations`` Adam steps in
which generator stage ``i`` (0 = the first linear layer, then each block) trains with
learning rate ``g_lr * lr_ratio**i`` when ``i < ft_num`` and is frozen otherwise; the
latent trains with ``z_lr``; the losses have the stage's weights; the discriminator
loss uses the last ``ftr_num`` features.

==============  =================================================================
``blockwise``   the paper's progressive schedule, as the preset's table says
``latent-only`` classic GAN inversion: the generator stays frozen, only z moves
``full``        every generator stage trains from the first stage on
==============  =================================================================

Schedules round-trip through plain dicts (JSON/TOML): ``Schedule.from_dict(s.to_dict())``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from dgp_toolkit.errors import DGPUsageError
from dgp_toolkit.hookspecs import hookimpl

PER_STAGE = ("iterations", "ft_num", "lr_ratio", "g_lr", "z_lr", "ftr_num", "use_in")


@dataclasses.dataclass
class Stage:
    iterations: int
    ft_num: int
    g_lr: float
    z_lr: float
    lr_ratio: float = 1.0
    ftr_num: int = 3
    use_in: bool = False
    weights: dict[str, float] = dataclasses.field(default_factory=dict)

    def group_lr(self, index: int) -> float:
        """Learning rate of generator stage ``index`` in this stage (0 when frozen)."""
        return self.g_lr * self.lr_ratio**index if index < self.ft_num else 0.0


@dataclasses.dataclass
class Schedule:
    """An ordered list of stages plus run-wide options."""

    name: str
    stages: list[Stage]
    warmup: int = 0
    early_stop_mse: float = 0.0
    early_stop_d: float = 0.0

    @property
    def total_iterations(self) -> int:
        return sum(s.iterations for s in self.stages)

    def lr_factor(self, step: int) -> float:
        """The factor on every learning rate at ``step`` (0-based): a linear warm-up from
        ``1 / warmup`` to 1 over the first ``warmup`` steps, then 1.

        >>> Schedule("s", [], warmup=4).lr_factor(0), Schedule("s", [], warmup=4).lr_factor(9)
        (0.25, 1.0)
        """
        return (step + 1) / self.warmup if self.warmup and step < self.warmup else 1.0

    def scaled(self, factor: float) -> "Schedule":
        """The same schedule with every stage's iterations multiplied by ``factor``
        (at least one step per stage)."""
        try:
            positive = finite_number(factor) > 0
        except ValueError:
            positive = False
        if not positive:
            raise DGPUsageError(f"--iterations-scale must be a finite number > 0, got {factor}")
        stages = [dataclasses.replace(s, iterations=max(1, round(s.iterations * factor)))
                  for s in self.stages]
        return dataclasses.replace(self, stages=stages)

    def to_dict(self) -> dict[str, Any]:
        """The table form used in preset files: one list per field, one entry per stage."""
        out: dict[str, Any] = {"name": self.name}
        for key in PER_STAGE:
            out[key] = [getattr(s, key) for s in self.stages]
        names = sorted({k for s in self.stages for k in s.weights})
        out["weights"] = {k: [s.weights.get(k, 0.0) for s in self.stages] for k in names}
        out.update(warmup=self.warmup, early_stop_mse=self.early_stop_mse, early_stop_d=self.early_stop_d)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Schedule":
        data = dict(data)
        name = str(data.pop("name", "blockwise"))
        return build_schedule(name, **data)


def whole_number(value: Any) -> int:
    """A whole number: an int, or a float without a fraction (TOML's ``200.0``); not a bool."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value):
        raise ValueError(value)
    return int(value)


def finite_number(value: Any) -> float:
    """A finite number; not a bool, not a string."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(value)
    return float(value)


def true_or_false(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(value)
    return value


_KIND_NAMES = {whole_number: "whole-number", finite_number: "finite number", true_or_false: "true/false"}


def _stage_table(iterations, ft_num, g_lr, z_lr, lr_ratio=None, ftr_num=None, use_in=None,
                 weights=None) -> list[Stage]:
    if not isinstance(iterations, (list, tuple)) or not iterations:
        raise DGPUsageError("a schedule needs 'iterations': a non-empty list, one entry per stage")
    n = len(iterations)

    def per_stage(key, value, default, kind):
        if value is None:
            value = default
        if not isinstance(value, (list, tuple)):
            value = [value] * n
        if len(value) != n:
            raise DGPUsageError(f"schedule field '{key}' has {len(value)} entries, but 'iterations' has {n} "
                                "(one entry per stage)")
        try:
            return [kind(v) for v in value]
        except (TypeError, ValueError):
            raise DGPUsageError(f"schedule field '{key}' must hold {_KIND_NAMES[kind]} values, "
                                f"got {value!r}") from None

    def at_least(key, values, low):
        if any(v < low for v in values):
            raise DGPUsageError(f"schedule field '{key}' must hold values >= {low:g}, got {values!r}")
        return values

    its = per_stage("iterations", iterations, None, whole_number)
    if any(i < 1 for i in its):
        raise DGPUsageError(f"schedule field 'iterations' must hold values >= 1 (every stage needs at least "
                            f"1 iteration), got {its!r}")
    ft = at_least("ft_num", per_stage("ft_num", ft_num, None, whole_number), 0)
    glr = at_least("g_lr", per_stage("g_lr", g_lr, None, finite_number), 0)
    zlr = at_least("z_lr", per_stage("z_lr", z_lr, None, finite_number), 0)
    ratio = at_least("lr_ratio", per_stage("lr_ratio", lr_ratio, 1.0, finite_number), 0)
    ftr = at_least("ftr_num", per_stage("ftr_num", ftr_num, 3, whole_number), 0)
    uin = per_stage("use_in", use_in, False, true_or_false)
    weights = dict(weights or {})
    w_lists = {k: at_least(f"weights.{k}", per_stage(f"weights.{k}", v, None, finite_number), 0)
               for k, v in weights.items()}
    return [Stage(iterations=its[s], ft_num=ft[s], g_lr=glr[s], z_lr=zlr[s], lr_ratio=ratio[s],
                  ftr_num=ftr[s], use_in=uin[s], weights={k: w[s] for k, w in w_lists.items()})
            for s in range(n)]


def _options(kw: dict[str, Any]) -> dict[str, Any]:
    out = {"warmup": 0, "early_stop_mse": 0.0, "early_stop_d": 0.0}
    for key in list(out):
        if key not in kw:
            continue
        value = kw.pop(key)
        kind = whole_number if key == "warmup" else finite_number
        try:
            out[key] = kind(value)
        except ValueError:
            raise DGPUsageError(f"schedule field '{key}' must be a {_KIND_NAMES[kind]}, got {value!r}") from None
        if out[key] < 0:
            raise DGPUsageError(f"schedule field '{key}' must be >= 0, got {value!r}")
    return out


def _reject_unknown(name: str, kw: dict[str, Any]) -> None:
    if kw:
        allowed = sorted(PER_STAGE + ("weights", "warmup", "early_stop_mse", "early_stop_d"))
        raise DGPUsageError(f"schedule '{name}': unknown fields {sorted(kw)}; allowed: {', '.join(allowed)}")


def blockwise(**table: Any) -> Schedule:
    """The paper's progressive block-wise schedule, exactly as the table gives it."""
    opts = _options(table)
    fields = {k: table.pop(k) for k in list(table) if k in PER_STAGE + ("weights",)}
    _reject_unknown("blockwise", table)
    return Schedule("blockwise", _stage_table(**fields), **opts)


def latent_only(**table: Any) -> Schedule:
    """Classic GAN inversion: the same stages and losses, the generator frozen.

    The latent learning rate of every stage is the table's first (largest) one: the later,
    tiny latent rates of DGP presets are meant for stages where the generator moves,
    and would leave a latent-only baseline needlessly weak.
    """
    opts = _options(table)
    fields = {k: table.pop(k) for k in list(table) if k in PER_STAGE + ("weights",)}
    _reject_unknown("latent-only", table)
    stages = _stage_table(**fields)
    z_lr = stages[0].z_lr
    stages = [dataclasses.replace(s, ft_num=0, g_lr=0.0, z_lr=z_lr) for s in stages]
    return Schedule("latent-only", stages, **opts)


def full(**table: Any) -> Schedule:
    """Every generator stage trains from the first stage on (no progressive opening)."""
    opts = _options(table)
    fields = {k: table.pop(k) for k in list(table) if k in PER_STAGE + ("weights",)}
    _reject_unknown("full", table)
    stages = [dataclasses.replace(s, ft_num=10**6) for s in _stage_table(**fields)]
    return Schedule("full", stages, **opts)


def build_schedule(name: str, **table: Any) -> Schedule:
    """Build a registered schedule by name from a stage table (the preset's form)."""
    from dgp_toolkit.registry import get_registry

    return get_registry().create("schedule", name, **table)


@hookimpl
def register_schedules(register) -> None:
    """Register ``blockwise``, ``latent-only`` and ``full``."""
    register("blockwise", blockwise)
    register("latent-only", latent_only)
    register("full", full)
