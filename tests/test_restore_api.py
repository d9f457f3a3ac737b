"""``dgp_toolkit.restore``: inputs of every kind, the data flow, scores, full-resolution
outputs and the errors, on a tiny random-weight BigGAN and a tiny preset (seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import dgp_toolkit
from dgp_toolkit.errors import DGPUsageError
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py, as are tiny_files and tiny_biggan


@pytest.fixture
def prior(tiny_biggan):
    return dgp_toolkit.load_prior("biggan")


@pytest.fixture
def preset(tiny_files):
    return str(tiny_files[1])


def photo(width: int = 40, height: int = 30, seed: int = 0) -> np.ndarray:
    """A smooth colourful uint8 image (gradients plus a little texture)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x / max(width - 1, 1), y / max(height - 1, 1), 0.5 + 0.5 * np.sin(x / 5.0)], axis=-1)
    image = image * 200 + rng.integers(0, 40, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- inputs
def test_restore_is_public_and_survives_importing_its_module():
    import dgp_toolkit.restoration  # noqa: F401  # must not shadow the function

    assert callable(dgp_toolkit.restore)
    assert dgp_toolkit.RestoreResult.__name__ == "RestoreResult"


def test_docstring_examples():
    import doctest

    import dgp_toolkit.restoration

    result = doctest.testmod(dgp_toolkit.restoration, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("kind", ["path", "pil", "array", "tensor"])
def test_accepts_path_pil_array_and_tensor(kind, prior, preset, tmp_path):
    array = photo()
    if kind == "path":
        image = tmp_path / "in.png"
        Image.fromarray(array).save(image)
    elif kind == "pil":
        image = Image.fromarray(array)
    elif kind == "array":
        image = array
    else:
        image = torch.from_numpy(array).permute(2, 0, 1).float() / 127.5 - 1
    result = dgp_toolkit.restore(image, ["blur:sigma=1"], prior, preset=preset)
    assert isinstance(result, dgp_toolkit.RestoreResult)
    assert result.image.size == (32, 32) and result.image.mode == "RGB"
    assert result.observation.size == (32, 32)
    assert result.tensor.shape == (1, 3, 32, 32) and float(result.tensor.abs().max()) <= 1
    assert result.z.shape == (1, prior.dim_z)
    assert 0 <= result.class_index < 10
    assert len(result.history) == 6 and "loss" in result.history[0]
    assert result.generator_state and all(torch.is_tensor(v) for v in result.generator_state.values())
    assert result.metrics is None and result.full_resolution is None
    assert "centre-cropped 40x30 to 30x30, then resized to 32x32" in result.notes
    assert result.config["degradations"] == ["blur:sigma=1.0,size=5"]
    assert result.config["preset"]["resolved"]["select"]["select_num"] == 4
    assert {"torch", "dgp-toolkit", "python"} <= set(result.config["versions"])


def test_the_same_image_gives_the_same_result_from_any_kind_of_input(prior, preset):
    array = photo(32, 32)
    from_array = dgp_toolkit.restore(array, ["blur:sigma=1"], prior, preset=preset, seed=3)
    tensor = torch.from_numpy(array).permute(2, 0, 1).float() / 127.5 - 1
    from_tensor = dgp_toolkit.restore(tensor, ["blur:sigma=1"], prior, preset=preset, seed=3)
    assert torch.equal(from_array.tensor, from_tensor.tensor)
    assert "already 32x32, used as is" in from_tensor.notes


def test_the_loaded_prior_is_not_changed(prior, preset):
    before = {k: v.clone() for k, v in prior.G.state_dict().items()}
    dgp_toolkit.restore(photo(), ["gray"], prior, preset=preset)
    assert all(torch.equal(before[k], v) for k, v in prior.G.state_dict().items())


def test_degradation_objects_and_specs_mix(prior, preset):
    blur = dgp_toolkit.get_degradation("blur", sigma=1.0)
    result = dgp_toolkit.restore(photo(), [blur, "noise:sigma=0.05"], prior, preset=preset, label="cat")
    assert result.config["degradations"] == ["blur:sigma=1.0,size=5", "noise:sigma=0.05"]
    assert result.class_index == 3 and result.config["class"]["name"] == "cat"


@pytest.mark.parametrize("bad, words", [
    (np.zeros((8, 8, 3), np.float32), "uint8"),
    (torch.full((3, 8, 8), 2.0), "[-1, 1]"),
    (torch.zeros(2, 3, 8, 8), "(3, H, W)"),
    ([1, 2, 3], "expected an image"),
    (np.zeros((8, 8, 3), np.int16), "got int16 (8, 8, 3)"),
    (np.zeros((0, 0, 3), np.uint8), "<array>: the image is empty (0x0 pixels)"),
    (np.zeros((5, 0), np.uint8), "<array>: the image is empty (0x5 pixels)"),
    (torch.zeros(3, 0, 4), "<tensor>: the image is empty (4x0 pixels)"),
    (Image.new("RGB", (0, 0)), "<PIL image>: the image is empty (0x0 pixels)"),
])
def test_bad_inputs_are_usage_errors(bad, words, prior, preset):
    with pytest.raises(DGPUsageError) as error:
        dgp_toolkit.restore(bad, ["gray"], prior, preset=preset)
    assert words in str(error.value)


@pytest.mark.parametrize("kwargs, words", [
    ({"degrade": ["blurr"]}, "did you mean 'blur'"),
    ({"label": 12}, "out of range"),
    ({"label": "kitten"}, "unknown class 'kitten'"),
    ({"preset": "super-resolutoin"}, "did you mean 'super-resolution'"),
    ({"fit": "stretch"}, "unknown fit mode"),
    ({"seed": 10**23}, "seed must be an integer from 0 to 2**63 - 1, got 100000000000000000000000"),
    ({"seed": -1}, "seed must be an integer from 0 to 2**63 - 1, got -1"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"iterations_scale": float("inf")}, "iterations-scale must be a finite number > 0, got inf"),
    ({"iterations_scale": "fast"}, "iterations-scale must be a finite number > 0, got fast"),
    ({"check_every": "10"}, "check_every must be a whole number >= 1, got '10'"),
    ({"check_every": 0}, "check_every must be a whole number >= 1, got 0"),
])
def test_user_mistakes_are_usage_errors(kwargs, words, prior, preset):
    options = {"degrade": ["gray"], "preset": preset, **kwargs}
    with pytest.raises(DGPUsageError) as error:
        dgp_toolkit.restore(photo(), prior=prior, **options)
    assert words in str(error.value)


def test_unknown_prior_is_a_usage_error():
    with pytest.raises(DGPUsageError, match="unknown prior 'bigan'; did you mean 'biggan'"):
        dgp_toolkit.restore(photo(), ["gray"], "bigan")


def test_a_mask_file_of_the_wrong_size_is_a_usage_error(prior, preset, tmp_path):
    mask = np.full((20, 20), 255, np.uint8)
    mask[5:10, 5:10] = 0
    Image.fromarray(mask).save(tmp_path / "mask.png")
    with pytest.raises(DGPUsageError, match="mask file .* is 20x20 but the image is 40x30"):
        dgp_toolkit.restore(photo(), [f"mask:file={tmp_path / 'mask.png'}"], prior, preset=preset)


def test_an_interrupt_propagates(prior, preset):
    def stop(event):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dgp_toolkit.restore(photo(), ["gray"], prior, preset=preset, progress=stop, check_every=1)


# ----------------------------------------------------------------------------- data flow
def test_progress_events_cover_every_stage(prior, preset):
    events = []
    dgp_toolkit.restore(photo(), ["gray"], prior, preset=preset, progress=events.append, check_every=1)
    assert [e.step for e in events] == [1, 2, 3, 4, 5, 6]
    assert {e.stage for e in events} == {0, 1} and events[-1].total_steps == 6


def test_a_real_low_resolution_input_for_downsample_is_taken_as_is(prior, preset):
    small = dgp_toolkit.restore(photo(8, 8), ["downsample:factor=4"], prior, preset=preset)
    assert small.input.size == (8, 8) and small.observation.size == (32, 32)
    assert any("low-resolution observation (8x8" in note for note in small.notes)
    big = dgp_toolkit.restore(photo(64, 64), ["downsample:factor=4"], prior, preset=preset)
    assert big.input.size == (8, 8)
    assert "resized 64x64 to 8x8" in big.notes


def test_simulate_scores_the_observation_and_the_result(prior, preset):
    result = dgp_toolkit.restore(photo(), ["blur:sigma=1.5"], prior, preset=preset, simulate=True)
    metrics = result.metrics
    assert metrics["protocol"] == "plain"
    for key in ("observation", "result"):
        assert np.isfinite(metrics[key]["psnr"]) and -1 <= metrics[key]["ssim"] <= 1
    from dgp_toolkit.metrics import psnr

    clean = result.input
    assert metrics["observation"]["psnr"] == pytest.approx(psnr(result.observation, clean), abs=0.2)
    assert result.full_resolution is None  # a simulation evaluates; it makes no full-size output


def test_simulate_protocols_for_colorization_and_inpainting(prior, preset):
    gray = dgp_toolkit.restore(photo(), ["gray"], prior, preset=preset, simulate=True)
    assert gray.metrics["protocol"] == "colorization"
    mask = dgp_toolkit.restore(photo(), ["mask"], prior, preset=preset, simulate=True)
    assert mask.metrics["protocol"] == "inpainting"
    # the known pixels are kept, so only the hole differs from the clean input
    known = np.ones((32, 32), bool)
    known[11:21, 11:21] = False
    assert np.array_equal(np.asarray(mask.image)[known], np.asarray(mask.input)[known])


def test_reconstruction_of_an_exact_observation_has_infinite_psnr_and_json_null(prior, preset):
    from dgp_toolkit.restoration import json_safe

    result = dgp_toolkit.restore(photo(), [], prior, preset=preset, simulate=True)
    assert result.metrics["observation"]["psnr"] == float("inf")
    assert json_safe(result.metrics)["observation"]["psnr"] is None


def test_seeded_runs_repeat_bit_for_bit(prior, preset):
    a = dgp_toolkit.restore(photo(), ["noise:sigma=0.1"], prior, preset=preset, simulate=True, seed=5)
    b = dgp_toolkit.restore(photo(), ["noise:sigma=0.1"], prior, preset=preset, simulate=True, seed=5)
    assert torch.equal(a.tensor, b.tensor) and a.metrics == b.metrics


# ----------------------------------------------------------------------------- full resolution
@pytest.mark.parametrize("fit, size", [("crop", (48, 48)), ("pad", (64, 48)), ("resize", (64, 48))])
def test_full_resolution_colorization_keeps_the_input_luminance(fit, size, prior, preset):
    from skimage.color import rgb2lab

    array = photo(64, 48)
    result = dgp_toolkit.restore(array, ["gray"], prior, preset=preset, fit=fit)
    full = result.full_resolution
    assert full is not None and full.size == size
    left = (64 - size[0]) // 2
    source = array[:, left:left + size[0]]
    lightness = rgb2lab(np.asarray(full) / 255.0)[..., 0]
    assert np.abs(lightness - rgb2lab(source / 255.0)[..., 0]).max() < 2.0


def test_full_resolution_inpainting_changes_only_the_hole(prior, preset):
    array = photo(64, 64)
    result = dgp_toolkit.restore(array, ["mask:box=8/8/8/8"], prior, preset=preset)
    full = np.asarray(result.full_resolution)
    assert full.shape == (64, 64, 3)
    changed = np.any(full != array, axis=-1)
    rows, cols = np.nonzero(changed)
    assert changed.any() and rows.min() >= 14 and rows.max() <= 33 and cols.min() >= 14 and cols.max() <= 33


def test_inputs_no_larger_than_the_prior_have_no_full_resolution_output(prior, preset):
    assert dgp_toolkit.restore(photo(32, 32), ["gray"], prior, preset=preset).full_resolution is None
    assert dgp_toolkit.restore(photo(64, 64), ["blur"], prior, preset=preset).full_resolution is None


def test_sheet_holds_input_observation_stages_and_result(prior, preset):
    result = dgp_toolkit.restore(photo(), ["gray"], prior, preset=preset)
    assert len(result.snapshots) == 2
    sheet = result.sheet()  # five tiles (input, observation, 2 stages, result), 32 px enlarged to 96
    assert sheet.mode == "RGB" and sheet.size[0] > 5 * 96 and sheet.size[1] > 96


# ----------------------------------------------------------------------------- scoring
@pytest.mark.parametrize("degrade, protocol", [(["gray"], "colorization"), (["mask"], "inpainting"),
                                               (["blur"], "plain"), (["gray", "mask"], "plain")])
def test_a_setup_scores_as_restore_simulate_does(degrade, protocol, prior, preset):
    from dgp_toolkit.restoration import prepare_restore

    setup = prepare_restore(degrade, prior, preset=preset)
    assert setup.protocol == protocol
    clean = torch.from_numpy(photo(32, 32)).permute(2, 0, 1)[None].float() / 127.5 - 1
    result = dgp_toolkit.restore(clean[0], degrade, prior=prior, preset=preset, simulate=True, seed=4,
                                 iterations_scale=0.1)
    with torch.no_grad():
        target = setup.degradation.degrade(clean, generator=torch.Generator().manual_seed(4))
    again = setup.score(result.tensor, target, clean)
    assert again["protocol"] == protocol
    for part in ("observation", "result"):
        assert again[part]["psnr"] == pytest.approx(result.metrics[part]["psnr"], abs=1e-6)
        assert again[part]["ssim"] == pytest.approx(result.metrics[part]["ssim"], abs=1e-6)
    if protocol != "colorization":  # (colorization puts the grey's Lab L on the clean image too)
        assert setup.score(clean, target, clean)["result"]["psnr"] > 60


def test_preset_from_dict_validates_like_a_file():
    import doctest

    import dgp_toolkit.presets
    from dgp_toolkit.presets import preset_from_dict

    result = doctest.testmod(dgp_toolkit.presets)
    assert result.attempted > 0 and result.failed == 0
    with pytest.raises(DGPUsageError, match="mine.*unknown sections"):
        preset_from_dict({"schedul": {}}, "mine")


# ----------------------------------------------------------------------------- several runs
def test_runs_average_restorations_from_successive_seeds(prior, preset):
    """``runs=3``: the mean of the raw outputs of seeds 5, 6, 7 (each a whole run of its own,
    the observation (blur) the same for every seed, so each equals the single run of that
    seed), finished once."""
    image = photo()
    singles = [dgp_toolkit.restore(image, ["blur:sigma=1.5"], prior, preset=preset, simulate=True, seed=s)
               for s in (5, 6, 7)]
    events = []
    three = dgp_toolkit.restore(image, ["blur:sigma=1.5"], prior, preset=preset, simulate=True, seed=5, runs=3,
                                progress=events.append, check_every=1)
    mean = torch.stack([s.raw for s in singles]).mean(0)
    assert torch.allclose(three.raw, mean, atol=1e-6)
    assert torch.allclose(three.tensor, mean.clamp(-1, 1), atol=1e-6)
    assert not torch.allclose(singles[0].raw, singles[1].raw)  # the runs differ
    # the first run is the reported latent, class and generator
    assert three.class_index == singles[0].class_index and torch.equal(three.z, singles[0].z)
    assert three.config["runs"] == 3 and three.config["run_classes"] == [s.class_index for s in singles]
    assert sorted({h["run"] for h in three.history}) == [0, 1, 2]
    # the three runs are one batch of three generator copies: one pass over the schedule
    assert [e.step for e in events] == list(range(1, 7)) and {e.total_steps for e in events} == {6}
    assert {e.batch for e in events} == {3}
    # the averaged image is no further from the clean one than the runs are on average
    assert three.metrics["result"]["psnr"] >= min(s.metrics["result"]["psnr"] for s in singles)
    assert any("the mean of 3 of 3 restorations" in note for note in three.notes)
    assert three.config["runs_averaged"] == [0, 1, 2] and len(three.config["run_final_losses"]) == 3


def test_runs_come_from_the_preset_and_are_validated(prior, tiny_files, tmp_path):
    text = tiny_files[1].read_text().replace("[schedule]", "[options]\nruns = 2\n\n[schedule]", 1)
    two = tmp_path / "two.toml"
    two.write_text(text)
    result = dgp_toolkit.restore(photo(), ["gray"], prior, preset=str(two))
    assert result.config["runs"] == 2 and result.config["preset"]["resolved"]["options"]["runs"] == 2
    one = dgp_toolkit.restore(photo(), ["gray"], prior, preset=str(two), runs=1)
    assert one.config["runs"] == 1 and "run_classes" not in one.config
    for bad in ("0", "1.5", "true", '"2"'):
        (tmp_path / "bad.toml").write_text(text.replace("runs = 2", f"runs = {bad}"))
        with pytest.raises(DGPUsageError, match="runs must be a whole number >= 1"):
            dgp_toolkit.restore(photo(), ["gray"], prior, preset=str(tmp_path / "bad.toml"))
    for bad in (0, 1.5, True):
        with pytest.raises(DGPUsageError, match="runs must be a whole number >= 1"):
            dgp_toolkit.restore(photo(), ["gray"], prior, preset=str(two), runs=bad)


def test_diverged_runs_are_left_out_of_the_mean():
    from dgp_toolkit.restoration import DIVERGED_RATIO, averaged_runs

    class Run:
        def __init__(self, loss, stopped="done"):
            self.history, self.stopped = ([{"loss": loss}] if loss is not None else []), stopped

    assert averaged_runs([Run(0.01)]) == [0]
    assert averaged_runs([Run(0.01), Run(0.01 * DIVERGED_RATIO), Run(0.0101 * DIVERGED_RATIO)]) == [0, 1]
    assert averaged_runs([Run(0.5), Run(0.002)]) == [1]  # a collapsed first run
    assert averaged_runs([Run(0.0), Run(0.0), Run(1e-9)]) == [0, 1]  # exact fits
    assert averaged_runs([Run(float("nan")), Run(0.3)]) == [1]
    assert averaged_runs([Run(0.001, "non_finite"), Run(0.3)]) == [1]
    assert averaged_runs([Run(0.2, "non_finite"), Run(0.1, "non_finite")]) == [1]  # none finished: the best
    assert averaged_runs([Run(None), Run(0.1)]) == [1]


def test_a_grey_input_without_the_gray_degradation_gets_a_tip(prior, preset):
    grey = np.repeat(np.arange(64, dtype=np.uint8).reshape(8, 8)[..., None] * 3, 3, axis=2)
    tip = "the input is greyscale; to colorize it, add --degrade gray"
    assert any(tip in n for n in dgp_toolkit.restore(grey, ["blur:sigma=0.5"], prior, preset=preset).notes)
    assert not any(tip in n for n in dgp_toolkit.restore(grey, ["gray"], prior, preset=preset).notes)
    assert not any(tip in n for n in dgp_toolkit.restore(photo(), ["blur:sigma=0.5"], prior, preset=preset).notes)


@pytest.mark.parametrize("degrade", [["gray"], ["mask:box=8/8/8/8"]])
def test_a_real_photo_comes_back_whole_at_its_own_size(degrade, prior, preset):
    """A 256x170 photo (grey for colorization): by default the whole frame is fitted to the
    prior (resize) and the finish is applied at the input's size, so nothing is cut off."""
    array = photo(256, 170)
    if degrade == ["gray"]:
        array = np.repeat(np.asarray(Image.fromarray(array).convert("L"))[..., None], 3, axis=-1)
    result = dgp_toolkit.restore(array, degrade, prior, preset=preset)
    assert result.full_resolution is not None and result.full_resolution.size == (256, 170)
    assert any("resized 256x170 to 32x32" in note for note in result.notes)
    if degrade == ["gray"]:  # the photo's own luminance everywhere, colour over the whole frame
        assert any("(the whole image)" in note for note in result.notes)
    else:  # the known pixels are the photo's own, including its sides
        full = np.asarray(result.full_resolution)
        assert np.array_equal(full[:, :40], array[:, :40]) and np.array_equal(full[:, -40:], array[:, -40:])
    # the old behaviour is one option away: the centre crop
    cropped = dgp_toolkit.restore(array, degrade, prior, preset=preset, fit="crop")
    assert cropped.full_resolution.size == ((170, 170) if degrade == ["gray"] else (256, 170))


THIRD_PARTY_TASK = '''
import numpy as np
import torch
from dgp_toolkit import Degradation, hookimpl


class Darken(Degradation):
    """Halves the brightness; declares its task, scoring rule, fit and full-resolution finish."""

    name = "darken"
    OPTIONS = {}
    task = "deblurring"          # the preset it calls for alone
    protocol = "darkened"        # named in the metrics
    default_fit = "resize"       # the whole frame

    def forward(self, x):
        return (self.check_images(x) + 1) / 2 - 1

    def scores(self, restored, clean, observation):
        return {"psnr": 99.0, "ssim": 1.0}

    def full_resolution(self, frame):
        x0, y0, x1, y1 = frame.region
        out = frame.source.copy()
        out[y0:y1, x0:x1] = frame.restored
        return out, "darken: the restoration stretched over the whole input"


@hookimpl
def register_degradations(register):
    register("darken", Darken)
'''


def test_a_third_party_degradation_owns_its_task(plugin_dist, prior, preset):
    """Task, scoring rule, default fit and full-resolution finish come from the plugin: the
    core names no plugin class."""
    from dgp_toolkit.presets import task_for_degradations
    from dgp_toolkit.registry import reset_registry

    plugin_dist("dgp-toolkit-darken", entry_points={"darken": "dgp_darken_mod"},
                modules={"dgp_darken_mod": THIRD_PARTY_TASK})
    reset_registry()  # discover it
    assert task_for_degradations(["darken"]) == "deblurring"
    result = dgp_toolkit.restore(photo(64, 48), ["darken"], prior, preset=preset)
    assert result.full_resolution.size == (64, 48) and "darken: the restoration" in result.notes[-1]
    assert any("resized 64x48 to 32x32" in note for note in result.notes)
    scored = dgp_toolkit.restore(photo(64, 48), ["darken"], prior, preset=preset, simulate=True)
    assert scored.metrics["protocol"] == "darkened" and scored.metrics["result"]["psnr"] == 99.0
