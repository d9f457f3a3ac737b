"""The ``noise`` degradation (added only by ``degrade``)."""

import pytest
import torch

from dgp_toolkit.plugins.degradations.noise import Noise
from dgp_toolkit.testing import DegradationContract


class TestNoiseContract(DegradationContract):
    factory = Noise
    valid_options = [{}, {"sigma": "0.05"}, {"sigma": 0}]
    invalid_options = [{"sigma": "-0.1"}, {"sigma": "2"}, {"sigma": "loud"}]
    random_degrade = False  # sigma=0 is among the examples; seeds are tested below


def test_forward_is_the_identity_and_keeps_gradients():
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    y = Noise()(x)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_degrade_adds_noise_of_twice_sigma_on_the_minus_one_to_one_scale():
    x = torch.zeros(1, 3, 128, 128)
    y = Noise(sigma=0.1).degrade(x, generator=torch.Generator().manual_seed(0))
    assert abs(float(y.std()) - 0.2) < 0.005
    assert abs(float(y.mean())) < 0.005


def test_degrade_clips_to_the_valid_range():
    x = torch.full((1, 3, 32, 32), 0.95)
    y = Noise(sigma=0.2).degrade(x)
    assert y.max() <= 1.0 and (y == 1.0).any()


def test_seeds_reproduce_and_differ():
    x = torch.zeros(1, 3, 16, 16)
    n = Noise()
    a = n.degrade(x, generator=torch.Generator().manual_seed(1))
    b = n.degrade(x, generator=torch.Generator().manual_seed(1))
    c = n.degrade(x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(n.degrade(x), n.degrade(x))  # global RNG moves on


def test_same_seed_same_noise_in_every_dtype():
    x = torch.zeros(1, 3, 16, 16)
    n = Noise()
    a = n.degrade(x, generator=torch.Generator().manual_seed(7))
    b = n.degrade(x.double(), generator=torch.Generator().manual_seed(7))
    c = n.degrade(x.bfloat16(), generator=torch.Generator().manual_seed(7))
    assert b.dtype == torch.float64 and c.dtype == torch.bfloat16
    assert torch.allclose(a.double(), b, atol=1e-6)
    assert torch.allclose(a, c.float(), atol=0.01)


def test_zero_sigma_changes_nothing():
    x = torch.rand(1, 3, 8, 8) * 2 - 1
    assert torch.equal(Noise(sigma=0).degrade(x), x)


def test_bad_generator_is_a_type_error():
    with pytest.raises(TypeError, match="torch.Generator"):
        Noise().degrade(torch.zeros(1, 3, 4, 4), generator=42)


def test_observe_and_finish_are_identities():
    n = Noise()
    x = torch.rand(1, 3, 8, 8) * 2 - 1
    assert torch.equal(n.observe(x, size=8), x)
    r = torch.rand(1, 3, 8, 8)
    assert torch.equal(n.finish(r, x), r)
