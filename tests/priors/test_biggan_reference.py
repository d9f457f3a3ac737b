"""The BigGAN implementation against the reference implementation's outputs and the
official checkpoints' key names and shapes (../shared, read-only)."""

import json
from pathlib import Path

import pytest
import torch

from dgp_toolkit.priors.biggan.model import BigGANConfig, Discriminator, Generator

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
FIXTURE = SHARED / "fixtures" / "biggan_reference_fixture.safetensors"
MANIFEST = SHARED / "reference" / "biggan_official_state_dicts.json"

needs_fixture = pytest.mark.skipif(not FIXTURE.exists(), reason="../shared fixtures not present")
needs_manifest = pytest.mark.skipif(not MANIFEST.exists(), reason="../shared reference not present")

CONFIG_KEYS = ("resolution", "G_ch", "D_ch", "attention", "dim_z", "shared_dim", "n_classes",
               "hier", "G_shared", "SN_eps", "BN_eps")


def _fixture():
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(FIXTURE), "pt") as f:
        meta = json.loads(f.metadata()["configs"])
    return meta, load_file(str(FIXTURE))


def _sub(tensors, prefix):
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


@needs_fixture
@pytest.mark.parametrize("prefix", ["r32", "r64"])
def test_reproduces_reference_outputs(prefix):
    meta, t = _fixture()
    cfg = BigGANConfig.from_dict({k: v for k, v in meta[prefix].items() if k in CONFIG_KEYS})
    G, D = Generator(cfg).eval(), Discriminator(cfg).eval()
    G.load_state_dict(_sub(t, f"{prefix}.G."), strict=True)
    D.load_state_dict(_sub(t, f"{prefix}.D."), strict=True)
    z, y = t[f"{prefix}.input.z"], t[f"{prefix}.input.y"]
    close = dict(rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        out = G(z, G.shared(y))
        torch.testing.assert_close(out, t[f"{prefix}.expect.G_out"], **close)
        logits, feats = D(out)
        logits_cond, _ = D(out, y)
    expected = [t[k] for k in sorted(k for k in t if k.startswith(f"{prefix}.expect.D_feat."))]
    assert len(feats) == len(expected) == meta[prefix]["n_D_features"] == D.n_features
    for got, want in zip(feats, expected):
        torch.testing.assert_close(got, want, **close)
    torch.testing.assert_close(logits, t[f"{prefix}.expect.D_out_uncond"].reshape(-1), **close)
    torch.testing.assert_close(logits_cond, t[f"{prefix}.expect.D_out_cond"].reshape(-1), **close)
    # Eval mode never writes the spectral-norm vectors back.
    for key, value in _sub(t, f"{prefix}.G.").items():
        if key.endswith(".u0"):
            assert torch.equal(G.state_dict()[key], value)


@needs_fixture
def test_sn_cache_follows_weight_updates():
    meta, t = _fixture()
    cfg = BigGANConfig.from_dict({k: v for k, v in meta["r32"].items() if k in CONFIG_KEYS})
    G = Generator(cfg).eval()
    G.load_state_dict(_sub(t, "r32.G."))
    z, y = t["r32.input.z"], t["r32.input.y"]
    with torch.no_grad():
        a = G(z, G.shared(y))
        G.blocks[0][0].conv1.weight.mul_(1.5).add_(0.01)  # in place: the cache must notice
        b = G(z, G.shared(y))
    fresh = Generator(cfg).eval()
    fresh.load_state_dict(G.state_dict())
    with torch.no_grad():
        c = fresh(z, fresh.shared(y))
    assert not torch.allclose(a, b)
    torch.testing.assert_close(b, c)


@needs_manifest
@pytest.mark.parametrize("name", ["imagenet128_ch96", "imagenet256_ch96", "imagenet256_ch64"])
def test_state_dict_matches_official_manifest(name):
    entry = json.loads(MANIFEST.read_text())[name]
    c = entry["config"]
    cfg = BigGANConfig.from_dict(c)
    with torch.device("meta"):
        G, D = Generator(cfg), Discriminator(cfg)
    for net, key in ((G, "G_ema"), (D, "D")):
        got = {k: list(v.shape) for k, v in net.state_dict().items()}
        assert got == entry[key], f"{name} {key}: key names or shapes differ"
    # The official count includes DGP's instance-norm layers (an affine weight and bias per
    # channel, twice per block); they are not in the checkpoints and not parameters here.
    in_norm = sum(2 * (b[0].conv1.in_channels + b[0].conv1.out_channels) for b in G.blocks)
    assert sum(p.numel() for p in G.parameters()) + in_norm == entry["counts"]["G_params"]
    assert sum(p.numel() for p in D.parameters()) == entry["counts"]["D_params"]


def test_effective_latent_size():
    assert BigGANConfig(resolution=256).effective_dim_z == 119
    assert BigGANConfig(resolution=128).effective_dim_z == 120
    assert BigGANConfig(resolution=32, dim_z=128, G_attn="0", D_attn="0").effective_dim_z == 128
