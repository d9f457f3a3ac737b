"""The ``downsample`` degradation (super-resolution) and its Lanczos filters."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dgp_toolkit.errors import DGPUsageError
from dgp_toolkit.plugins.degradations.downsample import (
    Downsample,
    lanczos2_downsample,
    lanczos2_kernel,
    pil_lanczos_matrix,
    pil_lanczos_resize,
)
from dgp_toolkit.testing import DegradationContract


class TestDownsampleContract(DegradationContract):
    factory = Downsample
    valid_options = [{}, {"factor": "2"}, {"factor": 8}]
    invalid_options = [{"factor": "3"}, {"factor": "16"}, {"factor": "4.5"}, {"factor": "x4"}]


def _photo(size=128):
    import skimage.data

    image = Image.fromarray(skimage.data.astronaut()).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image)


def _tensor(array):
    return torch.from_numpy(np.array(array)).permute(2, 0, 1)[None].double() / 127.5 - 1


def _array(tensor):
    return (tensor[0].permute(1, 2, 0).double().numpy() + 1) * 127.5


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_lanczos2_kernel_matches_its_definition(factor):
    k = lanczos2_kernel(factor)
    assert len(k) == 4 * factor and math.isclose(k.sum(), 1.0)
    assert np.allclose(k, k[::-1])
    # direct evaluation: taps half a pixel off the centre, Lanczos window of 2 lobes
    centre = 2 * factor + 0.5
    raw = []
    for i in range(1, 4 * factor + 1):
        d = abs(i - centre) / factor
        raw.append(2 * math.sin(math.pi * d) * math.sin(math.pi * d / 2) / (math.pi ** 2 * d * d))
    assert np.allclose(k, np.array(raw) / sum(raw))


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_lanczos2_downsample_size_and_constants(factor):
    x = torch.full((2, 3, 32, 48), -0.25)
    y = lanczos2_downsample(x, factor)
    assert y.shape == (2, 3, 32 // factor, 48 // factor)
    assert torch.allclose(y, torch.full_like(y, -0.25), atol=1e-6)


def test_lanczos2_downsample_is_the_2d_outer_product_kernel():
    factor = 2
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64)
    k = torch.tensor(lanczos2_kernel(factor))
    kernel2d = torch.outer(k, k)[None, None]
    pad = (len(k) - factor) // 2
    expected = F.conv2d(F.pad(x, (pad,) * 4, mode="replicate"), kernel2d, stride=factor)
    assert torch.allclose(lanczos2_downsample(x, factor), expected, atol=1e-12)


def test_pil_matrix_rows_sum_to_one():
    for n_in, n_out in ((128, 32), (32, 16), (50, 7), (16, 16)):
        m = pil_lanczos_matrix(n_in, n_out)
        assert m.shape == (n_out, n_in) and np.allclose(m.sum(axis=1), 1)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_degrade_downscale_matches_pillow_lanczos(factor):
    photo = _photo()
    low = 128 // factor
    expected = np.asarray(Image.fromarray(photo).resize((low, low), Image.Resampling.LANCZOS), np.float64)
    ours = _array(pil_lanczos_resize(_tensor(photo), (low, low)))
    diff = np.abs(ours - expected)
    assert diff.max() <= 1.5 and diff.mean() < 0.4  # Pillow rounds to 8 bits after each pass


def test_pillow_match_on_noise_and_non_square():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(arr).resize((12, 16), Image.Resampling.LANCZOS), np.float64)
    ours = _array(pil_lanczos_resize(_tensor(arr), (16, 12)))
    assert np.abs(ours - expected).max() <= 1.5


def test_degrade_is_pillow_downscale_then_bilinear_up():
    photo = _photo(64)
    clean = _tensor(photo).float()
    low = Image.fromarray(photo).resize((16, 16), Image.Resampling.LANCZOS)
    low_t = torch.from_numpy(np.array(low)).permute(2, 0, 1)[None].float() / 127.5 - 1
    expected = F.interpolate(low_t, size=(64, 64), mode="bilinear", align_corners=False)
    got = Downsample(factor=4).degrade(clean)
    assert (got - expected).abs().max() < 2 / 255 * 2


def test_forward_is_close_to_degrade_on_a_natural_image():
    clean = _tensor(_photo(128)).float()
    d = Downsample(factor=4)
    gap = (d(clean) - d.degrade(clean)).abs().mean()
    assert gap < 0.03  # two antialiasing filters, both Lanczos
    assert (d(clean) - clean).abs().mean() > 0.03  # but they do remove detail


def test_forward_removes_the_highest_frequency():
    x = torch.ones(1, 3, 32, 32)
    x[..., ::2, :] = -1
    y = Downsample(factor=2)(x)
    assert y[..., 4:-4, 4:-4].abs().max() < 0.05


def test_observe_low_resolution_input_is_upsampled_bilinearly():
    d = Downsample(factor=4)
    low = torch.rand(1, 3, 8, 8) * 2 - 1
    expected = F.interpolate(low, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(d.observe(low, size=32), expected)
    assert torch.allclose(d.observe(low), expected)  # size unknown: treated as low-res
    assert d.observation_size(32) == (8, 8) and d.observation_size((32, 64)) == (8, 16)


def test_observe_full_size_input_passes_through():
    full = torch.rand(1, 3, 32, 32)
    assert torch.equal(Downsample(factor=4).observe(full, size=32), full)


def test_observe_wrong_size_names_both_expected_sizes():
    with pytest.raises(DGPUsageError, match=r"8x8 px \(or a full-size one of 32x32\), got 10x10"):
        Downsample(factor=4).observe(torch.zeros(1, 3, 10, 10), size=32)


def test_image_smaller_than_factor_is_an_error():
    with pytest.raises(ValueError, match="at least 8x8"):
        Downsample(factor=8)(torch.zeros(1, 3, 4, 4))


def test_non_divisible_sizes_keep_the_input_size():
    x = torch.rand(1, 3, 30, 34) * 2 - 1
    d = Downsample(factor=4)
    assert d(x).shape == x.shape and d.degrade(x).shape == x.shape
