"""PSNR / SSIM and the task variants."""

import math

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import rgb2lab
from skimage.metrics import structural_similarity

from dgp_toolkit.metrics import (
    colorization_scores,
    inpainting_scores,
    missing_bbox,
    psnr,
    put_luminance,
    scores,
    ssim,
    to_unit_array,
)
from dgp_toolkit.plugins.degradations.mask import Mask


def _image(seed=0, size=32):
    rng = np.random.default_rng(seed)
    base = rng.random((size // 4, size // 4, 3))
    return np.kron(base, np.ones((4, 4, 1))) * 0.8 + 0.1  # smooth-ish blocks in [0.1, 0.9]


def test_psnr_matches_the_formula():
    a = _image()
    b = np.clip(a + np.random.default_rng(1).normal(0, 0.05, a.shape), 0, 1)
    mse = np.mean((a - b) ** 2)
    assert psnr(b, a) == pytest.approx(10 * math.log10(1 / mse))
    assert psnr(a + 0.1, a) == pytest.approx(20.0)
    assert psnr(a, a) == math.inf


def test_ssim_is_skimage_over_colour_channels():
    a = _image()
    b = np.clip(a + np.random.default_rng(2).normal(0, 0.1, a.shape), 0, 1)
    expected = structural_similarity(a, b, data_range=1.0, channel_axis=-1)
    assert ssim(b, a) == pytest.approx(expected)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(b, a) < 0.95


def test_every_input_kind_gives_the_same_numbers():
    uint8 = (np.random.default_rng(3).random((16, 16, 3)) * 255).round().astype(np.uint8)
    other = np.clip(uint8.astype(int) + 9, 0, 255).astype(np.uint8)
    reference = scores(other.astype(float) / 255, uint8.astype(float) / 255)
    tensor = torch.from_numpy(other).permute(2, 0, 1)[None].float() / 127.5 - 1
    for restored in (other, tensor, tensor[0], Image.fromarray(other)):
        got = scores(restored, uint8)
        assert got["psnr"] == pytest.approx(reference["psnr"], abs=1e-4)
        assert got["ssim"] == pytest.approx(reference["ssim"], abs=1e-5)


def test_to_unit_array_checks():
    assert to_unit_array(torch.ones(1, 3, 2, 2)).max() == 1.0
    with pytest.raises(ValueError, match="batch"):
        to_unit_array(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="H x W x 3"):
        to_unit_array(np.zeros((4, 4)))
    with pytest.raises(TypeError):
        to_unit_array(np.zeros((4, 4, 3), np.int32))
    with pytest.raises(ValueError, match="differ in size"):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))


def test_small_images_use_a_smaller_ssim_window():
    a = _image(size=8)[:5, :5]
    assert ssim(a, a) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="3x3"):
        ssim(a[:2, :2], a[:2, :2])


def test_put_luminance_takes_l_from_the_grey_input():
    clean = _image()
    grey = np.repeat(clean.mean(axis=2, keepdims=True), 3, axis=2)
    restored = _image(seed=5)
    out = put_luminance(restored, grey)
    assert np.allclose(rgb2lab(out)[..., 0], rgb2lab(grey)[..., 0], atol=1.5)


def test_colorization_scores_ignore_a_wrong_lightness():
    clean = _image()
    lab = rgb2lab(clean)
    lab[..., 0] = np.clip(lab[..., 0] * 0.7 + 10, 0, 100)  # right colours, wrong lightness
    from skimage.color import lab2rgb

    restored = np.clip(lab2rgb(lab), 0, 1)
    plain = scores(restored, clean)
    task = colorization_scores(restored, clean)
    # the grey input's Lab L is close to, not equal to, the clean L (reference weights)
    assert task["psnr"] > plain["psnr"] + 3 and task["ssim"] > plain["ssim"]
    # an explicit grey input gives the same as the default one made from the clean image
    grey = np.repeat((clean @ np.array([0.2989, 0.5870, 0.1140]))[..., None], 3, axis=2)
    assert colorization_scores(restored, clean, grey)["psnr"] == pytest.approx(task["psnr"])


def test_missing_bbox():
    m = np.zeros((10, 12), bool)
    m[2:5, 3:9] = True
    m[7, 4] = True
    assert missing_bbox(m) == (2, 8, 3, 9)
    with pytest.raises(ValueError, match="no missing"):
        missing_bbox(np.zeros((4, 4), bool))


def test_inpainting_scores_only_the_hole():
    clean = _image()
    missing = Mask().missing(32, 32)
    restored = clean.copy()
    restored[missing] = np.clip(restored[missing] + 0.2, 0, 1)
    task = inpainting_scores(restored, clean, missing)
    top, bottom, left, right = missing_bbox(missing)
    assert (top, bottom, left, right) == (11, 21, 11, 21)
    assert task["psnr"] == pytest.approx(psnr(restored[11:21, 11:21], clean[11:21, 11:21]))
    assert task["psnr"] < scores(restored, clean)["psnr"] - 5
    with pytest.raises(ValueError, match="mask is"):
        inpainting_scores(restored, clean, np.ones((8, 8), bool))
