"""The ``mask`` degradation (inpainting)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dgp_toolkit.errors import DGPUsageError
from dgp_toolkit.images import fit_image
from dgp_toolkit.plugins.degradations.mask import Mask, centre_square
from dgp_toolkit.testing import DegradationContract

SCRIBBLE = Path(__file__).resolve().parents[1] / "examples" / "images" / "mask_32_scribble.png"


class TestMaskContract(DegradationContract):
    factory = Mask
    valid_options = [{}, {"box": "4/4/8/8"}, {"box": (0, 2, 5, 7)}, {"file": str(SCRIBBLE)},
                     {"file": str(SCRIBBLE), "fit": "resize"}]
    invalid_options = [{"box": "8/8/16"}, {"box": "8/8/0/16"}, {"box": "-1/0/4/4"}, {"box": "a/b/c/d"},
                       {"fit": "crop"}, {"box": "1/1/2/2", "file": str(SCRIBBLE)},
                       {"file": "no/such/mask.png"}, {"file": str(SCRIBBLE), "fit": "stretch"}]


def _write_mask(path, width, height, hole):
    """A white mask with a black rectangle ``hole = (x, y, w, h)``."""
    data = np.full((height, width), 255, np.uint8)
    x, y, w, h = hole
    data[y:y + h, x:x + w] = 0
    Image.fromarray(data).save(path)
    return path


def test_default_hole_is_a_centred_square_of_a_third():
    assert centre_square(32, 32) == (11, 11, 10, 10)
    assert centre_square(128, 128) == (43, 43, 42, 42)
    assert centre_square(24, 40) == (16, 8, 8, 8)
    x = torch.rand(1, 3, 32, 32) + 0.5
    y = Mask()(x)
    assert (y[..., 11:21, 11:21] == 0).all()
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[11:21, 11:21] = False
    assert torch.equal(y[..., outside], x[..., outside])


def test_box_is_x_y_w_h():
    m = Mask(box="2/3/4/5")
    assert m.options["box"] == (2, 3, 4, 5) and m.spec == "mask:box=2/3/4/5"
    missing = m.missing(16, 16)
    assert missing.sum() == 20
    assert missing[3:8, 2:6].all()


def test_box_outside_the_image_is_a_usage_error():
    with pytest.raises(DGPUsageError, match="does not fit inside the 16x16 image"):
        Mask(box="10/10/8/8")(torch.zeros(1, 3, 16, 16))


def test_hole_is_zero_in_minus_one_to_one_space():
    y = Mask()(torch.ones(1, 3, 9, 9))
    assert y.min() == 0.0  # mid-grey, as the reference


def test_mask_file_black_is_missing(tmp_path):
    path = _write_mask(tmp_path / "m.png", 16, 16, (3, 4, 5, 6))
    m = Mask(file=str(path))
    # fitted like an inpainting input by default: the whole frame (resize)
    assert m.options == {"box": None, "file": path, "fit": "resize"}
    missing = m.missing(16, 16)
    expected = np.zeros((16, 16), bool)
    expected[4:10, 3:8] = True
    assert np.array_equal(missing, expected)


def test_mask_file_is_fitted_like_the_image(tmp_path):
    # a 48x32 mask with a hole on the left edge: a centre crop to 32x32 cuts 8 px per side
    path = _write_mask(tmp_path / "wide.png", 48, 32, (10, 0, 6, 32))
    crop = Mask(file=path, fit="crop").missing(32, 32)
    assert crop[:, 2:8].all() and not crop[:, 8:].any() and not crop[:, :2].any()
    # resize squeezes it instead: columns 10..16 of 48 become about 6.7..10.7 of 32
    resized = Mask(file=path).missing(32, 32)  # the default
    assert resized[:, 8].all() and not resized[:, 12:].any()
    # same as fitting the mask image with images.fit_image
    reference = np.asarray(fit_image(Image.open(path).convert("L"), 32, mode="pad").image) < 128
    assert np.array_equal(Mask(file=path, fit="pad").missing(32, 32), reference)


def test_mask_file_of_a_different_size_than_the_image_is_an_error(tmp_path):
    path = _write_mask(tmp_path / "m.png", 40, 30, (1, 1, 5, 5))
    m = Mask(file=path)
    m.check_image_size(40, 30)  # the image the mask was drawn on
    with pytest.raises(DGPUsageError, match=r"m.png is 40x30 but the image is 64x48"):
        m.check_image_size(64, 48)
    Mask(box="1/1/2/2").check_image_size(64, 48)  # boxes do not care


def test_mask_file_without_holes_or_all_holes_is_an_error(tmp_path):
    white = tmp_path / "white.png"
    Image.new("L", (8, 8), 255).save(white)
    black = tmp_path / "black.png"
    Image.new("L", (8, 8), 0).save(black)
    with pytest.raises(DGPUsageError, match="no black"):
        Mask(file=white)
    with pytest.raises(DGPUsageError, match="entirely black"):
        Mask(file=black)


def test_bad_mask_files_are_usage_errors(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(DGPUsageError, match="notes.png"):
        Mask(file=text)
    with pytest.raises(DGPUsageError, match="missing.png: no such file"):
        Mask(file=tmp_path / "missing.png")


def test_mask_file_with_comma_and_colon_round_trips(tmp_path):
    folder = tmp_path / "a,b:c"
    folder.mkdir()
    path = _write_mask(folder / "m.png", 8, 8, (2, 2, 3, 3))
    m = Mask(file=path)
    assert '"' in m.spec
    assert Mask.from_spec(m.spec) == m


def test_observe_zeroes_the_hole_whatever_colour_it_was():
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    image[..., 11:21, 11:21] = 1.0  # painted white by the user
    target = Mask().observe(image, size=32)
    assert (target[..., 11:21, 11:21] == 0).all()
    assert torch.equal(target[..., :11, :], image[..., :11, :])


def test_finish_keeps_known_pixels_and_fills_the_hole():
    m = Mask(box="4/4/8/8")
    observed = m.observe(torch.rand(1, 3, 16, 16) * 2 - 1, size=16)
    restored = torch.rand(2, 3, 16, 16) * 2 - 1
    out = m.finish(restored, observed)
    known = torch.from_numpy(~m.missing(16, 16))
    assert torch.equal(out[..., known], observed.expand(2, -1, -1, -1)[..., known])
    assert torch.equal(out[..., ~known], restored[..., ~known])


def test_gradient_is_zero_in_the_hole_and_one_outside():
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    Mask(box="4/4/8/8")(x).sum().backward()
    assert (x.grad[..., 4:12, 4:12] == 0).all()
    assert x.grad.sum() == 3 * (256 - 64)
