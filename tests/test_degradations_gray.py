"""The ``gray`` degradation (colorization)."""

import torch
from kornia.color import rgb_to_lab

from dgp_toolkit.plugins.degradations.gray import LUMA_WEIGHTS, Gray, gray
from dgp_toolkit.testing import DegradationContract


class TestGrayContract(DegradationContract):
    factory = Gray
    valid_options = [{}]
    invalid_options = []


def test_reference_weights_on_pure_colours():
    # pure red, green and blue in [-1, 1]
    x = -torch.ones(3, 3, 1, 1)
    for i in range(3):
        x[i, i] = 1.0
    y = Gray()(x)
    for i in range(3):
        expected = sum(LUMA_WEIGHTS[j] * (1.0 if j == i else -1.0) for j in range(3))
        assert torch.allclose(y[i], torch.full((3, 1, 1), expected)), i
    assert abs(-0.4021 - (0.2989 - 0.5870 - 0.1140)) < 1e-9
    assert torch.allclose(y[0, 0], torch.tensor([[-0.4021]]))


def test_three_equal_channels():
    y = gray(torch.rand(2, 3, 8, 8) * 2 - 1)
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])


def test_observe_turns_a_colour_image_grey_and_keeps_a_grey_one():
    g = Gray()
    colour = torch.rand(1, 3, 8, 8) * 2 - 1
    assert torch.allclose(g.observe(colour), gray(colour))
    grey = colour[:, :1].expand(-1, 3, -1, -1)
    assert torch.allclose(g.observe(grey), grey, atol=1e-3)  # weights sum to 0.9999


def _lab(x):
    return rgb_to_lab((x + 1) / 2)


def test_finish_keeps_input_lightness_and_result_colour():
    g = Gray()
    gen = torch.Generator().manual_seed(0)
    clean = (torch.rand(1, 3, 16, 16, generator=gen) * 1.2 - 0.6)  # away from gamut edges
    restored = (clean + 0.2 * torch.rand(1, 3, 16, 16, generator=gen) - 0.1).clamp(-1, 1)
    observed = g.degrade(clean)
    out = g.finish(restored, observed)
    assert out.shape == restored.shape
    lab_out, lab_obs, lab_res = _lab(out), _lab(observed), _lab(restored)
    # lightness comes from the observation
    assert (lab_out[:, 0] - lab_obs[:, 0]).abs().mean() < 0.5
    assert (lab_res[:, 0] - lab_obs[:, 0]).abs().mean() > 1.0  # the test can fail
    # the colour (a, b) comes from the restoration, not from the grey observation
    assert (lab_out[:, 1:] - lab_res[:, 1:]).abs().mean() < 2.0
    assert lab_obs[:, 1:].abs().max() < 1.0


def test_finish_of_the_truth_is_close_to_the_truth():
    g = Gray()
    clean = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 1.2 - 0.6
    out = g.finish(clean, g.degrade(clean))
    # the reference luminance is not Lab L, so only close, not equal
    assert (out - clean).abs().mean() < 0.05
