"""Editing an image with the prior that reconstructed it (DGP-METHOD.md section 7).

Every edit starts from a :class:`~dgp_toolkit.state.Reconstruction`: DGP with the
``manipulation`` preset and no degradation fits ``G(z, c)`` to the clean image and
fine-tunes G on it. Then, with that fine-tuned G:

- :func:`jitter` renders ``G(z + std * n)`` for ``n ~ N(0, I)`` (the same ``count``
  noise vectors for every ``std``, so rows differ only in how far they move);
- :func:`transfer` keeps z and G and renders with other classes' embeddings;
- :func:`morph` reconstructs two images (with ``update_embed``) and, for alpha from 0
  to 1, renders with z, the class embedding and *every generator weight* interpolated
  linearly between the two reconstructions;
- :func:`sample` draws plain samples of a prior (no image needed).

Each takes an image (path, PIL, uint8 array or ``(3, H, W)`` tensor in [-1, 1]), a
:class:`~dgp_toolkit.state.Reconstruction` or a state file (skipping the optimization),
and returns PIL images plus the tensors behind them. Images are rendered one at a time,
so a variation never depends on how many others were asked for.

>>> import dgp_toolkit
>>> rec = dgp_toolkit.manipulate.reconstruct("cat.png", "biggan")     # doctest: +SKIP
>>> dgp_toolkit.jitter(rec, std=(0.3, 0.5)).sheet().save("j.png")     # doctest: +SKIP
>>> dgp_toolkit.transfer(rec, to=["dog", "horse"]).images[0]           # doctest: +SKIP
>>> dgp_toolkit.morph("cat.png", "dog.png", steps=11).save_gif("m.gif")  # doctest: +SKIP
>>> dgp_toolkit.sample("biggan", label="ship", count=8).sheet()       # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from dgp_toolkit.engine import check_seed
from dgp_toolkit.errors import DGPUsageError
from dgp_toolkit.restoration import resolve_prior
from dgp_toolkit.state import Reconstruction, is_state_file, load_state, reconstruction_from_result

__all__ = ["JitterResult", "MorphResult", "SampleResult", "TransferResult", "check_stds", "interpolate_states",
           "jitter", "load_manipulation_preset", "morph", "reconstruct", "resolve_classes", "sample", "transfer"]

DEFAULT_STDS = (0.3, 0.5, 0.7)
MANIPULATION_PRESET = "manipulation"


# --------------------------------------------------------------------------- results
def _pil(t: torch.Tensor) -> Image.Image:
    from dgp_toolkit.images import to_pil

    return to_pil(t)


def _head_row(rec: Reconstruction) -> list[tuple[str, Image.Image]]:
    row = [("input", rec.input)] if rec.input is not None else []
    if rec.image is not None:
        row.append(("reconstruction", _pil(rec.image)))
    return row


@dataclass
class JitterResult:
    """Random jittering: ``images[i]`` is ``G(z + stds[i] * noise[indices[i]])``, std-major."""

    images: list[Image.Image]
    tensors: torch.Tensor  # (N, 3, R, R) CPU, [-1, 1]
    stds: list[float]
    indices: list[int]
    noise: torch.Tensor  # (count, dim_z)
    reconstruction: Reconstruction
    seed: int

    def sheet(self) -> Image.Image:
        """Input and reconstruction, then one row per std."""
        from dgp_toolkit.sheets import labelled_sheet

        head = _head_row(self.reconstruction)
        rows, labels = ([head], [""]) if head else ([], [])
        for std in dict.fromkeys(self.stds):
            rows.append([(f"#{k + 1}", img) for img, s, k in zip(self.images, self.stds, self.indices) if s == std])
            labels.append(f"std {std:g}")
        return labelled_sheet(rows, row_labels=labels, title="random jittering: G(z + std * n)")


@dataclass
class TransferResult:
    """Category transfer: ``images[i]`` renders the reconstruction with class ``classes[i]``."""

    images: list[Image.Image]
    tensors: torch.Tensor
    classes: list[int]
    class_names: list[str]
    reconstruction: Reconstruction

    def sheet(self, ncol: int = 8) -> Image.Image:
        """Input and reconstruction, then the transfers (captioned with their classes)."""
        from dgp_toolkit.sheets import chunk_rows, labelled_sheet

        head = _head_row(self.reconstruction)
        tiles = [(f"{c} {n}" if n != str(c) else n, img) for c, n, img in zip(self.classes, self.class_names, self.images)]
        rows = ([head] if head else []) + chunk_rows(tiles, ncol)
        source = self.reconstruction.class_name or str(self.reconstruction.class_index)
        return labelled_sheet(rows, title=f"category transfer from class {source}")


@dataclass
class MorphResult:
    """Morphing: ``frames[i]`` renders at ``alphas[i]`` (0: image A, 1: image B)."""

    frames: list[Image.Image]
    tensors: torch.Tensor
    alphas: list[float]
    a: Reconstruction
    b: Reconstruction

    def state_at(self, alpha: float) -> dict[str, torch.Tensor]:
        """The interpolated generator state dict used for ``alpha`` (CPU)."""
        return interpolate_states(self.a.generator_state, self.b.generator_state, alpha)

    def sheet(self) -> Image.Image:
        """The inputs and reconstructions, then the frames captioned with alpha."""
        from dgp_toolkit.sheets import labelled_sheet

        head = []
        for name, rec in (("A", self.a), ("B", self.b)):
            if rec.input is not None:
                head.append((f"input {name}", rec.input))
            if rec.image is not None:
                head.append((f"recon. {name}", _pil(rec.image)))
        rows = ([head] if head else []) + [[(f"alpha {a:.2f}", f) for a, f in
                                            zip(self.alphas, self.frames)]]
        return labelled_sheet(rows, title="morphing: z, class embedding and generator weights interpolated")

    def gif(self, *, duration_ms: int = 150) -> bytes:
        """The frames as an animated GIF (bytes)."""
        from dgp_toolkit.sheets import gif_bytes

        return gif_bytes(self.frames, duration_ms=duration_ms)

    def save_gif(self, path: str | os.PathLike, *, duration_ms: int = 150, overwrite: bool = False) -> Path:
        """Write the animated GIF atomically (an existing file only with ``overwrite``)."""
        from dgp_toolkit.sheets import write_gif

        return write_gif(self.frames, path, duration_ms=duration_ms, overwrite=overwrite)


@dataclass
class SampleResult:
    """Plain samples ``G(z_i, c_i)`` of a prior with ``z ~ N(0, std^2)``."""

    images: list[Image.Image]
    tensors: torch.Tensor
    z: torch.Tensor
    classes: list[int]
    class_names: list[str]
    seed: int
    std: float
    prior_name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def sheet(self, ncol: int = 8) -> Image.Image:
        """The samples, captioned with their classes."""
        from dgp_toolkit.sheets import chunk_rows, labelled_sheet

        tiles = [(f"{c} {n}" if n != str(c) else n, img) for c, n, img in zip(self.classes, self.class_names, self.images)]
        return labelled_sheet(chunk_rows(tiles, ncol),
                              title=f"samples of {self.prior_name or 'the prior'} (seed {self.seed}, std {self.std:g})")


# --------------------------------------------------------------------------- set-up
def load_manipulation_preset(preset: Any, prior: Any, update_embed: bool | None) -> Any:
    """A preset (default ``manipulation``) by name, file or object, with ``update_embed`` set if given.

    >>> load_manipulation_preset(None, None, True).update_embed   # the 32-px family by default
    True
    """
    from dgp_toolkit.presets import load_preset

    if preset is None:
        preset = MANIPULATION_PRESET
    if isinstance(preset, (str, os.PathLike)):
        preset = load_preset(str(preset), prior)
    if update_embed is not None and bool(preset.update_embed) != bool(update_embed):
        preset = preset.replace(update_embed=bool(update_embed))
    return preset


def _as_state(value: Any) -> Reconstruction | None:
    if isinstance(value, Reconstruction):
        return value
    if isinstance(value, (str, os.PathLike)) and is_state_file(value):
        return load_state(value)
    return None


def _fitted_target(image: Any, prior: Any, fit: str) -> tuple[torch.Tensor, Image.Image, str, list[str]]:
    from dgp_toolkit.images import FIT_MODES, fit_image, to_tensor
    from dgp_toolkit.restoration import load_input

    if fit not in FIT_MODES:
        raise DGPUsageError(f"unknown fit mode {fit!r} (choose from {', '.join(FIT_MODES)})")
    inp = load_input(image)
    side = prior.resolution
    notes = list(inp.notes)
    if inp.size == (side, side):
        notes.append(f"already {side}x{side}, used as is")
        pil = inp.pil
        target = inp.tensor if inp.tensor is not None else to_tensor(pil)
    else:
        if inp.tensor is not None:
            notes.append("tensor quantised to 8 bits for fitting")
        fitted = fit_image(inp.pil, side, mode=fit)
        notes.append(fitted.note)
        pil, target = fitted.image, to_tensor(fitted.image)
    return target.to(prior.device), pil, inp.source, notes


def reconstruct(image: Any, prior: Any = "biggan", *, preset: Any = None, label: int | str | None = None,
                seed: int = 0, device: str | None = None, weights: str | os.PathLike | None = None,
                iterations_scale: float = 1.0, fit: str = "crop", update_embed: bool | None = None,
                progress: Callable[[Any], None] | None = None, check_every: int = 50) -> Reconstruction:
    """Reconstruct a clean ``image`` with ``prior`` (DGP, no degradation): the start of every edit.

    ``preset`` defaults to ``manipulation`` (the paper's jitter/transfer/morph settings);
    ``update_embed=True`` also tunes the class embedding (morphing does). ``label`` is the
    image's class (index or name); ``None`` lets latent selection choose. The other
    arguments are those of :func:`dgp_toolkit.restore`.

    >>> rec = reconstruct("cat.png", "biggan", label="cat")   # doctest: +SKIP
    >>> rec.image.shape                                         # doctest: +SKIP
    torch.Size([1, 3, 32, 32])
    """
    from dgp_toolkit.engine import RunOptions, run_dgp
    from dgp_toolkit.plugins.degradations.compose import Compose

    prior = resolve_prior(prior, device, weights)
    preset = load_manipulation_preset(preset, prior, update_embed)
    class_index = None if label is None else int(prior.class_index(label))
    target, fitted, source, notes = _fitted_target(image, prior, fit)
    identity = Compose([]).to(prior.device)
    # float32: the editing commands' settings were measured in it (bf16 is restore's "auto")
    options = RunOptions(seed=seed, precision="float32", iterations_scale=iterations_scale, check_every=check_every,
                         snapshots=False)
    res = run_dgp(prior, identity, target, preset=preset, class_index=class_index, options=options,
                  progress=progress)
    if res.stopped == "non_finite":
        notes.append(f"the run stopped early: {res.message}")
    rec = reconstruction_from_result(prior, res, preset=res.config.get("preset", preset), seed=seed, source=source)
    rec.input, rec.notes = fitted, notes
    return rec


def _prepare(image_or_state: Any, prior: Any, *, device: str | None, weights: Any, label: Any,
             **options: Any) -> tuple[Any, Reconstruction]:
    """The prior and the reconstruction: a given one (checked against the prior) or a new one."""
    state = _as_state(image_or_state)
    if state is None:
        prior = resolve_prior("biggan" if prior is None else prior, device, weights)
        return prior, reconstruct(image_or_state, prior, label=label, **options)
    prior = resolve_prior(state.prior_name if prior is None else prior, device, weights)
    state.check_prior(prior)
    if label is not None and int(prior.class_index(label)) != state.class_index:
        raise DGPUsageError(f"the class applies to a new reconstruction; this state already has class "
                            f"{state.class_index} ({state.class_name or state.class_index})")
    if state.image is None:
        state.image = state.render(prior)
    return prior, state


def resolve_classes(prior: Any, to: Any) -> list[int]:
    """Class indices from ``"all"``, one class, or a list of indices and names (order kept, no repeats).

    >>> from dgp_toolkit.priors.biggan.prior import resolve_class
    >>> class Toy:
    ...     class_names, n_classes, name = ("airplane", "automobile", "bird", "cat"), 4, "toy"
    ...     def class_index(self, value): return resolve_class(self, value)
    >>> resolve_classes(Toy(), ["cat", 1, "3"]), resolve_classes(Toy(), "all")
    ([3, 1], [0, 1, 2, 3])
    """
    if isinstance(to, str) and to.strip().lower() == "all":
        return list(range(prior.n_classes))
    values = [to] if isinstance(to, (int, str)) else list(to)
    if not values:
        raise DGPUsageError("give at least one class to transfer to (an index, a name or 'all')")
    if any(isinstance(v, str) and v.strip().lower() == "all" for v in values):
        return list(range(prior.n_classes))
    return list(dict.fromkeys(int(prior.class_index(v)) for v in values))


def check_stds(std: Any) -> list[float]:
    """Jitter stds as floats (finite, >= 0; repeats dropped), or :class:`DGPUsageError`.

    >>> check_stds([0.3, "0.5", 0.3]), check_stds(0)
    ([0.3, 0.5], [0.0])
    """
    values = [std] if isinstance(std, (int, float)) else list(std)
    if not values:
        raise DGPUsageError("give at least one std")
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise DGPUsageError(f"std {v!r} is not a number") from None
        if not math.isfinite(f) or f < 0:
            raise DGPUsageError(f"std must be a finite number >= 0, got {v!r}")
        out.append(f)
    return list(dict.fromkeys(out))


def _check_count(count: Any, what: str = "count") -> int:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise DGPUsageError(f"{what} must be a whole number >= 1, got {count!r}")
    return count


# --------------------------------------------------------------------------- edits
def jitter(image_or_state: Any, *, prior: Any = None, std: float | Iterable[float] = DEFAULT_STDS, count: int = 4,
           seed: int = 0, preset: Any = None, label: int | str | None = None, device: str | None = None,
           weights: str | os.PathLike | None = None, iterations_scale: float = 1.0, fit: str = "crop",
           progress: Callable[[Any], None] | None = None) -> JitterResult:
    """Random jittering: ``count`` variations ``G(z + std * n)`` per ``std``, with the fine-tuned G.

    ``prior`` defaults to the state's prior (for a state) or ``"biggan"``. ``seed`` seeds
    both the reconstruction and the noise; the same ``count`` noise vectors serve every
    std, so std 0 gives the reconstruction back and larger stds move further from it.

    >>> result = jitter("cat.png", std=[0.3, 0.7], count=4)   # doctest: +SKIP
    >>> len(result.images), result.stds[:2]                     # doctest: +SKIP
    (8, [0.3, 0.3])
    """
    stds = check_stds(std)
    count = _check_count(count)
    seed = check_seed(seed)
    prior, rec = _prepare(image_or_state, prior, device=device, weights=weights, label=label, preset=preset,
                          seed=seed, iterations_scale=iterations_scale, fit=fit, progress=progress)
    generator = torch.Generator().manual_seed(int(seed))
    # One draw per vector: the k-th noise vector does not depend on ``count``.
    noise = torch.cat([torch.randn(1, prior.dim_z, generator=generator) for _ in range(count)])
    tensors, out_stds, indices = [], [], []
    for s in stds:
        for k in range(count):
            tensors.append(rec.render(prior, z=rec.z + s * noise[k:k + 1]))
            out_stds.append(s)
            indices.append(k)
    batch = torch.cat(tensors)
    return JitterResult(images=[_pil(t) for t in batch], tensors=batch, stds=out_stds, indices=indices,
                        noise=noise, reconstruction=rec, seed=int(seed))


def transfer(image_or_state: Any, to: Any = "all", *, prior: Any = None, seed: int = 0, preset: Any = None,
             label: int | str | None = None, device: str | None = None, weights: str | os.PathLike | None = None,
             iterations_scale: float = 1.0, fit: str = "crop",
             progress: Callable[[Any], None] | None = None) -> TransferResult:
    """Category transfer: the reconstruction's z and fine-tuned G rendered with other classes.

    ``to`` is ``"all"``, a class, or a list of classes (indices or names of the prior).
    Transferring to the image's own class gives the reconstruction back.

    >>> transfer("dog.png", to=["cat", "horse"]).class_names     # doctest: +SKIP
    ['cat', 'horse']
    """
    seed = check_seed(seed)
    prior, rec = _prepare(image_or_state, prior, device=device, weights=weights, label=label, preset=preset,
                          seed=seed, iterations_scale=iterations_scale, fit=fit, progress=progress)
    classes = resolve_classes(prior, to)
    G = rec.build_generator(prior)
    tensors = []
    with torch.no_grad():
        for c in classes:
            embedding = prior.embed([c], model=G)
            tensors.append(rec.render(prior, embedding=embedding))
    batch = torch.cat(tensors)
    names = list(prior.class_names)
    return TransferResult(images=[_pil(t) for t in batch], tensors=batch, classes=classes,
                          class_names=[names[c] for c in classes], reconstruction=rec)


def interpolate_states(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], alpha: float,
                       ) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * a + alpha * b`` for every floating tensor of two state dicts (``torch.lerp``:
    exactly ``a`` at 0 and ``b`` at 1); other tensors are taken from the nearer end.

    >>> a, b = {"w": torch.zeros(2), "n": torch.tensor(1)}, {"w": torch.ones(2), "n": torch.tensor(2)}
    >>> mid = interpolate_states(a, b, 0.25)
    >>> mid["w"].tolist(), int(mid["n"])
    ([0.25, 0.25], 1)
    """
    if set(a) != set(b):
        only = sorted(set(a) ^ set(b))
        raise DGPUsageError(f"the two generators have different weights ({', '.join(only[:3])}); "
                            "morphing needs two reconstructions with the same prior")
    out = {}
    for key, ta in a.items():
        tb = b[key]
        if ta.shape != tb.shape:
            raise DGPUsageError(f"the two generators differ in the shape of {key}: {tuple(ta.shape)} vs {tuple(tb.shape)}")
        if ta.is_floating_point():
            out[key] = torch.lerp(ta, tb.to(ta.device, ta.dtype), float(alpha))
        else:
            out[key] = (ta if alpha < 0.5 else tb).clone()
    return out


def _alphas(steps: int) -> list[float]:
    steps = _check_count(steps, "steps")
    if steps < 2:
        raise DGPUsageError(f"morphing needs at least 2 steps (the two ends), got {steps}")
    return [i / (steps - 1) for i in range(steps)]


def morph(image_a: Any, image_b: Any, *, steps: int = 11, prior: Any = None, seed: int = 0, preset: Any = None,
          label: Any = None, device: str | None = None, weights: str | os.PathLike | None = None,
          iterations_scale: float = 1.0, fit: str = "crop",
          progress: Callable[[Any], None] | None = None) -> MorphResult:
    """Morphing: reconstruct A and B, then interpolate z, class embedding and every G weight.

    Both reconstructions tune the class embedding (``update_embed``). ``label`` is one
    class for both or a pair ``(label_a, label_b)``. ``steps`` frames, alpha = 0, 1/(steps-1),
    ..., 1: the first frame is A's reconstruction, the last B's.

    >>> frames = morph("cat.png", "dog.png", steps=5).frames   # doctest: +SKIP
    """
    alphas = _alphas(steps)
    seed = check_seed(seed)
    labels = tuple(label) if isinstance(label, (tuple, list)) else (label, label)
    if len(labels) != 2:
        raise DGPUsageError(f"label: one class for both images or a pair, got {len(labels)}")
    options = dict(preset=preset, seed=seed, iterations_scale=iterations_scale, fit=fit, progress=progress,
                   update_embed=True)
    state_a, state_b = _as_state(image_a), _as_state(image_b)
    if prior is None:
        prior = next((s.prior_name for s in (state_a, state_b) if s is not None), "biggan")
    prior = resolve_prior(prior, device, weights)
    _, a = _prepare(image_a if state_a is None else state_a, prior, device=None, weights=None, label=labels[0],
                    **options)
    _, b = _prepare(image_b if state_b is None else state_b, prior, device=None, weights=None, label=labels[1],
                    **options)
    a_stats, b_stats = a.instance_norm, b.instance_norm
    if (a_stats is None) != (b_stats is None):
        raise DGPUsageError("one reconstruction used the instance-norm path (use_in) and the other did not; "
                            "reconstruct both with the same preset")
    device_a = {k: v.to(prior.device) for k, v in a.generator_state.items()}
    device_b = {k: v.to(prior.device) for k, v in b.generator_state.items()}
    G = prior.fresh_generator()
    G.requires_grad_(False)
    from dgp_toolkit.state import set_instance_norm_stats

    frames = []
    with torch.no_grad():
        for alpha in alphas:
            prior.load_generator_state(interpolate_states(device_a, device_b, alpha), model=G)
            stats = None if a_stats is None else interpolate_states(a_stats, b_stats, alpha)
            set_instance_norm_stats(G, stats)
            z = torch.lerp(a.z, b.z, alpha).to(prior.device)
            embedding = torch.lerp(a.embedding, b.embedding, alpha).to(prior.device)
            frames.append(prior.generate(z, embedding=embedding, model=G).cpu())
    del device_a, device_b, G
    batch = torch.cat(frames)
    return MorphResult(frames=[_pil(t) for t in batch], tensors=batch, alphas=alphas, a=a, b=b)


def sample(prior: Any = "biggan", *, label: int | str | None = None, count: int = 8, seed: int = 0,
           std: float = 1.0, device: str | None = None, weights: str | os.PathLike | None = None) -> SampleResult:
    """``count`` plain samples ``G(z, c)``, ``z ~ N(0, std^2)``, of class ``label`` (or random classes).

    The same ``seed`` gives the same samples on any device (the draw happens on the CPU),
    and the first k samples do not depend on ``count``.

    >>> sample("biggan", label="cat", count=4, seed=1).class_names   # doctest: +SKIP
    ['cat', 'cat', 'cat', 'cat']
    """
    count = _check_count(count)
    seed = check_seed(seed)
    try:
        std = float(std)
    except (TypeError, ValueError):
        raise DGPUsageError(f"std {std!r} is not a number") from None
    if not (math.isfinite(std) and std > 0):
        raise DGPUsageError(f"std must be a finite number > 0, got {std!r}")
    prior = resolve_prior(prior, device, weights)
    fixed = None if label is None else int(prior.class_index(label))
    generator = torch.Generator().manual_seed(int(seed))
    # One draw per sample (latent, then class): the k-th sample does not depend on ``count``.
    zs, classes = [], []
    for _ in range(count):
        zs.append(prior.sample(1, std=std, generator=generator))
        classes.append(int(prior.sample_classes(1, generator=generator)[0]) if fixed is None else fixed)
    z = torch.cat(zs)
    tensors = []
    with torch.no_grad():
        for i in range(count):
            tensors.append(prior.generate(z[i:i + 1], [classes[i]]).cpu())
    batch = torch.cat(tensors)
    names = list(prior.class_names)
    return SampleResult(images=[_pil(t) for t in batch], tensors=batch, z=z.cpu(), classes=[int(c) for c in classes],
                        class_names=[names[c] for c in classes], seed=int(seed), std=std,
                        prior_name=str(getattr(prior, "name", "")))
