"""``dgp_toolkit.restore``: restore one image with a deep generative prior, from Python.

The data flow (the same as ``dgp-tool restore``, which is built on the pieces below):

1. read the image (a path, a PIL image, an ``H x W x 3`` uint8 array or a ``(3, H, W)``
   tensor in [-1, 1]) as RGB, noting every conversion;
2. fit it to the prior's resolution (``fit``: crop, pad or resize); a real observation
   for ``downsample`` is fitted to the low resolution (``observation_size``) instead;
3. build the degradation(s) (spec strings or :class:`~dgp_toolkit.Degradation` objects,
   composed in order);
4. make the target: ``observe`` of the input as given, or with ``simulate=True`` (the
   input is clean) ``degrade`` of it with a generator seeded by ``seed``;
5. run DGP (:func:`dgp_toolkit.engine.run_dgp`): latent selection, then the staged
   fine-tuning of the preset;
6. apply the task's post-processing (``finish``) and, with ``simulate``, score the
   observation and the result against the clean input.

Loading a prior takes a moment: for many images load it once and pass the object.

>>> import dgp_toolkit
>>> prior = dgp_toolkit.load_prior("biggan")                          # doctest: +SKIP
>>> result = dgp_toolkit.restore("cat.png", degrade=["blur:sigma=1"], prior=prior,
...                              simulate=True)                       # doctest: +SKIP
>>> result.image.save("cat_restored.png"); result.metrics["result"]  # doctest: +SKIP
{'psnr': 24.1, 'ssim': 0.83}
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from dgp_toolkit.errors import DGPError, DGPUsageError
from dgp_toolkit.images import InputImage, fit_input, is_grey, load_input
from dgp_toolkit.runinfo import json_safe, run_config, versions

__all__ = ["RestoreResult", "RestoreSetup", "InputImage", "PreparedInput", "RestoreFailure", "prepare_restore",
           "load_input", "prepare_input", "finish_input", "restore", "restore_many", "restore_stream",
           "restore_input", "run_options_of", "full_resolution_task", "json_safe", "versions"]

# --------------------------------------------------------------------------- results
@dataclass
class RestoreResult:
    """What :func:`restore` returns.

    Attributes:
        image: the restoration (PIL, prior-sized), after the task's post-processing.
        observation: the target the generator was fitted to (PIL, prior-sized).
        input: the input after fitting (PIL; for a real ``downsample`` input, the small one).
        tensor: ``image`` as a ``(1, 3, R, R)`` CPU tensor in [-1, 1].
        raw: the generator's output before post-processing, ``(1, 3, R, R)`` CPU tensor.
        metrics: with ``simulate``: ``{"observation": {"psnr", "ssim"}, "result": {...},
            "protocol": "plain" | "colorization" | "inpainting"}``; else ``None``. PSNR is
            ``inf`` for identical images.
        history: the engine's records (losses per step), a list of dicts.
        config: the full resolved configuration and versions: enough to reproduce the run.
        z, class_index, generator_state: the latent (CPU), the class used (given or chosen)
            and the fine-tuned generator's weights.
        notes: what reading, conversion and fitting did, one line each.
        full_resolution: for inputs larger than the prior: the colorization at the input's
            resolution (``gray``) or the input with the hole filled (``mask``); else ``None``.
        snapshots: the raw generator output at the end of each stage (CPU tensors).
        stopped, message, timings: how the engine stopped, its message, seconds per phase.
        seconds: wall time of the whole call.
        instance_norm: DGP's instance-norm statistics when that path was on (for saved states).
        fitted: degradation values fitted with the image (``blur:sigma=auto``):
            ``{"blur.sigma": 1.9}``; their value per stage is in ``config["fitted"]``.
    """

    image: Image.Image
    observation: Image.Image
    input: Image.Image
    tensor: Any
    raw: Any
    metrics: dict[str, Any] | None
    history: list[dict[str, Any]]
    config: dict[str, Any]
    z: Any
    class_index: int
    generator_state: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    full_resolution: Image.Image | None = None
    snapshots: list[Any] = field(default_factory=list)
    stopped: str = "done"
    message: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    instance_norm: dict[str, Any] | None = None
    fitted: dict[str, float] = field(default_factory=dict)

    def sheet(self) -> Image.Image:
        """A PNG-ready strip: input, observation, the stage snapshots, result (labelled)."""
        from dgp_toolkit.sheets import restoration_sheet

        return restoration_sheet(self)

    def __repr__(self) -> str:
        score = ""
        if self.metrics:
            score = f", psnr {self.metrics['observation']['psnr']:.2f} -> {self.metrics['result']['psnr']:.2f} dB"
        return (f"RestoreResult({self.image.size[0]}x{self.image.size[1]}, class {self.class_index}, "
                f"{self.stopped}{score}, {self.seconds:.1f} s)")


@dataclass
class RestoreSetup:
    """Everything shared by the images of one batch: built once by :func:`prepare_restore`."""

    prior: Any
    degradation: Any  # a Degradation or a Compose
    steps: list[Any]
    specs: list[str]
    preset: Any
    class_index: int | None
    label: int | str | None = None
    weights: str | None = None
    #: what makes a simulated observation (``simulate_with``); ``None``: the degradation itself
    simulation: Any = None

    @property
    def task_step(self) -> Any:
        """The degradation whose task rules (scores, fit, full-resolution finish) apply: the
        only one, or ``None`` for several (scored plainly, no full-resolution result)."""
        return self.steps[0] if len(self.steps) == 1 else None

    @property
    def protocol(self) -> str:
        """How results are scored (the degradation's ``protocol``): e.g. ``colorization``
        (after putting back the observation's Lab L), ``inpainting`` (on the bounding box
        of the missing pixels) or ``plain``."""
        return getattr(self.task_step, "protocol", "plain")

    def default_fit(self) -> str:
        """How inputs of another size are fitted when the user does not say: the task's
        ``default_fit`` (``resize`` for colorization and inpainting: the whole photo comes
        back), else ``crop``."""
        return getattr(self.task_step, "default_fit", "crop")

    def score(self, image: Any, observation: Any, clean: Any) -> dict[str, Any]:
        """PSNR and SSIM of ``image`` and of ``observation`` against ``clean`` (``(1, 3, H, W)``
        tensors in [-1, 1] at the prior's resolution), as ``restore --simulate`` scores them:
        ``{"observation": {"psnr", "ssim"}, "result": {"psnr", "ssim"}, "protocol"}``."""
        from dgp_toolkit.metrics import scores

        step = self.task_step
        if step is not None and hasattr(step, "scores"):
            rule = step.scores
        else:  # several degradations: plain scores
            def rule(x: Any, clean: Any, observation: Any) -> dict[str, float]:
                return scores(x, clean)
        with warnings.catch_warnings():  # skimage's Lab conversion warns about clipped out-of-gamut values
            warnings.simplefilter("ignore", UserWarning)
            return {"observation": rule(observation, clean, observation), "result": rule(image, clean, observation),
                    "protocol": self.protocol}


# --------------------------------------------------------------------------- set-up
def _steps_of(degrade: Any) -> list[Any]:
    from dgp_toolkit.plugins.degradations.base import Degradation
    from dgp_toolkit.plugins.degradations.compose import Compose
    from dgp_toolkit.registry import parse_degradation

    if degrade is None:
        return []
    if isinstance(degrade, (str, Degradation, Compose)):
        degrade = [degrade]
    steps: list[Any] = []
    for item in degrade:
        if isinstance(item, str):
            steps.append(parse_degradation(item))
        elif isinstance(item, Compose):
            steps.extend(item.steps)
        elif isinstance(item, Degradation) or (hasattr(item, "observe") and hasattr(item, "degrade")):
            steps.append(item)
        else:
            raise DGPUsageError(f"degrade: expected spec strings or Degradation objects, got {type(item).__name__}")
    return steps


def resolve_prior(prior: Any, device: str | None, weights: str | os.PathLike | None) -> Any:
    """The prior given by name (loaded on ``device``, default CPU, from ``weights`` if given) or
    as an object (used as is: ``weights`` is refused, ``device`` must be where it already is)."""
    if isinstance(prior, (str, os.PathLike)):
        from dgp_toolkit.priors import load_prior

        return load_prior(str(prior), device=device or "cpu", weights=weights)
    if weights is not None:
        raise DGPUsageError("weights= only applies when the prior is given by name")
    if device is not None:
        from dgp_toolkit.priors.biggan.prior import resolve_device

        if resolve_device(device) != prior.device:
            raise DGPUsageError(f"device {device!r} asked for, but the prior given is on {prior.device}; "
                                "load the prior on that device (load_prior(..., device=...))")
    return prior


def prepare_restore(degrade: Any = (), prior: Any = "biggan", *, preset: Any = None, label: int | str | None = None,
                    device: str | None = None, weights: str | os.PathLike | None = None,
                    simulate_with: Any = None) -> RestoreSetup:
    """Build the degradation, load the prior and the preset, resolve the class: once per batch.

    Every user mistake (unknown degradation, prior or preset, class out of range, bad
    device, a bad ``simulate_with``) raises :class:`DGPUsageError` here, before any image
    is touched. ``simulate_with``: spec strings or Degradation objects that make the
    simulated observation instead of ``degrade`` (needed when ``degrade`` fits a value
    with the image, ``blur:sigma=auto``).
    """
    from dgp_toolkit.learnable import learnable_specs
    from dgp_toolkit.simulation import resolve_simulation
    from dgp_toolkit.plugins.degradations.compose import Compose
    from dgp_toolkit.presets import load_preset, preset_for_degradations

    steps = _steps_of(degrade)
    degradation = steps[0] if len(steps) == 1 else Compose(steps)
    prior = resolve_prior(prior, device, weights)
    class_index = None if label is None else int(prior.class_index(label))
    if preset is None:
        preset = preset_for_degradations(steps, prior)
    elif isinstance(preset, (str, os.PathLike)):
        preset = load_preset(preset if isinstance(preset, str) else str(preset), prior)
    degradation.to(prior.device)
    _probe(degradation, prior.resolution, prior.device)
    learnable_specs(degradation, preset)  # a bad [learnable] override of the preset, now
    simulation = None if simulate_with is None else resolve_simulation(
        degradation, simulate_with, size=prior.resolution, device=prior.device)
    return RestoreSetup(prior=prior, degradation=degradation, steps=steps, specs=[s.spec for s in steps],
                        preset=preset, class_index=class_index, label=label,
                        weights=None if weights is None else str(weights), simulation=simulation)


def _probe(degradation: Any, side: int, device: Any) -> None:
    """Degrade a blank image of the prior's size once, so that options which cannot work
    at that size (``blur:sigma=100`` on a 32-px prior, a ``mask`` box outside it) are a
    usage error now, before any input, rather than the same error for every input."""
    import torch

    try:
        with torch.no_grad():
            degradation(torch.zeros(1, 3, side, side, device=device))
    except DGPUsageError:
        raise
    except Exception:  # noqa: BLE001 - anything else is reported per input, as it would be without the probe
        pass


def resolve_fit(setup: RestoreSetup, fit: str | None) -> str:
    """``fit`` checked, or the task's default for ``None``/``"auto"``."""
    from dgp_toolkit.images import FIT_MODES

    if fit in (None, "auto"):
        return setup.default_fit()
    if fit not in FIT_MODES:
        raise DGPUsageError(f"unknown fit mode {fit!r} (choose from auto, {', '.join(FIT_MODES)})")
    return fit


def full_resolution_task(setup: RestoreSetup, inp: InputImage, *, fit: str | None = "auto",
                         simulate: bool = False) -> str | None:
    """The protocol name (``"colorization"``, ``"inpainting"``, ...) when the run also gives a
    full-resolution result, else ``None``: a real input (not ``simulate``), a single
    degradation with a full-resolution finish (``Degradation.full_resolution``), and a part
    of the input seen by the prior (all of it, or the centre crop) larger than the prior."""
    from dgp_toolkit.images import fit_box
    from dgp_toolkit.plugins.degradations.base import Degradation

    step = setup.task_step
    if simulate or step is None or type(step).full_resolution is Degradation.full_resolution \
            or not hasattr(step, "full_resolution"):
        return None
    width, height = inp.size
    left, top, box_w, box_h = fit_box(width, height, setup.prior.resolution, resolve_fit(setup, fit))
    seen = (min(width, left + box_w) - max(0, left), min(height, top + box_h) - max(0, top))
    return setup.protocol if max(seen) > setup.prior.resolution else None


# --------------------------------------------------------------------------- running
def simulation_of(setup: RestoreSetup) -> Any:
    """What simulates an observation for ``setup``: its ``simulation``, else its degradation
    (a :class:`DGPUsageError` when that fits a value with the image and cannot simulate)."""
    from dgp_toolkit.simulation import resolve_simulation

    if setup.simulation is None:
        setup.simulation = resolve_simulation(setup.degradation, None, size=setup.prior.resolution,
                                              device=setup.prior.device)
    return setup.simulation


@dataclass
class PreparedInput:
    """One input fitted to the prior, with its target: ready to join a batch."""

    inp: InputImage
    target: Any  # (1, 3, R, R) on the prior's device
    clean: Any  # with simulate: the fitted clean input (for the scores), else None
    fitted: Image.Image
    notes: list[str]
    start: float  # perf_counter() when its preparation began (for ``seconds``)


def prepare_input(setup: RestoreSetup, inp: InputImage, *, fit: str = "auto", simulate: bool = False,
                  seed: int = 0) -> PreparedInput:
    """Fit one loaded image to the prior and make its target (steps 2 and 4 of the data flow).

    Inputs of any size, grey or colour, become a ``(1, 3, R, R)`` target here, so that the
    images of one folder can share a batch; only their finishing differs.
    """
    import torch

    from dgp_toolkit.engine import check_seed

    fit = resolve_fit(setup, fit)
    seed = check_seed(seed)
    start = time.perf_counter()
    prior, degradation = setup.prior, setup.degradation
    side, device = prior.resolution, prior.device
    notes = list(inp.notes)
    width, height = inp.size
    degradation.check_image_size(width, height)
    if not simulate and "gray" not in {step.name for step in setup.steps} and is_grey(inp.pil):
        notes.append("the input is greyscale; to colorize it, add --degrade gray (in Python: 'gray' in degrade)")

    with torch.no_grad():
        if simulate:
            simulation = setup.simulation or simulation_of(setup)
            clean, fitted = fit_input(inp, side, side, fit, device, notes)
            generator = torch.Generator().manual_seed(int(seed))
            target = simulation.degrade(clean, generator=generator)
            notes.append(simulation.note(seed))
        else:
            clean = None
            obs_h, obs_w = (int(v) for v in degradation.observation_size(side))
            if (obs_h, obs_w) != (side, side) and inp.size == (side, side):
                fitted_t, fitted = fit_input(inp, side, side, fit, device, notes)
                notes.append(f"taken as a full-size observation ({side}x{side})")
            else:
                fitted_t, fitted = fit_input(inp, obs_w, obs_h, fit, device, notes)
                if (obs_h, obs_w) != (side, side):
                    notes.append(f"taken as the low-resolution observation ({obs_w}x{obs_h} for a "
                                 f"{side}x{side} prior) and brought up by observe()")
            target = degradation.observe(fitted_t, size=side)
    if tuple(target.shape) != (1, 3, side, side):
        raise DGPError(f"the degradation {' + '.join(setup.specs) or 'identity'} gave a target of shape "
                       f"{tuple(target.shape)}, expected (1, 3, {side}, {side})")
    return PreparedInput(inp, target, clean, fitted, notes, start)


def finish_input(setup: RestoreSetup, prep: PreparedInput, results: Sequence[Any], *, options: Any,
                 fit: str = "auto", simulate: bool = False) -> RestoreResult:
    """An input's :class:`RestoreResult` from its runs' engine results (step 6 of the data
    flow): the mean of the runs that did not diverge, the task's finish, scores and config.

    Raises :class:`DGPError` when no run has a finite image to return.
    """
    import torch

    from dgp_toolkit.engine import raise_if_unusable
    from dgp_toolkit.images import to_pil

    seed, n_runs = options.seed, len(results)
    notes = prep.notes
    degradation, target = setup.degradation, prep.target
    kept = averaged_runs(results)
    res = results[kept[0]]  # the run whose latent, class and generator are reported (not a diverged one)
    raise_if_unusable(res)
    with torch.no_grad():
        # several runs: the mean of those that did not diverge (an estimate of the posterior mean)
        raw = torch.stack([results[r].image.detach() for r in kept]).mean(0)
        finished = degradation.finish(raw, target).clamp(-1, 1)
    for r, x in enumerate(results):
        if x.stopped == "non_finite":
            notes.append(f"the run{f' {r + 1}' if n_runs > 1 else ''} stopped early: {x.message}")
    if n_runs > 1:
        notes.append(f"the mean of {len(kept)} of {n_runs} restorations (seeds {seed}..{seed + n_runs - 1}, classes "
                     f"{', '.join(str(int(x.class_index)) for x in results)}); z, class and generator are "
                     f"run {kept[0] + 1}'s")
        for r in sorted(set(range(n_runs)) - set(kept)):
            notes.append(f"run {r + 1} (seed {seed + r}) left out of the mean: it diverged (final loss "
                         f"{final_loss(results[r]):.4g}, more than {DIVERGED_RATIO:g}x the best run's)")

    if res.fitted:
        notes.append("fitted with the image: " + ", ".join(f"{k} = {v:.3g}" for k, v in res.fitted.items()))
        notes.extend(res.fitted_notes)
    metrics = setup.score(finished, target, prep.clean) if simulate else None
    full = None
    if full_resolution_task(setup, prep.inp, fit=fit, simulate=simulate):
        full, note = _full_resolution(setup, prep.inp, finished, resolve_fit(setup, fit))
        notes.append(note)
    seconds = time.perf_counter() - prep.start
    class_index = int(res.class_index)
    config = run_config(setup, prep.inp, res, fit=fit, simulate=simulate, seed=seed,
                     iterations_scale=options.iterations_scale, check_every=options.check_every,
                     class_index=class_index, precision=res.config.get("precision", options.precision), runs=n_runs)
    if res.fitted:
        config["fitted"] = {"final": dict(res.fitted), "stages": list(res.fitted_stages)}
    if setup.simulation is not None and simulate:
        config["simulated_with"] = list(setup.simulation.specs)
    if n_runs > 1:
        config["run_classes"] = [int(x.class_index) for x in results]
        config["runs_averaged"] = [int(r) for r in kept]
        config["run_final_losses"] = [final_loss(x) for x in results]
        config["stopped"] = "non_finite" if any(x.stopped == "non_finite" for x in results) else res.stopped
    history = list(res.history) if n_runs == 1 else [
        {**h, "run": r} for r, x in enumerate(results) for h in x.history]
    return RestoreResult(
        image=to_pil(finished), observation=to_pil(target), input=prep.fitted, tensor=finished.cpu(), raw=raw.cpu(),
        metrics=metrics, history=history, config=config, z=res.z.detach().cpu(), class_index=class_index,
        generator_state=_generator_state(res), notes=notes, full_resolution=full,
        snapshots=[s.detach().cpu() for s in (results[0].snapshots or [])], stopped=config["stopped"],
        message=res.message or "", timings=dict(config["timings"]), seconds=seconds,
        instance_norm=res.instance_norm, fitted=dict(res.fitted))


@dataclass
class RestoreFailure:
    """What :func:`restore_stream` gives for an input that could not be restored."""

    error: Exception
    source: str = ""


def restore_stream(setup: RestoreSetup, inputs: Any, *, options: Any = None, fit: str = "auto",
                   simulate: bool = False, batch: int = 1, progress: Callable[[Any], None] | None = None,
                   ) -> Any:
    """Restore many inputs with one set-up, ``batch`` generator copies at a time.

    ``inputs`` is an iterable of ``(key, image)`` pairs: ``image`` a loaded
    :class:`InputImage`, anything :func:`load_input` reads, or an exception (an input
    already known to be bad). Yields ``(key, RestoreResult | RestoreFailure)`` as each
    input's last run finishes: bad inputs at once, the others batch by batch. Each input
    takes ``runs`` copies (``options.runs``, else the preset's); a batch holds ``batch``
    copies (images x runs: memory and compute scale with it). Latent candidates are shared
    by every input of the stream (one seed): they are drawn and scored once.
    """
    from dgp_toolkit.engine import CandidateCache, Job, RunOptions, run_batch

    options = options if options is not None else RunOptions()
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise DGPUsageError(f"batch must be a whole number >= 1, got {batch!r}")
    n_runs = options.runs if options.runs is not None else setup.preset.runs
    if simulate:
        simulation_of(setup)  # before any input: e.g. blur:sigma=auto cannot simulate without simulate_with
    cache = CandidateCache()
    pending: dict[Any, tuple[PreparedInput, list[Any]]] = {}
    queue: list[tuple[Any, int]] = []  # (key, run) of the copies not yet run

    def run_queue(size: int) -> Any:
        jobs, queue[:] = queue[:size], queue[size:]
        engine_jobs = [Job(pending[key][0].target, options.seed + r, setup.class_index) for key, r in jobs]
        try:
            results = run_batch(setup.prior, setup.degradation, engine_jobs, preset=setup.preset,
                                options=options, cache=cache, progress=progress)
        except (DGPError, RuntimeError, ValueError) as exc:  # the whole batch failed (e.g. out of memory)
            for key in dict.fromkeys(k for k, _ in jobs):
                if key in pending:
                    prep, _ = pending.pop(key)
                    queue[:] = [(k, r) for k, r in queue if k != key]
                    yield key, RestoreFailure(exc, prep.inp.source)
            return
        for (key, r), res in zip(jobs, results):
            pending[key][1][r] = res
        for key in dict.fromkeys(k for k, _ in jobs):
            prep, runs = pending[key]
            if all(x is not None for x in runs):
                del pending[key]
                try:
                    yield key, finish_input(setup, prep, runs, options=options, fit=fit, simulate=simulate)
                except DGPError as exc:
                    yield key, RestoreFailure(exc, prep.inp.source)

    for key, image in inputs:
        source = getattr(image, "source", str(image) if isinstance(image, (str, os.PathLike)) else "")
        try:
            if isinstance(image, BaseException):
                raise image
            inp = image if isinstance(image, InputImage) else load_input(image)
            prep = prepare_input(setup, inp, fit=fit, simulate=simulate, seed=options.seed)
        except DGPError as exc:
            yield key, RestoreFailure(exc, source)
            continue
        pending[key] = (prep, [None] * n_runs)
        queue.extend((key, r) for r in range(n_runs))
        while len(queue) >= batch:
            yield from run_queue(batch)
    while queue:
        yield from run_queue(batch)


def restore_many(images: Any, degrade: Any = (), prior: Any = "biggan", *, preset: Any = None,
                 label: int | str | None = None, device: str | None = None,
                 weights: str | os.PathLike | None = None, fit: str = "auto", simulate: bool = False,
                 simulate_with: Any = None, batch: int = 4, options: Any = None,
                 progress: Callable[[Any], None] | None = None, **run_options: Any) -> Any:
    """Restore many images with one prior; yields ``(index, RestoreResult)`` as each batch finishes.

    ``images`` is a list (or any iterable) of what :func:`restore` takes; ``batch`` the
    number of generator copies optimized together (images x runs). The other arguments
    are :func:`restore`'s; run options (``seed``, ``precision``, ``iterations_scale``,
    ``check_every``, ``snapshot_stages``, ``runs``) go in ``options`` (a
    :class:`~dgp_toolkit.RunOptions`) or as keywords. An image that cannot be restored
    yields ``(index, RestoreFailure)`` and the others go on.

    >>> for i, result in restore_many(["a.png", "b.png"], ["gray"], batch=2):   # doctest: +SKIP
    ...     result.image.save(f"restored_{i}.png")
    """
    options = run_options_of(options, run_options)
    setup = prepare_restore(degrade, prior, preset=preset, label=label, device=device, weights=weights,
                            simulate_with=simulate_with)
    return restore_stream(setup, enumerate(images), options=options, fit=fit,
                          simulate=simulate or simulate_with is not None, batch=batch, progress=progress)


def run_options_of(options: Any, keywords: dict[str, Any]) -> Any:
    """A :class:`~dgp_toolkit.engine.RunOptions` from ``options`` and/or keyword arguments
    (``snapshot_stages`` is the keyword name of ``snapshots``)."""
    from dgp_toolkit.engine import RunOptions

    keywords = dict(keywords)
    if "snapshot_stages" in keywords:
        keywords["snapshots"] = keywords.pop("snapshot_stages")
    names = {f.name for f in dataclasses.fields(RunOptions)}
    unknown = sorted(set(keywords) - names)
    if unknown:
        raise DGPUsageError(f"unknown run option(s) {', '.join(unknown)}; choices: {', '.join(sorted(names))}")
    if options is None:
        return RunOptions(**keywords)
    if not isinstance(options, RunOptions):
        raise DGPUsageError(f"options must be a RunOptions, got {type(options).__name__}")
    return options.replace(**keywords) if keywords else options


def restore_input(setup: RestoreSetup, inp: InputImage, *, fit: str = "auto", simulate: bool = False,
                  progress: Callable[[Any], None] | None = None, options: Any = None,
                  **run_options: Any) -> RestoreResult:
    """Restore one loaded image with a prepared set-up (the body of :func:`restore`): a
    stream of one input, its runs in one batch."""
    options = run_options_of(options, run_options)
    n_runs = options.runs if options.runs is not None else setup.preset.runs
    [(_, out)] = restore_stream(setup, [(0, inp)], options=options, fit=fit, simulate=simulate, batch=n_runs,
                                progress=progress)
    if isinstance(out, RestoreFailure):
        raise out.error
    return out


#: A run whose final loss is more than this many times the best run's diverged (e.g. a
#: generator that collapsed to a saturated image) and is left out of the mean.
DIVERGED_RATIO = 10.0


def final_loss(res: Any) -> float:
    """The loss an engine result ended with (``inf`` without records)."""
    return float(res.history[-1]["loss"]) if res.history else float("inf")


def averaged_runs(results: Sequence[Any]) -> list[int]:
    """Indices of the runs that go into the mean: those that ended with a finite loss no
    more than :data:`DIVERGED_RATIO` times the best run's (all runs end with the same
    preset's loss, so their losses compare); the best run alone if none else qualifies.

    >>> class R:
    ...     def __init__(self, loss, stopped="done"):
    ...         self.history, self.stopped = [{"loss": loss}], stopped
    >>> averaged_runs([R(0.002), R(0.4), R(0.005), R(0.001, "non_finite")])
    [0, 2]
    """
    losses = [final_loss(x) for x in results]
    finite = [r for r, x in enumerate(results) if x.stopped != "non_finite" and math.isfinite(losses[r])]
    if not finite:
        return [min(range(len(results)), key=lambda r: losses[r] if math.isfinite(losses[r]) else float("inf"))]
    best = min(losses[r] for r in finite)
    return [r for r in finite if losses[r] <= DIVERGED_RATIO * best] or [min(finite, key=lambda r: losses[r])]


def _generator_state(res: Any) -> dict[str, Any]:
    # The engine's copy of the weights is not used again: share its tensors rather than copy
    # them (a 128-px ImageNet generator is 280 MB). contiguous(): a no-op, except for a
    # channels-last bf16 run (safetensors needs it).
    return {k: v.detach().contiguous() for k, v in res.generator_state.items()}


def restore(image: Any, degrade: Any = (), prior: Any = "biggan", *, preset: Any = None,
            label: int | str | None = None, device: str | None = None,
            weights: str | os.PathLike | None = None, fit: str = "auto", simulate: bool = False,
            simulate_with: Any = None, progress: Callable[[Any], None] | None = None, options: Any = None,
            **run_options: Any) -> RestoreResult:
    """Restore ``image`` with a deep generative prior; returns a :class:`RestoreResult`.

    Args:
        image: a path, a PIL image, an ``H x W x 3`` uint8 array or a ``(3, H, W)`` (or
            ``(1, 3, H, W)``) tensor in [-1, 1].
        degrade: spec strings (``"blur:sigma=2"``) and/or Degradation objects, applied to
            the truth in this order; empty for a plain reconstruction.
        prior: a prior name (``"biggan"``) or a loaded prior (load once for many images).
        preset: a preset name (``"super-resolution"``), a TOML file, a Preset, or ``None``
            to choose from the degradations.
        label: the class (index or name); ``None`` lets latent selection choose one.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` (when the prior is loaded
            here; default ``"cpu"``); a loaded prior stays on its own device.
        weights: with a prior name: a folder with an official ``G_ema_*.pth`` +
            ``D_*.pth`` pair, or a prior file.
        fit: how an image of another size is brought to the prior's: ``crop``, ``pad``
            or ``resize``.
        simulate: the input is clean: degrade it first, then score the result against it.
        simulate_with: degrade the clean input with these specs instead of ``degrade``
            (implies ``simulate``): e.g. ``"blur:sigma=2"`` while ``degrade`` fits
            ``"blur:sigma=auto"``.
        progress: called with each ``ProgressEvent`` (stage, step, loss, elapsed).
        options: a :class:`~dgp_toolkit.RunOptions`; or give its fields as keywords:
        seed: makes a CPU run bit-for-bit repeatable (selection, simulated noise).
        iterations_scale: multiplies every stage's iterations (0.1 for a quick look).
        check_every: steps between the engine's checks (NaN, early stop, history).
        snapshot_stages: keep one snapshot per stage (``RunOptions.snapshots``).
        precision: ``"float32"``, ``"bf16"`` (autocast for G and D) or ``"auto"`` (bf16
            where the hardware computes it natively: AMX CPUs, recent GPUs).
        runs: restorations averaged into the result (default: the preset's ``runs``),
            run ``r`` with seed ``seed + r``, a diverged run left out (:func:`averaged_runs`);
            ``z``, ``class_index`` and ``generator_state`` are the first averaged run's,
            the snapshots the first run's, and ``history`` holds every run's records
            (with a ``run`` key).

    User mistakes raise :class:`DGPUsageError`; runtime failures :class:`DGPError`.

    >>> r = restore("photo.png", ["gray"], label="cat")   # doctest: +SKIP
    >>> r.image.save("photo_color.png")                    # doctest: +SKIP
    """
    setup = prepare_restore(degrade, prior, preset=preset, label=label, device=device, weights=weights,
                            simulate_with=simulate_with)
    inp = load_input(image)
    return restore_input(setup, inp, fit=fit, simulate=simulate or simulate_with is not None, progress=progress,
                         options=options, **run_options)


# --------------------------------------------------------------------------- full resolution
def _full_resolution(setup: RestoreSetup, inp: InputImage, finished: Any, fit: str) -> tuple[Image.Image, str]:
    """The task's full-resolution finish (the degradation's ``full_resolution``)."""
    from dgp_toolkit.images import FullFrame, to_pil

    frame = FullFrame.of(to_pil(finished), inp.pil, setup.prior.resolution, fit)
    array, note = setup.task_step.full_resolution(frame)
    return Image.fromarray(array), note


