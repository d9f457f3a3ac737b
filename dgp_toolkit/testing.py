"""Contract tests that every plugin's tests subclass (built-in and third-party).

One pytest base class per kind of plugin: :class:`DegradationContract`,
:class:`LossContract`, :class:`ScheduleContract` and :class:`PriorContract`. Subclass one
in a pytest file (the class name must start with ``Test``), set ``factory`` and examples
of options; every test of the base class then runs against your plugin::

    from dgp_toolkit.testing import DegradationContract
    from my_plugin import Pixelate

    class TestPixelate(DegradationContract):
        factory = Pixelate
        valid_options = [{}, {"block": "4"}, {"block": 8}]
        invalid_options = [{"block": "0"}, {"block": "many"}]

What is checked for a degradation: shape, dtype and device of every method's output;
finite outputs; gradients flow to the input (and a float64 ``gradcheck`` on a tiny input
when the operator is smooth); option validation raises
:class:`~dgp_toolkit.errors.DGPUsageError` (bad values and unknown names); the spec
round-trips (``parse(d.spec) == d``); ``forward`` is deterministic and independent across
the batch; ``degrade`` works with and without a ``torch.Generator`` (and is reproducible
with one); the same results on CUDA (skipped without a GPU); typed errors for bad inputs.
Each of the other classes says in its docstring what it checks: what the engine relies on.

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

__all__ = ["DegradationContract", "LossContract", "PriorContract", "ScheduleContract", "parse_spec_object"]


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

def _check_one_line_usage_error(make: Callable[[], Any], options: dict[str, Any]) -> None:
    with pytest.raises(DGPUsageError) as info:
        make()
    message = str(info.value)
    assert "\n" not in message.strip(), f"{options}: error is not one line: {message!r}"
    assert any(key in message for key in options), f"{options}: error does not name the option: {message}"


class LossContract:
    """Pytest base class: the behaviour every loss term promises.

    A loss is ``loss(state)`` on a :class:`~dgp_toolkit.plugins.losses.LossState` (the
    degraded generated image, the target, the latent, the target's discriminator
    features, ``ftr_num``, a ``features()`` of the generated image) of a batch of B images,
    returning one value per image (shape ``(B,)``: the batched engine sums them).
    Checked: it builds from each option set; returns finite, real values of shape
    ``(B,)`` (non-negative unless ``nonnegative = False``); a gradient reaches the
    generated image or the latent; the same state gives the same value and is left
    unchanged; the loss computes the generated image's features only through
    ``state.features()`` (once per step, whoever asks); image i's value depends on image
    i only (the images of a batch never mix); unknown options raise
    :class:`~dgp_toolkit.errors.DGPUsageError` when looked up by name.

    Class attributes to set:
        factory: the class (or ``factory(**options)``) under test.
        valid_options: option sets that must build.
        invalid_options: option sets that must raise ``DGPUsageError``.
        registered_name: the name it is registered under (then ``get_loss(name)``
            must build the same type), or ``None``.
        nonnegative: the loss is never below 0.
    """

    factory: ClassVar[Callable[..., Any]]
    valid_options: ClassVar[list[dict[str, Any]]] = [{}]
    invalid_options: ClassVar[list[dict[str, Any]]] = []
    registered_name: ClassVar[str | None] = None
    nonnegative: ClassVar[bool] = True
    size: ClassVar[int] = 16

    # -- helpers --------------------------------------------------------------------

    def make(self, **options: Any) -> Any:
        return type(self).factory(**options)

    def instances(self) -> list[Any]:
        return [self.make(**options) for options in self.valid_options]

    @staticmethod
    def feature_fn(images: torch.Tensor) -> list[torch.Tensor]:
        """A small differentiable stand-in for a discriminator's feature list."""
        return [images.tanh(), torch.nn.functional.avg_pool2d(images, 2),
                torch.nn.functional.avg_pool2d(images, 4).relu(), images.mean(dim=(2, 3))]

    def state(self, batch: int = 1, *, seed: int = 0, ftr_num: int = 3, grad: bool = True) -> Any:
        """A real loss state with random images and latent (gradients on generated and z)."""
        from dgp_toolkit.plugins.losses import LossState

        g = torch.Generator().manual_seed(seed)
        generated = torch.rand(batch, 3, self.size, self.size, generator=g) * 2 - 1
        target = torch.rand(1, 3, self.size, self.size, generator=g) * 2 - 1
        z = torch.randn(batch, 20, generator=g)
        if grad:
            generated.requires_grad_(True)
            z.requires_grad_(True)
        calls = []

        def counted(images: torch.Tensor) -> list[torch.Tensor]:
            calls.append(1)
            return self.feature_fn(images)

        state = LossState(generated=generated, target=target.expand(batch, -1, -1, -1), z=z,
                          target_features=[f.detach() for f in self.feature_fn(target)], ftr_num=ftr_num,
                          feature_fn=counted)
        state.feature_calls = calls  # type: ignore[attr-defined]
        return state

    # -- the contract ---------------------------------------------------------------

    def test_builds_and_is_callable(self):
        for options, loss in zip(self.valid_options, self.instances()):
            assert callable(loss), options

    def test_invalid_options_raise_usage_error(self):
        for options in self.invalid_options:
            _check_one_line_usage_error(lambda: self.make(**options), options)

    def test_returns_one_finite_value_per_image(self):
        for loss in self.instances():
            for ftr_num in (0, 1, 3):
                value = loss(self.state(batch=2, ftr_num=ftr_num))
                assert isinstance(value, torch.Tensor), type(value)
                assert value.shape == (2,) and value.is_floating_point(), value.shape
                assert torch.isfinite(value).all()
                if self.nonnegative:
                    assert bool((value.detach() >= 0).all())

    def test_gradient_reaches_the_image_or_the_latent(self):
        for loss in self.instances():
            state = self.state()
            value = loss(state)
            if not value.requires_grad:
                pytest.fail(f"{loss!r}: the loss does not depend on the generated image or the latent")
            value.sum().backward()
            grads = [t.grad for t in (state.generated, state.z) if t.grad is not None]
            assert grads and all(torch.isfinite(g).all() for g in grads)
            assert any(g.abs().sum() > 0 for g in grads), f"{loss!r}: zero gradient"

    def test_deterministic_and_leaves_the_state_unchanged(self):
        for loss in self.instances():
            state = self.state(grad=False)
            before = [t.clone() for t in (state.generated, state.target, state.z, *state.target_features)]
            first, second = loss(state), loss(state)
            assert torch.equal(first, second)
            after = (state.generated, state.target, state.z, *state.target_features)
            assert all(torch.equal(a, b) for a, b in zip(before, after)), "the loss changed its inputs"

    def test_features_only_through_the_state(self):
        for loss in self.instances():
            state = self.state(grad=False)
            loss(state)
            loss(state)
            assert len(state.feature_calls) <= 1, "features were computed more than once for one state"

    def test_images_of_a_batch_do_not_mix(self):
        for loss in self.instances():
            state = self.state(batch=3)
            loss(state)[1].backward()
            for t in (state.generated, state.z):
                if t.grad is not None:
                    assert t.grad[0].abs().sum() == 0 and t.grad[2].abs().sum() == 0, \
                        f"{loss!r}: image 1's value depends on other images"

    def test_registered_name_builds_this_loss(self):
        if self.registered_name is None:
            pytest.skip("no registered_name")
        import dgp_toolkit

        assert isinstance(dgp_toolkit.get_loss(self.registered_name), type(self.instances()[0]))
        with pytest.raises(DGPUsageError, match="no_such_option"):
            dgp_toolkit.get_loss(self.registered_name, no_such_option=1)


class ScheduleContract:
    """Pytest base class: the behaviour every optimization schedule promises.

    A schedule factory takes a preset's stage table (``iterations``, ``ft_num``,
    ``g_lr``, ``z_lr``, ``lr_ratio``, ``ftr_num``, ``use_in``, ``weights`` and the
    run-wide ``warmup``, ``early_stop_mse``, ``early_stop_d``) and returns a schedule.
    Checked: every stage has at least one whole iteration, non-negative finite learning
    rates and loss weights, a ``group_lr(i)`` for every generator stage, and weights that
    name registered losses; ``total_iterations`` is the sum; ``to_dict()`` is JSON and
    builds an equal schedule again (also by name through the registry when registered);
    ``scaled(f)`` keeps the stages and at least one step each, and refuses a factor that
    is not a finite positive number; a bad field raises a one-line
    :class:`~dgp_toolkit.errors.DGPUsageError` naming it.

    Class attributes to set:
        factory: the schedule factory under test.
        valid_options: stage tables that must build.
        invalid_fields: fields with bad values (``{"g_lr": [-1, 0]}``); each, put into
            the first valid table, must raise ``DGPUsageError`` naming the field.
        registered_name: the name it is registered under, or ``None``.
        n_generator_stages: generator stages ``group_lr`` is asked about.
    """

    factory: ClassVar[Callable[..., Any]]
    valid_options: ClassVar[list[dict[str, Any]]] = []
    invalid_fields: ClassVar[list[dict[str, Any]]] = []
    registered_name: ClassVar[str | None] = None
    n_generator_stages: ClassVar[int] = 6

    def make(self, **options: Any) -> Any:
        return type(self).factory(**options)

    def instances(self) -> list[Any]:
        assert self.valid_options, "set valid_options: at least one stage table"
        return [self.make(**options) for options in self.valid_options]

    def test_stages_are_well_formed(self):
        import math

        for options, schedule in zip(self.valid_options, self.instances()):
            assert schedule.stages, options
            for stage in schedule.stages:
                assert isinstance(stage.iterations, int) and stage.iterations >= 1, options
                assert isinstance(stage.ftr_num, int) and stage.ftr_num >= 0, options
                assert isinstance(stage.use_in, bool), options
                assert math.isfinite(stage.z_lr) and stage.z_lr >= 0, options
                for i in range(self.n_generator_stages):
                    lr = stage.group_lr(i)
                    assert math.isfinite(lr) and lr >= 0, (options, i, lr)
                for name, weight in stage.weights.items():
                    assert math.isfinite(weight) and weight >= 0, (options, name, weight)
            for name in {k for stage in schedule.stages for k in stage.weights}:
                from dgp_toolkit.registry import get_registry

                get_registry().entry("loss", name)  # an unknown loss is a DGPUsageError
            assert schedule.total_iterations == sum(s.iterations for s in schedule.stages)
            for key in ("warmup", "early_stop_mse", "early_stop_d"):
                assert getattr(schedule, key) >= 0, key

    def test_invalid_fields_raise_usage_error(self):
        for fields in self.invalid_fields:
            _check_one_line_usage_error(lambda: self.make(**{**self.valid_options[0], **fields}), fields)

    def test_dict_form_is_json_and_round_trips(self):
        import json

        for schedule in self.instances():
            data = json.loads(json.dumps(schedule.to_dict()))
            table = {k: v for k, v in data.items() if k != "name"}
            assert self.make(**table) == schedule
            if self.registered_name is not None:
                assert data["name"] == self.registered_name
                assert type(schedule).from_dict(data) == schedule

    def test_scaled_keeps_the_stages(self):
        for schedule in self.instances():
            assert schedule.scaled(1.0) == schedule
            for factor in (0.001, 0.5, 3):
                scaled = schedule.scaled(factor)
                assert len(scaled.stages) == len(schedule.stages)
                assert all(s.iterations >= 1 for s in scaled.stages)
                assert [s.weights for s in scaled.stages] == [s.weights for s in schedule.stages]
            for bad in (0, -1, float("nan"), float("inf")):
                with pytest.raises(DGPUsageError):
                    schedule.scaled(bad)

    def test_unknown_field_is_usage_error(self):
        with pytest.raises(DGPUsageError, match="no_such_field"):
            self.make(**{**self.valid_options[0], "no_such_field": 1})

    def test_registered_name_builds_this_schedule(self):
        if self.registered_name is None:
            pytest.skip("no registered_name")
        import dgp_toolkit

        table = self.valid_options[0]
        assert dgp_toolkit.get_schedule(self.registered_name, **table) == self.make(**table)


_PRIORS: dict[type, Any] = {}


class PriorContract:
    """Pytest base class: what the engine and ``restore()`` use of a prior.

    Checked, on one prior built once per test class: it describes itself (``name``,
    ``dim_z``, ``n_classes``, ``class_names``, ``resolution``, ``device``) and resolves
    classes (``class_index``); ``sample(n)`` draws ``(n, dim_z)`` latents on its device,
    reproducibly with a ``torch.Generator``; ``G`` and ``D`` are frozen, in eval mode and
    on the device; ``generate`` gives finite ``(B, 3, R, R)`` images in [-1, 1],
    the same for the same input and independent across the batch; ``D(x)`` returns
    ``(logits, features)`` with features differentiable in ``x``;
    ``fresh_generator()`` is a trainable copy that renders what ``G`` renders and never
    changes ``G``; ``stages(model)`` lists disjoint, non-empty parameter groups of that
    model (``include_embedding=True`` adds ``model.shared`` to the first), each reached by
    the gradient of the image; ``generator_state(model)`` is a detached copy that
    ``load_generator_state(state, model=...)`` restores in place (parameters keep their
    identity; a state that does not fit raises ``DGPUsageError``);
    ``set_instance_norm(on, model=...)`` switches the instance-norm path on and back off
    without touching ``G``; ``feature_extractor`` gives ``features``; ``generator_copies(n)``
    holds n independent stacked copies (the batched engine's, see
    dgp_toolkit/priors/protocol.py).

    Class attributes to set:
        factory: ``factory(**options)`` returns the prior (a registered name's factory,
            or a function building a small one).
        options: the options it is built with.
        registered_name: the name ``load_prior`` knows it by (then the registry's
            factory of that name must build the same type from ``options``), or ``None``.
        atol: tolerance of the comparisons between renders.
    """

    factory: ClassVar[Callable[..., Any]]
    options: ClassVar[dict[str, Any]] = {}
    registered_name: ClassVar[str | None] = None
    atol: ClassVar[float] = 1e-5

    # -- helpers --------------------------------------------------------------------

    def prior(self) -> Any:
        """The prior under test, built once per test class (it is never changed)."""
        cls = type(self)
        if cls not in _PRIORS:
            _PRIORS[cls] = type(self).factory(**self.options)
        return _PRIORS[cls]

    def inputs(self, batch: int = 2, *, model: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents and class embeddings (``prior.embed``) of ``model`` (default the prior's own)."""
        prior = self.prior()
        z = prior.sample(batch, generator=torch.Generator().manual_seed(0))
        y = torch.arange(batch, device=prior.device) % prior.n_classes
        with torch.no_grad():
            return z, prior.embed(y, model=model).detach()

    def render(self, model: Any, z: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """``prior.generate`` with ``model`` (``None`` or ``prior.G``: the prior's own)."""
        with torch.no_grad():
            return self.prior().generate(z, embedding=embedding, model=model)

    # -- the contract ---------------------------------------------------------------

    def test_describes_itself(self):
        prior = self.prior()
        assert isinstance(prior.name, str) and prior.name
        for attr in ("dim_z", "n_classes", "resolution"):
            value = getattr(prior, attr)
            assert isinstance(value, int) and not isinstance(value, bool) and value >= 1, (attr, value)
        assert isinstance(prior.device, torch.device)
        assert len(prior.class_names) == prior.n_classes
        assert prior.class_index(0) == 0
        assert prior.class_index(prior.class_names[-1]) == prior.n_classes - 1
        with pytest.raises(DGPUsageError):
            prior.class_index(prior.n_classes)

    def test_sample(self):
        prior = self.prior()
        z = prior.sample(3, generator=torch.Generator().manual_seed(1))
        assert z.shape == (3, prior.dim_z) and z.dtype == torch.float32 and z.device == prior.device
        again = prior.sample(3, generator=torch.Generator().manual_seed(1))
        other = prior.sample(3, generator=torch.Generator().manual_seed(2))
        assert torch.equal(z, again) and not torch.equal(z, other)
        assert prior.sample(2).shape == (2, prior.dim_z)
        with pytest.raises(DGPUsageError):
            prior.sample(0)

    def test_networks_are_frozen_and_on_the_device(self):
        prior = self.prior()
        for net in (prior.G, prior.D):
            assert not net.training
            params = list(net.parameters())
            assert params and not any(p.requires_grad for p in params)
            assert all(p.device == prior.device for p in params)

    def test_generator_renders_images(self):
        prior = self.prior()
        z, embedding = self.inputs(3)
        images = self.render(prior.G, z, embedding)
        r = prior.resolution
        assert images.shape == (3, 3, r, r) and images.dtype == torch.float32
        assert torch.isfinite(images).all() and images.min() >= -1 and images.max() <= 1
        assert torch.equal(images, self.render(prior.G, z, embedding))
        one = self.render(prior.G, z[1:2], embedding[1:2])
        assert torch.allclose(one, images[1:2], atol=self.atol), "renders depend on the rest of the batch"

    def test_discriminator_features(self):
        prior = self.prior()
        z, embedding = self.inputs(2)
        images = self.render(prior.G, z, embedding).requires_grad_(True)
        logits, features = prior.D(images)
        assert logits.shape[0] == 2 and torch.isfinite(logits).all()
        assert isinstance(features, (list, tuple)) and features
        assert all(f.shape[0] == 2 and torch.isfinite(f).all() for f in features)
        features[-1].abs().sum().backward()
        assert images.grad is not None and images.grad.abs().sum() > 0

    def test_fresh_generator_is_an_independent_trainable_copy(self):
        prior = self.prior()
        z, embedding = self.inputs(2)
        before = self.render(prior.G, z, embedding)
        G = prior.fresh_generator()
        assert G is not prior.G and not G.training
        assert all(p.device == prior.device for p in G.parameters())
        assert torch.allclose(self.render(G, z, embedding), before, atol=self.atol)
        with torch.no_grad():
            for group in prior.stages(G):
                for p in group:
                    p.add_(0.05)
        assert not torch.allclose(self.render(G, z, embedding), before, atol=self.atol)
        assert torch.equal(self.render(prior.G, z, embedding), before), "changing the copy changed the prior"
        assert torch.allclose(self.render(prior.fresh_generator(), z, embedding), before, atol=self.atol)

    def test_stages_are_disjoint_parameter_groups_of_the_model(self):
        prior = self.prior()
        G = prior.fresh_generator()
        owned = {id(p) for p in G.parameters()}
        groups = prior.stages(G)
        assert groups and all(groups), "every stage needs parameters"
        ids = [id(p) for group in groups for p in group]
        assert len(ids) == len(set(ids)), "a parameter is in two stages"
        assert set(ids) <= owned, "a stage holds parameters of another model"
        with_embedding = prior.stages(G, include_embedding=True)
        added = {id(p) for p in with_embedding[0]} - {id(p) for p in groups[0]}
        assert added and added <= owned and not added & set(ids), "include_embedding adds the embedding's parameters"
        assert [[id(p) for p in g] for g in with_embedding[1:]] == [[id(p) for p in g] for g in groups[1:]]

    def test_every_stage_is_reached_by_the_gradient(self):
        prior = self.prior()
        G = prior.fresh_generator()
        groups = prior.stages(G)
        for group in groups:
            for p in group:
                p.requires_grad_(True)
        z, embedding = self.inputs(2, model=G)
        prior.generate(z, embedding=embedding, model=G).square().mean().backward()
        for i, group in enumerate(groups):
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in group), f"stage {i} gets no gradient"

    def test_generator_state_round_trip(self):
        prior = self.prior()
        G = prior.fresh_generator()
        z, embedding = self.inputs(2, model=G)
        before = self.render(G, z, embedding)
        state = prior.generator_state(G)
        kept = {k: v.clone() for k, v in state.items()}
        params = [id(p) for group in prior.stages(G) for p in group]
        with torch.no_grad():
            for p in G.parameters():
                p.mul_(1.1)
        assert all(torch.equal(state[k], kept[k]) for k in kept), "the state is not a copy"
        prior.load_generator_state(state, model=G)
        assert torch.allclose(self.render(G, z, embedding), before, atol=self.atol)
        assert [id(p) for group in prior.stages(G) for p in group] == params
        broken = dict(state)
        broken.pop(next(iter(broken)))
        with pytest.raises(DGPUsageError):
            prior.load_generator_state(broken, model=G)

    def test_instance_norm_switch(self):
        prior = self.prior()
        G = prior.fresh_generator()
        z, embedding = self.inputs(2, model=G)
        plain = self.render(prior.G, z, embedding)
        before = self.render(G, z, embedding)
        prior.set_instance_norm(True, model=G)
        switched = self.render(G, z, embedding)
        assert switched.shape == before.shape and torch.isfinite(switched).all()
        prior.set_instance_norm(False, model=G)
        assert torch.allclose(self.render(G, z, embedding), before, atol=self.atol)
        assert torch.equal(self.render(prior.G, z, embedding), plain)

    def test_feature_extractor_gives_the_features(self):
        prior = self.prior()
        z, embedding = self.inputs(2)
        images = self.render(None, z, embedding)
        for channels_last in (False, True):
            feats = prior.feature_extractor(channels_last=channels_last)(images)
            for a, b in zip(feats, prior.features(images)):
                assert torch.allclose(a.contiguous(), b, atol=self.atol)

    def test_generator_copies_are_independent_stacked_copies(self):
        """What the batched engine relies on: copy i renders sample i as the prior does; every
        stage parameter is stacked (first dimension = copies) and trainable; changing copy 1
        changes image 1 only; ``copy_state(copies, i)`` is copy i in the prior's own layout."""
        prior = self.prior()
        z, _ = self.inputs(3)
        y = torch.arange(3, device=prior.device) % prior.n_classes
        copies = prior.generator_copies(3)
        with torch.no_grad():
            plain = prior.generate(z, y)
            images = prior.generate(z, embedding=prior.embed(y, model=copies), model=copies)
        assert torch.allclose(images, plain, atol=self.atol)
        groups = prior.stages(copies)
        assert groups and all(groups)
        for group in groups:
            for p in group:
                assert p.shape[0] == 3 and p.requires_grad, "stage parameters are stacked per copy and trainable"
        with torch.no_grad():
            for group in groups:
                for p in group:
                    p[1].add_(0.05)
            changed = prior.generate(z, embedding=prior.embed(y, model=copies), model=copies)
        assert torch.equal(changed[0], images[0]) and torch.equal(changed[2], images[2])
        assert not torch.allclose(changed[1], images[1], atol=self.atol)
        G = prior.fresh_generator()
        prior.load_generator_state(prior.copy_state(copies, 1), model=G)
        with torch.no_grad():
            alone = prior.generate(z[1:2], embedding=prior.embed(y[1:2], model=G), model=G)
        # another layout (a grouped convolution against a plain one): float reduction order
        assert torch.allclose(alone, changed[1:2], atol=max(self.atol, 1e-4))
        tuned = prior.generator_copies(2, tune_embedding=True)
        first = {id(p) for p in prior.stages(tuned, include_embedding=True)[0]}
        assert len(first) > len(prior.stages(tuned)[0]), "tune_embedding adds the stacked embedding to stage 0"

    def test_registered_name_loads_this_prior(self):
        if self.registered_name is None:
            pytest.skip("no registered_name")
        from dgp_toolkit.registry import get_registry

        loaded = get_registry().create("prior", self.registered_name, **self.options)
        kind = type(self.prior())  # compared by name: a test may have re-imported the plugin's module
        assert (type(loaded).__module__, type(loaded).__qualname__) == (kind.__module__, kind.__qualname__)
        assert loaded.dim_z == self.prior().dim_z
