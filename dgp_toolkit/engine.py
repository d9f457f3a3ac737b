"""The DGP optimization, for a batch of observations: latent selection, then the staged
fine-tuning of z and G.

One batch restores B >= 1 observations ``y_i`` with one prior, one degradation and one
preset (one image is a batch of one: there is no second code path)::

    select:   z_i* = argmin over select_num candidates of the D-feature loss (last 3
              features) between phi(G(z, c)) and y_i          (batched, no gradients)
    optimize: for each stage of the schedule, Adam steps on every z_i and on every
              copy G_i's stages that the stage opens, minimising sum_i loss_i

Each image has its own generator copy, latent, class, early stop and rollback; the
schedule is shared. The copies are stacked in one module (``prior.generator_copies``:
a convolution with per-image weights is a grouped convolution), and Adam is element-wise,
so the sum of the images' independent losses gives each image exactly the steps of its own
run, up to float reduction order (tests/engine/test_batched.py checks it).

Latent candidates depend only on (seed, class, number, std) and their degraded D features
on the degradation and the precision too, not on the target: :class:`CandidateCache`
computes them once and every image with that key (a folder restored with one seed)
scores against them. Everything a run changes lives in :class:`BatchRun`, so the loaded
prior is never mutated and batches share no state.

The engine reaches the prior only through the :class:`dgp_toolkit.priors.Prior` protocol.
Speed (benchmarks/batched.py): the targets' D features are computed once; frozen
generator stages and the discriminator get no weight gradients and reuse their spectrally
normalised weights; the hot loop never waits for the host except every ``check_every``
steps (NaN/inf check, early stop, progress).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from collections import OrderedDict
from typing import Any, Callable, Sequence

import torch

from dgp_toolkit.errors import DGPError, DGPUsageError
from dgp_toolkit.precision import PRECISIONS, autocast, resolve_precision

SELECT_FEATURES = 3  # latent selection scores the last 3 D features (DGP-METHOD.md section 3)
PIXEL_LOSSES = frozenset({"mse", "l1", "nll"})  # losses that never read discriminator features
MAX_SEED = 2**63 - 1  # torch seeds are 64-bit; the headroom keeps seed + run (and + 99) in range


def check_seed(seed: Any) -> int:
    """``seed`` as an int in ``0..MAX_SEED``, else a :class:`DGPUsageError` naming it.

    >>> check_seed(3), check_seed(MAX_SEED) == MAX_SEED
    (3, True)
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        try:
            index = seed.__index__()  # numpy and torch integers
        except (AttributeError, TypeError):
            raise DGPUsageError(f"seed must be an integer from 0 to 2**63 - 1, got {seed!r}") from None
        seed = index
    if not 0 <= seed <= MAX_SEED:
        raise DGPUsageError(f"seed must be an integer from 0 to 2**63 - 1, got {seed}")
    return int(seed)


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a restoration runs, apart from what it restores: one set of defaults for
    :func:`dgp_toolkit.restore`, :func:`dgp_toolkit.restore_many`, the engine and the CLI.

    Attributes:
        seed: makes a CPU run bit-for-bit repeatable (selection, simulated noise); run ``r``
            of ``runs`` uses ``seed + r``.
        precision: ``"auto"`` (bf16 where the hardware computes it natively), ``"float32"``
            or ``"bf16"`` (autocast for G and D; weights, optimizer and losses stay float32).
        iterations_scale: multiplies every stage's iterations (0.1 for a quick look).
        check_every: steps between the engine's checks (NaN, early stop, progress).
        snapshots: keep the generator's output at the end of each stage (for sheets).
        runs: restorations averaged per image (``None``: the preset's ``runs``).
        channels_last: run G and D channels-last (``None``: on for bf16 on a CPU).
    """

    seed: int = 0
    precision: str = "auto"
    iterations_scale: float = 1.0
    check_every: int = 50
    snapshots: bool = True
    runs: int | None = None
    channels_last: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "seed", check_seed(self.seed))
        if self.precision not in PRECISIONS:
            raise DGPUsageError(f"unknown precision {self.precision!r}; choices: {', '.join(PRECISIONS)}")
        scale = self.iterations_scale
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale) or scale <= 0:
            raise DGPUsageError(f"--iterations-scale must be a finite number > 0, got {scale}")
        every = self.check_every
        if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
            raise DGPUsageError(f"check_every must be a whole number >= 1, got {every!r}")
        if self.runs is not None:
            from dgp_toolkit.presets import check_runs

            object.__setattr__(self, "runs", check_runs(self.runs))

    def replace(self, **changes: Any) -> "RunOptions":
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass
class ProgressEvent:
    """Reported every ``check_every`` steps (and at each stage end)."""

    stage: int
    n_stages: int
    step: int
    total_steps: int
    loss: float  # the mean over the batch's images still running
    elapsed_s: float
    #: images still running in the batch, and the batch's size
    running: int = 1
    batch: int = 1


@dataclasses.dataclass
class EngineResult:
    """One image's restoration (one element of a batch)."""

    image: torch.Tensor  # (1, 3, R, R) generator output in [-1, 1], before the task's finish
    z: torch.Tensor
    class_index: int
    embedding: torch.Tensor
    history: list[dict[str, float]]
    generator_state: dict[str, torch.Tensor]  # the fine-tuned generator, in the prior's layout
    instance_norm: dict[str, torch.Tensor] | None  # DGP's instance-norm statistics when on
    stopped: str  # "done" | "early_stop" | "non_finite"
    message: str
    timings: dict[str, float]
    snapshots: list[torch.Tensor]
    config: dict[str, Any]
    score: float = float("nan")  # the selected candidate's D-feature loss
    #: degradation parameters fitted with the image (``blur:sigma=auto``): the final values
    #: ``{"blur.sigma": 1.9}``, the values at the end of each stage, notes (a bound reached)
    fitted: dict[str, float] = dataclasses.field(default_factory=dict)
    fitted_stages: list[dict[str, float]] = dataclasses.field(default_factory=list)
    fitted_notes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Job:
    """One restoration of a batch: a target ``(1, 3, R, R)`` in [-1, 1], its seed, its class
    (``None``: latent selection chooses)."""

    target: torch.Tensor
    seed: int = 0
    class_index: int | None = None


def d_feature_distance(feats: list[torch.Tensor], target: list[torch.Tensor], n: int) -> torch.Tensor:
    """Per-sample sum over the last ``n`` features of mean |f - t| (shape ``(B,)``)."""
    total = 0.0
    for i in range(1, n + 1):
        diff = (feats[-i] - target[-i]).abs()
        total = total + diff.reshape(diff.shape[0], -1).mean(dim=1)
    return total


def draw_candidates(prior: Any, n: int, std: float, class_index: int | None,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` latents ~ N(0, std^2) and their classes (the given one, or random per candidate)."""
    z = torch.randn(n, prior.dim_z, generator=generator) * std
    if class_index is None:
        y = torch.randint(prior.n_classes, (n,), generator=generator)
    else:
        y = torch.full((n,), int(class_index), dtype=torch.long)
    return z.to(prior.device), y.to(prior.device)


@torch.no_grad()
def candidate_features(prior: Any, degradation: Any, z: torch.Tensor, y: torch.Tensor, *, chunk: int = 16,
                       precision: str = "float32", learnables: Sequence[Any] | None = None) -> list[torch.Tensor]:
    """The last :data:`SELECT_FEATURES` D features of ``phi(G(z_i, y_i))``, batched; a
    fitted degradation parameter (``blur:sigma=auto``) at its starting value.

    Chunks of 16: on a 2-core CPU, 48 candidates took 3.6 s one at a time, 3.0-3.1 s in
    chunks of 8-16 and up to 3.2 s in one chunk of 48; results do not depend on the chunk.
    """
    from dgp_toolkit.learnable import apply_values, learnable_specs, starting_values

    specs = learnable_specs(degradation) if learnables is None else learnables
    parts: list[list[torch.Tensor]] = []
    for start in range(0, z.shape[0], chunk):
        with autocast(z.device, precision):
            x = prior.generate(z[start:start + chunk], y[start:start + chunk])
            x = apply_values(degradation, x, starting_values(specs, x.shape[0], device=x.device))
            feats = prior.features(x)
        parts.append([f.float() for f in feats[-SELECT_FEATURES:]])
    return [torch.cat(level) for level in zip(*parts)]


def score_candidates(prior: Any, degradation: Any, target_feats: list[torch.Tensor], z: torch.Tensor,
                     y: torch.Tensor, *, chunk: int = 16, precision: str = "float32") -> torch.Tensor:
    """The D-feature loss of each candidate ``(z_i, y_i)`` against one target's features."""
    feats = candidate_features(prior, degradation, z, y, chunk=chunk, precision=precision)
    return d_feature_distance(feats, [t.expand(z.shape[0], *t.shape[1:]) for t in target_feats[-SELECT_FEATURES:]],
                              SELECT_FEATURES)


def degradation_key(degradation: Any) -> Any:
    """What identifies a degradation for the candidate cache: its spec string (a Compose's
    steps' specs joined), else the object itself (equal only to itself)."""
    steps = getattr(degradation, "steps", None)
    if steps is not None:
        specs = [getattr(s, "spec", None) for s in steps]
        return " + ".join(specs) if all(isinstance(s, str) for s in specs) else degradation
    spec = getattr(degradation, "spec", None)
    return spec if isinstance(spec, str) else degradation


class CandidateCache:
    """Latent candidates and their degraded D features, computed once per key and shared by
    every target with that key: (prior, seed, class, number, std, degradation, the starting
    values of its fitted parameters, precision).

    A folder restored with one seed draws and scores its candidates once; the runs of
    ``runs = N`` (seeds ``seed..seed+N-1``) have N keys. The ``max_entries`` most recently
    used keys are kept (each holds ``select_num`` candidates' last three D features).
    """

    def __init__(self, max_entries: int = 8) -> None:
        self.max_entries = int(max_entries)
        self._entries: OrderedDict[Any, tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]] = OrderedDict()
        self.computed = 0  # keys computed (for tests and benchmarks)

    def get(self, prior: Any, degradation: Any, preset: Any, seed: int, class_index: int | None,
            precision: str, learnables: Sequence[Any] | None = None,
            ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """The candidates ``(z, y)`` and their degraded D features for this key; ``learnables``
        (``learnable_specs(degradation, preset)``, computed here when not given) are the
        degradation's fitted parameters, scored at their starting values."""
        from dgp_toolkit.learnable import learnable_specs, starting_key

        if learnables is None:
            learnables = learnable_specs(degradation, preset)
        key = (id(prior), seed, class_index, int(preset.select_num), float(preset.sample_std),
               degradation_key(degradation), starting_key(learnables), precision)
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        generator = torch.Generator().manual_seed(seed)
        z, y = draw_candidates(prior, preset.select_num, preset.sample_std, class_index, generator)
        feats = [] if z.shape[0] == 1 else candidate_features(prior, degradation, z, y, precision=precision,
                                                               learnables=learnables)
        self._entries[key] = (z, y, feats)
        self.computed += 1
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return self._entries[key]


class Rollback:
    """Per image, the last state known to be finite: what a non-finite loss rolls back to.

    It starts as the selected latents on the prior's weights. Before the update of every
    checked step, the state whose forward gave that step's losses is copied into
    ``pending``; the check promotes each image's pending state to ``good`` when its loss
    and latent are finite (one weight copy every ``check_every`` steps).
    """

    def __init__(self, params: dict[str, torch.Tensor], z: torch.Tensor) -> None:
        self.params = params
        self.good = {k: v.detach().clone() for k, v in params.items()}
        self.pending = {k: v.detach().clone() for k, v in params.items()}
        self.good_z, self.pending_z = z.detach().clone(), z.detach().clone()
        self.good_in = torch.zeros(z.shape[0], dtype=torch.bool)

    @torch.no_grad()
    def stash(self, z: torch.Tensor) -> None:
        for name, value in self.params.items():
            self.pending[name].copy_(value)
        self.pending_z.copy_(z)

    @torch.no_grad()
    def promote(self, finite: torch.Tensor, in_on: bool) -> None:
        """Make the pending state good for the images where ``finite`` (a CPU bool mask)."""
        mask = finite.to(self.good_z.device)
        for name, good in self.good.items():
            good.copy_(torch.where(mask.view(-1, *[1] * (good.dim() - 1)), self.pending[name], good))
        self.good_z.copy_(torch.where(mask[:, None], self.pending_z, self.good_z))
        self.good_in[finite] = in_on

    def take(self, index: int) -> tuple[dict[str, torch.Tensor], torch.Tensor, bool]:
        """Image ``index``'s good state: (weights, latent, instance-norm flag)."""
        return ({k: v[index].clone() for k, v in self.good.items()}, self.good_z[index].clone(),
                bool(self.good_in[index]))


@dataclasses.dataclass
class _Final:
    """An image's state when it stopped (early stop or rolled back after a non-finite loss)."""

    params: dict[str, torch.Tensor]
    z: torch.Tensor
    in_on: bool
    stopped: str
    message: str
    steps: int


@dataclasses.dataclass
class _Trainables:
    """What a batch's optimization changes (see :meth:`BatchRun._trainables`)."""

    G: Any
    z: torch.Tensor
    fitted: Any
    optimizers: tuple[Any, Any, Any]  # generator stages, latents, fitted values (or None)
    rollback: "Rollback"
    features: Any
    embedding: Callable[[], torch.Tensor]


class _StageEnds:
    """Per image, what it was at the end of each stage it completed: the generator's output
    (the snapshots, when kept) and the fitted degradation values."""

    def __init__(self, batch: int, *, keep_images: bool) -> None:
        self.keep_images = keep_images
        self.images: list[list[torch.Tensor]] = [[] for _ in range(batch)]
        self.values: list[list[dict[str, float]]] = [[] for _ in range(batch)]

    def record(self, x: torch.Tensor, fitted: Any, finals: dict[int, Any]) -> None:
        values = fitted.snapshot() if len(fitted) else None
        for i in range(len(self.images)):
            if i in finals:  # stopped during this stage
                continue
            if self.keep_images:
                self.images[i].append(x[i:i + 1].detach().float().clone())
            if values is not None:
                self.values[i].append(values[i])


def _set_layout(module: torch.nn.Module, layout: torch.memory_format) -> None:
    """Put a module's 4-d tensors in ``layout``, in place (``Module.to`` refuses the stacked
    copies' 5-d weights; their grouped convolutions see 4-d views)."""
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.dim() == 4:
                tensor.data = tensor.data.contiguous(memory_format=layout)


class BatchRun:
    """The state of one batch of restorations: stacked generator copies, latents, classes,
    optimizers. One prior, one degradation, one preset, one :class:`RunOptions`."""

    def __init__(self, prior: Any, degradation: Any, jobs: Sequence[Job], *, preset: Any,
                 options: RunOptions = RunOptions(), cache: CandidateCache | None = None):
        if not jobs:
            raise DGPUsageError("a batch needs at least one observation")
        side = prior.resolution
        for job in jobs:
            if job.target.ndim != 4 or tuple(job.target.shape) != (1, 3, side, side):
                raise DGPUsageError(f"each observation must be a (1, 3, {side}, {side}) tensor, "
                                    f"got {tuple(job.target.shape)}")
            if job.class_index is not None and not 0 <= int(job.class_index) < prior.n_classes:
                raise DGPUsageError(f"class {job.class_index} is out of range for prior {prior.name!r} "
                                    f"(0..{prior.n_classes - 1})")
        self.prior, self.degradation, self.preset, self.options = prior, degradation, preset, options
        self.jobs = [dataclasses.replace(j, seed=check_seed(j.seed)) for j in jobs]
        self.device = prior.device
        self.targets = torch.cat([j.target for j in jobs]).to(self.device, torch.float32)
        scale = options.iterations_scale
        self.schedule = preset.schedule.scaled(scale) if scale != 1.0 else preset.schedule
        self.precision = resolve_precision(options.precision, self.device)
        # bf16 on a CPU: channels-last activations let oneDNN keep its bf16 kernels' layout
        channels_last = options.channels_last
        self.channels_last = bool(self.precision == "bf16" and self.device.type == "cpu"
                                  if channels_last is None else channels_last)
        self.cache = cache if cache is not None else CandidateCache()
        from dgp_toolkit.learnable import learnable_specs

        self.learnables = learnable_specs(degradation, preset)  # degradation parameters fitted with the image
        self.timings: dict[str, float] = {}
        self._losses = self._build_losses()
        # The targets' D features, once per batch; skipped when nothing reads them (pixel-only
        # losses and a single latent candidate, e.g. the deep-image-prior baseline).
        self.optimizes_with_d = any(w and name not in PIXEL_LOSSES for s in self.schedule.stages
                                    for name, w in s.weights.items())
        self.target_feats: list[torch.Tensor] = []
        if preset.select_num > 1 or self.optimizes_with_d:
            with torch.no_grad():
                self.target_feats = [f.detach() for f in prior.features(self.targets)]

    def _build_losses(self) -> dict[str, Any]:
        from dgp_toolkit.registry import get_registry

        names = sorted({k for s in self.schedule.stages for k in s.weights})
        return {name: get_registry().create("loss", name) for name in names}

    # ------------------------------------------------------------------ selection
    def select(self) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
        """The selected latents ``(B, dim_z)``, classes ``(B,)`` and their scores."""
        t0 = time.perf_counter()
        zs, ys, scores = [], [], []
        for i, job in enumerate(self.jobs):
            z, y, feats = self.cache.get(self.prior, self.degradation, self.preset, job.seed, job.class_index,
                                         self.precision, self.learnables)
            if z.shape[0] == 1:
                best, score = 0, float("nan")
            else:
                mine = [t[i:i + 1].expand(z.shape[0], *t.shape[1:]) for t in self.target_feats[-SELECT_FEATURES:]]
                distance = d_feature_distance(feats, mine, SELECT_FEATURES)
                best = int(torch.argmin(distance))
                score = float(distance[best])
            zs.append(z[best])
            ys.append(y[best])
            scores.append(score)
        self.timings["select_s"] = time.perf_counter() - t0
        return torch.stack(zs).clone(), torch.stack(ys), scores

    # ------------------------------------------------------------------ optimization
    def _open_stage(self, s_idx: int, stage: Any, t: "_Trainables", in_on: bool) -> bool:
        """Set the stage's learning rates and trainable stages; switch the instance-norm path
        as the stage says. Returns whether it is on."""
        opt_g, opt_z, opt_l = t.optimizers
        if opt_l is not None:
            t.fitted.set_stage(opt_l, s_idx)
        for i, group in enumerate(opt_g.param_groups):
            group["base_lr"] = stage.group_lr(i)
            for p in group["params"]:
                p.requires_grad_(group["base_lr"] > 0)
        opt_z.param_groups[0]["base_lr"] = stage.z_lr
        if stage.use_in != in_on:
            self.prior.set_instance_norm(stage.use_in, model=t.G)
        return stage.use_in

    def _trainables(self, z0: torch.Tensor, classes: torch.Tensor) -> "_Trainables":
        """The generator copies, latents, fitted degradation values, their optimizers and the
        roll-back state of a batch."""
        from dgp_toolkit.learnable import FittedValues

        prior, batch, tune_embed = self.prior, len(self.jobs), bool(self.preset.update_embed)
        G = prior.generator_copies(batch, tune_embedding=tune_embed)
        if self.channels_last:
            _set_layout(G, torch.channels_last)
        groups = prior.stages(G, include_embedding=tune_embed)
        z = z0.detach().clone().requires_grad_(True)
        fitted = FittedValues(self.learnables, batch, device=self.device)
        # Not the fused Adam kernel, although it saves 1.6 ms of a ~33 ms step here: its
        # updates differ from the default's by ~1% after 80 steps, and some 1,000-step runs
        # amplify that into a different result (one denoising dev image: 19.4 against 25.6 dB).
        adam = dict(betas=(0.0, 0.999), eps=1e-8)
        optimizers = (torch.optim.Adam([{"params": g, "lr": 0.0} for g in groups], **adam),
                      torch.optim.Adam([z], lr=0.0, **adam),
                      torch.optim.Adam(fitted.param_groups(0), **adam) if len(fitted) else None)
        tuned = {f"{i}.{j}": p for i, g in enumerate(groups) for j, p in enumerate(g)}
        rollback = Rollback({**tuned, **{f"fitted.{k}": r for k, r in enumerate(fitted.raw)}}, z)
        fixed = None if tune_embed else prior.embed(classes, model=G).detach()
        features = prior.feature_extractor(channels_last=self.channels_last) if self.optimizes_with_d else None
        return _Trainables(G, z, fitted, optimizers, rollback, features,
                           embedding=lambda: prior.embed(classes, model=G) if fixed is None else fixed)

    def _losses_of(self, x: torch.Tensor, z: torch.Tensor, stage: Any, features: Any, fitted: Any) -> torch.Tensor:
        """The weighted loss terms, ``(B, 1 + terms)``: the total per image, then each term."""
        from dgp_toolkit.plugins.losses import LossState

        def feature_fn(image: torch.Tensor) -> list[torch.Tensor]:
            with autocast(self.device, self.precision):  # a no-op in float32
                feats = features(image)
            return [f.float() for f in feats]  # .float() of a float32 tensor is the tensor itself

        state = LossState(generated=fitted.apply(self.degradation, x), target=self.targets, z=z, target_features=self.target_feats,
                          ftr_num=stage.ftr_num, feature_fn=feature_fn)
        batch = x.shape[0]
        terms = []
        for name in sorted(self._losses):
            weight = stage.weights.get(name, 0.0)
            if weight == 0.0:
                terms.append(x.new_zeros(batch))
                continue
            value = self._losses[name](state)
            if value.dim() == 0 and batch == 1:  # a loss written for one image
                value = value.reshape(1)
            if tuple(value.shape) != (batch,):
                raise DGPError(f"loss {name!r} returned shape {tuple(value.shape)}; a loss returns one value per "
                               f"image, shape ({batch},) (see dgp_toolkit.hookspecs.register_losses)")
            terms.append(value * weight)
        total = torch.stack(terms).sum(0)
        return torch.stack([total, *terms], dim=1)

    def optimize(self, z0: torch.Tensor, classes: torch.Tensor,
                 progress: Callable[[ProgressEvent], None] | None = None) -> list[EngineResult]:
        t0 = time.perf_counter()
        schedule, batch = self.schedule, len(self.jobs)
        t = self._trainables(z0, classes)
        optimizers = [opt for opt in t.optimizers if opt is not None]
        hist = torch.zeros(schedule.total_iterations, batch, len(self._losses) + 1, device=self.device)
        finals: dict[int, _Final] = {}
        stage_ends = _StageEnds(batch, keep_images=self.options.snapshots)
        running = torch.ones(batch, dtype=torch.bool, device=self.device)
        step, in_on = 0, False
        for s_idx, stage in enumerate(schedule.stages):
            in_on = self._open_stage(s_idx, stage, t, in_on)
            stage_end = step + stage.iterations
            while step < stage_end and len(finals) < batch:
                for group in (g for opt in optimizers for g in opt.param_groups):
                    group["lr"] = group["base_lr"] * schedule.lr_factor(step)
                with autocast(self.device, self.precision):
                    x = self.prior.generate(t.z, embedding=t.embedding(), model=t.G)
                rows = self._losses_of(x.float(), t.z, stage, t.features, t.fitted)
                for opt in optimizers:
                    opt.zero_grad(set_to_none=True)
                torch.where(running, rows[:, 0], 0.0).sum().backward()  # stopped images add nothing
                checked = (step + 1) % self.options.check_every == 0 or step + 1 == stage_end
                if checked:
                    t.rollback.stash(t.z)
                for opt in optimizers:
                    opt.step()
                hist[step] = rows.detach()
                step += 1
                if checked:
                    self._check(step, s_idx, hist[step - 1], t.rollback, t.z, in_on, finals, running, progress, t0)
            stage_ends.record(x, t.fitted, finals)
            if len(finals) == batch:
                break
        self.timings["optimize_s"] = time.perf_counter() - t0
        results = self._results(t.G, t.z, classes, t.rollback, finals, in_on, hist[:step], stage_ends.images)
        for i, res in enumerate(results):  # after _results put every image's kept state back
            if len(t.fitted):
                res.fitted, res.fitted_notes = t.fitted.report(i)
                res.fitted_stages = stage_ends.values[i]
        return results

    def _check(self, step: int, s_idx: int, row: torch.Tensor, rollback: Rollback, z: torch.Tensor, in_on: bool,
               finals: dict[int, _Final], running: torch.Tensor, progress: Any, t0: float) -> None:
        """Every ``check_every`` steps: roll back and stop the images whose loss or latent went
        non-finite, promote the others' states, stop those that reached the early-stop
        thresholds, report progress."""
        row = row.cpu()
        finite = torch.isfinite(row[:, 0]) & torch.isfinite(rollback.pending_z).all(dim=1).cpu()
        rollback.promote(finite, in_on)
        names = sorted(self._losses)
        thresholds = [(names.index(n), t) for n, t in (("mse", self.schedule.early_stop_mse),
                                                       ("discriminator", self.schedule.early_stop_d))
                      if t > 0 and n in names]
        for i in range(len(self.jobs)):
            if i in finals:
                continue
            if not finite[i]:
                params, good_z, good_in = rollback.take(i)
                finals[i] = _Final(params, good_z, good_in, "non_finite",
                                   f"the loss became non-finite at step {step} (stage {s_idx + 1}); returning the last "
                                   "finite result; try a smaller learning rate", step)
            elif any(float(row[i, 1 + k]) < t for k, t in thresholds):
                finals[i] = _Final({k: v[i].detach().clone() for k, v in rollback.params.items()},
                                   z[i].detach().clone(), in_on, "early_stop", f"early stop at step {step}", step)
            if i in finals:
                running[i] = False
        if progress is not None:  # the mean loss of the images that ran this step
            ran = [i for i in range(len(self.jobs)) if i not in finals or finals[i].steps == step]
            values = [float(row[i, 0]) for i in ran if math.isfinite(float(row[i, 0]))]
            progress(ProgressEvent(stage=s_idx, n_stages=len(self.schedule.stages), step=step,
                                   total_steps=self.schedule.total_iterations,
                                   loss=sum(values) / len(values) if values else float("nan"),
                                   elapsed_s=time.perf_counter() - t0, running=len(self.jobs) - len(finals),
                                   batch=len(self.jobs)))

    @torch.no_grad()
    def _results(self, G: Any, z: torch.Tensor, classes: torch.Tensor, rollback: Rollback, finals: dict[int, _Final],
                 in_on: bool, hist: torch.Tensor, snapshots: list[list[torch.Tensor]]) -> list[EngineResult]:
        """Put every stopped image's kept state back into its copy, then render each copy
        with a plain generator holding its weights: the returned image is then exactly what
        a later render of the saved state gives."""
        prior = self.prior
        if self.channels_last:
            _set_layout(G, torch.contiguous_format)
        z = z.detach().clone()
        for i, final in finals.items():
            for name, value in final.params.items():
                rollback.params[name][i].copy_(value)
            z[i] = final.z
        stats = prior.instance_norm_stats(G) if in_on else None
        plain = prior.fresh_generator()
        hist_cpu = hist.cpu()
        names = sorted(self._losses)
        config = self.describe()
        results = []
        for i, job in enumerate(self.jobs):
            final = finals.get(i)
            state = prior.copy_state(G, i)
            prior.load_generator_state(state, model=plain)
            ended_in = final.in_on if final else in_on
            if ended_in and in_on:  # the statistics its steps used
                prior.set_instance_norm_stats({k: v[i:i + 1] for k, v in stats.items()}, model=plain)
            else:  # the path off, or back on after a roll-back: statistics re-taken at this render
                prior.set_instance_norm(ended_in, model=plain)
            embedding = prior.embed(classes[i:i + 1], model=plain)
            image = prior.generate(z[i:i + 1], embedding=embedding, model=plain)
            steps = final.steps if final else hist_cpu.shape[0]
            stopped, message = (final.stopped, final.message) if final else ("done", "")
            if stopped == "non_finite" and not bool(torch.isfinite(image).all()):
                message = message.replace("returning the last finite result; ", "no finite result to return; ")
            results.append(EngineResult(
                image=image, z=z[i:i + 1], class_index=int(classes[i]), embedding=embedding,
                history=[{"step": s + 1, "loss": float(r[0]), **dict(zip(names, map(float, r[1:])))}
                         for s, r in enumerate(hist_cpu[:steps, i])],
                generator_state=state, instance_norm=prior.instance_norm_stats(plain) if ended_in else None,
                stopped=stopped, message=message, timings=dict(self.timings), snapshots=snapshots[i],
                config={**config, "seed": job.seed, "class_index": job.class_index}))
        return results

    def describe(self) -> dict[str, Any]:
        preset = self.preset.to_dict()
        preset["schedule"] = self.schedule.to_dict()
        return {"preset": preset, "check_every": self.options.check_every, "prior": getattr(self.prior, "name", None),
                "device": str(self.device), "precision": self.precision, "channels_last": self.channels_last,
                "batch": len(self.jobs)}

    def run(self, progress: Callable[[ProgressEvent], None] | None = None) -> list[EngineResult]:
        z0, classes, scores = self.select()
        results = self.optimize(z0, classes, progress)
        for res, score in zip(results, scores):
            res.score = score
        return results


def run_batch(prior: Any, degradation: Any, jobs: Sequence[Job], *, preset: Any, options: RunOptions = RunOptions(),
              cache: CandidateCache | None = None,
              progress: Callable[[ProgressEvent], None] | None = None) -> list[EngineResult]:
    """Restore a batch of observations (:class:`Job`) with ``prior``; one result per job, in order.

    ``degradation`` is phi (a Degradation or Compose; ``forward`` is applied to generated
    images); ``preset`` a :class:`dgp_toolkit.presets.Preset`. Each result holds the
    generator's output (before the task's ``finish``), the latent, the class, the per-step
    losses and the fine-tuned generator's state. An image whose loss goes non-finite rolls
    back to its last finite state and stops alone; the others go on. ``cache`` shares
    latent candidates between batches (a folder).
    """
    return BatchRun(prior, degradation, jobs, preset=preset, options=options, cache=cache).run(progress)


def run_dgp(prior: Any, degradation: Any, target: torch.Tensor, *, preset: Any, class_index: int | None = None,
            options: RunOptions = RunOptions(), progress: Callable[[ProgressEvent], None] | None = None,
            cache: CandidateCache | None = None) -> EngineResult:
    """Restore one observation ``target`` ((1, 3, R, R) in [-1, 1]): a batch of one.

    A run whose loss went non-finite before any finite state could be kept raises
    :class:`DGPError`.
    """
    if not isinstance(target, torch.Tensor) or target.ndim != 4 or target.shape[0] != 1 or target.shape[1] != 3:
        shape = tuple(target.shape) if isinstance(target, torch.Tensor) else type(target).__name__
        raise DGPUsageError(f"the observation must be a (1, 3, H, W) tensor, got {shape}")
    [res] = run_batch(prior, degradation, [Job(target, options.seed, class_index)], preset=preset, options=options,
                      cache=cache, progress=progress)
    raise_if_unusable(res)
    return res


def raise_if_unusable(res: EngineResult) -> None:
    """A :class:`DGPError` when a result has no finite image to return."""
    if res.stopped == "non_finite" and not bool(torch.isfinite(res.image).all()):
        raise DGPError(res.message)
