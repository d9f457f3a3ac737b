"""Contract tests that every degradation's tests subclass (built-in and third-party).

Subclass :class:`DegradationContract` in a pytest file (the class name must start with
``Test``), set ``factory`` and examples of options; every test below then runs against
your degradation::

    from dgp_toolkit.testing import DegradationContract
    from my_plugin import Pixelate

    class TestPixelate(DegradationContract):
        factory = Pixelate
        valid_options = [{}, {"block": "4"}, {"block": 8}]
        invalid_options = [{"block": "0"}, {"block": "many"}]

What is checked: shape, dtype and device of every method's output; finite outputs;
gradients flow to the input (and a float64 ``gradcheck`` on a tiny input when the
operator is smooth); option validation raises :class:`~dgp_toolkit.errors.DGPUsageError`
(bad values and unknown names); the spec round-trips (``parse(d.spec) == d``); ``forward``
is deterministic and independent across the batch; ``degrade`` works with and without a
``torch.Generator`` (and is reproducible with one); the same results on CUDA (skipped
without a GPU); typed errors for bad inputs.

Learnable parameters (``blur:sigma=auto``; see :mod:`dgp_toolkit.learnable`): set
``learnable_options`` to option sets with at least one ``auto``; the tests then check that
``learnable_parameters()`` declares exactly the ``auto`` options with a valid range; the
spec round-trips; gradients flow to the fitted values (and pass ``gradcheck`` when the
operator is smooth); extreme raw values give values in range and finite outputs; image
``i``'s output depends on value ``i`` only; a fitted value gives what the fixed option of
that value gives; ``degrade`` refuses ``auto``. For every degradation: ``auto`` on an
option that cannot be fitted is a one-line usage error, and without ``auto`` nothing is
fitted and ``forward`` refuses a value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar

import pytest
import torch

from dgp_toolkit.errors import DGPUsageError

__all__ = ["DegradationContract", "parse_spec_object"]


def parse_spec_object(spec: str, factory: Callable[..., Any] | None = None) -> Any:
    """Build a degradation from its spec as the command line does.

    Uses ``dgp_toolkit.parse_degradation`` (the registry) when the spec's name is
    registered; otherwise ``factory.from_spec`` (a class tested before it is registered).
    """
    import dgp_toolkit

    parse = getattr(dgp_toolkit, "parse_degradation", None)
    if parse is not None:
        try:
            return parse(spec)
        except DGPUsageError as exc:
            if factory is None or "unknown degradation" not in str(exc):
                raise
    if factory is None or not hasattr(factory, "from_spec"):
        raise RuntimeError(f"cannot parse {spec!r}: no registry entry and no from_spec()")
    return factory.from_spec(spec)


class DegradationContract:
    """Pytest base class: the behaviour every degradation promises.

    Class attributes to set:
        factory: the class (or ``factory(**options)``) under test.
        valid_options: option sets (strings as on the command line, or Python values)
            that must build; each is run through the tests.
        invalid_options: option sets that must raise ``DGPUsageError``.
        size: image side used by the tests (big enough for every valid option set).
        gradcheck_size: image side of the float64 ``gradcheck``.
        smooth: run ``gradcheck`` (set ``False`` for operators that are not
            differentiable everywhere, e.g. quantization or clipping).
        random_degrade: ``degrade`` draws random numbers (then two generators with
            different seeds must give different results).
        bf16: also run ``forward`` in bfloat16.
        atol_cuda: tolerance of the CUDA-versus-CPU comparison.
        learnable_options: option sets with at least one option ``auto`` (fitted); empty
            for a degradation that fits nothing.
        atol_learnable: tolerance of "a fitted value gives what the fixed option gives".
    """

    factory: ClassVar[Callable[..., Any]]
    valid_options: ClassVar[list[dict[str, Any]]] = [{}]
    invalid_options: ClassVar[list[dict[str, Any]]] = []
    size: ClassVar[int] = 32
    gradcheck_size: ClassVar[int] = 16
    smooth: ClassVar[bool] = True
    random_degrade: ClassVar[bool] = False
    bf16: ClassVar[bool] = True
    atol_cuda: ClassVar[float] = 1e-4
    learnable_options: ClassVar[list[dict[str, Any]]] = []
    atol_learnable: ClassVar[float] = 1e-5

    # -- helpers --------------------------------------------------------------------

    def make(self, **options: Any) -> Any:
        """Build the degradation under test (override for factories needing setup)."""
        return type(self).factory(**options)

    def instances(self) -> list[Any]:
        return [self.make(**options) for options in self.valid_options]

    def images(self, batch: int = 2, size: int | None = None, *, dtype=torch.float32,
               device: str = "cpu", seed: int = 0) -> torch.Tensor:
        """Deterministic random images in [-1, 1]."""
        g = torch.Generator().manual_seed(seed)
        side = size or self.size
        x = torch.rand(batch, 3, side, side, generator=g, dtype=torch.float64) * 2 - 1
        return x.to(device=device, dtype=dtype)

    def learnable_instances(self) -> list[Any]:
        return [self.make(**options) for options in self.learnable_options]

    def fixed_twin(self, d: Any, name: str, value: float) -> Any:
        """The degradation ``d`` with option ``name`` fixed at ``value`` (its other options kept)."""
        return self.make(**{**d.options, name: value})

    def spread_values(self, spec: Any, batch: int) -> torch.Tensor:
        """``batch`` distinct float64 values inside ``spec``'s range, the starting value first."""
        inside = torch.linspace(spec.low, spec.high, batch + 2, dtype=torch.float64)[1:-1]
        return torch.cat([torch.tensor([spec.init], dtype=torch.float64), inside])[:batch]

    def observed(self, d: Any, clean: torch.Tensor) -> torch.Tensor:
        """What a user would give: a simulated observation at the observation size."""
        size = tuple(clean.shape[-2:])
        degraded = d.degrade(clean, generator=torch.Generator(device=clean.device).manual_seed(1))
        h, w = d.observation_size(size)
        if (h, w) != size:
            degraded = torch.nn.functional.interpolate(degraded, size=(h, w), mode="area")
        return degraded

    # -- the contract ---------------------------------------------------------------

    def test_builds_with_valid_options(self):
        for options, d in zip(self.valid_options, self.instances()):
            assert isinstance(d, torch.nn.Module), options
            assert isinstance(d.name, str) and d.name, options
            assert isinstance(d.options, dict), options
            assert isinstance(d.spec, str) and d.spec.split(":", 1)[0] == d.name, options

    def test_invalid_options_raise_usage_error(self):
        for options in self.invalid_options:
            with pytest.raises(DGPUsageError) as info:
                self.make(**options)
            message = str(info.value)
            assert "\n" not in message.strip(), f"{options}: error is not one line: {message!r}"
            assert any(key in message for key in options), f"{options}: error does not name the option: {message}"

    def test_unknown_option_is_usage_error(self):
        with pytest.raises(DGPUsageError, match="no_such_option"):
            self.make(no_such_option="1")

    def test_describe_lists_every_option(self):
        describe = getattr(type(self).factory, "describe", None)
        if describe is None:
            pytest.skip("factory has no describe()")
        rows = describe()
        names = [row["name"] for row in rows]
        assert len(names) == len(set(names))
        for row in rows:
            assert {"name", "type", "default", "help"} <= set(row), row
            assert row["help"], f"option {row['name']} has no help text"
        for options in self.valid_options:
            assert set(options) <= set(names), options

    def test_spec_round_trip(self):
        for d in self.instances():
            again = parse_spec_object(d.spec, type(self).factory)
            assert again == d, f"{d.spec} parsed back to {again.spec}"
            assert again.spec == d.spec
            assert hash(again) == hash(d)

    def test_options_rebuild_equal_object(self):
        for d in self.instances():
            assert self.make(**d.options) == d

    def test_forward_shape_dtype_device(self):
        for d in self.instances():
            for dtype in (torch.float32, torch.float64):
                x = self.images(dtype=dtype)
                y = d(x)
                assert isinstance(y, torch.Tensor)
                assert y.shape == x.shape, d.spec
                assert y.dtype == dtype and y.device == x.device, d.spec

    def test_forward_bf16(self):
        if not self.bf16:
            pytest.skip("bfloat16 not supported by this degradation")
        for d in self.instances():
            x = self.images()
            y = d(x.bfloat16())
            assert y.dtype == torch.bfloat16 and y.shape == x.shape
            assert torch.isfinite(y.float()).all()
            assert (y.float() - d(x)).abs().max() < 0.1, d.spec

    def test_outputs_are_finite(self):
        for d in self.instances():
            x = self.images()
            observed = d.observe(self.observed(d, x), size=x.shape[-1])
            for out in (d(x), d.degrade(x), observed, d.finish(d(x), observed)):
                assert out.shape == x.shape, d.spec
                assert torch.isfinite(out).all(), d.spec

    def test_forward_stays_in_range(self):
        for d in self.instances():
            y = d(self.images())
            assert y.min() >= -1.05 and y.max() <= 1.05, f"{d.spec}: forward leaves [-1, 1]"

    def test_gradients_flow(self):
        for d in self.instances():
            x = self.images().requires_grad_(True)
            d(x).square().sum().backward()
            assert x.grad is not None, d.spec
            assert torch.isfinite(x.grad).all(), d.spec
            assert x.grad.abs().sum() > 0, f"{d.spec}: no gradient reaches the input"

    def test_gradcheck_float64(self):
        if not self.smooth:
            pytest.skip("operator is not smooth")
        for d in self.instances():
            x = self.images(batch=1, size=self.gradcheck_size, dtype=torch.float64) * 0.9
            x.requires_grad_(True)
            assert torch.autograd.gradcheck(d, (x,), eps=1e-6, atol=1e-4, fast_mode=True), d.spec

    def test_forward_is_deterministic(self):
        for d in self.instances():
            x = self.images()
            assert torch.equal(d(x), d(x)), d.spec

    def test_forward_is_independent_across_the_batch(self):
        for d in self.instances():
            x = self.images(batch=3)
            together = d(x)
            for i in range(3):
                assert torch.allclose(together[i:i + 1], d(x[i:i + 1]), atol=1e-6), d.spec

    def test_degrade_without_generator(self):
        for d in self.instances():
            x = self.images()
            y = d.degrade(x)
            assert y.shape == x.shape and y.dtype == x.dtype and not y.requires_grad

    def test_degrade_is_reproducible_with_a_generator(self):
        for d in self.instances():
            x = self.images()
            a = d.degrade(x, generator=torch.Generator().manual_seed(3))
            b = d.degrade(x, generator=torch.Generator().manual_seed(3))
            assert torch.equal(a, b), d.spec
            if self.random_degrade:
                c = d.degrade(x, generator=torch.Generator().manual_seed(4))
                assert not torch.equal(a, c), f"{d.spec}: generator seed has no effect"

    def test_observe_gives_the_target_shape(self):
        for d in self.instances():
            x = self.images()
            observed = self.observed(d, x)
            target = d.observe(observed, size=x.shape[-1])
            assert target.shape == d(x).shape, d.spec
            # the prior's size is given as (height, width) too
            assert d.observe(observed, size=tuple(x.shape[-2:])).shape == target.shape

    def test_observe_rejects_a_wrong_size(self):
        for d in self.instances():
            wrong = self.images(size=self.size - 3)
            with pytest.raises(DGPUsageError):
                d.observe(wrong, size=self.size)

    def test_finish_keeps_shape_and_accepts_a_batch_of_results(self):
        for d in self.instances():
            x = self.images(batch=1)
            observed = d.observe(self.observed(d, x), size=x.shape[-1])
            restored = self.images(batch=3, seed=5)
            out = d.finish(restored, observed)
            assert out.shape == restored.shape and out.dtype == restored.dtype, d.spec

    def test_rejects_bad_inputs_with_typed_errors(self):
        d = self.instances()[0]
        with pytest.raises(TypeError):
            d(self.images().numpy())
        with pytest.raises(TypeError):
            d(torch.zeros(1, 3, self.size, self.size, dtype=torch.uint8))
        with pytest.raises(ValueError):
            d(torch.zeros(1, 1, self.size, self.size))
        with pytest.raises(ValueError):
            d(torch.zeros(3, self.size, self.size))

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
    def test_cuda_matches_cpu(self):
        for d in self.instances():
            x = self.images()
            gpu = d.to("cuda")
            y = gpu(x.cuda())
            assert y.device.type == "cuda"
            assert torch.allclose(y.cpu(), d.to("cpu")(x), atol=self.atol_cuda), d.spec
            z = gpu.degrade(x.cuda(), generator=torch.Generator(device="cuda").manual_seed(0))
            assert z.device.type == "cuda" and torch.isfinite(z).all()
            observed = gpu.observe(self.observed(gpu, x.cuda()), size=x.shape[-1])
            assert gpu.finish(y, observed).device.type == "cuda"

    # -- learnable parameters ---------------------------------------------------------

    def _requires_learnable(self) -> None:
        if not self.learnable_options:
            pytest.skip("no learnable_options: this degradation fits nothing")

    def test_fixed_options_fit_nothing_and_take_no_values(self):
        for d in self.instances():
            declared = getattr(d, "learnable_parameters", None)
            if declared is None:
                pytest.skip("no learnable_parameters(): this degradation fits nothing")
            assert declared() == {}, d.spec
            x = self.images()
            with pytest.raises(TypeError):
                d(x, no_such_value=torch.zeros(x.shape[0]))

    def test_auto_on_an_option_that_cannot_be_fitted_is_one_usage_error(self):
        options = getattr(type(self).factory, "OPTIONS", None)
        if not isinstance(options, dict):
            pytest.skip("no OPTIONS schema")
        for name, option in options.items():
            if option.learnable is not None or option.type in (str, Path) or option.choices:
                continue  # fitted, or "auto" may be a value of the option (a name, a file)
            with pytest.raises(DGPUsageError) as info:
                self.make(**{name: "auto"})
            message = str(info.value)
            assert "\n" not in message and "auto" in message and name in message, message

    def test_learnable_parameters_declare_the_auto_options(self):
        self._requires_learnable()
        from dgp_toolkit.learnable import Learnable

        for options, d in zip(self.learnable_options, self.learnable_instances()):
            declared = d.learnable_parameters()
            auto = {k for k, v in d.options.items() if v == "auto"}
            assert auto and set(declared) == auto, (options, declared)
            for name, spec in declared.items():
                assert isinstance(spec, Learnable) and spec.name == name and spec.owner == d.name
                assert spec.low < spec.init < spec.high and spec.lr_at(0) >= 0
                d.check_learnable(spec)  # the plugin's own range is one it can fit

    def test_learnable_spec_round_trip(self):
        self._requires_learnable()
        for d in self.learnable_instances():
            assert "=auto" in d.spec, d.spec
            again = parse_spec_object(d.spec, type(self).factory)
            assert again == d and again.spec == d.spec and hash(again) == hash(d)

    def test_degrade_refuses_auto(self):
        self._requires_learnable()
        for d in self.learnable_instances():
            with pytest.raises(DGPUsageError) as info:
                d.degrade(self.images())
            message = str(info.value)
            assert "\n" not in message and "auto" in message, message

    def test_gradients_flow_to_the_fitted_values(self):
        self._requires_learnable()
        for d in self.learnable_instances():
            x = self.images(batch=3, dtype=torch.float64)
            weights = self.images(batch=3, dtype=torch.float64, seed=9)
            for name, spec in d.learnable_parameters().items():
                raw = spec.to_raw(self.spread_values(spec, 3)).requires_grad_(True)
                (d(x, **{name: spec.from_raw(raw)}) * weights).sum().backward()
                assert raw.grad is not None and torch.isfinite(raw.grad).all(), d.spec
                assert (raw.grad != 0).all(), f"{d.spec}: an image's {name} gets no gradient"
                if self.smooth:
                    small = self.images(batch=2, size=self.gradcheck_size, dtype=torch.float64) * 0.9
                    value = self.spread_values(spec, 2).requires_grad_(True)
                    assert torch.autograd.gradcheck(lambda v: d(small, **{name: v}), (value,), eps=1e-6,
                                                    atol=1e-4, fast_mode=True), d.spec

    def test_fitted_values_stay_in_range(self):
        self._requires_learnable()
        extremes = torch.tensor([-1e30, -1e4, -30.0, 0.0, 30.0, 1e4, 1e30, float("inf"), float("-inf"), float("nan")])
        for d in self.learnable_instances():
            for name, spec in d.learnable_parameters().items():
                values = spec.from_raw(extremes)
                assert torch.isfinite(values).all(), (d.spec, values)
                assert (values >= spec.low).all() and (values <= spec.high).all(), (d.spec, values)
                x = self.images(batch=values.shape[0])
                y = d(x, **{name: values})
                assert torch.isfinite(y).all(), d.spec
                assert y.min() >= -1.05 and y.max() <= 1.05, f"{d.spec}: forward leaves [-1, 1] at a bound"

    def test_fitted_values_are_independent_per_image(self):
        self._requires_learnable()
        for d in self.learnable_instances():
            x = self.images(batch=3, dtype=torch.float64)
            for name, spec in d.learnable_parameters().items():
                values = self.spread_values(spec, 3).requires_grad_(True)
                together = d(x, **{name: values})
                for i in range(3):
                    alone = d(x[i:i + 1], **{name: values[i:i + 1]})
                    assert torch.allclose(together[i:i + 1], alone, atol=1e-10), d.spec
                    (grad,) = torch.autograd.grad(together[i].sum(), values, retain_graph=True)
                    others = torch.cat([grad[:i], grad[i + 1:]])
                    assert (others == 0).all(), f"{d.spec}: image {i}'s output depends on another image's {name}"

    def test_a_fitted_value_gives_the_fixed_option(self):
        self._requires_learnable()
        for d in self.learnable_instances():
            x = self.images(batch=3)
            for name, spec in d.learnable_parameters().items():
                values = self.spread_values(spec, 3).float()
                fitted = d(x, **{name: values})
                for i, value in enumerate(values.tolist()):
                    fixed = self.fixed_twin(d, name, value)
                    assert fixed.learnable_parameters() == {}
                    assert torch.allclose(fitted[i:i + 1], fixed(x[i:i + 1]), atol=self.atol_learnable), (d.spec, value)
                # without values every image takes the starting value
                start = self.fixed_twin(d, name, spec.init)
                assert torch.allclose(d(x), start(x), atol=self.atol_learnable), d.spec
                # and observe / finish work as for that fixed value
                observed = self.observed(start, x[:1])
                target = d.observe(observed, size=x.shape[-1])
                assert target.shape == x[:1].shape and torch.isfinite(d.finish(fitted[:1], target)).all()
