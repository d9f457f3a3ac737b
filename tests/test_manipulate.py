"""Jitter, category transfer, morphing and sampling (``dgp_toolkit.manipulate``) on a tiny
random-init prior with a 9-step preset."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import dgp_toolkit
from dgp_toolkit.errors import DGPUsageError
from dgp_toolkit.manipulate import interpolate_states, jitter, morph, reconstruct, resolve_classes, sample, transfer
from dgp_toolkit.state import save_state

from tiny import image, make_prior, tiny_preset


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def prior():
    return make_prior()


@pytest.fixture(scope="module")
def rec(prior):
    return reconstruct(image(1), prior, preset=tiny_preset(), label=3, seed=0)


@pytest.fixture(scope="module")
def morphed(prior):
    return morph(image(1), image(2), steps=5, prior=prior, preset=tiny_preset(), label=(3, 5), seed=0)


def distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().mean())


# ------------------------------------------------------------------------------ public API
def test_the_functions_are_public():
    assert dgp_toolkit.jitter is jitter and dgp_toolkit.transfer is transfer
    assert dgp_toolkit.morph is morph and dgp_toolkit.sample is sample


def test_reconstruction_uses_the_identity_and_fine_tunes_the_generator(prior, rec):
    assert rec.class_index == 3 and rec.image.shape == (1, 3, 32, 32)
    assert rec.notes == ["already 32x32, used as is"] and isinstance(rec.input, Image.Image)
    changed = [k for k, v in prior.G.state_dict().items() if not torch.equal(v.cpu(), rec.generator_state[k])]
    assert changed and "output_layer.2.weight" not in changed  # the output layer is never tuned
    assert torch.equal(rec.render(prior), rec.image)


# ------------------------------------------------------------------------------ jitter
def test_jitter_with_std_zero_reproduces_the_reconstruction(prior, rec):
    result = jitter(rec, prior=prior, std=[0.0], count=3, seed=0)
    assert result.stds == [0.0] * 3 and result.indices == [0, 1, 2]
    for t in result.tensors:
        assert torch.equal(t[None], rec.image)


def test_larger_std_moves_further_from_the_reconstruction(prior, rec):
    result = jitter(rec, prior=prior, std=(0.3, 0.5, 0.7, 1.5), count=6, seed=1)
    assert len(result.images) == 24 and result.tensors.shape == (24, 3, 32, 32)
    mean = {}
    for s in (0.3, 0.5, 0.7, 1.5):
        rows = [t for t, std in zip(result.tensors, result.stds) if std == s]
        mean[s] = sum(distance(t[None], rec.image) for t in rows) / len(rows)
    assert 0 < mean[0.3] < mean[0.5] < mean[0.7] < mean[1.5]


def test_jitter_is_seeded_and_independent_of_count(prior, rec):
    few = jitter(rec, prior=prior, std=0.5, count=2, seed=4)
    more = jitter(rec, prior=prior, std=0.5, count=4, seed=4)
    other = jitter(rec, prior=prior, std=0.5, count=2, seed=5)
    assert torch.equal(few.tensors, more.tensors[:2])
    assert not torch.equal(few.tensors, other.tensors)
    sheet = more.sheet()
    assert sheet.mode == "RGB" and sheet.size[0] > 4 * 96


def test_jitter_rejects_bad_arguments(prior, rec):
    with pytest.raises(DGPUsageError, match="std must be"):
        jitter(rec, prior=prior, std=[-0.1])
    with pytest.raises(DGPUsageError, match="count"):
        jitter(rec, prior=prior, count=0)
    with pytest.raises(DGPUsageError, match="already has class 3"):
        jitter(rec, prior=prior, label=4)
    with pytest.raises(DGPUsageError, match="seed must be an integer from 0 to 2"):
        jitter(rec, prior=prior, seed=2**64)


# ------------------------------------------------------------------------------ transfer
def test_transfer_to_the_own_class_reproduces_and_to_others_changes(prior, rec):
    result = transfer(rec, to=[3, "5", 7], prior=prior)
    assert result.classes == [3, 5, 7] and result.class_names == ["3", "5", "7"]
    own, other, third = (t[None] for t in result.tensors)
    assert torch.equal(own, rec.image)
    assert distance(other, rec.image) > 1e-3 and distance(third, rec.image) > 1e-3
    assert not torch.equal(other, third)


def test_transfer_to_all_and_class_resolution(prior, rec):
    result = transfer(rec, prior=prior)  # "all" is the default
    assert result.classes == list(range(10)) and len(result.images) == 10
    assert resolve_classes(prior, ["2", 2, 1]) == [2, 1]
    with pytest.raises(DGPUsageError, match="out of range"):
        resolve_classes(prior, [12])
    with pytest.raises(DGPUsageError, match="at least one class"):
        resolve_classes(prior, [])


def test_a_state_file_skips_the_optimization(prior, rec, tmp_path):
    path = save_state(tmp_path / "rec.safetensors", rec)
    from_file = transfer(path, to=[3, 4], prior=prior)
    direct = transfer(rec, to=[3, 4], prior=prior)
    assert torch.equal(from_file.tensors, direct.tensors)
    assert from_file.reconstruction.input is None and from_file.reconstruction.path == path
    with pytest.raises(DGPUsageError, match="not 'other'"):
        jitter(path, prior=make_prior(name="other"))


# ------------------------------------------------------------------------------ morph
def test_morph_end_frames_are_the_two_reconstructions(prior, morphed):
    assert morphed.alphas == [0.0, 0.25, 0.5, 0.75, 1.0] and len(morphed.frames) == 5
    assert torch.equal(morphed.tensors[0][None], morphed.a.image)
    assert torch.equal(morphed.tensors[-1][None], morphed.b.image)
    assert morphed.a.class_index == 3 and morphed.b.class_index == 5


def test_morph_reconstructions_tune_the_class_embedding(prior, morphed):
    assert morphed.a.preset["options"]["update_embed"] is True
    with torch.no_grad():
        original = prior.embed([3]).cpu()
    assert not torch.equal(original, morphed.a.embedding)


def test_morph_midpoint_generator_is_the_mean_of_the_two_fine_tuned_generators(prior, morphed):
    a, b = morphed.a.generator_state, morphed.b.generator_state
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert len(differing) > 10  # the two fine-tuned generators really differ
    mid = morphed.state_at(0.5)
    for key in a:
        assert torch.allclose(mid[key], (a[key] + b[key]) / 2, rtol=0, atol=1e-6), key
    # ... and that is the generator the midpoint frame was rendered with.
    G = prior.fresh_generator()
    prior.load_generator_state({k: (a[k] + b[k]) / 2 for k in a}, model=G)
    z = (morphed.a.z + morphed.b.z) / 2
    embedding = (morphed.a.embedding + morphed.b.embedding) / 2
    with torch.no_grad():
        expected = prior.generate(z, embedding=embedding, model=G)
    assert torch.allclose(morphed.tensors[2][None], expected, atol=1e-5)


def test_morph_midpoint_differs_from_both_ends(morphed):
    mid = morphed.tensors[2]
    assert distance(mid, morphed.tensors[0]) > 1e-3 and distance(mid, morphed.tensors[-1]) > 1e-3


def test_interpolated_states_are_exact_at_the_ends(morphed):
    a, b = morphed.a.generator_state, morphed.b.generator_state
    assert all(torch.equal(v, a[k]) for k, v in interpolate_states(a, b, 0.0).items())
    assert all(torch.equal(v, b[k]) for k, v in interpolate_states(a, b, 1.0).items())
    with pytest.raises(DGPUsageError, match="different weights"):
        interpolate_states(a, {k: v for k, v in b.items() if k != "linear.bias"}, 0.5)


def test_morph_sheet_and_gif(morphed):
    assert morphed.sheet().mode == "RGB"
    import io

    gif = Image.open(io.BytesIO(morphed.gif()))
    assert gif.format == "GIF" and gif.n_frames == 5


def test_morph_needs_two_steps(prior, morphed):
    with pytest.raises(DGPUsageError, match="at least 2 steps"):
        morph(morphed.a, morphed.b, steps=1, prior=prior)


# ------------------------------------------------------------------------------ sample
def test_samples_are_seeded_and_labelled(prior):
    cats = sample(prior, label="3", count=3, seed=1)
    assert cats.classes == [3, 3, 3] and cats.tensors.shape == (3, 3, 32, 32)
    assert torch.equal(cats.tensors, sample(prior, label=3, count=3, seed=1).tensors)
    assert not torch.equal(cats.tensors, sample(prior, label=3, count=3, seed=2).tensors)
    with torch.no_grad():
        first = prior.generate(cats.z[:1], [3]).cpu()
    assert torch.equal(cats.tensors[:1], first)
    assert torch.equal(sample(prior, label=3, count=5, seed=1).tensors[:3], cats.tensors)
    mixed = sample(prior, count=6, seed=0)
    assert len(set(mixed.classes)) > 1 and all(0 <= c < 10 for c in mixed.classes)
    assert mixed.sheet().mode == "RGB"
    with pytest.raises(DGPUsageError, match="std must be"):
        sample(prior, std=0)


@pytest.mark.parametrize("module", ["dgp_toolkit.manipulate", "dgp_toolkit.state", "dgp_toolkit.sheets",
                                    "dgp_toolkit.cli.manipulate"])
def test_doctests(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
