"""Composition of degradations (command-line order) and the built-in registration."""

import importlib
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import dgp_toolkit
from dgp_toolkit.plugins.degradations import BUILTINS, register_degradations
from dgp_toolkit.plugins.degradations.base import Degradation
from dgp_toolkit.plugins.degradations.blur import Blur
from dgp_toolkit.plugins.degradations.compose import Compose
from dgp_toolkit.plugins.degradations.downsample import Downsample
from dgp_toolkit.plugins.degradations.gray import Gray, gray
from dgp_toolkit.plugins.degradations.mask import Mask
from dgp_toolkit.plugins.degradations.noise import Noise


def _x(batch=2, size=32, seed=0):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def hybrid():
    return Compose([Gray(), Mask(), Downsample(factor=2)])


def test_forward_applies_steps_in_order():
    c = Compose([Blur(sigma=1), Downsample(factor=2)])
    x = _x()
    assert torch.allclose(c(x), Downsample(factor=2)(Blur(sigma=1)(x)))
    assert not torch.allclose(c(x), Blur(sigma=1)(Downsample(factor=2)(x)), atol=1e-4)


def test_degrade_applies_each_degrade_in_order_with_one_generator():
    c = Compose([Blur(sigma=1), Noise(sigma=0.05)])
    x = _x()
    got = c.degrade(x, generator=torch.Generator().manual_seed(3))
    expected = Noise(sigma=0.05).degrade(Blur(sigma=1)(x), generator=torch.Generator().manual_seed(3))
    assert torch.equal(got, expected)


def test_spec_is_a_list_and_round_trips_through_the_registry():
    c = hybrid()
    assert c.spec == ["gray", "mask", "downsample:factor=2"]
    again = Compose([dgp_toolkit.parse_degradation(s) for s in c.spec])
    assert again == c and hash(again) == hash(c)
    assert Compose([Gray(), Mask()]) != c
    assert "gray + mask + downsample:factor=2" in repr(c)


def test_observation_size_chains():
    assert hybrid().observation_size(32) == (16, 16)
    assert Compose([Downsample(factor=2), Downsample(factor=2)]).observation_size(32) == (8, 8)


def test_observe_runs_in_reverse_order():
    low = _x(batch=1, size=16)
    target = hybrid().observe(low, size=32)
    up = F.interpolate(low, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(target, gray(Mask()(up)))
    with pytest.raises(Exception, match="16x16"):
        hybrid().observe(_x(batch=1, size=20), size=32)


def test_finish_applies_the_single_active_step():
    x, restored = _x(batch=1), _x(batch=1, seed=1)
    c = Compose([Mask(), Noise()])
    observed = c.observe(c.degrade(x), size=32)
    assert torch.equal(c.finish(restored, observed), Mask().finish(restored, observed))
    g = Compose([Noise(), Gray()])
    assert torch.allclose(g.finish(restored, observed), Gray().finish(restored, observed))


def test_finish_is_the_identity_after_several_transforms():
    x, restored = _x(batch=1), _x(batch=1, seed=1)
    c = hybrid()
    observed = c.observe(c.degrade(x), size=32)
    assert torch.equal(c.finish(restored, observed), restored)


def test_empty_composition_is_the_identity():
    c = Compose([])
    x = _x()
    assert torch.equal(c(x), x) and torch.equal(c.degrade(x), x) and c.spec == []
    assert c.identity_forward


def test_rejects_non_degradations():
    with pytest.raises(TypeError, match="expected degradations"):
        Compose([Gray(), "blur"])


def test_gradients_flow_through_a_composition():
    x = _x().requires_grad_(True)
    hybrid()(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_check_image_size_reaches_every_step(tmp_path):
    from PIL import Image

    path = tmp_path / "m.png"
    image = Image.new("L", (10, 10), 255)
    image.putpixel((2, 2), 0)
    image.save(path)
    c = Compose([Gray(), Mask(file=path)])
    c.check_image_size(10, 10)
    with pytest.raises(dgp_toolkit.DGPUsageError, match="10x10 but the image is 20x10"):
        c.check_image_size(20, 10)


def test_hook_registers_every_builtin_under_its_own_name():
    seen = {}
    register_degradations(lambda name, factory: seen.setdefault(name, factory))
    assert sorted(seen) == sorted(BUILTINS) == ["blur", "downsample", "gray", "mask", "noise"]
    for name, ref in seen.items():
        # Registered lazily as "module:Class" so building the registry does not import torch.
        module, _, attr = ref.partition(":")
        factory = getattr(importlib.import_module(module), attr)
        assert issubclass(factory, Degradation) and factory.name == name
        assert dgp_toolkit.get_degradation(name) == factory()


def test_registry_builds_builtins_from_strings():
    assert dgp_toolkit.get_degradation("blur", sigma="1.5") == Blur(sigma=1.5)
    assert dgp_toolkit.parse_degradation("mask:box=8/8/16/16") == Mask(box=(8, 8, 16, 16))
    with pytest.raises(dgp_toolkit.DGPUsageError, match="factor"):
        dgp_toolkit.parse_degradation("downsample:factor=3")


def test_importing_the_plugin_package_does_not_import_torch():
    code = ("import sys, dgp_toolkit.plugins.degradations as d; "
            "assert d.BUILTINS; print('torch' in sys.modules, 'kornia' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
