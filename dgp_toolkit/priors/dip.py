"""``dip``: the deep image prior (Ulyanov et al. 2018) as a prior of this toolkit.

DIP fits a randomly initialised network to the one observed image; the network's
architecture alone is the prior. Here the network is the embedded BigGAN generator's
architecture (``base``, default ``biggan``) with fresh weights, so that DIP, GAN inversion
and DGP differ only in what the generator knows, not in its shape:

- weights: BigGAN's training initialisation (orthogonal conv, linear and embedding
  weights; PyTorch's default biases), drawn from ``seed`` (default 0), so ``dip`` is the
  same network in every process and a saved result reloads onto it;
- batch norms: neutral statistics (mean 0, variance 1) and unit gain, no bias; the
  self-attention gains at 0 (BigGAN's initial values). The networks stay in eval mode
  like every prior's, so nothing depends on a batch;
- the discriminator: DIP has none. The engine computes the target's discriminator
  features once per run and scores latent candidates with them, so ``dip`` carries the
  base prior's discriminator; with DIP's pixel-only losses and a single latent
  candidate it has no effect on the result (it costs one forward per run).

A DIP run is a DGP run with a different preset (:func:`dip_preset`): the ``full``
schedule (every generator stage trains from the start), MSE only, one latent drawn at
random and kept fixed (``select_num = 1``, ``z_lr = 0``: the network's input noise),
a few thousand Adam steps. The number of steps is DIP's regulariser (run long enough,
it reproduces the noise too). There are no built-in ``dip`` presets: the DGP presets
use the discriminator loss, which means nothing for a random network, so
``--prior dip`` without ``--preset FILE`` is an error (no presets for family ``dip``).
Write a preset file with :func:`dip_preset_toml` (``benchmarks/quality.py`` writes one per
task into its output folder) and run, e.g.::

    dgp-tool restore --prior dip --preset dip-denoising.toml --degrade noise --simulate cat.png

>>> from dgp_toolkit.priors.dip import dip_preset, load_dip
>>> prior = load_dip()                                           # doctest: +SKIP
>>> preset = dip_preset("denoising", iterations=1500)            # doctest: +SKIP
>>> from dgp_toolkit import restore
>>> restore("cat.png", ["noise"], prior=prior, preset=preset, simulate=True)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dgp_toolkit.errors import DGPUsageError
from dgp_toolkit.priors.biggan.layers import BatchNorm, ConditionalBatchNorm, SelfAttention, SpectralNorm
from dgp_toolkit.priors.biggan.model import BigGANConfig, Generator, orthogonal_init
from dgp_toolkit.priors.biggan.prior import BigGANPrior

__all__ = ["DIPPrior", "load_dip", "random_generator", "dip_preset", "dip_preset_toml", "preset_toml", "write_dip_preset",
           "DIP_DEFAULTS"]

#: DIP's optimisation defaults: Adam steps (DIP's usual few thousand), the generator's
#: learning rate (of 3e-4, 1e-3 and 3e-3, 1e-3 restored best after 250 deblurring steps on
#: a CIFAR-10 dev image on the embedded prior's architecture; not tuned further), the std
#: of the fixed input latent.
DIP_DEFAULTS = {"iterations": 2000, "g_lr": 1e-3, "sample_std": 1.0}


def random_generator(config: BigGANConfig, *, seed: int = 0) -> Generator:
    """A BigGAN generator of ``config`` with seeded random weights and neutral batch norms.

    The global random state is left as it was (the draw happens in a forked RNG).

    >>> cfg = BigGANConfig(resolution=32, G_ch=8, D_ch=8, dim_z=20, shared_dim=16, n_classes=10,
    ...                    G_attn="0", D_attn="0")
    >>> a, b = random_generator(cfg, seed=1), random_generator(cfg, seed=1)
    >>> bool(torch.equal(a.linear.weight, b.linear.weight))
    True
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        G = Generator(config)  # draws the spectral norms' u0 from the seeded RNG
        orthogonal_init(G)
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, (BatchNorm, ConditionalBatchNorm)):
                m.stored_mean.zero_()
                m.stored_var.fill_(1.0)
            if isinstance(m, BatchNorm):
                m.gain.fill_(1.0)
                m.bias.zero_()
            if isinstance(m, SelfAttention):
                m.gamma.zero_()
            if isinstance(m, SpectralNorm):
                m.sv0.fill_(1.0)
    return G.eval()


#: What a DIP prior answers with the BigGAN-shaped network it holds: the Prior protocol
#: (dgp_toolkit/priors/protocol.py) plus the attributes the editing commands and state files read.
FORWARDED = frozenset({
    "device", "resolution", "dim_z", "n_classes", "class_names", "config", "biggan_config", "n_stages",
    "n_d_features", "G", "D", "class_index", "sample", "sample_classes", "embed", "generate", "features",
    "feature_extractor", "discriminate", "generator_copies", "stages", "stage_names", "copy_state",
    "fresh_generator", "generator_state", "load_generator_state", "set_instance_norm", "instance_norm_stats",
    "set_instance_norm_stats",
})


class DIPPrior:
    """The deep image prior: a random generator (:func:`random_generator`) with the
    architecture of a BigGAN prior, and that prior's discriminator.

    DIP is not a BigGAN prior (nothing it computes was learned), so it does not subclass
    one: it holds a :class:`BigGANPrior` built on the random network (``net``) and answers
    the Prior protocol with it (:data:`FORWARDED`). ``preset_family`` is ``"dip"``, for
    which no presets are built in.
    """

    preset_family = "dip"

    def __init__(self, net: BigGANPrior, *, base: str, seed: int) -> None:
        self.net = net
        self.name = "dip"
        self.base = base
        self.seed = int(seed)
        self.source = net.source

    def __getattr__(self, name: str) -> Any:
        if name in FORWARDED:
            return getattr(self.__dict__["net"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def to(self, device: str | torch.device) -> "DIPPrior":
        self.net.to(device)
        return self

    def describe(self) -> dict[str, Any]:
        out = self.net.describe()
        out.update(name=self.name, family="dip", base=self.base, seed=self.seed,
                   generator=f"random (orthogonal, seed {self.seed}), neutral batch norms",
                   discriminator=f"{self.base}'s, unused by pixel-only losses")
        return out

    def __repr__(self) -> str:
        return f"DIPPrior(base={self.base!r}, seed={self.seed}, resolution={self.resolution}, device={str(self.device)!r})"


def load_dip(device: str = "cpu", weights: str | None = None, base: str = "biggan", seed: int = 0) -> DIPPrior:
    """The ``dip`` prior: ``base``'s generator architecture with random weights (``seed``).

    ``weights`` is passed to the base prior (its discriminator is kept, see the module
    notes); ``base`` must be a BigGAN prior name.
    """
    from dgp_toolkit.priors import load_prior

    if base == "dip":
        raise DGPUsageError("dip: the base prior must be a BigGAN prior, not 'dip'")
    base_prior = load_prior(base, device="cpu", weights=weights)
    if not isinstance(base_prior, BigGANPrior):
        raise DGPUsageError(f"dip: the base prior {base!r} is not a BigGAN prior")
    G = random_generator(base_prior.biggan_config, seed=int(seed))
    source = f"random generator (seed {int(seed)}) with the architecture of {base!r} ({base_prior.source})"
    net = BigGANPrior(G, base_prior.D, name="dip", class_names=base_prior.class_names, source=source, device=device)
    return DIPPrior(net, base=base, seed=int(seed))


def _schedule_table(iterations: int, g_lr: float) -> dict[str, Any]:
    # ft_num is ignored by ``full`` (every stage trains); ftr_num by pixel losses.
    return {"iterations": [int(iterations)], "ft_num": [1], "lr_ratio": [1.0], "g_lr": [float(g_lr)],
            "z_lr": [0.0], "ftr_num": [1], "use_in": [False], "weights": {"mse": [1.0]}}


def dip_preset(task: str = "restoration", *, iterations: int = DIP_DEFAULTS["iterations"],
               g_lr: float = DIP_DEFAULTS["g_lr"], sample_std: float = DIP_DEFAULTS["sample_std"]) -> Any:
    """DIP's preset: ``full`` schedule, one stage of ``iterations`` steps, MSE only, the
    latent fixed (one candidate, ``z_lr = 0``). ``task`` only names it."""
    from dgp_toolkit.plugins.schedules import build_schedule
    from dgp_toolkit.presets import Preset

    if int(iterations) < 1 or not float(g_lr) > 0 or not float(sample_std) > 0:
        raise DGPUsageError("dip preset: iterations must be >= 1, g_lr and sample_std > 0")
    schedule = build_schedule("full", **_schedule_table(iterations, g_lr))
    return Preset(name=f"dip-{task}", task=task, family="dip", description=_description(task),
                  select_num=1, sample_std=float(sample_std), update_embed=False, schedule=schedule,
                  source="dgp_toolkit.priors.dip:dip_preset")


def _description(task: str) -> str:
    return f"Deep image prior ({task}): a random generator fitted with MSE, input latent fixed."


def preset_toml(preset: Any) -> str:
    """Any :class:`~dgp_toolkit.presets.Preset` as the text of a preset file (``--preset FILE``).

    Reading the text back with :func:`~dgp_toolkit.presets.load_preset` gives the same
    schedule (the ``full`` and ``latent-only`` schedules rebuild to themselves).

    >>> import tomllib
    >>> tomllib.loads(preset_toml(dip_preset("denoising", iterations=10)))["schedule"]["name"]
    'full'
    """
    data = preset.to_dict()

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, str):
            return '"' + " ".join(v.split()).replace("\\", "\\\\").replace('"', '\\"') + '"'
        return repr(v)

    schedule = dict(data["schedule"])
    weights = schedule.pop("weights")
    lines = [f"# {' '.join(str(data['description']).split())}", f"task = {value(data['task'])}",
             f"description = {value(data['description'])}", "", "[select]"]
    lines += [f"{k} = {value(v)}" for k, v in data["select"].items()]
    lines += ["", "[options]"] + [f"{k} = {value(v)}" for k, v in data["options"].items()]
    lines += ["", "[schedule]"] + [f"{k} = {value(v)}" for k, v in schedule.items()]
    lines += ["", "[schedule.weights]"] + [f"{k} = {value(v)}" for k, v in weights.items()]
    for name, options in data.get("learnable", {}).items():
        for option, table in options.items():
            lines += ["", f"[learnable.{name}.{option}]"] + [f"{k} = {value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def dip_preset_toml(task: str = "restoration", **options: Any) -> str:
    """:func:`dip_preset` as a preset file's text (``options`` as for :func:`dip_preset`)."""
    return preset_toml(dip_preset(task, **options))


def write_dip_preset(path: str | Path, task: str = "restoration", *, overwrite: bool = False, **options: Any) -> Path:
    """Write :func:`dip_preset_toml` to ``path`` atomically; returns the path."""
    from dgp_toolkit.images import write_atomic

    data = dip_preset_toml(task, **options).encode()
    return write_atomic(path, lambda handle: handle.write(data), overwrite=overwrite)
