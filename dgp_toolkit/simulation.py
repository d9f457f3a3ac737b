"""The simulated observation of ``restore --simulate``, with its own spec when asked.

``--simulate`` degrades a clean input and fits the result. By default the fit's own
degradation makes the observation. A fit that does not know the truth cannot: with
``--degrade blur:sigma=auto`` the blur to simulate is unknown. ``simulate_with`` (CLI:
``--simulate-with SPEC``, repeatable like ``--degrade``) names the degradation that makes
the observation, while ``degrade`` stays what the fit assumes::

    restore(photo, ["blur:sigma=auto"], simulate_with=["blur:sigma=2"])   # blind deblurring, scored
    restore(photo, ["blur:sigma=1"], simulate_with=["blur:sigma=2"])      # a fit with the wrong sigma

The simulation must make an observation the fit can read (the same observation size at
the prior's resolution) and must not itself have ``auto`` options.

>>> sim = resolve_simulation(parse_degradation("blur:sigma=auto"), ["blur:sigma=2"], size=32)
>>> sim.specs, sim.note(7)
(['blur:sigma=2.0,size=9'], 'simulated the observation: degrade() of the clean input with blur:sigma=2.0,size=9 (the fit assumes blur:sigma=auto,size=17), seed 7')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from dgp_toolkit.errors import DGPUsageError
from dgp_toolkit.learnable import learnable_specs

__all__ = ["Simulation", "resolve_simulation"]


def _specs(degradation: Any) -> list[str]:
    spec = degradation.spec
    return list(spec) if isinstance(spec, list) else [spec]


@dataclass
class Simulation:
    """What makes the simulated observation: ``degradation`` (a Degradation or Compose),
    its ``specs`` (for the result's config) and the ``fit`` specs when they differ."""

    degradation: Any
    specs: list[str]
    fit_specs: list[str] | None = None  # None: the fit's own degradation simulates

    def degrade(self, clean: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """The simulated observation of ``clean`` (``(1, 3, R, R)`` in [-1, 1])."""
        return self.degradation.degrade(clean, generator=generator)

    def note(self, seed: int) -> str:
        """The restoration's note about the simulation (the wording of ``--simulate`` when
        the fit's own degradation simulates)."""
        if self.fit_specs is None:
            return f"simulated the observation: degrade() of the clean input, seed {seed}"
        fit = " + ".join(self.fit_specs) or "identity"
        return (f"simulated the observation: degrade() of the clean input with {' + '.join(self.specs)} "
                f"(the fit assumes {fit}), seed {seed}")


def resolve_simulation(degradation: Any, simulate_with: Any = None, *, size: int | None = None,
                       device: Any = None) -> Simulation:
    """The :class:`Simulation` for a fit with ``degradation`` (once per batch, before any image).

    Args:
        degradation: the fit's Degradation or Compose (``restore``'s ``degrade``, built).
        simulate_with: ``None`` (the fit's degradation simulates), or spec strings and/or
            Degradation objects as ``restore``'s ``degrade`` takes them, applied in order.
        size: the prior's resolution: the simulation's observation size is checked against
            the fit's there, and a blank image is degraded once so that an option that
            cannot work at that size is a usage error now (as ``prepare_restore`` probes).
        device: where the simulation's degradation is moved (the prior's device).

    Raises :class:`DGPUsageError` (one line) when the fit has an ``auto`` option and no
    ``simulate_with`` is given, when ``simulate_with`` is empty, has an ``auto`` option
    itself, or makes an observation of another size than the fit reads.
    """
    from dgp_toolkit.plugins.degradations.compose import Compose
    from dgp_toolkit.restoration import _probe, _steps_of

    if simulate_with is None:
        specs = learnable_specs(degradation)
        if specs:
            steps = degradation.steps if isinstance(degradation, Compose) else [degradation]
            for step in steps:  # the degradation's own message names the option and an example
                check = getattr(step, "check_simulable", None)
                if callable(check):
                    check()
            keys = ", ".join(f"{s.key}=auto" for s in specs)
            raise DGPUsageError(f"cannot simulate an observation with {keys} (the value is unknown); give the "
                                "simulation its own spec with the true value (--simulate-with SPEC)")
        return Simulation(degradation, _specs(degradation))
    if isinstance(simulate_with, (list, tuple)) and not simulate_with:
        raise DGPUsageError("simulate_with is empty: give the degradation spec(s) that make the observation, "
                            "e.g. blur:sigma=2, or leave it out to simulate with the fit's own")
    if isinstance(simulate_with, str):
        simulate_with = [simulate_with]
    steps = _steps_of(simulate_with)
    simulation = steps[0] if len(steps) == 1 else Compose(steps)
    fitted = learnable_specs(simulation)
    if fitted:
        raise DGPUsageError(f"the simulation cannot fit anything: {', '.join(s.key for s in fitted)} is auto in "
                            f"--simulate-with {' '.join(_specs(simulation))}; give the true value")
    fit_specs = _specs(degradation)
    if size is not None:
        wanted, made = degradation.observation_size(size), simulation.observation_size(size)
        if tuple(wanted) != tuple(made):
            raise DGPUsageError(
                f"--simulate-with {' '.join(_specs(simulation))} makes a {made[1]}x{made[0]} observation, but the fit "
                f"({' + '.join(fit_specs) or 'identity'}) reads {wanted[1]}x{wanted[0]} at the prior's {size} px")
    if device is not None:
        simulation.to(device)
    if size is not None:
        _probe(simulation, size, device if device is not None else "cpu")
    return Simulation(simulation, _specs(simulation), fit_specs)
