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
    learnable_options = [{"sigma": "auto"}, {"sigma": " AUTO ", "size": "21"}]


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


# ----------------------------------------------------------------------------- sigma=auto
def test_the_fixed_path_is_kornias_blur_bit_for_bit():
    from kornia.filters import gaussian_blur2d

    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for sigma, size in ((2.0, 9), (1.3, 7), (0.5, 3)):
        expected = gaussian_blur2d(x, (size, size), torch.tensor([[sigma, sigma]]), border_type="reflect")
        assert torch.equal(Blur(sigma=sigma)(x), expected)
        assert torch.equal(Blur(sigma=sigma)(x, **{}), expected)


def test_auto_kernel_is_fixed_from_the_top_of_the_range():
    from dgp_toolkit.plugins.degradations.blur import SIGMA_LEARNABLE

    b = Blur(sigma="auto")
    assert b.options == {"sigma": "auto", "size": default_kernel_size(SIGMA_LEARNABLE.high)} == {"sigma": "auto", "size": 17}
    assert b.spec == "blur:sigma=auto,size=17" and Blur.from_spec("blur:sigma=auto") == b
    assert Blur(sigma="auto", size=21).options["size"] == 21
    with pytest.raises(DGPUsageError, match=r"^blur: a 9x9 kernel cannot fit sigma=auto up to 4 \(that needs size=17 or "
                                            r"more\); give a larger size or leave size out$"):
        Blur(sigma="auto", size=9)


def test_each_image_gets_its_own_sigma_matching_kornia():
    x = torch.rand(3, 3, 20, 20, generator=torch.Generator().manual_seed(1)) * 2 - 1
    sigmas = torch.tensor([0.3, 1.6, 4.0])
    y = Blur(sigma="auto")(x, sigma=sigmas)
    for i, s in enumerate(sigmas.tolist()):
        assert torch.allclose(y[i:i + 1], Blur(sigma=s, size=17)(x[i:i + 1]), atol=1e-6)
    # one number for every image, and the starting value (2) without one
    assert torch.allclose(Blur(sigma="auto")(x, sigma=1.6), Blur(sigma=1.6, size=17)(x), atol=1e-6)
    assert torch.allclose(Blur(sigma="auto")(x), Blur(sigma=2.0, size=17)(x), atol=1e-6)


def test_auto_on_size_and_a_value_for_a_fixed_sigma():
    with pytest.raises(DGPUsageError, match=r"^blur: option 'size' cannot be auto \(only sigma can be fitted with the "
                                            r"image\); give it a value: an integer, odd and at least 3$"):
        Blur(size="auto")
    with pytest.raises(TypeError, match="blur: got fitted values for sigma, but no option is auto here"):
        Blur(sigma=2)(torch.zeros(1, 3, 20, 20), sigma=torch.ones(1))


def test_auto_on_a_small_image_names_auto_in_the_error():
    with pytest.raises(DGPUsageError, match=r"a 17x17 kernel \(sigma auto\) needs images larger than 8 px per side"):
        Blur(sigma="auto")(torch.zeros(1, 3, 8, 8))


def test_the_listing_shows_auto(dgp):
    import json

    rows = {row["name"]: row for row in json.loads(dgp("degradations", "--json").stdout)}
    sigma = {o["name"]: o for o in rows["blur"]["options"]}["sigma"]
    assert sigma["allowed"] == ("a number, greater than 0 and at most 100; or auto (fitted with the image, "
                                "from 0.3 to 4, starting at 2)")
    assert sigma["default"] == 2.0


def test_restore_with_auto_on_size_exits_2_before_any_work(dgp, tmp_path):
    from PIL import Image

    source = tmp_path / "in.png"
    Image.new("RGB", (32, 32)).save(source)
    result = dgp("restore", str(source), "--degrade", "blur:sigma=2,size=auto", "-o", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "Error: blur: option 'size' cannot be auto (only sigma can be fitted with the image); give it a value: "
        "an integer, odd and at least 3"]
