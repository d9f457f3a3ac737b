"""The BigGAN prior interface (BigGANPrior, load_prior, resolve_class) on random weights."""

from __future__ import annotations

import pytest
import torch

import dgp_toolkit
from dgp_toolkit.errors import DGPError, DGPUsageError
from dgp_toolkit.priors import store
from dgp_toolkit.priors.biggan.model import BigGANConfig
from dgp_toolkit.priors.biggan.prior import BigGANPrior, resolve_class, resolve_device
from dgp_toolkit.priors.biggan.synthetic import random_state_dicts, save_prior_file
from dgp_toolkit.priors.biggan.variants import ENV_EMBEDDED, CIFAR10_CLASSES, get_variant

EMBEDDED = BigGANConfig.from_dict(get_variant("biggan").config)
SMALL = BigGANConfig(resolution=32, G_ch=16, D_ch=16, dim_z=64, shared_dim=32, n_classes=10,
                     G_attn="16", D_attn="16")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv(store.ENV_HOME, str(tmp_path / "home"))
    monkeypatch.delenv(ENV_EMBEDDED, raising=False)


@pytest.fixture(scope="module")
def embedded_file(tmp_path_factory):
    """A random-weights file in the embedded prior's format and architecture."""
    G_sd, D_sd = random_state_dicts(EMBEDDED, seed=7)
    path = tmp_path_factory.mktemp("embedded") / "biggan_cifar10_32.safetensors"
    save_prior_file(path, G_sd, D_sd, EMBEDDED, class_names=list(CIFAR10_CLASSES))
    return path, G_sd, D_sd


@pytest.fixture
def prior(embedded_file, monkeypatch):
    monkeypatch.setenv(ENV_EMBEDDED, str(embedded_file[0]))
    return dgp_toolkit.load_prior("biggan")


@pytest.fixture
def small_prior():
    from dgp_toolkit.priors.biggan.weights import build_networks

    G, D = build_networks(SMALL, *random_state_dicts(SMALL, seed=2), target="small")
    return BigGANPrior(G, D, name="small", class_names=CIFAR10_CLASSES)


def test_load_prior_biggan_loads_the_embedded_file_exactly(prior, embedded_file):
    _, G_sd, D_sd = embedded_file
    assert isinstance(prior, BigGANPrior) and prior.name == "biggan"
    assert prior.config == EMBEDDED.to_dict() and prior.source == str(embedded_file[0])
    for net, sd in ((prior.G, G_sd), (prior.D, D_sd)):
        assert all(torch.equal(v, sd[k]) for k, v in net.state_dict().items())
    assert (prior.dim_z, prior.n_classes, prior.resolution) == (128, 10, 32)
    assert prior.class_names == CIFAR10_CLASSES
    assert prior.device == torch.device("cpu")
    assert not prior.G.training and not prior.D.training


def test_missing_embedded_weights_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_EMBEDDED, str(tmp_path / "absent.safetensors"))
    with pytest.raises(DGPError) as info:
        dgp_toolkit.load_prior("biggan")
    assert not isinstance(info.value, DGPUsageError)
    assert "\n" not in str(info.value) and "not installed" in str(info.value) and ENV_EMBEDDED in str(info.value)


@pytest.mark.parametrize("name,files", [("biggan-imagenet-128", "G_ema_128.pth and D_128.pth"),
                                        ("biggan-imagenet-256", "G_ema_256.pth and D_256.pth"),
                                        ("biggan-imagenet-256-ch64", "G_ema_ch64_256.pth and D_ch64_256.pth")])
def test_missing_official_weights_say_how_to_import(name, files):
    with pytest.raises(DGPError) as info:
        dgp_toolkit.load_prior(name)
    text = str(info.value)
    assert "\n" not in text and files in text and f"dgp-tool weights import" in text and f"--variant {name}" in text


def test_unknown_prior_name_suggests():
    with pytest.raises(DGPUsageError, match="did you mean 'biggan'"):
        dgp_toolkit.load_prior("bigan")


def test_shapes_of_every_method(prior):
    z = prior.sample(3, std=0.5)
    assert z.shape == (3, 128) and z.device == prior.device
    images = prior.generate(z, [1, "cat", "9"])
    assert images.shape == (3, 3, 32, 32) and images.abs().max() <= 1
    e = prior.embed(["dog", 2])
    assert e.shape == (2, 128)
    same = prior.generate(z[:2], embedding=e)
    torch.testing.assert_close(same, prior.generate(z[:2], [5, 2]))
    one_class = prior.generate(z, 3)
    torch.testing.assert_close(one_class, prior.generate(z, embedding=prior.embed(3)[0]))
    feats = prior.features(images)
    assert len(feats) == prior.n_d_features == 5
    assert feats[-1].shape == (3, 4 * 32)
    assert prior.discriminate(images).shape == (3,)
    assert prior.discriminate(images, "cat").shape == (3,)
    assert not torch.allclose(prior.discriminate(images), prior.discriminate(images, [0, 0, 0]))


def test_gradients_reach_latent_and_images_but_not_the_prior(prior):
    z = prior.sample(2).requires_grad_(True)
    images = prior.generate(z, [0, 1])
    loss = sum(f.abs().mean() for f in prior.features(images))
    loss.backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in list(prior.G.parameters()) + list(prior.D.parameters()))


def test_sample_is_reproducible_with_a_generator(prior):
    a = prior.sample(4, generator=torch.Generator().manual_seed(3))
    b = prior.sample(4, generator=torch.Generator().manual_seed(3))
    c = prior.sample(4, std=0.3, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and torch.allclose(c, a * 0.3)
    classes = prior.sample_classes(50, generator=torch.Generator().manual_seed(0))
    assert classes.shape == (50,) and 0 <= int(classes.min()) and int(classes.max()) < 10


def test_input_errors_are_typed(prior):
    z = prior.sample(2)
    with pytest.raises(DGPUsageError, match="needs a class"):
        prior.generate(z)
    with pytest.raises(DGPUsageError, match=r"\(B, 128\)"):
        prior.generate(torch.zeros(2, 120), 0)
    with pytest.raises(DGPUsageError, match="3 classes given for a batch of 2"):
        prior.generate(z, [0, 1, 2])
    with pytest.raises(DGPUsageError, match="not both"):
        prior.generate(z, 0, embedding=prior.embed(0))
    with pytest.raises(DGPUsageError, match=r"\(B, 3, 32, 32\)"):
        prior.features(torch.zeros(1, 3, 64, 64))
    with pytest.raises(DGPUsageError, match="out of range"):
        prior.embed(10)
    with pytest.raises(DGPUsageError, match="integer tensor"):
        prior.embed(torch.tensor([0.5]))
    with pytest.raises(DGPUsageError):
        prior.sample(0)


def test_stages_are_linear_then_blocks_without_output_layer(small_prior):
    stages = small_prior.stages()
    assert len(stages) == small_prior.n_stages == 4 == len(small_prior.stage_names())
    G = small_prior.G
    assert {id(p) for p in stages[0]} == {id(p) for p in G.linear.parameters()}
    for i, stage in enumerate(stages[1:]):
        assert {id(p) for p in stage} == {id(p) for p in G.blocks[i].parameters()}
    assert any(p is G.blocks[1][1].gamma for p in stages[2])  # attention (16 px) belongs to block 1
    tuned = {id(p) for stage in stages for p in stage}
    assert not tuned & {id(p) for p in G.output_layer.parameters()}
    with_embed = small_prior.stages(include_embedding=True)
    assert with_embed[0][-1] is G.shared.weight and len(with_embed[0]) == len(stages[0]) + 1


def test_generator_state_round_trip(small_prior):
    state = small_prior.generator_state()
    z = small_prior.sample(2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = small_prior.generate(z, [1, 2])
        for p in small_prior.G.parameters():
            p.add_(0.05)
        changed = small_prior.generate(z, [1, 2])
    assert not torch.allclose(before, changed)
    params = list(small_prior.G.parameters())
    small_prior.load_generator_state(state)
    assert all(a is b for a, b in zip(params, small_prior.G.parameters()))  # optimizers stay valid
    with torch.no_grad():
        torch.testing.assert_close(small_prior.generate(z, [1, 2]), before, rtol=0, atol=0)
    with pytest.raises(DGPUsageError, match="does not fit"):
        small_prior.load_generator_state({k: v for k, v in state.items() if k != "linear.weight"})


def test_a_run_on_a_fresh_generator_never_mutates_the_prior(small_prior):
    reference = small_prior.generator_state()
    z = small_prior.sample(1, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = small_prior.generate(z, 4)
    G = small_prior.fresh_generator()
    assert G is not small_prior.G and not G.training
    assert all(p.requires_grad for stage in small_prior.stages(G) for p in stage)
    assert not any(p.requires_grad for p in G.output_layer.parameters())
    groups = [{"params": stage, "lr": 1e-2} for stage in small_prior.stages(G)]
    opt = torch.optim.Adam(groups, betas=(0.0, 0.999))
    target = torch.zeros(1, 3, 32, 32)
    for _ in range(2):
        out = small_prior.generate(z, 4, model=G)
        loss = (out - target).pow(2).mean() + small_prior.features(out)[-1].abs().mean() * 1e-3
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after_copy = small_prior.generate(z, 4, model=G)
        after_prior = small_prior.generate(z, 4)
    assert not torch.allclose(after_copy, before)
    torch.testing.assert_close(after_prior, before, rtol=0, atol=0)
    for k, v in small_prior.G.state_dict().items():
        assert torch.equal(v, reference[k]), k
    assert all(p.grad is None for p in small_prior.D.parameters())


def test_instance_norm_path_runs_and_trains(small_prior):
    G = small_prior.fresh_generator()
    small_prior.set_instance_norm(True, model=G)
    z = small_prior.sample(1, generator=torch.Generator().manual_seed(5)).requires_grad_(True)
    out = small_prior.generate(z, 2, model=G)
    assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()
    out.mean().backward()
    assert z.grad is not None and G.blocks[0][0].conv1.weight.grad is not None
    assert all(b[0]._in_stats[0] is not None for b in G.blocks)  # statistics were taken
    # The prior's own generator is untouched by the copy's switch.
    assert not any(b[0].use_in for b in small_prior.G.blocks)
    small_prior.set_instance_norm(False, model=G)
    assert all(b[0]._in_stats == [None, None] for b in G.blocks)


def test_256px_prior_has_119_latent_dimensions():
    from dgp_toolkit.priors.biggan.weights import build_networks

    cfg = BigGANConfig(resolution=256, G_ch=8, D_ch=8, dim_z=120, shared_dim=16, n_classes=5,
                       G_attn="0", D_attn="0")
    G, D = build_networks(cfg, *random_state_dicts(cfg), target="tiny256")
    prior = BigGANPrior(G, D, name="tiny256")
    assert prior.dim_z == 119 and prior.config["dim_z"] == 120 and prior.n_stages == 7
    z = prior.sample(1)
    assert z.shape == (1, 119)
    with torch.no_grad():
        assert prior.generate(z, 0).shape == (1, 3, 256, 256)


def test_load_prior_from_an_official_pair_folder_without_importing(tmp_path):
    cfg = BigGANConfig(resolution=32, G_ch=8, D_ch=8, dim_z=40, shared_dim=16, n_classes=1000,
                       G_attn="0", D_attn="0")
    G_sd, D_sd = random_state_dicts(cfg)
    folder = tmp_path / "official"
    folder.mkdir()
    torch.save(G_sd, folder / "G_ema_32.pth")
    torch.save(D_sd, folder / "D_32.pth")
    prior = dgp_toolkit.load_prior("biggan", weights=folder)  # architecture from the files
    assert prior.config["n_classes"] == 1000 and prior.config["G_ch"] == 8
    assert prior.class_names[1] == "goldfish"  # 1000 classes: ImageNet names
    assert all(torch.equal(v, G_sd[k]) for k, v in prior.G.state_dict().items())
    assert store.list_records() == []  # nothing imported
    with pytest.raises(DGPUsageError) as info:  # the variant's architecture is enforced
        dgp_toolkit.load_prior("biggan-imagenet-128", weights=folder)
    assert "does not fit biggan-imagenet-128" in str(info.value) and "32-px" in str(info.value)
    (folder / "D_other.pth").write_bytes((folder / "D_32.pth").read_bytes())
    with pytest.raises(DGPUsageError, match="expected one G_ema"):
        dgp_toolkit.load_prior("biggan", weights=folder)


def test_load_prior_from_a_prior_file(embedded_file):
    prior = dgp_toolkit.load_prior("biggan", weights=embedded_file[0])
    assert prior.config == EMBEDDED.to_dict()


def test_resolve_class_names_indices_and_mistakes(prior):
    assert resolve_class(prior, "cat") == 3 == prior.class_index("3") == prior.class_index(3)
    assert prior.class_index("Automobile") == 1
    with pytest.raises(DGPUsageError, match="out of range.*0..9"):
        prior.class_index(10)
    with pytest.raises(DGPUsageError, match="out of range"):
        prior.class_index("-1")
    with pytest.raises(DGPUsageError, match="did you mean 'horse'"):
        prior.class_index("hors")


def test_resolve_class_on_imagenet_names():
    from dgp_toolkit.priors.biggan.weights import build_networks

    cfg = BigGANConfig(resolution=32, G_ch=8, D_ch=8, dim_z=40, shared_dim=8, n_classes=1000,
                       G_attn="0", D_attn="0")
    G, D = build_networks(cfg, *random_state_dicts(cfg), target="t")
    from dgp_toolkit.priors.biggan.variants import class_names_of

    prior = BigGANPrior(G, D, name="inet", class_names=class_names_of("imagenet", 1000))
    assert prior.class_index("goldfish") == 1 and prior.class_index("Great_White_Shark") == 2
    assert prior.class_index("n01440764") == 0  # WordNet id
    with pytest.raises(DGPUsageError, match="ambiguous.*134, 517"):
        prior.class_index("crane")
    with pytest.raises(DGPUsageError, match="did you mean 'goldfish'"):
        prior.class_index("goldfsh")


def test_devices(small_prior):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(DGPUsageError, match="unknown device"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(DGPUsageError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(small_prior):
    z = small_prior.sample(2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cpu = small_prior.generate(z, [0, 1])
        small_prior.to("cuda")
        gpu = small_prior.generate(z.cuda(), [0, 1])
        feats = small_prior.features(gpu)
    assert small_prior.sample(1).device.type == "cuda" and feats[-1].device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-3)
    with pytest.raises(DGPUsageError, match="are on cpu"):
        small_prior.generate(z, 0)
