"""Weights I/O: safe reading of .pth and safetensors, strict loading, architecture inference,
the user cache (dgp_toolkit.priors.store)."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from dgp_toolkit.errors import DGPError, DGPUsageError
from dgp_toolkit.priors import store
from dgp_toolkit.priors.biggan.model import BigGANConfig
from dgp_toolkit.priors.biggan.synthetic import random_state_dicts, save_prior_file
from dgp_toolkit.priors.biggan.variants import get_variant, known_variants
from dgp_toolkit.priors.biggan.weights import (
    build_networks,
    describe_state_dicts,
    infer_config,
    matching_variant,
    read_prior_file,
    read_state_dict,
    read_weights,
    validate_pair,
)

SMALL32 = BigGANConfig(resolution=32, G_ch=16, D_ch=16, dim_z=64, shared_dim=32, n_classes=10,
                       G_attn="16", D_attn="16")
SMALL64 = BigGANConfig(resolution=64, G_ch=8, D_ch=8, dim_z=100, shared_dim=24, n_classes=7,
                       G_attn="32", D_attn="0")
FLAT32 = BigGANConfig(resolution=32, G_ch=8, D_ch=16, dim_z=40, shared_dim=16, n_classes=3,
                      hier=False, G_attn="0", D_attn="0")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv(store.ENV_HOME, str(tmp_path / "home"))
    return tmp_path / "home"


def assert_one_line(exc: BaseException, *fragments: str) -> None:
    text = str(exc)
    assert "\n" not in text, text
    for fragment in fragments:
        assert fragment in text, (fragment, text)


class Evil:
    """Pickles to a call of os.system: a weights file must never execute it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ----------------------------------------------------------------------------- reading
@pytest.mark.parametrize("suffix", [".pth", ".safetensors", ".bin"])
def test_pth_and_safetensors_read_back_identically(tmp_path, suffix):
    G_sd, _ = random_state_dicts(SMALL32, seed=1)
    path = tmp_path / f"G{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(G_sd, str(path))
    else:
        torch.save(G_sd, path)
    got = read_state_dict(path)
    assert got.keys() == G_sd.keys()
    assert all(torch.equal(got[k], G_sd[k]) for k in G_sd)


def test_format_is_sniffed_not_taken_from_the_name(tmp_path):
    from safetensors.torch import save_file

    G_sd, _ = random_state_dicts(FLAT32)
    path = tmp_path / "misnamed.pth"
    save_file(G_sd, str(path), metadata={"hello": "world"})
    tensors, metadata = read_weights(path)
    assert metadata == {"hello": "world"} and tensors.keys() == G_sd.keys()


def test_dataparallel_prefix_and_state_dict_wrapper_are_unwrapped(tmp_path):
    G_sd, _ = random_state_dicts(FLAT32)
    torch.save({"state_dict": {f"module.{k}": v for k, v in G_sd.items()}}, tmp_path / "G.pth")
    assert read_state_dict(tmp_path / "G.pth").keys() == G_sd.keys()


def test_code_carrying_pickle_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "was-executed"
    G_sd, _ = random_state_dicts(FLAT32)
    G_sd = dict(G_sd, payload=Evil(marker))
    path = tmp_path / "G_ema_evil.pth"
    torch.save(G_sd, path)
    with pytest.raises(DGPUsageError) as info:
        read_state_dict(path)
    assert_one_line(info.value, "refusing to unpickle", str(path), "code objects", "system", "safetensors")
    assert not marker.exists()


def test_code_carrying_legacy_pickle_is_refused(tmp_path):
    marker = tmp_path / "was-executed"
    path = tmp_path / "legacy.pth"
    with path.open("wb") as f:
        pickle.dump({"w": Evil(marker)}, f, protocol=2)
    with pytest.raises(DGPUsageError) as info:
        read_state_dict(path)
    assert_one_line(info.value, "refusing to unpickle", str(path))
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["pth", "safetensors"])
@pytest.mark.parametrize("keep", [0.5, 0.01, 0.0])
def test_truncated_files_are_refused_naming_the_file(tmp_path, kind, keep):
    G_sd, _ = random_state_dicts(SMALL32)
    full = tmp_path / f"full.{kind}"
    if kind == "pth":
        torch.save(G_sd, full)
    else:
        save_prior_file(full, G_sd, random_state_dicts(SMALL32)[1], SMALL32)
    data = full.read_bytes()
    cut = tmp_path / f"G_ema_cut.{kind}"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(DGPUsageError) as info:
        read_state_dict(cut)
    assert_one_line(info.value, str(cut))
    assert "truncated or corrupt" in str(info.value)


def test_garbage_and_missing_files(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(DGPUsageError) as info:
        read_state_dict(junk)
    assert_one_line(info.value, str(junk), "corrupt")
    with pytest.raises(DGPUsageError, match="not found"):
        read_state_dict(tmp_path / "nope.pth")
    with pytest.raises(DGPUsageError, match="folder"):
        read_state_dict(tmp_path)


def test_training_checkpoint_is_not_a_state_dict(tmp_path):
    torch.save({"itr": 5, "G": torch.zeros(2)}, tmp_path / "state.pth")
    with pytest.raises(DGPUsageError) as info:
        read_state_dict(tmp_path / "state.pth")
    assert_one_line(info.value, "not a plain state dict", "itr")


def test_prior_file_needs_both_networks(tmp_path):
    from safetensors.torch import save_file

    G_sd, D_sd = random_state_dicts(FLAT32)
    save_prior_file(tmp_path / "p.safetensors", G_sd, D_sd, FLAT32)
    g, d, meta = read_prior_file(tmp_path / "p.safetensors")
    assert g.keys() == G_sd.keys() and d.keys() == D_sd.keys() and BigGANConfig.from_dict(
        __import__("json").loads(meta["config"])) == FLAT32
    save_file({f"G.{k}": v for k, v in G_sd.items()}, str(tmp_path / "g_only.safetensors"))
    with pytest.raises(DGPUsageError, match="no D.. keys"):
        read_prior_file(tmp_path / "g_only.safetensors")


# ------------------------------------------------------------------- architecture inference
@pytest.mark.parametrize("config", [SMALL32, SMALL64, FLAT32], ids=["32-attn", "64", "32-flat"])
def test_infer_config_recovers_small_configs(config):
    G_sd, D_sd = random_state_dicts(config)
    assert infer_config(G_sd, D_sd) == config


@pytest.mark.parametrize("name", [n for n, v in known_variants().items()])
def test_infer_config_recognises_every_known_variant(name):
    from dgp_toolkit.priors.biggan.model import Discriminator, Generator

    cfg = BigGANConfig.from_dict(get_variant(name).config)
    with torch.device("meta"):
        G_sd, D_sd = Generator(cfg).state_dict(), Discriminator(cfg).state_dict()
    inferred = infer_config(G_sd, D_sd)
    assert inferred.effective_dim_z == cfg.effective_dim_z
    assert (inferred.resolution, inferred.G_ch, inferred.D_ch, inferred.n_classes) == (
        cfg.resolution, cfg.G_ch, cfg.D_ch, cfg.n_classes)
    assert matching_variant(inferred) == name
    assert name in describe_state_dicts(G_sd, D_sd)


def test_effective_dim_z_of_256_variants():
    assert BigGANConfig.from_dict(get_variant("biggan-imagenet-256").config).effective_dim_z == 119
    assert BigGANConfig.from_dict(get_variant("biggan-imagenet-256-ch64").config).effective_dim_z == 119


def test_describe_says_when_files_are_swapped():
    G_sd, D_sd = random_state_dicts(FLAT32)
    assert "swapped" in describe_state_dicts(D_sd, G_sd)


# ------------------------------------------------------------------------- strict loading
def test_build_networks_loads_exactly_and_in_eval_mode():
    G_sd, D_sd = random_state_dicts(SMALL32, seed=3)
    G, D = build_networks(SMALL32, G_sd, D_sd, target="test")
    assert not G.training and not D.training
    for net, sd in ((G, G_sd), (D, D_sd)):
        got = net.state_dict()
        assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd)
        assert all(t.device.type == "cpu" for t in got.values())


def test_instance_norm_entries_of_dgp_saved_generators_are_dropped():
    G_sd, D_sd = random_state_dicts(FLAT32)
    G_sd = dict(G_sd, **{"blocks.0.0.in1.weight": torch.ones(32), "blocks.0.0.in1.bias": torch.zeros(32)})
    G, _ = build_networks(FLAT32, G_sd, D_sd, target="test")
    assert "blocks.0.0.in1.weight" not in G.state_dict()


def test_missing_unexpected_and_misshapen_keys_are_named():
    G_sd, D_sd = random_state_dicts(SMALL32)
    broken = dict(G_sd)
    del broken["blocks.1.0.conv1.weight"]
    broken["extra.weight"] = torch.zeros(1)
    broken["shared.weight"] = torch.zeros(11, 32)
    with pytest.raises(DGPUsageError) as info:
        validate_pair(SMALL32, broken, D_sd, target="my-variant", sources=("G_x.pth", "D_x.pth"))
    assert_one_line(info.value, "G_x.pth does not fit my-variant", "1 missing keys (blocks.1.0.conv1.weight)",
                    "1 unexpected keys (extra.weight)", "shared.weight: file [11, 32], expected [10, 32]",
                    "look like")


def test_many_missing_keys_are_summarised():
    G_sd, D_sd = random_state_dicts(SMALL32)
    D_bad = {k: v for k, v in D_sd.items() if not k.startswith("blocks.3")}
    with pytest.raises(DGPUsageError) as info:
        validate_pair(SMALL32, G_sd, D_bad, target="t")
    assert_one_line(info.value, "D does not fit t", "more")


def test_64px_pair_is_refused_as_128px_variant_and_said_to_look_64px():
    cfg = BigGANConfig(resolution=64, G_ch=96, D_ch=96, dim_z=120, shared_dim=128, n_classes=1000,
                       G_attn="64", D_attn="64")
    from dgp_toolkit.priors.biggan.model import Discriminator, Generator

    with torch.device("meta"):
        G_sd, D_sd = Generator(cfg).state_dict(), Discriminator(cfg).state_dict()
    target = BigGANConfig.from_dict(get_variant("biggan-imagenet-128").config)
    with pytest.raises(DGPUsageError) as info:
        validate_pair(target, G_sd, D_sd, target="biggan-imagenet-128")
    assert_one_line(info.value, "does not fit biggan-imagenet-128", "look like a 64-px BigGAN", "G_ch 96")


# ------------------------------------------------------------------------------ the cache
def test_cache_location_honours_env(monkeypatch, tmp_path):
    monkeypatch.delenv(store.ENV_HOME)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert store.home() == tmp_path / "xdg" / "dgp-toolkit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert store.home() == tmp_path / "user" / ".cache" / "dgp-toolkit"
    monkeypatch.setenv(store.ENV_HOME, str(tmp_path / "mine"))
    assert store.home() == tmp_path / "mine"


def _pair(tmp_path, config, seed=0, names=("G_ema.pth", "D.pth")):
    G_sd, D_sd = random_state_dicts(config, seed=seed)
    torch.save(G_sd, tmp_path / names[0])
    torch.save(D_sd, tmp_path / names[1])
    return tmp_path / names[0], tmp_path / names[1], G_sd, D_sd


def test_import_writes_file_and_record(tmp_path, cache_home):
    g, d, G_sd, D_sd = _pair(tmp_path, SMALL32)
    record = store.import_pair(g, d, config=SMALL32.to_dict(), name="mine")
    assert record.path == cache_home / "weights" / "mine.safetensors" and record.path.is_file()
    assert record.sha256 == store.sha256_file(record.path) and record.size == record.path.stat().st_size
    assert [s["role"] for s in record.sources] == ["G_ema", "D"]
    assert record.sources[0]["sha256"] == store.sha256_file(g) and record.sources[0]["path"] == str(g)
    assert record.config == SMALL32.to_dict() and record.created
    again = store.get_record("mine")
    assert again is not None and again.sha256 == record.sha256
    tensors, meta = read_weights(record.path)
    assert set(tensors) == {f"G.{k}" for k in G_sd} | {f"D.{k}" for k in D_sd}
    assert all(torch.equal(tensors[f"G.{k}"], v) for k, v in G_sd.items())
    assert meta["name"] == "mine"
    leftovers = [p.name for p in record.path.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_import_refuses_bad_requests(tmp_path):
    g, d, _, _ = _pair(tmp_path, FLAT32)
    with pytest.raises(DGPUsageError, match="exactly one"):
        store.import_pair(g, d)
    with pytest.raises(DGPUsageError, match="exactly one"):
        store.import_pair(g, d, variant="biggan-imagenet-128", config=FLAT32.to_dict(), name="x")
    with pytest.raises(DGPUsageError, match="--as NAME"):
        store.import_pair(g, d, config=FLAT32.to_dict())
    with pytest.raises(DGPUsageError, match="did you mean 'biggan-imagenet-128'"):
        store.import_pair(g, d, variant="biggan-imagenet128")
    with pytest.raises(DGPUsageError, match="invalid weights name"):
        store.import_pair(g, d, config=FLAT32.to_dict(), name="Bad Name")
    with pytest.raises(DGPUsageError, match="embedded prior"):
        store.import_pair(g, d, config=FLAT32.to_dict(), name="biggan")
    store.import_pair(g, d, config=FLAT32.to_dict(), name="flat")
    with pytest.raises(DGPUsageError, match="--overwrite"):
        store.import_pair(g, d, config=FLAT32.to_dict(), name="flat")
    assert store.import_pair(g, d, config=FLAT32.to_dict(), name="flat", overwrite=True).name == "flat"


def test_failed_import_leaves_nothing(tmp_path, cache_home):
    g, d, _, _ = _pair(tmp_path, FLAT32)
    with pytest.raises(DGPUsageError):
        store.import_pair(g, d, config=SMALL32.to_dict(), name="wrong")
    assert store.get_record("wrong") is None
    assert not (cache_home / "weights" / "wrong.safetensors").exists()


def test_verify_detects_modified_and_missing_files(tmp_path):
    g, d, _, _ = _pair(tmp_path, FLAT32)
    record = store.import_pair(g, d, config=FLAT32.to_dict(), name="flat")
    assert [r.status for r in store.verify()] == ["ok"]
    data = bytearray(record.path.read_bytes())
    data[-5] ^= 0xFF
    record.path.write_bytes(bytes(data))
    result = store.verify("flat")[0]
    assert result.status == "modified" and not result.ok
    record.path.unlink()
    assert store.verify("flat")[0].status == "missing"
    with pytest.raises(DGPUsageError, match="did you mean 'flat'"):
        store.verify("flt")


def test_broken_record_is_reported_not_fatal(cache_home):
    (cache_home / "weights").mkdir(parents=True)
    (cache_home / "weights" / "broken.json").write_text("{not json")
    errors: list[str] = []
    assert store.list_records(errors) == []
    assert len(errors) == 1 and "broken.json" in errors[0]
    with pytest.raises(DGPError):
        store.get_record("broken")


def test_unwritable_cache_is_one_runtime_error(tmp_path, monkeypatch):
    g, d, _, _ = _pair(tmp_path, FLAT32)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(store.ENV_HOME, str(blocker / "home"))
    with pytest.raises(DGPError) as info:
        store.import_pair(g, d, config=FLAT32.to_dict(), name="flat")
    assert not isinstance(info.value, DGPUsageError)
    assert_one_line(info.value, "cannot write to the weights cache", store.ENV_HOME)


@pytest.mark.parametrize("name", ["dgp_toolkit.priors.biggan.weights", "dgp_toolkit.priors.biggan.variants",
                                  "dgp_toolkit.priors.biggan.synthetic", "dgp_toolkit.priors.biggan.prior"])
def test_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_an_image_given_as_weights_is_named_as_such(tmp_path):
    # An image passed for a .pth read as a pickle said "it contains code objects".
    from PIL import Image

    png = tmp_path / "G_ema.png"
    Image.new("RGB", (4, 4)).save(png)
    with pytest.raises(DGPUsageError) as info:
        read_state_dict(png)
    assert_one_line(info.value, str(png), "it is a PNG image, not a PyTorch (.pth) or safetensors weights file")
    empty = tmp_path / "G_ema.pth"
    empty.write_bytes(b"")
    with pytest.raises(DGPUsageError, match="the file is empty"):
        read_state_dict(empty)
