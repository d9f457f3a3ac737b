"""The BigGAN prior: a pretrained generator and its frozen discriminator, as DGP uses them.

:class:`BigGANPrior` is what ``dgp_toolkit.load_prior(name)`` returns for the BigGAN
priors. Both networks stay in eval mode (batch norm on stored statistics, spectral norm
never writing its vectors back) and the prior's own weights are frozen: a DGP run
fine-tunes :meth:`BigGANPrior.fresh_generator`, a trainable copy, so the loaded prior is
never changed and can serve any number of runs. The discriminator is shared by all runs
and only ever backpropagated through.

>>> prior = load_biggan("biggan")                                   # doctest: +SKIP
>>> z = prior.sample(4, std=0.5)                                    # doctest: +SKIP
>>> images = prior.generate(z, [prior.class_index("cat")] * 4)      # doctest: +SKIP
>>> G = prior.fresh_generator()                 # trainable, for one run  # doctest: +SKIP
>>> groups = [{"params": p} for p in prior.stages(G)]               # doctest: +SKIP
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Callable, Any

import torch
from torch import nn

from dgp_toolkit.errors import DGPError, DGPUsageError
from dgp_toolkit.priors.biggan.layers import GBlock, SpectralNorm
from dgp_toolkit.priors.biggan.model import BigGANConfig, Discriminator, Generator
from dgp_toolkit.priors.biggan.variants import (
    DEFAULT_PRIOR,
    class_names_of,
    embedded_weights_path,
    get_variant,
    guess_classes,
    imagenet_classes,
)

__all__ = ["BigGANPrior", "load_biggan", "resolve_class", "resolve_device"]

ClassLike = int | str | Sequence[int | str] | torch.Tensor


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """A ``torch.device`` from ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.

    ``"auto"`` picks CUDA, then MPS, then the CPU. An unknown or unavailable device is a
    :class:`DGPUsageError`.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        return device
    text = str(device).strip().lower()
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_ok else "cpu")
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise DGPUsageError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DGPUsageError(f"device {device!r} asked for, but CUDA is not available here; use --device cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DGPUsageError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not mps_ok:
        raise DGPUsageError(f"device {device!r} asked for, but MPS is not available here; use --device cpu or auto")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise DGPUsageError(f"unsupported device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    return dev


class BigGANPrior:
    """A pretrained BigGAN (generator + discriminator) with the interface DGP needs.

    Attributes and properties: ``name``, ``config`` (official argument names, a dict),
    ``dim_z`` (the effective latent size: 119 for the 256-px models), ``n_classes``,
    ``resolution``, ``class_names``, ``device``, ``n_stages``, ``n_d_features``,
    ``source`` (where the weights came from), ``G`` and ``D`` (frozen, eval mode).

    Methods that take a generator (``model=``) default to the prior's own; pass the one
    from :meth:`fresh_generator` during a run.
    """

    def __init__(self, G: Generator, D: Discriminator, *, name: str = DEFAULT_PRIOR,
                 class_names: Sequence[str] | None = None, source: str = "",
                 device: str | torch.device = "cpu") -> None:
        if G.config != D.config:
            raise DGPUsageError("the generator and discriminator were built with different configs")
        self.name = name
        self.source = source
        self.G = G.eval().requires_grad_(False)
        self.D = D.eval().requires_grad_(False)
        names = tuple(class_names) if class_names is not None else class_names_of(None, G.config.n_classes)
        if len(names) != G.config.n_classes:
            raise DGPUsageError(f"{len(names)} class names given for {G.config.n_classes} classes")
        self._class_names = names
        self._device = torch.device("cpu")
        self.to(device)

    # ------------------------------------------------------------------ description
    @property
    def biggan_config(self) -> BigGANConfig:
        return self.G.config

    @property
    def config(self) -> dict[str, Any]:
        """The architecture with the official BigGAN-PyTorch argument names (a fresh dict)."""
        return self.G.config.to_dict()

    @property
    def dim_z(self) -> int:
        return self.G.dim_z

    @property
    def n_classes(self) -> int:
        return self.G.config.n_classes

    @property
    def resolution(self) -> int:
        return self.G.config.resolution

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._class_names

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def n_stages(self) -> int:
        """Number of fine-tunable generator stages (first linear + one per block)."""
        return len(self.G.stages())

    @property
    def n_d_features(self) -> int:
        """Length of the discriminator's feature list (:meth:`features`)."""
        return self.D.n_features

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (for a run's resolved configuration)."""
        return {"name": self.name, "family": "biggan", "source": self.source, "config": self.config,
                "dim_z": self.dim_z, "n_stages": self.n_stages, "n_d_features": self.n_d_features}

    def __repr__(self) -> str:
        c = self.G.config
        return (f"BigGANPrior(name={self.name!r}, resolution={c.resolution}, G_ch={c.G_ch}, "
                f"n_classes={c.n_classes}, dim_z={self.dim_z}, device={str(self.device)!r})")

    # ---------------------------------------------------------------------- devices
    def to(self, device: str | torch.device) -> "BigGANPrior":
        """Move both networks to ``device`` (``"auto"`` allowed); returns the prior."""
        dev = resolve_device(device)
        self.G.to(dev)
        self.D.to(dev)
        for net in (self.G, self.D):
            _clear_caches(net)
        self._device = dev
        return self

    # ---------------------------------------------------------------------- classes
    def class_index(self, value: int | str) -> int:
        """The class index of a name (``"cat"``), an index (``3``, ``"3"``) or an ImageNet wnid."""
        return resolve_class(self, value)

    def _classes(self, y: ClassLike, batch: int | None = None) -> torch.Tensor:
        if isinstance(y, torch.Tensor):
            if y.is_floating_point() or y.is_complex():
                raise DGPUsageError("class indices must be an integer tensor (use embedding= for embeddings)")
            labels = y.reshape(-1).to(device=self.device, dtype=torch.long)
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.n_classes):
                raise DGPUsageError(f"class indices must be in 0..{self.n_classes - 1} for prior {self.name!r}")
        else:
            values = [y] if isinstance(y, (int, str)) else list(y)
            labels = torch.tensor([resolve_class(self, v) for v in values], dtype=torch.long, device=self.device)
        if batch is not None and labels.numel() == 1 and batch != 1:
            labels = labels.expand(batch)
        if batch is not None and labels.numel() != batch:
            raise DGPUsageError(f"{labels.numel()} classes given for a batch of {batch} latents")
        return labels

    def sample_classes(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` uniformly random class indices (on the prior's device)."""
        device = generator.device if generator is not None else self.device
        return torch.randint(self.n_classes, (int(n),), generator=generator, device=device).to(self.device)

    # ---------------------------------------------------------------------- sampling
    def sample(self, n: int, *, std: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` latents ``z ~ N(0, std^2)`` of shape ``(n, dim_z)`` on the prior's device.

        With a ``torch.Generator`` the draw happens on that generator's device, then moves,
        so a CPU generator gives the same latents whatever device the prior is on.
        """
        if int(n) < 1:
            raise DGPUsageError(f"the number of latents must be at least 1, got {n}")
        if not float(std) > 0:
            raise DGPUsageError(f"the latent std must be positive, got {std}")
        device = generator.device if generator is not None else self.device
        z = torch.randn(int(n), self.dim_z, generator=generator, device=device)
        if float(std) != 1.0:
            z = z * float(std)
        return z.to(self.device)

    def embed(self, y: ClassLike, *, model: Generator | None = None) -> torch.Tensor:
        """Class embeddings ``(B, shared_dim)`` of class indices or names (to interpolate classes)."""
        G = model if model is not None else self.G
        return G.embed(self._classes(y))

    def generate(self, z: torch.Tensor, y: ClassLike | None = None, *, embedding: torch.Tensor | None = None,
                 model: Generator | None = None) -> torch.Tensor:
        """Images ``(B, 3, R, R)`` in [-1, 1] from latents ``z`` of shape ``(B, dim_z)``.

        The class is given by ``y`` (indices, names, one for all or one per latent) or by
        ``embedding`` (``(B, shared_dim)`` or ``(shared_dim,)``, e.g. from :meth:`embed`).
        Gradients flow to ``z``, ``embedding`` and a trainable ``model``.
        """
        G = model if model is not None else self.G
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != self.dim_z:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise DGPUsageError(f"latents must have shape (B, {self.dim_z}) for prior {self.name!r}, got {shape}")
        self._check_device(z, "latents")
        batch = z.shape[0]
        if embedding is not None:
            if y is not None:
                raise DGPUsageError("give either y (classes) or embedding, not both")
            if embedding.ndim == 1:
                embedding = embedding.unsqueeze(0)
            if embedding.shape[0] == 1 and batch != 1:
                embedding = embedding.expand(batch, -1)
            shared_dim = self.G.config.shared_dim
            if embedding.ndim != 2 or embedding.shape != (batch, shared_dim):
                raise DGPUsageError(f"embeddings must have shape ({batch}, {shared_dim}), got {tuple(embedding.shape)}")
            self._check_device(embedding, "embeddings")
        else:
            if y is None:
                if self.n_classes != 1:
                    raise DGPUsageError("generate() needs a class: y (indices or names) or embedding")
                y = 0
            embedding = G.embed(self._classes(y, batch))
        return G(z, embedding)

    # ------------------------------------------------------------------ discriminator
    def _check_images(self, images: torch.Tensor) -> None:
        r = self.resolution
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != (3, r, r):
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise DGPUsageError(f"images must have shape (B, 3, {r}, {r}) for prior {self.name!r}, got {shape}")
        self._check_device(images, "images")

    def _check_device(self, tensor: torch.Tensor, what: str) -> None:
        if tensor.device.type != self.device.type or (
                self.device.index is not None and tensor.device.index != self.device.index):
            raise DGPUsageError(f"{what} are on {tensor.device} but prior {self.name!r} is on {self.device}")

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The discriminator's feature list for ``images`` in [-1, 1], called without a class.

        Every block's output (an attention layer is its own entry), then the sum-pooled
        ReLU of the last block: :attr:`n_d_features` tensors. Differentiable in ``images``.
        """
        self._check_images(images)
        return self.D(images)[1]

    def discriminate(self, images: torch.Tensor, y: ClassLike | None = None) -> torch.Tensor:
        """The discriminator's logits, shape ``(B,)``; with ``y`` the class projection is added."""
        self._check_images(images)
        labels = None if y is None else self._classes(y, images.shape[0])
        return self.D(images, labels)[0]

    # ------------------------------------------------------------------- fine-tuning
    def stages(self, model: Generator | None = None, *, include_embedding: bool = False,
               ) -> list[list[nn.Parameter]]:
        """The fine-tunable stages of a generator, in order, as lists of parameters.

        Stage 0 is the first linear layer (plus the shared class embedding with
        ``include_embedding``, DGP's ``update_embed``); stage i is block i-1 with its
        attention layer. The output layer is never a stage. One Adam parameter group per
        stage gives DGP's progressive schedule.
        """
        G = model if model is not None else self.G
        groups = [[p for module in stage for p in module.parameters()] for stage in G.stages()]
        if include_embedding:
            groups[0] = groups[0] + list(G.shared.parameters())
        return groups

    def stage_names(self) -> list[str]:
        """Names of the stages for logs: ``linear``, then ``block0 (8 px)``..."""
        return ["linear"] + [f"block{i} ({8 * 2**i} px)" for i in range(self.n_stages - 1)]

    def fresh_generator(self) -> Generator:
        """A trainable copy of the generator for one run, on the prior's device, in eval mode.

        Every stage's parameters require gradients; the output layer and the class
        embedding do not (DGP never tunes the former; turn the latter on for
        ``update_embed``). Changing the copy never changes the prior. The instance-norm
        path is off; :meth:`set_instance_norm` switches it on.
        """
        caches = _take_caches(self.G)  # the prior's cached SN weights are not worth copying
        try:
            G = copy.deepcopy(self.G)
        finally:
            _restore_caches(caches)
        G.eval()
        G.requires_grad_(True)
        G.output_layer.requires_grad_(False)
        G.shared.requires_grad_(False)
        G.set_instance_norm(False)
        return G

    def generator_copies(self, copies: int, *, tune_embedding: bool = False) -> Generator:
        """``copies`` trainable, independent copies of the generator stacked in one module
        (the batched engine's): sample ``i`` of a batch of ``copies`` goes through copy ``i``.

        As :meth:`fresh_generator` otherwise: on the prior's device, eval mode, every stage
        trainable, the output layer frozen; the class embedding is stacked and trainable
        with ``tune_embedding`` (DGP's ``update_embed``), else shared and frozen. Use
        :meth:`copy_state` for one copy's weights in the prior's own layout.
        """
        if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
            raise DGPUsageError(f"the number of generator copies must be a whole number >= 1, got {copies!r}")
        G = self.fresh_generator()
        G.shared.requires_grad_(bool(tune_embedding))
        G.stack_copies(copies, embedding=bool(tune_embedding))
        return G

    def copy_state(self, model: Generator, index: int) -> dict[str, torch.Tensor]:
        """Copy ``index`` of a :meth:`generator_copies` module as a state dict in the layout
        of :meth:`generator_state` (views of the stacked tensors, not copies)."""
        plain = self.G.state_dict()
        return {k: (v[index] if v.dim() == plain[k].dim() + 1 else v) for k, v in model.state_dict().items()}

    def feature_extractor(self, *, channels_last: bool = False) -> Callable[[torch.Tensor], list[torch.Tensor]]:
        """:meth:`features` without the checks, to differentiate through during a run: on
        the prior's own D, or on a channels-last copy (bf16 on a CPU); the prior is never
        changed."""
        D = self.D
        if channels_last:
            caches = _take_caches(self.D)
            try:
                D = copy.deepcopy(self.D).to(memory_format=torch.channels_last)
            finally:
                _restore_caches(caches)
        return lambda images: D(images)[1]

    def instance_norm_stats(self, model: Generator) -> dict[str, torch.Tensor] | None:
        """DGP's instance-norm statistics of a generator (CPU copies; per copy along the first
        dimension for :meth:`generator_copies`), or ``None`` when that path is off."""
        from dgp_toolkit.state import instance_norm_stats

        return instance_norm_stats(model)

    def set_instance_norm_stats(self, stats: Mapping[str, torch.Tensor] | None, model: Generator) -> None:
        """Switch the instance-norm path on with ``stats`` (from :meth:`instance_norm_stats`),
        or off with ``None``."""
        from dgp_toolkit.state import set_instance_norm_stats

        set_instance_norm_stats(model, stats)

    def generator_state(self, model: Generator | None = None) -> dict[str, torch.Tensor]:
        """A detached copy of a generator's weights and buffers (default: the prior's)."""
        G = model if model is not None else self.G
        return {k: v.detach().clone() for k, v in G.state_dict().items()}

    def load_generator_state(self, state: Mapping[str, torch.Tensor], model: Generator | None = None) -> None:
        """Copy ``state`` (from :meth:`generator_state`) into a generator, in place and strictly.

        The parameters keep their identity, so optimizers holding them stay valid.
        """
        G = model if model is not None else self.G
        try:
            with torch.no_grad():
                G.load_state_dict(dict(state), strict=True)
        except RuntimeError as exc:
            raise DGPUsageError(f"generator state does not fit prior {self.name!r}: {' '.join(str(exc).split())[:300]}") from None
        _clear_caches(G)

    def set_instance_norm(self, enabled: bool, model: Generator | None = None) -> None:
        """DGP's ``use_in`` path: instance norms take the batch norms' per-channel output
        statistics at the next forward, then replace them (BIGGAN-ARCH.md). Calling it
        again re-takes the statistics (do so at the start of every run)."""
        G = model if model is not None else self.G
        G.set_instance_norm(bool(enabled))


def _sn_modules(net: nn.Module) -> list[SpectralNorm]:
    return [m for m in net.modules() if isinstance(m, SpectralNorm)]


def _take_caches(net: nn.Module) -> list[tuple[SpectralNorm, Any]]:
    taken = [(m, m._sn_cache) for m in _sn_modules(net)]
    for m, _ in taken:
        m._sn_cache = None
    return taken


def _restore_caches(taken: list[tuple[SpectralNorm, Any]]) -> None:
    for m, cache in taken:
        m._sn_cache = cache


def _clear_caches(net: nn.Module) -> None:
    for m in _sn_modules(net):
        m.clear_sn_cache()
    for m in net.modules():
        if isinstance(m, GBlock):
            m.reset_instance_norm()


# ------------------------------------------------------------------------------ classes
def _norm_name(text: str) -> str:
    return " ".join(text.replace("_", " ").lower().split())


def resolve_class(prior: Any, value: int | str) -> int:
    """The class index that ``value`` means for ``prior`` (anything with ``class_names``).

    ``value`` is an index (``3`` or ``"3"``), a class name (``"cat"``, case and ``_`` vs
    space ignored) or, for ImageNet priors, a WordNet id (``"n02123045"``). Unknown or
    ambiguous names and out-of-range indices raise :class:`DGPUsageError`.

    >>> class P: class_names = ("airplane", "automobile", "bird", "cat"); name = "toy"
    >>> resolve_class(P(), "Cat"), resolve_class(P(), "2"), resolve_class(P(), 1)
    (3, 2, 1)
    >>> resolve_class(P(), "bird s")
    Traceback (most recent call last):
    ...
    dgp_toolkit.errors.DGPUsageError: unknown class 'bird s' for prior 'toy'; did you mean 'bird'? (use a name or an index 0..3)
    """
    names = tuple(prior.class_names)
    n = len(names)
    label = getattr(prior, "name", "this prior")
    if isinstance(value, bool):
        raise DGPUsageError(f"invalid class {value!r}")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        index = int(value)
        if not 0 <= index < n:
            raise DGPUsageError(f"class {index} is out of range for prior {label!r} (0..{n - 1})")
        return index
    if not isinstance(value, str):
        raise DGPUsageError(f"a class is an index or a name, got {type(value).__name__}")
    wanted = _norm_name(value)
    matches = [i for i, name in enumerate(names) if _norm_name(name) == wanted]
    if not matches and n == 1000 and wanted.startswith("n") and wanted[1:].isdigit():
        matches = [i for i, (_, wnid) in enumerate(imagenet_classes()) if wnid == wanted]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        listing = ", ".join(str(i) for i in matches)
        raise DGPUsageError(f"class name {value!r} is ambiguous for prior {label!r} (indices {listing}); give the index")
    normed = {_norm_name(name): name for name in names}
    close = difflib.get_close_matches(wanted, list(normed), n=1, cutoff=0.6)
    hint = f"; did you mean {normed[close[0]]!r}?" if close else ""
    raise DGPUsageError(f"unknown class {value!r} for prior {label!r}{hint} (use a name or an index 0..{n - 1})")


# ------------------------------------------------------------------------------ loading
def _find_pair(folder: Path, name: str) -> tuple[Path, Path]:
    variant = get_variant(name)
    if variant is not None and variant.files:
        g, d = folder / variant.files["G_ema"], folder / variant.files["D"]
        if g.is_file() and d.is_file():
            return g, d
    suffixes = (".pth", ".pt", ".safetensors")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in suffixes)
    gs = [p for p in files if p.name.startswith("G_ema")]
    ds = [p for p in files if p.name.startswith("D_") or p.stem == "D"]
    if len(gs) == 1 and len(ds) == 1:
        return gs[0], ds[0]
    expected = f" ({variant.files['G_ema']} + {variant.files['D']})" if variant is not None and variant.files else ""
    found = ", ".join(p.name for p in gs + ds) or "none"
    raise DGPUsageError(
        f"--weights {folder}: expected one G_ema_*.pth and one D_*.pth file{expected}, found: {found}"
    )


def _class_names(metadata: Mapping[str, str], config: BigGANConfig, name: str) -> tuple[str, ...]:
    text = metadata.get("class_names")
    if text:
        try:
            names = json.loads(text)
            if isinstance(names, list) and len(names) == config.n_classes:
                return tuple(str(x) for x in names)
        except ValueError:
            pass
    variant = get_variant(name)
    if variant is not None and int(variant.config["n_classes"]) == config.n_classes:
        return class_names_of(variant.classes, config.n_classes)
    return class_names_of(guess_classes(config.to_dict()), config.n_classes)


def load_biggan(name: str = DEFAULT_PRIOR, *, device: str | torch.device = "cpu",
                weights: str | Path | None = None) -> BigGANPrior:
    """Load the BigGAN prior ``name``: the embedded one, a known variant or an imported name.

    ``weights`` overrides where the weights come from: a folder holding an official
    ``G_ema_*.pth`` + ``D_*.pth`` pair (loaded without importing it) or a prior file
    (safetensors with ``G.*``/``D.*`` keys, e.g. from ``dgp-tool train-prior``). The
    architecture is the one recorded in the file, else the imported name's or official
    variant's (the files must fit it exactly), else, for ``biggan`` ("a BigGAN from these
    files"), the one the key shapes imply. Missing weights raise :class:`DGPError`
    saying how to get them.
    """
    from dgp_toolkit.priors import store
    from dgp_toolkit.priors.biggan import weights as wio

    variant = get_variant(name)
    metadata: dict[str, str] = {}
    config: BigGANConfig | None = None
    if weights is not None:
        path = Path(weights).expanduser()
        if path.is_dir():
            g_path, d_path = _find_pair(path, name)
            G_sd, D_sd = wio.read_state_dict(g_path), wio.read_state_dict(d_path)
            sources = (g_path.name, d_path.name)
        elif path.exists():
            G_sd, D_sd, metadata = wio.read_prior_file(path)
            sources = (f"{path.name} (G)", f"{path.name} (D)")
        else:
            raise DGPUsageError(f"--weights {path}: no such file or folder")
        source = str(path)
        config = wio.config_from_metadata(metadata)
        if config is None:
            record = store.get_record(name)
            if record is not None:
                config = BigGANConfig.from_dict(record.config)
            elif variant is not None and name != DEFAULT_PRIOR:
                config = BigGANConfig.from_dict(variant.config)
            else:
                config = wio.infer_config(G_sd, D_sd)
    else:
        record = store.get_record(name)
        if record is not None:
            path = record.path
            if not path.is_file():
                raise DGPError(f"the weights of {name!r} are gone from {path}; re-import them with --overwrite")
            G_sd, D_sd, metadata = wio.read_prior_file(path)
            config = BigGANConfig.from_dict(record.config)
        elif name == DEFAULT_PRIOR:
            path = embedded_weights_path()
            if not path.is_file():
                raise DGPError(f"the embedded prior {name!r} is not installed: {variant.how_to_get()}")  # type: ignore[union-attr]
            G_sd, D_sd, metadata = wio.read_prior_file(path)
            config = wio.config_from_metadata(metadata) or BigGANConfig.from_dict(variant.config)  # type: ignore[union-attr]
        elif variant is not None:
            raise DGPError(f"the weights of {name!r} are not installed: {variant.how_to_get()}")
        else:
            raise DGPUsageError(f"no BigGAN weights named {name!r}; see `dgp-tool weights list`")
        source = str(path)
        sources = (f"{path.name} (G)", f"{path.name} (D)")
    G, D = wio.build_networks(config, G_sd, D_sd, target=name, sources=sources)
    del G_sd, D_sd
    return BigGANPrior(G, D, name=name, class_names=_class_names(metadata, config, name),
                       source=source, device=device)
