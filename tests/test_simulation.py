"""The simulation's own spec (``restore(..., simulate_with=...)``, ``--simulate-with``)."""

from __future__ import annotations

import pytest
import torch

from dgp_toolkit.errors import DGPUsageError
from dgp_toolkit.plugins.degradations.blur import Blur
from dgp_toolkit.plugins.degradations.compose import Compose
from dgp_toolkit.plugins.degradations.downsample import Downsample
from dgp_toolkit.plugins.degradations.noise import Noise
from dgp_toolkit.registry import parse_degradation
from dgp_toolkit.simulation import resolve_simulation


def clean():
    return torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_without_simulate_with_the_fit_simulates_as_before():
    fit = Compose([Blur(sigma=1.5), Noise()])
    sim = resolve_simulation(fit, size=32)
    assert sim.degradation is fit and sim.specs == fit.spec and sim.fit_specs is None
    assert sim.note(3) == "simulated the observation: degrade() of the clean input, seed 3"
    a = sim.degrade(clean(), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, fit.degrade(clean(), generator=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("fit", [Blur(sigma="auto"), Compose([Blur(sigma="auto"), Noise()])])
def test_a_fit_with_auto_cannot_simulate_on_its_own(fit):
    with pytest.raises(DGPUsageError) as info:
        resolve_simulation(fit, size=32)
    assert str(info.value) == ("blur: cannot simulate an observation with sigma=auto (the value is unknown); give the "
                               "simulation its own spec with the true value, e.g. --simulate-with blur:sigma=2.0,size=17")


@pytest.mark.parametrize("simulate_with", ["blur:sigma=2,size=17", ["blur:sigma=2,size=17"], Blur(sigma=2, size=17)])
def test_simulate_with_makes_the_observation_the_blind_fit_reads(simulate_with):
    fit = parse_degradation("blur:sigma=auto")
    sim = resolve_simulation(fit, simulate_with, size=32, device="cpu")
    assert sim.specs == ["blur:sigma=2.0,size=17"] and sim.fit_specs == ["blur:sigma=auto,size=17"]
    assert torch.equal(sim.degrade(clean()), Blur(sigma=2, size=17)(clean()))
    assert sim.note(0) == ("simulated the observation: degrade() of the clean input with blur:sigma=2.0,size=17 "
                           "(the fit assumes blur:sigma=auto,size=17), seed 0")


def test_a_fit_with_a_wrong_fixed_value_simulates_with_the_true_one():
    sim = resolve_simulation(Blur(sigma=1.0), ["blur:sigma=2", "noise:sigma=0.05"], size=32)
    assert sim.specs == ["blur:sigma=2.0,size=9", "noise:sigma=0.05"] and isinstance(sim.degradation, Compose)
    a = sim.degrade(clean(), generator=torch.Generator().manual_seed(1))
    b = sim.degrade(clean(), generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, Blur(sigma=2)(clean()))  # the noise is drawn, reproducibly


@pytest.mark.parametrize("simulate_with,words", [
    ([], "simulate_with is empty: give the degradation spec(s) that make the observation, e.g. blur:sigma=2, or "
         "leave it out to simulate with the fit's own"),
    ("blur:sigma=auto", "the simulation cannot fit anything: blur.sigma is auto in --simulate-with "
                        "blur:sigma=auto,size=17; give the true value"),
    ("downsample:factor=2", "--simulate-with downsample:factor=2 makes a 16x16 observation, but the fit "
                            "(blur:sigma=auto,size=17) reads 32x32 at the prior's 32 px"),
    ("blur:sigma=30", "blur: a 121x121 kernel (sigma 30) needs images larger than 60 px per side"),
    ("blurr:sigma=2", "unknown degradation 'blurr'; did you mean 'blur'?"),
    ("blur:sigma=x", "blur: option 'sigma' must be a number"),
])
def test_a_bad_simulation_is_one_usage_error(simulate_with, words):
    with pytest.raises(DGPUsageError) as info:
        resolve_simulation(Blur(sigma="auto"), simulate_with, size=32)
    assert str(info.value).startswith(words) and "\n" not in str(info.value), str(info.value)


def test_observation_sizes_that_agree_pass():
    sim = resolve_simulation(Compose([Blur(sigma="auto"), Downsample(factor=2)]),
                             ["blur:sigma=1", "downsample:factor=2"], size=32)
    assert sim.degrade(clean()).shape == (1, 3, 32, 32)
