"""The DGP optimization: latent selection, then the staged fine-tuning of z and G.

One run restores one observation ``y`` with one prior::

    select:   z* = argmin over select_num candidates of the D-feature loss (last 3
              features) between phi(G(z, c)) and y            (batched, no gradients)
    optimize: for each stage of the schedule, Adam steps on z and on the generator
              stages that the stage opens, minimising the weighted losses

Everything a run changes lives in :class:`DGPRun` (a fresh generator copy, the latent,
the optimizers), so the loaded prior is never mutated and runs share no state.

Speed (measured in benchmarks/speed.py): the target's D features are computed once;
frozen generator stages and the discriminator get no weight gradients and reuse their
spectrally normalised weights; the hot loop never waits for the host except every
``check_every`` steps (NaN/inf check, early stop, progress).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers
import time
from typing import Any, Callable

import torch

from dgp_toolkit.errors import DGPError, DGPUsageError
from dgp_toolkit.precision import autocast, resolve_precision

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


@dataclasses.dataclass
class ProgressEvent:
    """Reported every ``check_every`` steps (and at each stage end)."""

    stage: int
    n_stages: int
    step: int
    total_steps: int
    loss: float
    elapsed_s: float
    #: with several restorations averaged (a preset's ``runs``): this one's index and the
    #: count; ``step`` and ``total_steps`` then count the steps of all runs
    run: int = 0
    n_runs: int = 1


@dataclasses.dataclass
class EngineResult:
    image: torch.Tensor  # (1, 3, R, R) generator output in [-1, 1], before the task's finish
    z: torch.Tensor
    class_index: int
    embedding: torch.Tensor
    history: list[dict[str, float]]
    generator: Any  # the fine-tuned generator (nn.Module)
    stopped: str  # "done" | "early_stop" | "non_finite"
    message: str
    timings: dict[str, float]
    snapshots: list[torch.Tensor]
    config: dict[str, Any]

    @property
    def generator_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone(memory_format=torch.contiguous_format)
                for k, v in self.generator.state_dict().items()}


def d_feature_distance(feats: list[torch.Tensor], target: list[torch.Tensor], n: int) -> torch.Tensor:
    """Per-sample sum over the last ``n`` features of mean |f - t| (shape ``(B,)``)."""
    total = 0.0
    for i in range(1, n + 1):
        diff = (feats[-i] - target[-i]).abs()
        total = total + diff.reshape(diff.shape[0], -1).mean(dim=1)
    return total


@torch.no_grad()
def score_candidates(prior: Any, degradation: Any, target_feats: list[torch.Tensor], z: torch.Tensor,
                     y: torch.Tensor, *, chunk: int = 16, precision: str = "float32") -> torch.Tensor:
    """The D-feature loss of each candidate ``(z_i, y_i)`` against the target, batched.

    Chunks of 16: on a 2-core CPU, 48 candidates took 3.6 s one at a time, 3.0-3.1 s in
    chunks of 8-16 and up to 3.2 s in one chunk of 48 (activations of larger chunks no
    longer fit the caches); results do not depend on the chunk size.
    """
    G, D = prior.G, prior.D
    scores = []
    for start in range(0, z.shape[0], chunk):
        zc, yc = z[start:start + chunk], y[start:start + chunk]
        with autocast(z.device, precision):
            x = degradation(G(zc, G.shared(yc)))
            feats = D(x)[1]
        feats = [f.float() for f in feats]
        scores.append(d_feature_distance(feats, [t.expand(x.shape[0], *t.shape[1:]) for t in target_feats],
                                         SELECT_FEATURES))
    return torch.cat(scores)


def draw_candidates(prior: Any, n: int, std: float, class_index: int | None,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` latents ~ N(0, std^2) and their classes (the given one, or random per candidate)."""
    z = torch.randn(n, prior.dim_z, generator=generator) * std
    if class_index is None:
        y = torch.randint(prior.n_classes, (n,), generator=generator)
    else:
        y = torch.full((n,), int(class_index), dtype=torch.long)
    return z.to(prior.device), y.to(prior.device)


class DGPRun:
    """The state of one restoration: generator copy, latent, class, optimizers."""

    def __init__(self, prior: Any, degradation: Any, target: torch.Tensor, *, preset: Any,
                 seed: int = 0, class_index: int | None = None, iterations_scale: float = 1.0,
                 check_every: int = 50, snapshot_stages: bool = True, precision: str = "float32",
                 channels_last: bool | None = None):
        if target.ndim != 4 or target.shape[0] != 1 or target.shape[1] != 3:
            raise DGPUsageError(f"the observation must be a (1, 3, H, W) tensor, got {tuple(target.shape)}")
        if class_index is not None and not 0 <= int(class_index) < prior.n_classes:
            raise DGPUsageError(f"class {class_index} is out of range for prior {prior.name!r} "
                                f"(0..{prior.n_classes - 1})")
        if isinstance(check_every, bool) or not isinstance(check_every, numbers.Integral) or check_every < 1:
            raise DGPUsageError(f"check_every must be a whole number >= 1, got {check_every!r}")
        self.prior = prior
        self.degradation = degradation
        self.device = prior.device
        self.target = target.to(self.device, torch.float32)
        self.preset = preset
        self.schedule = preset.schedule.scaled(iterations_scale) if iterations_scale != 1.0 else preset.schedule
        self.seed = check_seed(seed)
        self.class_index = None if class_index is None else int(class_index)
        self.check_every = int(check_every)
        self.snapshot_stages = snapshot_stages
        self.precision = resolve_precision(precision, self.device)
        # bf16 on a CPU: channels-last activations let oneDNN keep its bf16 kernels' layout
        # instead of reordering around every convolution. The run's generator is its own
        # copy; D gets a channels-last copy when the optimization uses it (the prior is
        # never changed).
        if channels_last is None:
            channels_last = self.precision == "bf16" and self.device.type == "cpu"
        self.channels_last = bool(channels_last)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.timings: dict[str, float] = {}
        self._losses = self._build_losses()
        # The target's D features, once per run; skipped when nothing reads them (pixel-only
        # losses and a single latent candidate, e.g. the deep-image-prior baseline).
        self.optimizes_with_d = any(w and name not in PIXEL_LOSSES for s in self.schedule.stages
                                    for name, w in s.weights.items())
        self.target_feats: list[torch.Tensor] = []
        if preset.select_num > 1 or self.optimizes_with_d:
            with torch.no_grad():
                self.target_feats = [f.detach() for f in prior.D(self.target)[1]]

    def _build_losses(self) -> dict[str, Any]:
        from dgp_toolkit.registry import get_registry

        names = sorted({k for s in self.schedule.stages for k in s.weights})
        return {name: get_registry().create("loss", name) for name in names}

    # ------------------------------------------------------------------ selection
    def select(self) -> tuple[torch.Tensor, int, float]:
        t0 = time.perf_counter()
        z, y = draw_candidates(self.prior, self.preset.select_num, self.preset.sample_std,
                               self.class_index, self.generator)
        if z.shape[0] == 1:
            self.timings["select_s"] = time.perf_counter() - t0
            return z.clone(), int(y[0]), float("nan")
        scores = score_candidates(self.prior, self.degradation, self.target_feats, z, y,
                                  precision=self.precision)
        best = int(torch.argmin(scores))
        self.timings["select_s"] = time.perf_counter() - t0
        return z[best:best + 1].clone(), int(y[best]), float(scores[best])

    # ------------------------------------------------------------------ optimization
    def optimize(self, z0: torch.Tensor, class_index: int,
                 progress: Callable[[ProgressEvent], None] | None = None) -> EngineResult:
        t0 = time.perf_counter()
        prior, schedule = self.prior, self.schedule
        G = prior.fresh_generator()
        if self.channels_last:
            G = G.to(memory_format=torch.channels_last)
        update_embed = bool(self.preset.update_embed)
        groups = prior.stages(G, include_embedding=update_embed)
        for p in G.parameters():
            p.requires_grad_(False)
        y = torch.tensor([class_index], device=self.device)
        z = z0.detach().clone().requires_grad_(True)
        # Not the fused Adam kernel, although it saves 1.6 ms of a ~33 ms step here: its
        # updates differ from the default's by ~1% after 80 steps, and some 1,000-step runs
        # amplify that into a different result (one denoising dev image: 19.4 against 25.6 dB),
        # so the shipped presets' measurements would no longer describe the shipped engine.
        opt_g = torch.optim.Adam([{"params": g, "lr": 0.0} for g in groups], betas=(0.0, 0.999), eps=1e-8)
        opt_z = torch.optim.Adam([z], lr=schedule.stages[0].z_lr, betas=(0.0, 0.999), eps=1e-8)
        D = prior.D
        if self.channels_last and self.optimizes_with_d:
            D = copy.deepcopy(D).to(memory_format=torch.channels_last)
        precision = self.precision

        def feature_fn(image: torch.Tensor) -> list[torch.Tensor]:
            with autocast(self.device, precision):  # a no-op in float32
                feats = D(image)[1]
            return [f.float() for f in feats]  # .float() of a float32 tensor is the tensor itself

        from dgp_toolkit.plugins.losses import LossState

        total_steps = schedule.total_iterations
        term_names = sorted(self._losses)
        hist = torch.zeros(total_steps, len(term_names) + 1, device=self.device)
        snapshots: list[torch.Tensor] = []
        stopped, message = "done", ""
        # The last state known to be finite: what a non-finite loss rolls back to. It starts as
        # the selected latent on the prior's weights. Before the update of every step that is
        # checked, the state whose forward pass gave that step's loss is copied in place into
        # ``pending``; the check promotes it to ``good`` when the loss and latent are finite.
        # (One weight copy every ``check_every`` steps. The image is rendered from the kept
        # state at the end, so the returned image, latent and generator always belong together;
        # the weights after a finite step can still overflow at the next forward.)
        good_state, pending_state = prior.generator_state(G), prior.generator_state(G)
        good_z, pending_z = z.detach().clone(), z.detach().clone()
        good_in = False
        step = 0
        in_on = False
        embedding = None if update_embed else G.shared(y).detach()
        warmup = schedule.warmup
        for s_idx, stage in enumerate(schedule.stages):
            for i, group in enumerate(opt_g.param_groups):
                lr = stage.group_lr(i)
                group["base_lr"] = lr
                group["lr"] = lr
                for p in group["params"]:
                    p.requires_grad_(lr > 0)
            opt_z.param_groups[0]["base_lr"] = stage.z_lr
            opt_z.param_groups[0]["lr"] = stage.z_lr
            if stage.use_in != in_on:
                prior.set_instance_norm(stage.use_in, model=G)
                in_on = stage.use_in
            weights = {k: v for k, v in stage.weights.items() if v != 0.0}
            stage_end = step + stage.iterations
            while step < stage_end:
                if warmup and step < warmup:
                    scale = (step + 1) / warmup
                    for group in opt_g.param_groups + opt_z.param_groups:
                        group["lr"] = group["base_lr"] * scale
                elif warmup and step == warmup:
                    for group in opt_g.param_groups + opt_z.param_groups:
                        group["lr"] = group["base_lr"]
                emb = G.shared(y) if update_embed else embedding
                with autocast(self.device, precision):
                    x = G(z, emb)
                x = x.float()
                state = LossState(generated=self.degradation(x), target=self.target, z=z,
                                  target_features=self.target_feats, ftr_num=stage.ftr_num,
                                  feature_fn=feature_fn)
                terms = [self._losses[name](state) * weights[name] if name in weights else None
                         for name in term_names]
                loss = sum(t for t in terms if t is not None)
                opt_g.zero_grad(set_to_none=True)
                opt_z.zero_grad(set_to_none=True)
                loss.backward()
                if (step + 1) % self.check_every == 0 or step + 1 == stage_end:
                    with torch.no_grad():
                        for name, value in G.state_dict().items():
                            pending_state[name].copy_(value)
                        pending_z.copy_(z)
                opt_g.step()
                opt_z.step()
                with torch.no_grad():
                    row = [loss.detach()] + [t.detach() if t is not None else loss.new_zeros(()) for t in terms]
                    hist[step] = torch.stack(row)
                step += 1
                at_check = step % self.check_every == 0 or step == stage_end
                if at_check:
                    current = float(hist[step - 1, 0])
                    if not math.isfinite(current) or not bool(torch.isfinite(pending_z).all()):
                        stopped = "non_finite"
                        message = (f"the loss became non-finite at step {step} (stage {s_idx + 1}); "
                                   "returning the last finite result; try a smaller learning rate")
                        break
                    good_state, pending_state = pending_state, good_state
                    good_z, pending_z = pending_z, good_z
                    good_in = in_on
                    if progress is not None:
                        progress(ProgressEvent(stage=s_idx, n_stages=len(schedule.stages), step=step,
                                               total_steps=total_steps, loss=current,
                                               elapsed_s=time.perf_counter() - t0))
                    if self._early_stop(hist[step - 1], term_names, schedule):
                        stopped = "early_stop"
                        message = f"early stop at step {step}"
                        break
            if stopped != "done":
                break
            if self.snapshot_stages:
                snapshots.append(x.detach().clone())
        if self.channels_last:
            # back to the standard layout before the final render: the returned generator and
            # image then match bit for bit what a later render of the saved state gives
            G = G.to(memory_format=torch.contiguous_format)
        if stopped == "non_finite":
            prior.load_generator_state(good_state, model=G)
            if good_in != in_on:
                prior.set_instance_norm(good_in, model=G)
            z_final = good_z
        else:
            z_final = z.detach()
        del good_state, pending_state
        with torch.no_grad():
            emb = G.shared(y) if update_embed else embedding
            image = G(z_final, emb)
        if stopped == "non_finite" and not bool(torch.isfinite(image).all()):
            raise DGPError(message.replace("returning the last finite result; ", "no finite result to return; "))
        self.timings["optimize_s"] = time.perf_counter() - t0
        hist_cpu = hist[:step].cpu().tolist()
        history = [{"step": i + 1, "loss": row[0], **dict(zip(term_names, row[1:]))} for i, row in enumerate(hist_cpu)]
        for p in G.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            final_embedding = G.shared(y).detach()
        return EngineResult(image=image.detach(), z=z_final.detach(), class_index=class_index,
                            embedding=final_embedding, history=history, generator=G, stopped=stopped,
                            message=message, timings=dict(self.timings), snapshots=snapshots,
                            config=self.describe())

    def _early_stop(self, row: torch.Tensor, names: list[str], schedule: Any) -> bool:
        for name, threshold in (("mse", schedule.early_stop_mse), ("discriminator", schedule.early_stop_d)):
            if threshold > 0 and name in names and float(row[1 + names.index(name)]) < threshold:
                return True
        return False

    def describe(self) -> dict[str, Any]:
        preset = self.preset.to_dict()
        preset["schedule"] = self.schedule.to_dict()
        return {"preset": preset, "seed": self.seed, "class_index": self.class_index,
                "check_every": self.check_every, "prior": getattr(self.prior, "name", None),
                "device": str(self.device), "precision": self.precision, "channels_last": self.channels_last}

    def run(self, progress: Callable[[ProgressEvent], None] | None = None) -> EngineResult:
        z0, class_index, _ = self.select()
        return self.optimize(z0, class_index, progress)


def run_dgp(prior: Any, degradation: Any, target: torch.Tensor, *, preset: Any, seed: int = 0,
            class_index: int | None = None, iterations_scale: float = 1.0,
            progress: Callable[[ProgressEvent], None] | None = None, check_every: int = 50,
            snapshot_stages: bool = True, precision: str = "float32",
            channels_last: bool | None = None) -> EngineResult:
    """Restore one observation ``target`` ((1, 3, R, R) in [-1, 1]) with ``prior``.

    ``degradation`` is phi (a Degradation or Compose; ``forward`` is applied to generated
    images); ``preset`` a :class:`dgp_toolkit.presets.Preset`. Returns the generator's
    output (before the task's ``finish``), the latent, the class, the per-step losses and
    the fine-tuned generator. ``precision`` (``float32``, ``bf16`` or ``auto``) runs the
    generator and discriminator under bf16 autocast (:mod:`dgp_toolkit.precision`); the
    latent, the weights, the optimizer and the losses stay float32. ``channels_last``
    (default: on for bf16 on a CPU) runs the generator copy and D in channels-last layout.
    """
    run = DGPRun(prior, degradation, target, preset=preset, seed=seed, class_index=class_index,
                 iterations_scale=iterations_scale, check_every=check_every,
                 snapshot_stages=snapshot_stages, precision=precision, channels_last=channels_last)
    return run.run(progress)
