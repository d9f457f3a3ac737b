"""Saved reconstructions (``dgp_toolkit.state``) on a tiny random-init prior: exact reload,
refusal for another prior, damaged files, overwrite rules."""

from __future__ import annotations

import json

import pytest
import torch

from dgp_toolkit.errors import DGPUsageError
from dgp_toolkit.manipulate import reconstruct
from dgp_toolkit.priors.biggan.synthetic import random_state_dicts, save_prior_file
from dgp_toolkit.state import STATE_FORMAT, is_state_file, load_state, reconstruction_from_result, save_state

from tiny import TINY, WIDER, image, make_prior, tiny_preset


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def prior():
    return make_prior()


@pytest.fixture(scope="module")
def rec(prior):
    return reconstruct(image(), prior, preset=tiny_preset(), label=3, seed=0)


def test_a_saved_state_reloads_to_the_same_reconstruction_bit_for_bit(prior, rec, tmp_path):
    path = save_state(tmp_path / "cat.safetensors", rec)
    assert is_state_file(path)
    again = load_state(path, prior)
    assert again.generator is None  # rebuilt from the file, not the live module
    assert torch.equal(again.z, rec.z) and torch.equal(again.embedding, rec.embedding)
    assert again.generator_state.keys() == rec.generator_state.keys()
    assert all(torch.equal(again.generator_state[k], v) for k, v in rec.generator_state.items())
    rendered = again.render(prior)
    assert torch.equal(rendered, rec.image)
    assert again.class_index == 3 and again.class_name == "3" and again.seed == 0
    assert again.preset["schedule"]["iterations"] == [3, 3, 3]
    meta = again.metadata
    assert meta["format"] == STATE_FORMAT and meta["prior"] == "tiny" and meta["instance_norm"] == "off"
    assert json.loads(meta["prior_config"]) == json.loads(json.dumps(prior.config))
    assert meta["toolkit_version"]


def test_the_fine_tuned_generator_is_what_is_saved(prior, rec):
    # Rendering the same z with the prior's own generator gives another image: the state
    # must carry the fine-tuned weights for the reload test above to mean anything.
    with torch.no_grad():
        plain = prior.generate(rec.z, embedding=rec.embedding).cpu()
    assert not torch.equal(plain, rec.image)


def test_instance_norm_statistics_are_saved_too(prior, tmp_path):
    rec = reconstruct(image(2), prior, preset=tiny_preset(use_in=(False, True, True)), seed=0)
    assert rec.instance_norm  # the path was on at the end of the run
    again = load_state(save_state(tmp_path / "in.safetensors", rec), prior)
    assert again.metadata["instance_norm"] == "on"
    assert torch.equal(again.render(prior), rec.image)
    without = load_state(tmp_path / "in.safetensors", prior)
    without.instance_norm = None  # what a state without the statistics would give
    assert not torch.equal(without.render(prior), rec.image)


def test_a_state_for_another_prior_is_refused(rec, tmp_path):
    path = save_state(tmp_path / "s.safetensors", rec)
    with pytest.raises(DGPUsageError, match=r"saved for prior 'tiny', not 'other'"):
        load_state(path, make_prior(name="other"))
    with pytest.raises(DGPUsageError, match=r"another architecture .*dim_z: saved 20, this prior 24") as info:
        load_state(path, make_prior(WIDER))
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    state = load_state(path)  # without a prior: read, then refused when used with the wrong one
    with pytest.raises(DGPUsageError, match="not 'other'"):
        state.render(make_prior(name="other"))


def test_files_that_are_not_states_are_refused(tmp_path, rec):
    with pytest.raises(DGPUsageError, match="not found"):
        load_state(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a state at all")
    with pytest.raises(DGPUsageError, match="not a dgp-toolkit state file"):
        load_state(junk)
    G_sd, D_sd = random_state_dicts(TINY, seed=0)
    prior_file = save_prior_file(tmp_path / "prior.safetensors", G_sd, D_sd, TINY)
    with pytest.raises(DGPUsageError, match="not a dgp-toolkit state file .*format 'dgp-toolkit-biggan/1'"):
        load_state(prior_file)
    assert not is_state_file(prior_file) and not is_state_file(junk)
    good = save_state(tmp_path / "good.safetensors", rec)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(DGPUsageError, match="truncated or corrupt"):
        load_state(cut)


def test_saving_keeps_existing_files_and_inputs(rec, tmp_path):
    path = save_state(tmp_path / "s.safetensors", rec)
    before = path.read_bytes()
    with pytest.raises(DGPUsageError, match="already exists"):
        save_state(path, rec)
    assert path.read_bytes() == before
    rec_other = load_state(path)
    rec_other.class_index = 7
    save_state(path, rec_other, overwrite=True)
    assert load_state(path).class_index == 7
    source = tmp_path / "input.png"
    source.write_bytes(b"an input")
    with pytest.raises(DGPUsageError, match="refusing to overwrite an input"):
        save_state(source, rec, overwrite=True, protect=[source])
    assert source.read_bytes() == b"an input"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary files left


def test_a_restore_result_becomes_a_state(prior, tmp_path):
    # What `dgp-tool restore --save-state` saves: the RestoreResult's generator state.
    from dgp_toolkit.restoration import restore

    result = restore(image(3), [], prior, preset=tiny_preset(), label=2, seed=0)
    rec = reconstruction_from_result(prior, result, seed=0, source="x.png")
    again = load_state(save_state(tmp_path / "r.safetensors", rec), prior)
    assert again.class_index == 2 and again.source == "x.png"
    assert torch.equal(again.render(prior), result.raw)
    # With the instance-norm path on, the result carries its statistics, so the state
    # still reproduces the image exactly; without them, saving is refused.
    with_in = restore(image(3), [], prior, preset=tiny_preset(use_in=(True, True, True)), seed=0)
    assert with_in.instance_norm is not None
    rec_in = reconstruction_from_result(prior, with_in, seed=0)
    again_in = load_state(save_state(tmp_path / "in.safetensors", rec_in), prior)
    assert torch.equal(again_in.render(prior), with_in.raw)
    with_in.instance_norm = None
    with pytest.raises(DGPUsageError, match="instance-norm"):
        reconstruction_from_result(prior, with_in)
