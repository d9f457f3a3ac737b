"""Presets: named latent-selection + schedule + loss configurations, one TOML file per task
and prior family (``plugins/presets/<family>/<task>.toml``).

A preset file::

    task = "super-resolution"
    description = "..."
    [select]
    select_num = 500          # latent candidates scored before optimizing
    sample_std = 0.3          # their standard deviation
    [options]
    update_embed = false      # tune the class embedding with the first stage
    [schedule]
    name = "blockwise"        # any registered schedule
    iterations = [200, 200, 200, 200, 200]
    ft_num = [2, 3, 4, 4, 4]  # generator stages that train in each stage
    ...                       # lr_ratio, g_lr, z_lr, ftr_num, use_in (one entry per stage)
    [schedule.weights]        # loss name -> weight per stage (any registered loss)
    discriminator = [1, 1, 1, 1, 1]
    mse = [1, 1, 1, 1, 1]
    nll = [0.02, 0.02, 0.02, 0.02, 0.02]
    [learnable.blur.sigma]    # optional: a fitted parameter's (blur:sigma=auto) defaults
    init = 1.5                # starting value
    low = 0.3                 # valid range
    high = 4.0
    lr = [0.05, 0.05, 0, 0, 0]  # one rate, or one per stage (0: not fitted in that stage)
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from dgp_toolkit.errors import DGPUsageError
from dgp_toolkit.paths import check_input_file

TASKS = ("colorization", "inpainting", "super-resolution", "deblurring", "denoising",
         "reconstruction", "hybrid", "manipulation")



@dataclasses.dataclass
class Preset:
    name: str
    task: str
    family: str
    description: str
    select_num: int
    sample_std: float
    update_embed: bool
    schedule: Any  # dgp_toolkit.plugins.schedules.Schedule
    source: str
    #: Restorations averaged into the result, each from its own latent selection (seeds
    #: ``seed``, ``seed + 1``, ...): their mean estimates the posterior mean, which scores
    #: higher PSNR than any one sample where the prior is unsure (``runs`` x the time).
    runs: int = 1
    #: Overrides of fitted parameters' defaults (``blur:sigma=auto``): ``{"blur.sigma":
    #: {"init", "low", "high", "lr"}}`` (some of them), from ``[learnable.NAME.OPTION]``
    #: tables; applied by :func:`dgp_toolkit.learnable.learnable_specs`.
    learnable: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "task": self.task, "family": self.family,
                "description": self.description, "source": self.source,
                "select": {"select_num": self.select_num, "sample_std": self.sample_std},
                "options": {"update_embed": self.update_embed, **({"runs": self.runs} if self.runs != 1 else {})},
                "schedule": self.schedule.to_dict(),
                **({"learnable": _learnable_tables(self.learnable)} if self.learnable else {})}

    def replace(self, **changes: Any) -> "Preset":
        return dataclasses.replace(self, **changes)


def _learnable_tables(learnable: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{"blur.sigma": {...}}`` as the nested tables of a preset file (``[learnable.blur.sigma]``)."""
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    for key, table in learnable.items():
        name, option = key.split(".", 1)
        tables.setdefault(name, {})[option] = dict(table)
    return tables


def family_of(prior: Any) -> str:
    """The preset family for a prior: its own ``preset_family`` or one chosen by resolution."""
    family = getattr(prior, "preset_family", None)
    if family:
        return str(family)
    return "biggan-32" if int(getattr(prior, "resolution", 32)) <= 32 else "biggan-imagenet"


def _preset_root():
    return resources.files("dgp_toolkit.plugins") / "presets"


def families() -> list[str]:
    return sorted(p.name for p in _preset_root().iterdir() if p.is_dir() and not p.name.startswith("_"))


def list_presets() -> list[dict[str, Any]]:
    """Every built-in preset: family, name, task, stages, total iterations, description."""
    rows = []
    for family in families():
        for path in sorted((_preset_root() / family).iterdir(), key=lambda p: p.name):
            if path.name.endswith(".toml"):
                preset = _parse(tomllib.loads(path.read_text()), path.name[:-5], family, f"{family}/{path.name}")
                rows.append({"family": family, "name": preset.name, "task": preset.task,
                             "stages": len(preset.schedule.stages),
                             "iterations": preset.schedule.total_iterations,
                             "select_num": preset.select_num, "runs": preset.runs,
                             "description": preset.description})
    return rows


def check_runs(value: Any, where: str = "") -> int:
    """``value`` if it is a whole number >= 1 (a preset's ``runs``, ``restore(runs=)``);
    else a :class:`DGPUsageError` prefixed with ``where``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DGPUsageError(f"{where}runs must be a whole number >= 1, got {value!r}")
    return value


def _parse(data: dict[str, Any], name: str, family: str, source: str) -> Preset:
    from dgp_toolkit.plugins.schedules import Schedule

    data = dict(data)
    known = {"task", "description", "select", "options", "schedule", "learnable"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise DGPUsageError(f"preset {source}: unknown sections {unknown}; expected {sorted(known)}")
    select = dict(data.get("select", {}))
    options = dict(data.get("options", {}))
    if "schedule" not in data:
        raise DGPUsageError(f"preset {source}: missing [schedule] section")
    from dgp_toolkit.plugins.schedules import finite_number, true_or_false, whole_number

    def field(table, key, default, kind, what):
        value = table.pop(key, default)
        try:
            return kind(value)
        except ValueError:
            raise DGPUsageError(f"preset {source}: {key} must be {what}, got {value!r}") from None

    select_num = field(select, "select_num", 500, whole_number, "a whole number >= 1")
    sample_std = field(select, "sample_std", 0.3, finite_number, "a finite number > 0")
    update_embed = field(options, "update_embed", False, true_or_false, "true or false")
    runs = check_runs(options.pop("runs", 1), f"preset {source}: ")
    if select or options:
        raise DGPUsageError(f"preset {source}: unknown keys {sorted(select) + sorted(options)}")
    if select_num < 1:
        raise DGPUsageError(f"preset {source}: select_num must be a whole number >= 1, got {select_num}")
    if not sample_std > 0:
        raise DGPUsageError(f"preset {source}: sample_std must be a finite number > 0, got {sample_std}")
    try:
        schedule = Schedule.from_dict(data["schedule"])
        from dgp_toolkit.registry import get_registry

        for loss in sorted({k for stage in schedule.stages for k in stage.weights}):
            get_registry().entry("loss", loss)  # an unknown loss fails here, not per input at run time
    except DGPUsageError as exc:
        raise DGPUsageError(f"preset {source}: {exc}") from None
    learnable = {}
    if "learnable" in data:
        from dgp_toolkit.learnable import parse_overrides

        learnable = parse_overrides(data["learnable"], source, len(schedule.stages))
    return Preset(name=name, task=str(data.get("task", name)), family=family,
                  description=str(data.get("description", "")), select_num=select_num,
                  sample_std=sample_std, update_embed=update_embed, schedule=schedule, source=source, runs=runs,
                  learnable=learnable)


def preset_from_dict(data: dict[str, Any], name: str, *, family: str = "biggan-32", source: str | None = None) -> Preset:
    """A :class:`Preset` from the tables of a preset file (what ``tomllib`` reads from one),
    validated as :func:`load_preset` validates a file; ``source`` names it in error messages.

    >>> p = preset_from_dict({"select": {"select_num": 8}, "schedule": {"iterations": [5], "ft_num": [1],
    ...     "lr_ratio": [1.0], "g_lr": [1e-4], "z_lr": [1e-3], "ftr_num": [5], "use_in": [False],
    ...     "weights": {"mse": [1.0]}}}, "mine")
    >>> (p.name, p.select_num, p.schedule.total_iterations)
    ('mine', 8, 5)
    """
    return _parse(data, name, family, source or repr(name))


def load_preset(name_or_path: str | Path, prior: Any = None, *, family: str | None = None) -> Preset:
    """A built-in preset by task name (for the prior's family) or a TOML file by path."""
    family = family or (family_of(prior) if prior is not None else "biggan-32")
    text = str(name_or_path)
    path = Path(text)
    if text.endswith(".toml") or path.is_file():
        if not path.exists():
            raise DGPUsageError(f"preset file not found: {path}")
        check_input_file(path, "a preset file")
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise DGPUsageError(f"preset file {path} is not valid TOML: {exc}") from None
        return _parse(data, path.stem, family, str(path))
    file = _builtin_file(text, family)
    return _parse(tomllib.loads(file.read_text()), text, family, f"{family}/{text}.toml")


def _builtin_file(name: str, family: str):
    if family not in families():
        raise DGPUsageError(f"no presets for prior family {family!r}; families: {', '.join(families())}")
    file = _preset_root() / family / f"{name}.toml"
    if not file.is_file():
        names = sorted(p.name[:-5] for p in (_preset_root() / family).iterdir() if p.name.endswith(".toml"))
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise DGPUsageError(f"unknown preset '{name}'{hint} (choices for {family}: {', '.join(names)}, or a .toml file)")
    return file


def preset_text(name: str, family: str = "biggan-32") -> str:
    """The TOML text of a built-in preset, comments included: the start of one's own
    (``dgp-tool presets --show inpainting > mine.toml``, edit, ``--preset mine.toml``)."""
    return _builtin_file(name, family).read_text()


def task_for_degradations(degradations: Iterable[Any]) -> str:
    """The task a list of degradations (objects, or registered names) calls for: one kind ->
    the task it declares (``Degradation.task``; none declared -> hybrid); ``blur`` with
    ``noise`` -> deblurring; several others -> hybrid; none -> reconstruction."""
    degradations = list(degradations)
    kinds = list(dict.fromkeys(d if isinstance(d, str) else d.name for d in degradations))
    if not kinds:
        return "reconstruction"
    if set(kinds) <= {"blur", "noise"} and "blur" in kinds:
        return "deblurring"
    if len(kinds) != 1:
        return "hybrid"
    return _declared_task(degradations[0]) or "hybrid"


def _declared_task(degradation: Any) -> str | None:
    """The task a degradation (object or registered name) declares, if any."""
    if isinstance(degradation, str):
        from dgp_toolkit.registry import get_registry

        try:
            degradation = get_registry().factory("degradation", degradation)
        except Exception:  # noqa: BLE001 - an unknown name is reported where it is built
            return None
    task = getattr(degradation, "task", None)
    return task if task in TASKS else None


def preset_for_degradations(degradations: Iterable[Any], prior: Any = None, *, family: str | None = None) -> Preset:
    """The built-in preset for these degradations (objects with ``.name``, or names)."""
    return load_preset(task_for_degradations(list(degradations)), prior, family=family)
