"""A reconstruction, saved and reloaded: one safetensors file per image.

A DGP reconstruction is the latent ``z``, the class (its index and embedding) and the
fine-tuned generator. Saving it lets several edits of one image (``dgp-tool jitter``,
``dgp-tool transfer``, ``--from-state``) cost one optimization. The file holds::

    z              (1, dim_z)            the latent
    embedding      (1, shared_dim)       the class embedding the image was rendered with
    image          (1, 3, R, R)          the reconstruction as rendered (in [-1, 1])
    G.<key>        the fine-tuned generator's complete state dict
    IN.<module>.<i>.std / .mean          DGP's instance-norm statistics, when that path is on

and, in the safetensors header, the metadata (strings): ``format``, ``prior`` (name),
``prior_config`` (JSON), ``class_index``, ``class_name``, ``preset`` (JSON), ``seed``,
``instance_norm`` (``on``/``off``), ``source`` and ``toolkit_version``. Nothing in it is
pickled. A state names the prior it was made with: loading it for a prior of another name
or architecture is refused with one :class:`~dgp_toolkit.errors.DGPUsageError`.

Rendering a reloaded state on CPU gives the saved reconstruction bit for bit.

>>> rec = reconstruction_from_result(prior, engine_result, preset=preset, seed=0)  # doctest: +SKIP
>>> save_state("cat.state.safetensors", rec)                                       # doctest: +SKIP
>>> again = load_state("cat.state.safetensors", prior)                             # doctest: +SKIP
>>> bool((again.render(prior) == rec.image).all())                                 # doctest: +SKIP
True
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dgp_toolkit._version import __version__
from dgp_toolkit.errors import DGPUsageError
from dgp_toolkit.paths import input_file_problem

__all__ = ["STATE_FORMAT", "Reconstruction", "load_state", "reconstruction_from_result", "save_state",
           "instance_norm_stats", "set_instance_norm_stats", "is_state_file"]

#: The ``format`` metadata of a state file.
STATE_FORMAT = "dgp-toolkit-state/1"
_G, _IN = "G.", "IN."


# ------------------------------------------------------------------------- instance norm
def _in_modules(model: torch.nn.Module) -> list[tuple[str, Any]]:
    # DGP's instance-norm path keeps statistics taken at a stage's first forward; they are
    # not in the state dict but the image depends on them (the BigGAN GBlock's ``_in_stats``).
    return [(name, m) for name, m in model.named_modules() if hasattr(m, "_in_stats") and hasattr(m, "use_in")]


def instance_norm_stats(model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """The instance-norm statistics of a generator (CPU copies), or ``None`` when the path is off."""
    modules = _in_modules(model)
    if not any(m.use_in for _, m in modules):
        return None
    stats: dict[str, torch.Tensor] = {}
    for name, m in modules:
        for i, pair in enumerate(m._in_stats):
            if pair is not None:
                stats[f"{name}.{i}.std"] = pair[0].detach().cpu().clone()
                stats[f"{name}.{i}.mean"] = pair[1].detach().cpu().clone()
    return stats


def set_instance_norm_stats(model: torch.nn.Module, stats: Mapping[str, torch.Tensor] | None) -> None:
    """Switch the instance-norm path on with ``stats`` (from :func:`instance_norm_stats`), or off."""
    modules = _in_modules(model)
    known = {f"{name}.{i}.{part}" for name, m in modules for i in range(len(m._in_stats)) for part in ("std", "mean")}
    unknown = sorted(set(stats or {}) - known)
    if unknown:
        raise DGPUsageError(f"instance-norm statistics for layers this generator does not have: {', '.join(unknown[:3])}")
    device = next(model.parameters()).device
    for name, m in modules:
        m.use_in = stats is not None
        m.reset_instance_norm()
        if stats is None:
            continue
        for i in range(len(m._in_stats)):
            std, mean = stats.get(f"{name}.{i}.std"), stats.get(f"{name}.{i}.mean")
            if std is not None and mean is not None:
                m._in_stats[i] = (std.to(device), mean.to(device))


# ------------------------------------------------------------------------- reconstruction
@dataclass
class Reconstruction:
    """One image reconstructed by a prior: what jitter, transfer and morph edit.

    Attributes:
        z: the latent ``(1, dim_z)`` (CPU).
        class_index: the class used.
        embedding: the class embedding ``(1, shared_dim)`` it was rendered with (CPU).
        generator_state: the fine-tuned generator's state dict (CPU tensors).
        prior_name, prior_config: the prior it belongs to (name and architecture).
        image: the reconstruction ``(1, 3, R, R)`` in [-1, 1] (CPU), or ``None``.
        instance_norm: DGP's instance-norm statistics when that path was on, else ``None``.
        preset: the resolved preset (a dict) of the run, seed: its seed.
        source: where the image came from; metadata: the file's header when loaded.
        generator: the live fine-tuned module, when the reconstruction was just made
            (never saved; rebuilt from ``generator_state`` when missing).
        input: the fitted input image (PIL) and notes: what reading and fitting did,
            when the reconstruction was just made (not saved).
        path: the file it was loaded from, if any.
    """

    z: torch.Tensor
    class_index: int
    embedding: torch.Tensor
    generator_state: dict[str, torch.Tensor]
    prior_name: str
    prior_config: dict[str, Any]
    image: torch.Tensor | None = None
    instance_norm: dict[str, torch.Tensor] | None = None
    preset: dict[str, Any] | None = None
    seed: int | None = None
    source: str = ""
    class_name: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    generator: Any = field(default=None, repr=False, compare=False)
    input: Any = field(default=None, repr=False, compare=False)
    notes: list[str] = field(default_factory=list, compare=False)
    path: Path | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        return (f"Reconstruction(prior={self.prior_name!r}, class {self.class_index}"
                f"{' (' + self.class_name + ')' if self.class_name else ''}, source={self.source!r})")

    # ------------------------------------------------------------------ checks
    def check_prior(self, prior: Any) -> None:
        """Raise :class:`DGPUsageError` unless ``prior`` is the one this state was made with."""
        name = getattr(prior, "name", None)
        if name != self.prior_name:
            raise DGPUsageError(f"this state was saved for prior {self.prior_name!r}, not {name!r}; "
                                f"use --prior {self.prior_name}")
        if _canonical(getattr(prior, "config", {})) != _canonical(self.prior_config):
            diff = _config_difference(self.prior_config, getattr(prior, "config", {}))
            raise DGPUsageError(f"this state was saved for another architecture of prior {name!r} ({diff}); "
                                "reconstruct the image again with this prior")

    # ------------------------------------------------------------------ generator
    def build_generator(self, prior: Any) -> Any:
        """The fine-tuned generator on the prior's device (the live one when there is one)."""
        if self.generator is not None:
            return self.generator
        self.check_prior(prior)
        G = prior.fresh_generator()
        prior.load_generator_state(self.generator_state, model=G)
        G.requires_grad_(False)
        set_instance_norm_stats(G, self.instance_norm)
        self.generator = G
        return G

    @torch.no_grad()
    def render(self, prior: Any, z: torch.Tensor | None = None, embedding: torch.Tensor | None = None) -> torch.Tensor:
        """``G(z, embedding)`` with the fine-tuned generator (defaults: this state's); CPU, (B, 3, R, R)."""
        G = self.build_generator(prior)
        z = self.z if z is None else z
        embedding = self.embedding if embedding is None else embedding
        return prior.generate(z.to(prior.device), embedding=embedding.to(prior.device), model=G).cpu()

    def release(self) -> None:
        """Drop the live generator (keeps ``generator_state``): frees device memory."""
        self.generator = None


def reconstruction_from_result(prior: Any, result: Any, *, preset: Any = None, seed: int | None = None,
                               source: str = "") -> Reconstruction:
    """A :class:`Reconstruction` from an engine result (:func:`dgp_toolkit.engine.run_dgp`) or a
    :class:`~dgp_toolkit.restoration.RestoreResult`.

    An engine result carries the live generator, so DGP's instance-norm statistics (if
    that path was on) are kept and the state reproduces the image exactly. A
    ``RestoreResult`` carries the generator's state dict, and the statistics only in an
    ``instance_norm`` attribute (:func:`instance_norm_stats` of the engine's generator);
    without it, a run that ended with the instance-norm path on is refused.
    """
    live = getattr(result, "generator", None)
    class_index = int(result.class_index)
    if live is not None:
        state = {k: v.detach().cpu().clone() for k, v in live.state_dict().items()}
        stats = instance_norm_stats(live)
        embedding = result.embedding.detach().cpu().clone()
    else:
        state = {k: v.detach().cpu().clone() for k, v in result.generator_state.items()}
        stats = getattr(result, "instance_norm", None)
        if stats is None and _ended_with_instance_norm(getattr(result, "config", None)):
            raise DGPUsageError("this result's run ended with the instance-norm path on (use_in) and does not "
                                "carry its statistics; save the state from the engine result instead")
        G = prior.fresh_generator()
        prior.load_generator_state(state, model=G)
        with torch.no_grad():
            embedding = prior.embed([class_index], model=G).detach().cpu()
        del G
    image = getattr(result, "raw", None)
    if image is None:
        image = getattr(result, "image", None)
    image = image.detach().cpu().clone() if isinstance(image, torch.Tensor) else None
    if preset is None:
        preset = (getattr(result, "config", None) or {}).get("preset")
    preset_dict = preset.to_dict() if hasattr(preset, "to_dict") else preset
    if isinstance(preset_dict, dict) and "resolved" in preset_dict and "name" in preset_dict:
        preset_dict = preset_dict["resolved"]  # a RestoreResult's config holds {"name", "resolved"}
    names = tuple(getattr(prior, "class_names", ()))
    return Reconstruction(
        z=result.z.detach().cpu().clone().reshape(1, -1), class_index=class_index, embedding=embedding.reshape(1, -1),
        generator_state=state, prior_name=str(prior.name), prior_config=dict(prior.config), image=image,
        instance_norm=stats, preset=preset_dict, seed=None if seed is None else int(seed), source=str(source),
        class_name=names[class_index] if 0 <= class_index < len(names) else "", generator=live)


def _ended_with_instance_norm(config: Any) -> bool:
    try:
        schedule = config["engine"]["preset"]["schedule"]
        return bool(schedule["use_in"][-1])
    except (KeyError, IndexError, TypeError):
        return False


# ------------------------------------------------------------------------- files
def _canonical(config: Any) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def _config_difference(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    keys = sorted(set(saved) | set(current))
    diffs = [f"{k}: saved {saved.get(k)!r}, this prior {current.get(k)!r}" for k in keys
             if _canonical(saved.get(k)) != _canonical(current.get(k))]
    return "; ".join(diffs[:3]) or "different configuration"


def _tensors_and_metadata(rec: Reconstruction) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors: dict[str, torch.Tensor] = {"z": rec.z, "embedding": rec.embedding}
    if rec.image is not None:
        tensors["image"] = rec.image
    tensors.update({_G + k: v for k, v in rec.generator_state.items()})
    tensors.update({_IN + k: v for k, v in (rec.instance_norm or {}).items()})
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    metadata = {
        "format": STATE_FORMAT,
        "prior": rec.prior_name,
        "prior_config": _canonical(rec.prior_config),
        "class_index": str(int(rec.class_index)),
        "class_name": rec.class_name,
        "preset": "" if rec.preset is None else json.dumps(rec.preset, sort_keys=True, default=str),
        "seed": "" if rec.seed is None else str(int(rec.seed)),
        "instance_norm": "off" if rec.instance_norm is None else "on",
        "source": rec.source,
        "toolkit_version": __version__,
    }
    return tensors, metadata


def save_state(path: str | os.PathLike, rec: Reconstruction, *, overwrite: bool = False,
               protect: Iterable[str | os.PathLike] = ()) -> Path:
    """Write ``rec`` to ``path`` (one safetensors file) atomically; return the path.

    An existing file is kept unless ``overwrite``; a path in ``protect`` (an input) never
    is overwritten (:func:`dgp_toolkit.images.write_atomic`).
    """
    from safetensors.torch import save

    from dgp_toolkit.images import write_atomic

    tensors, metadata = _tensors_and_metadata(rec)
    data = save(tensors, metadata=metadata)
    return write_atomic(path, lambda handle: handle.write(data), overwrite=overwrite, protect=protect)


def _read_header(path: Path) -> dict[str, str] | None:
    """The metadata of a safetensors file, or ``None`` when ``path`` is not one."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) != 8:
                return None
            size = int.from_bytes(head, "little")
            if size <= 0 or size > 100_000_000:
                return None
            header = json.loads(f.read(size))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict):
        return None
    meta = header.get("__metadata__") or {}
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def is_state_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a state file written by :func:`save_state` (reads its header only)."""
    path = Path(path)
    if not path.is_file():
        return False
    meta = _read_header(path)
    return meta is not None and meta.get("format") == STATE_FORMAT


def load_state(path: str | os.PathLike, prior: Any = None) -> Reconstruction:
    """Read a state file; with ``prior``, refuse one saved for another prior.

    Raises :class:`DGPUsageError` (one line naming the file) when the file is missing,
    not a regular file (a pipe is refused before it is opened), not a state file,
    damaged (also: NaN or infinite values), or made for another prior.
    """
    from safetensors import safe_open

    from dgp_toolkit.priors.biggan.weights import non_finite

    path = Path(path).expanduser()
    if not path.exists():
        raise DGPUsageError(f"state file not found: {path}")
    if path.is_dir():
        raise DGPUsageError(f"{path} is a folder, not a state file")
    problem = input_file_problem(path, "a state file")
    if problem is not None:
        raise DGPUsageError(f"{path}: {problem}")
    meta = _read_header(path)
    if meta is None:
        raise DGPUsageError(f"{path} is not a dgp-toolkit state file (not safetensors); "
                            "make one with --save-state")
    if meta.get("format") != STATE_FORMAT:
        what = f"format {meta['format']!r}" if meta.get("format") else "no format"
        raise DGPUsageError(f"{path} is not a dgp-toolkit state file ({what}, expected {STATE_FORMAT!r}); "
                            "make one with --save-state")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as exc:  # safetensors raises its own error type for damaged files
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DGPUsageError(f"cannot read {path}: the state file is truncated or corrupt ({reason})") from None
    problem = non_finite(tensors)
    if problem is not None:
        raise DGPUsageError(f"{path}: damaged state file ({problem}); make it again with --save-state")
    missing = [k for k in ("z", "embedding") if k not in tensors]
    try:
        class_index = int(meta["class_index"])
        config = json.loads(meta["prior_config"])
        preset = json.loads(meta["preset"]) if meta.get("preset") else None
        seed = int(meta["seed"]) if meta.get("seed") else None
        prior_name = meta["prior"]
    except (KeyError, ValueError) as exc:
        raise DGPUsageError(f"{path}: damaged state metadata ({type(exc).__name__}: {exc})") from None
    state = {k[len(_G):]: v for k, v in tensors.items() if k.startswith(_G)}
    if missing or not state:
        raise DGPUsageError(f"{path}: damaged state file (missing {', '.join(missing) or 'the generator weights'})")
    stats = {k[len(_IN):]: v for k, v in tensors.items() if k.startswith(_IN)}
    rec = Reconstruction(
        z=tensors["z"], class_index=class_index, embedding=tensors["embedding"], generator_state=state,
        prior_name=prior_name, prior_config=config, image=tensors.get("image"),
        instance_norm=stats if meta.get("instance_norm") == "on" else None, preset=preset, seed=seed,
        source=meta.get("source", ""), class_name=meta.get("class_name", ""), metadata=dict(meta), path=path)
    if prior is not None:
        try:
            rec.check_prior(prior)
        except DGPUsageError as exc:
            raise DGPUsageError(f"{path}: {exc}") from None
    return rec
