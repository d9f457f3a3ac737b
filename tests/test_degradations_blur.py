"""The ``blur`` degradation (Gaussian)."""

import math

import pytest
import torch

from dgp_toolkit.errors import DGPUsageError
from dgp_toolkit.plugins.degradations.blur import Blur, default_kernel_size
from dgp_toolkit.testing import DegradationContract


class TestBlurContract(DegradationContract):
    factory = Blur
    valid_options = [{}, {"sigma": "1.5"}, {"sigma": 3, "size": "7"}, {"sigma": 0.5}]
    invalid_options = [{"sigma": "0"}, {"sigma": "-1"}, {"sigma": "wide"}, {"sigma": "nan"},
                       {"size": "4"}, {"size": "1"}, {"size": "3.5"}]


@pytest.mark.parametrize("sigma,size", [(2.0, 9), (1.0, 5), (1.3, 7), (0.5, 3), (0.1, 3), (3.0, 13)])
def test_default_size_is_odd_integer_nearest_4_sigma_plus_1(sigma, size):
    assert default_kernel_size(sigma) == size
    assert Blur(sigma=sigma).options["size"] == size


def test_defaults_and_spec():
    b = Blur()
    assert b.options == {"sigma": 2.0, "size": 9}
    assert b.spec == "blur:sigma=2.0,size=9"
    assert Blur(sigma="2") == b == Blur(sigma=2, size=9)
    assert Blur(sigma=2, size=11) != b


def test_constant_image_is_unchanged():
    x = torch.full((1, 3, 20, 20), 0.3)
    assert torch.allclose(Blur(sigma=2)(x), x, atol=1e-6)


def test_impulse_response_is_the_normalised_gaussian():
    sigma, size = 1.5, 7
    x = -torch.ones(1, 3, 21, 21, dtype=torch.float64)
    x[..., 10, 10] = 1.0
    y = Blur(sigma=sigma, size=size)(x) + 1  # response to an impulse of height 2
    r = size // 2
    taps = torch.tensor([math.exp(-(i * i) / (2 * sigma * sigma)) for i in range(-r, r + 1)], dtype=torch.float64)
    taps = taps / taps.sum()
    expected = 2 * torch.outer(taps, taps)
    assert torch.allclose(y[0, 0, 10 - r:10 + r + 1, 10 - r:10 + r + 1], expected, atol=1e-9)
    outside = y[0, 0].clone()
    outside[10 - r:10 + r + 1, 10 - r:10 + r + 1] = 0
    assert outside.abs().max() < 1e-9


def test_reflect_padding_at_the_border():
    x = torch.zeros(1, 3, 16, 16)
    x[..., :, 0] = 1.0  # a bright left column
    y = Blur(sigma=1.0)(x)
    # reflect padding mirrors around the edge pixel: the edge keeps the largest value
    assert y[0, 0, 8, 0] > y[0, 0, 8, 1] > y[0, 0, 8, 2]
    assert y[0, 0, 8, 0] < 1.0


def test_too_small_image_is_a_clear_error():
    with pytest.raises(ValueError, match="larger than 4 px per side for reflect padding, got 4x4; use a smaller sigma or size \\(at most 7 here\\)"):
        Blur()(torch.zeros(1, 3, 4, 4))


def test_sigma_too_large_names_the_limit():
    with pytest.raises(DGPUsageError, match="at most 100"):
        Blur(sigma=1000)
