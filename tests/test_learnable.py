"""Fitted degradation parameters (``blur:sigma=auto``): :mod:`dgp_toolkit.learnable`, the
option schema's ``auto``, preset overrides, and the engine-facing helpers."""

from __future__ import annotations

import math
import tomllib

import pytest
import torch

from dgp_toolkit.errors import DGPUsageError
from dgp_toolkit.learnable import (AUTO, FittedValues, Learnable, apply_values, learnable_specs, parse_overrides,
                                   starting_key, starting_values)
from dgp_toolkit.plugins.degradations.base import Degradation, Option
from dgp_toolkit.plugins.degradations.blur import Blur
from dgp_toolkit.plugins.degradations.compose import Compose
from dgp_toolkit.plugins.degradations.gray import Gray
from dgp_toolkit.plugins.degradations.noise import Noise
from dgp_toolkit.presets import load_preset, preset_from_dict

SIGMA = Learnable("sigma", init=2.0, low=0.3, high=4.0, lr=0.02, owner="blur")
SCHEDULE = {"iterations": [5, 5], "ft_num": [1, 1], "lr_ratio": [1.0, 1.0], "g_lr": [1e-4, 1e-4],
            "z_lr": [1e-3, 1e-3], "ftr_num": [5, 5], "use_in": [False, False], "weights": {"mse": [1.0, 1.0]}}


def images(batch=2, side=32, seed=0, dtype=torch.float32):
    return (torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
            * 2 - 1).to(dtype)


def preset(learnable=None):
    data = {"schedule": SCHEDULE}
    if learnable is not None:
        data["learnable"] = learnable
    return preset_from_dict(data, "mine", source="mine.toml")


# ----------------------------------------------------------------------------- Learnable
@pytest.mark.parametrize("changes,words", [
    ({"low": 4.0}, "low < high, got low 4 and high 4"),
    ({"init": 0.3}, "init 0.3 must be strictly inside its range 0.3 to 4"),
    ({"init": 5.0}, "init 5 must be strictly inside"),
    ({"high": float("inf")}, "high must be a finite number"),
    ({"init": True}, "init must be a finite number"),
    ({"lr": -0.1}, "lr must be a finite number >= 0"),
    ({"lr": ()}, "lr must be a finite number >= 0"),
    ({"lr": (0.1, float("nan"))}, "lr must be"),
])
def test_a_bad_range_init_or_rate_is_one_usage_error_naming_the_key(changes, words):
    import dataclasses

    with pytest.raises(DGPUsageError) as info:
        dataclasses.replace(SIGMA, **changes)
    assert str(info.value).startswith("blur.sigma: ") and words in str(info.value)
    assert "\n" not in str(info.value)


def test_key_names_the_owner_or_its_label():
    assert SIGMA.key == "blur.sigma"
    assert Learnable("sigma", 2.0, 0.3, 4.0, 0.02).key == "sigma"
    assert Learnable("sigma", 2.0, 0.3, 4.0, 0.02, owner="blur", step=2, label="blur@3").key == "blur@3.sigma"


def test_raw_round_trip_and_the_range_is_never_left():
    values = torch.tensor([0.31, 1.0, 2.0, 3.99], dtype=torch.float64)
    assert torch.allclose(SIGMA.from_raw(SIGMA.to_raw(values)), values, atol=1e-12)
    assert SIGMA.from_raw(torch.tensor(SIGMA.raw_init)).item() == pytest.approx(2.0)
    extremes = torch.tensor([-1e38, -100.0, 100.0, 1e38, float("inf"), float("-inf"), float("nan")])
    out = SIGMA.from_raw(extremes)
    assert torch.isfinite(out).all() and (out >= 0.3).all() and (out <= 4.0).all()
    assert out[-1].item() == pytest.approx(2.0)  # NaN raw: the starting value, not NaN
    # values at or beyond a bound map to finite raw values
    assert torch.isfinite(SIGMA.to_raw(torch.tensor([0.3, 4.0, -7.0, 9.0]))).all()


def test_the_parameterisation_is_differentiable_with_finite_gradients():
    raw = torch.tensor([-50.0, -1.0, 0.0, 2.0, 50.0], requires_grad=True)
    SIGMA.from_raw(raw).sum().backward()
    assert torch.isfinite(raw.grad).all() and (raw.grad[1:4] > 0).all()
    # near the middle a raw step of 1 moves sigma by about (high - low) / 4
    assert raw.grad[2].item() == pytest.approx(3.7 / 4)


def test_lr_per_stage():
    assert SIGMA.lr_at(0) == SIGMA.lr_at(5) == 0.02
    staged = SIGMA.override({"lr": [0.05, 0.0]})
    assert staged.lr == (0.05, 0.0) and [staged.lr_at(i) for i in range(3)] == [0.05, 0.0, 0.0]
    assert staged.to_dict() == {"key": "blur.sigma", "init": 2.0, "low": 0.3, "high": 4.0, "lr": [0.05, 0.0]}


@pytest.mark.parametrize("value,reported,note", [
    (1.5, 1.5, None),
    (0.3, 0.3, "blur.sigma ended at its lower bound 0.3 (range 0.3 to 4): the true value may lie below it, "
               "or the generator absorbed the degradation"),
    (3.999, 3.999, "blur.sigma ended at its upper bound 4 (range 0.3 to 4): the true value may lie above it"),
    (7.0, 4.0, "blur.sigma left its range (7); clamped to 4 (range 0.3 to 4)"),
    (float("nan"), 2.0, "blur.sigma was not finite; reported its starting value 2 (range 0.3 to 4)"),
])
def test_a_fitted_value_is_clamped_and_noted_never_nan(value, reported, note):
    assert SIGMA.fitted(value) == (reported, note)


def test_override_merges_and_checks_the_merged_values():
    assert SIGMA.override(None) is SIGMA
    merged = SIGMA.override({"init": 1.0, "high": 3.0})
    assert (merged.init, merged.low, merged.high, merged.lr) == (1.0, 0.3, 3.0, 0.02)
    with pytest.raises(DGPUsageError, match=r"^preset x: blur.sigma: init 2 must be strictly inside its range 0.3 to 1.5$"):
        SIGMA.override({"high": 1.5}, "preset x: ")
    with pytest.raises(DGPUsageError, match=r"unknown keys \['step'\]"):
        SIGMA.override({"step": 3})


# ----------------------------------------------------------------------------- the option schema
class Fade(Degradation):
    """A test degradation with one fittable and one fixed option."""

    name = "fade"
    OPTIONS = {
        "amount": Option(float, 0.5, "kept fraction", check=lambda v: 0 < v <= 1, allowed="in (0, 1]",
                         learnable=Learnable("amount", init=0.5, low=0.1, high=1.0, lr=0.05)),
        "steps": Option(int, 1, "how often", check=lambda v: v >= 1, allowed="at least 1"),
        "mode": Option(str, "auto", "a string option whose values include auto", choices=("auto", "fixed")),
    }

    def forward(self, x, **values):
        x = self.check_images(x)
        fitted = self.resolve_values(x, values)  # also refuses a value for a fixed amount
        return x * (fitted["amount"].view(-1, 1, 1, 1) if "amount" in fitted else self.options["amount"])


def test_auto_is_kept_as_the_value_auto_and_round_trips():
    f = Fade(amount="Auto")
    assert f.options["amount"] == AUTO and f.spec == "fade:amount=auto,steps=1,mode=auto"
    assert Fade.from_spec(f.spec) == f and Fade(amount=0.5) != f
    assert Fade(mode="auto").options["mode"] == "auto"  # a string option may take auto as a value


def test_auto_on_an_option_that_cannot_be_fitted_is_one_line():
    with pytest.raises(DGPUsageError) as info:
        Fade(steps="auto")
    assert str(info.value) == ("fade: option 'steps' cannot be auto (only amount can be fitted with the image); "
                               "give it a value: an integer, at least 1")


def test_listing_says_which_options_can_be_auto():
    rows = {row["name"]: row for row in Fade.describe()}
    assert rows["amount"]["allowed"] == "a number, in (0, 1]; or auto (fitted with the image, from 0.1 to 1, starting at 0.5)"
    assert "auto (fitted" not in rows["steps"]["allowed"]


def test_learnable_parameters_only_for_auto_options():
    assert Fade().learnable_parameters() == {}
    (name, spec), = Fade(amount="auto").learnable_parameters().items()
    assert name == "amount" and (spec.owner, spec.key, spec.init) == ("fade", "fade.amount", 0.5)


def test_resolve_values_checks_names_shapes_and_fills_the_start():
    f, x = Fade(amount="auto"), images(3)
    assert torch.equal(f.resolve_values(x, {})["amount"], torch.full((3,), 0.5))
    assert torch.equal(f.resolve_values(x, {"amount": 0.25})["amount"], torch.full((3,), 0.25))
    with pytest.raises(ValueError, match=r"fade: the fitted values of amount must have shape \(3,\), one per image; got \(2,\)"):
        f(x, amount=torch.ones(2))
    with pytest.raises(TypeError, match="fade: got fitted values for sigma, but the options fitted here: amount"):
        f(x, sigma=torch.ones(3))
    with pytest.raises(TypeError, match="fade: got fitted values for amount, but no option is auto here"):
        Fade()(x, amount=torch.ones(3))


def test_degrade_of_auto_is_a_usage_error_with_an_example():
    with pytest.raises(DGPUsageError) as info:
        Fade(amount="auto").degrade(images())
    assert str(info.value) == ("fade: cannot simulate an observation with amount=auto (the value is unknown); give the "
                               "simulation its own spec with the true value, e.g. --simulate-with "
                               "fade:amount=0.5,steps=1,mode=auto")


def test_check_learnable_refuses_bounds_the_option_does_not_take():
    f = Fade(amount="auto")
    f.check_learnable(f.learnable_parameters()["amount"])
    with pytest.raises(DGPUsageError, match=r"fade: the range of amount to fit reaches 1.5: fade: option 'amount' must be"):
        f.check_learnable(f.learnable_parameters()["amount"].override({"high": 1.5}))
    with pytest.raises(DGPUsageError, match="option 'amount' is not auto here"):
        Fade().check_learnable(f.learnable_parameters()["amount"])


# ----------------------------------------------------------------------------- presets
def test_preset_learnable_table_is_parsed_and_written_back(tmp_path):
    from dgp_toolkit.priors.dip import preset_toml

    p = preset({"blur": {"sigma": {"init": 1.0, "low": 0.5, "lr": [0.05, 0.0]}}})
    assert p.learnable == {"blur.sigma": {"init": 1.0, "low": 0.5, "lr": [0.05, 0.0]}}
    assert p.to_dict()["learnable"] == {"blur": {"sigma": {"init": 1.0, "low": 0.5, "lr": [0.05, 0.0]}}}
    assert "learnable" not in preset().to_dict()  # presets without one keep their JSON as it was
    text = preset_toml(p)
    assert "[learnable.blur.sigma]\ninit = 1.0\nlow = 0.5\nlr = [0.05, 0.0]" in text
    path = tmp_path / "mine.toml"
    path.write_text(text)
    assert load_preset(path).learnable == p.learnable


@pytest.mark.parametrize("table,words", [
    ({"blurr": {"sigma": {"init": 1.0}}}, "[learnable.blurr]: unknown degradation 'blurr'; did you mean 'blur'?"),
    ({"blur": {"size": {"init": 9}}}, "[learnable.blur.size]: blur's option 'size' cannot be fitted (options that can be auto: sigma)"),
    ({"gray": {"weights": {"init": 1}}}, "gray's option 'weights' cannot be fitted (options that can be auto: none)"),
    ({"blur": {"sigma": {"start": 1.0}}}, "[learnable.blur.sigma]: unknown keys ['start']; expected some of ['init', 'low', 'high', 'lr']"),
    ({"blur": {"sigma": {"init": "1"}}}, "[learnable.blur.sigma]: init must be a finite number, got '1'"),
    ({"blur": {"sigma": {"low": True}}}, "low must be a finite number, got True"),
    ({"blur": {"sigma": {"lr": -1}}}, "lr must be a finite number >= 0 or a list of them, got -1"),
    ({"blur": {"sigma": {"lr": [0.1, 0.1, 0.1]}}}, "lr has 3 entries but the schedule has 2 stages"),
    ({"blur": {"sigma": 2.0}}, "[learnable.blur] must hold one [learnable.blur.OPTION] table per option"),
    ({"blur": 2.0}, "[learnable.blur] must hold one"),
    (3, "[learnable] must be a table of [learnable.NAME.OPTION] tables"),
])
def test_preset_learnable_table_is_strictly_validated(table, words):
    with pytest.raises(DGPUsageError) as info:
        preset(table)
    assert str(info.value).startswith("preset mine.toml: ") and words in str(info.value), str(info.value)


def test_parse_overrides_reads_a_toml_file_table():
    data = tomllib.loads("[learnable.blur.sigma]\ninit = 1.5\nlr = 0.1\n")
    assert parse_overrides(data["learnable"], "f.toml") == {"blur.sigma": {"init": 1.5, "lr": 0.1}}


def test_built_in_presets_have_no_learnable_table_and_still_load():
    assert load_preset("deblurring").learnable == {}


# ----------------------------------------------------------------------------- learnable_specs
def test_specs_of_a_single_degradation_and_a_composition():
    assert learnable_specs(Blur(sigma=2)) == [] and learnable_specs(Compose([Gray(), Noise()])) == []
    (one,) = learnable_specs(Compose([Gray(), Blur(sigma="auto"), Noise()]))
    assert (one.key, one.step, one.owner) == ("blur.sigma", 1, "blur")
    two = learnable_specs(Compose([Blur(sigma="auto"), Gray(), Blur(sigma="auto")]))
    assert [(s.key, s.step) for s in two] == [("blur@1.sigma", 0), ("blur@3.sigma", 2)]
    assert len(set(two)) == 2  # distinct dictionary keys


def test_specs_take_the_preset_overrides():
    p = preset({"blur": {"sigma": {"init": 1.0, "lr": [0.1, 0.0]}}})
    specs = learnable_specs(Compose([Blur(sigma="auto"), Blur(sigma="auto")]), p)
    assert [(s.init, s.lr) for s in specs] == [(1.0, (0.1, 0.0))] * 2
    assert learnable_specs(Blur(sigma=2), p) == []  # an override for a value that is not fitted is unused


@pytest.mark.parametrize("override,words", [
    ({"high": 6.0}, "preset mine.toml: blur: a 17x17 kernel cannot fit sigma=auto up to 6 (that needs size=25 or "
                    "more); give a larger size or leave size out"),
    ({"low": 0.0}, "preset mine.toml: blur: the range of sigma to fit reaches 0: blur: option 'sigma' must be"),
    ({"init": 5.0}, "preset mine.toml: blur.sigma: init 5 must be strictly inside its range 0.3 to 4"),
])
def test_a_bad_override_is_a_usage_error_naming_the_preset(override, words):
    with pytest.raises(DGPUsageError) as info:
        learnable_specs(Blur(sigma="auto"), preset({"blur": {"sigma": override}}))
    assert str(info.value).startswith(words), str(info.value)


def test_a_wider_range_works_with_a_kernel_that_covers_it():
    (spec,) = learnable_specs(Blur(sigma="auto", size=25), preset({"blur": {"sigma": {"high": 6.0}}}))
    assert spec.high == 6.0


def test_starting_key_and_values():
    specs = learnable_specs(Blur(sigma="auto"), preset({"blur": {"sigma": {"init": 1.25}}}))
    assert starting_key(specs) == (("blur.sigma", 1.25),)
    assert starting_key([]) == ()
    (values,) = starting_values(specs, 4).values()
    assert torch.equal(values, torch.full((4,), 1.25))


# ----------------------------------------------------------------------------- calling with values
def test_without_values_apply_is_the_plain_call_bit_for_bit():
    x = images()
    for d in (Blur(sigma=1.5), Compose([Gray(), Blur(sigma=1.5)]), Blur(sigma="auto")):
        assert torch.equal(apply_values(d, x, {}), d(x))
        assert torch.equal(apply_values(d, x, None), d(x))
        assert torch.equal(FittedValues([], 2).apply(d, x), d(x))


def test_values_reach_their_own_step_of_a_composition():
    x = images(2)
    d = Compose([Blur(sigma="auto"), Gray(), Blur(sigma="auto", size=19)])
    first, second = learnable_specs(d)
    values = {first: torch.tensor([0.5, 1.0]), second: torch.tensor([2.0, 3.0])}
    out = apply_values(d, x, values)
    for i in range(2):
        expected = Blur(sigma=[0.5, 1.0][i], size=17)(x[i:i + 1])
        expected = Blur(sigma=[2.0, 3.0][i], size=19)(Gray()(expected))
        assert torch.allclose(out[i:i + 1], expected, atol=1e-6)
    # a step left out takes its starting value (2)
    only_first = apply_values(d, x, {first: torch.tensor([0.5, 1.0])})
    assert torch.allclose(only_first, apply_values(d, x, {first: torch.tensor([0.5, 1.0]), second: torch.full((2,), 2.0)}))
    import dataclasses

    with pytest.raises(ValueError, match="step 5 is not in this degradation"):
        apply_values(d, x, {dataclasses.replace(first, step=5): torch.ones(2)})


def test_fitted_values_optimize_each_image_on_its_own():
    """Adam on the raw values (the engine's loop, reduced to sigma): each image of the
    batch recovers its own blur from its own observation."""
    x = images(3, seed=4)
    truth = [0.8, 1.7, 2.9]
    blind = Blur(sigma="auto")
    observed = torch.cat([Blur(sigma=s, size=17)(x[i:i + 1]) for i, s in enumerate(truth)])
    fitted = FittedValues(learnable_specs(blind, preset({"blur": {"sigma": {"lr": 0.1}}})), batch=3)
    opt = torch.optim.Adam(fitted.param_groups(), betas=(0.0, 0.999))
    for step in range(200):
        if step % 50 == 49:  # Adam without momentum hops by about lr: a decay settles it
            opt.param_groups[0]["lr"] /= 3
        opt.zero_grad()
        (fitted.apply(blind, x) - observed).square().sum().backward()
        opt.step()
    found = [row["blur.sigma"] for row in fitted.snapshot()]
    assert found == pytest.approx(truth, abs=0.01)


def test_param_groups_and_stage_rates():
    (spec,) = learnable_specs(Blur(sigma="auto"), preset({"blur": {"sigma": {"lr": [0.05, 0.0]}}}))
    fitted = FittedValues([spec], batch=2)
    (group,) = fitted.param_groups(0)
    assert group["lr"] == group["base_lr"] == 0.05 and group["params"][0] is fitted.raw[0]
    assert fitted.raw[0].shape == (2,) and torch.allclose(fitted.raw[0], torch.full((2,), spec.raw_init))
    opt = torch.optim.Adam(fitted.param_groups(0))
    fitted.set_stage(opt, 1)
    assert opt.param_groups[0]["lr"] == 0.0 and not fitted.raw[0].requires_grad
    fitted.set_stage(opt, 0)
    assert opt.param_groups[0]["lr"] == 0.05 and fitted.raw[0].requires_grad


def test_report_notes_a_value_at_its_bound_and_a_nan_raw_value():
    fitted = FittedValues(learnable_specs(Blur(sigma="auto")), batch=3)
    with torch.no_grad():
        fitted.raw[0].copy_(torch.tensor([-1e4, 0.0, float("nan")]))
    low, middle, nan = (fitted.report(i) for i in range(3))
    assert low[0]["blur.sigma"] == pytest.approx(0.3) and "lower bound 0.3" in low[1][0]
    assert middle[0]["blur.sigma"] == pytest.approx(2.15) and middle[1] == []
    assert nan[0]["blur.sigma"] == pytest.approx(2.0) and not any(math.isnan(v) for v in nan[0].values())
    assert len(fitted) == 1 and len(FittedValues([], 3)) == 0
