"""Training a class-conditional BigGAN prior (generator EMA + discriminator) on an image set.

The recipe is BigGAN's: hinge loss, Adam with betas (0, 0.999), several D steps per G
step, spectral norm in both nets, orthogonal regularisation of G's weights, a projection
discriminator, and an exponential moving average of G (the EMA generator is the prior).

Runs are resumable exactly: a checkpoint holds the weights, the EMA, both optimizer
states, the step and the state of the one random generator that draws every batch,
latent and flip, so ``train(n)`` equals ``train(k)`` then resume and ``train(n - k)``
(float32 on CPU). ``max_minutes`` stops a run cleanly at a checkpoint.

Fast path: bf16 autocast with channels-last tensors, chosen by ``precision="auto"`` only
where the processor has native bf16 matrix units (AMX or AVX-512 BF16) or on a CUDA
device with bf16; elsewhere bf16 is emulated and slower than float32.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from dgp_toolkit.errors import DGPError, DGPUsageError
from dgp_toolkit.paths import new_file_mode
from dgp_toolkit.precision import cpu_has_fast_bf16, resolve_precision  # noqa: F401 (re-exported)
from dgp_toolkit.priors.biggan.datasets import ImageDataset
from dgp_toolkit.priors.biggan.layers import BatchNorm, ConditionalBatchNorm
from dgp_toolkit.priors.biggan.model import BigGANConfig, Discriminator, Generator, orthogonal_init

CHECKPOINT_FORMAT = "dgp-toolkit-train/1"
PRIOR_FORMAT = "dgp-toolkit-biggan/1"


@dataclasses.dataclass
class TrainSettings:
    """Everything that defines a training run (saved in every checkpoint)."""

    resolution: int = 32
    G_ch: int = 32
    D_ch: int = 32
    dim_z: int = 128
    shared_dim: int = 128
    hier: bool = True
    G_attn: str = "0"
    D_attn: str = "0"
    batch_size: int = 64
    d_steps: int = 2
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    adam_eps: float = 1e-6
    ortho: float = 1e-4
    ema_decay: float = 0.9999
    ema_start: int = 1000
    flip: bool = True
    seed: int = 0
    precision: str = "auto"
    checkpoint_every: int = 250
    sample_every: int = 500
    log_every: int = 10

    def arch(self, n_classes: int) -> BigGANConfig:
        return BigGANConfig(resolution=self.resolution, G_ch=self.G_ch, D_ch=self.D_ch,
                            dim_z=self.dim_z, shared_dim=self.shared_dim, hier=self.hier,
                            n_classes=n_classes, G_attn=self.G_attn, D_attn=self.D_attn)

    def validate(self) -> None:
        for name in ("batch_size", "d_steps", "checkpoint_every", "sample_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise DGPUsageError(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("lr_g", "lr_d"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise DGPUsageError(f"--{name.replace('_', '-')} must be a finite number > 0, got {getattr(self, name)}")
        if not (math.isfinite(self.ortho) and self.ortho >= 0):
            raise DGPUsageError(f"--ortho must be a finite number >= 0, got {self.ortho}")
        from dgp_toolkit.priors.biggan.model import D_ARCH, G_ARCH, parse_attn

        if self.resolution not in G_ARCH or self.resolution not in D_ARCH:
            raise DGPUsageError(f"--resolution {self.resolution}: choose from {sorted(set(G_ARCH) & set(D_ARCH))}")
        # An attention resolution that no block of G or D has was silently no attention at
        # all. (One that only one of them has applies there, as in BigGAN-PyTorch: --attn
        # sets both, and at 32 px D's blocks all count as 16 px.)
        valid = {8 * 2**i for i in range(len(G_ARCH[self.resolution][0]))} | set(D_ARCH[self.resolution][3])
        for name in ("G_attn", "D_attn"):
            bad = sorted(parse_attn(getattr(self, name)) - valid)
            if bad:
                raise DGPUsageError(f"--attn {getattr(self, name)}: a {self.resolution}-px BigGAN has no block at "
                                    f"{'/'.join(map(str, bad))} px; choose from {'_'.join(map(str, sorted(valid)))} "
                                    "(or 0 for none)")
        if not 0.0 <= self.ema_decay < 1.0:
            raise DGPUsageError("--ema-decay must be in [0, 1)")
        if self.precision not in ("auto", "float32", "bf16"):
            raise DGPUsageError(f"unknown precision {self.precision!r}; choices: auto, float32, bf16")
        from dgp_toolkit.engine import check_seed

        check_seed(self.seed)


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return F.relu(1.0 - real).mean(), F.relu(1.0 + fake).mean()


def add_ortho_grad(params: list[torch.nn.Parameter], strength: float) -> None:
    """BigGAN's orthogonal regularisation, added straight to the gradients:
    the gradient of ``strength * ||W W^T * (1 - I)||_F^2`` for each weight matrix."""
    with torch.no_grad():
        for p in params:
            if p.grad is None:
                continue
            w = p.reshape(p.shape[0], -1)
            gram = w @ w.t()
            gram.fill_diagonal_(0.0)
            p.grad.add_((2.0 * strength) * (gram @ w).reshape(p.shape))


class Trainer:
    """One training run: models, optimizers, EMA, random state, step counter."""

    def __init__(self, settings: TrainSettings, dataset: ImageDataset, *, device: str | torch.device = "cpu"):
        settings.validate()
        if dataset.resolution != settings.resolution:
            raise DGPUsageError(f"data set images are {dataset.resolution} px, training resolution is {settings.resolution}")
        self.settings = settings
        self.dataset = dataset
        self.device = torch.device(device)
        self.precision = resolve_precision(settings.precision, self.device)
        self.config = settings.arch(len(dataset.class_names))
        torch.manual_seed(settings.seed)
        self.G = Generator(self.config)
        self.D = Discriminator(self.config)
        orthogonal_init(self.G)
        orthogonal_init(self.D)
        self.G.to(self.device).train()
        self.D.to(self.device).train()
        if self.precision == "bf16":
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)
        self.G_ema = copy.deepcopy(self.G).eval()
        for p in self.G_ema.parameters():
            p.requires_grad_(False)
        betas = (0.0, 0.999)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=settings.lr_g, betas=betas, eps=settings.adam_eps)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=settings.lr_d, betas=betas, eps=settings.adam_eps)
        self.ortho_params = [p for n, p in self.G.named_parameters() if p.ndim >= 2 and not n.startswith("shared.")]
        self.rng = torch.Generator().manual_seed(settings.seed + 1)
        self.step = 0
        self.elapsed = 0.0
        self.history: list[dict[str, float]] = []
        self.images = dataset.images.to(self.device)
        self.labels = dataset.labels.to(self.device)

    # -- one iteration -------------------------------------------------------------
    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return torch.autocast(self.device.type, enabled=False)

    def _draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Real images and labels, then fresh latents and fake labels, all from ``self.rng``."""
        idx = torch.randint(len(self.dataset), (n,), generator=self.rng)
        flip = torch.rand(n, generator=self.rng) < 0.5 if self.settings.flip else None
        x = self.images[idx.to(self.device)].float().div_(127.5).sub_(1.0)
        if flip is not None:
            x = torch.where(flip.to(self.device).view(-1, 1, 1, 1), x.flip(-1), x)
        y = self.labels[idx.to(self.device)]
        z = torch.randn(n, self.G.dim_z, generator=self.rng).to(self.device)
        y_fake = torch.randint(self.config.n_classes, (n,), generator=self.rng).to(self.device)
        return x, y, z, y_fake

    def _fmt(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.precision == "bf16" else x

    def train_step(self) -> dict[str, torch.Tensor]:
        s = self.settings
        b = s.batch_size
        self.D.requires_grad_(True)
        for _ in range(s.d_steps):
            x, y, z, y_fake = self._draw(b)
            self.opt_d.zero_grad(set_to_none=True)
            with self._autocast():
                with torch.no_grad():
                    fake = self.G(z, self.G.shared(y_fake))
                logits, _ = self.D(self._fmt(torch.cat([x, fake.float()])), torch.cat([y, y_fake]))
                loss_real, loss_fake = hinge_d_loss(logits[:b].float(), logits[b:].float())
                d_loss = loss_real + loss_fake
            d_loss.backward()
            self.opt_d.step()
        self.D.requires_grad_(False)
        _, _, z, y_fake = self._draw(b)
        self.opt_g.zero_grad(set_to_none=True)
        with self._autocast():
            fake = self.G(z, self.G.shared(y_fake))
            logits, _ = self.D(self._fmt(fake), y_fake)
            g_loss = -logits.float().mean()
        g_loss.backward()
        if s.ortho > 0:
            add_ortho_grad(self.ortho_params, s.ortho)
        self.opt_g.step()
        self.step += 1
        self._update_ema()
        return {"d_real": loss_real.detach(), "d_fake": loss_fake.detach(), "g": g_loss.detach()}

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = self.settings.ema_decay if self.step >= self.settings.ema_start else 0.0
        src = list(self.G.parameters())
        dst = list(self.G_ema.parameters())
        torch._foreach_lerp_(dst, src, 1.0 - decay)
        for b_dst, b_src in zip(self.G_ema.buffers(), self.G.buffers()):
            b_dst.copy_(b_src)

    # -- the run -------------------------------------------------------------------
    def train(self, iterations: int, *, max_minutes: float | None = None,
              checkpoint_path: str | Path | None = None, samples_dir: str | Path | None = None,
              on_log: Callable[[dict[str, float]], None] | None = None) -> str:
        """Train until ``self.step == iterations`` or time is up; returns why it stopped
        (``"done"`` or ``"time"``). Checkpoints every ``checkpoint_every`` steps and at the end."""
        s = self.settings
        start = time.monotonic()
        base_elapsed = self.elapsed
        window_start, window_steps = time.monotonic(), 0
        reason = "done"
        while self.step < iterations:
            losses = self.train_step()
            window_steps += 1
            self.elapsed = base_elapsed + time.monotonic() - start
            if self.step % s.log_every == 0 or self.step == iterations:
                row = {k: float(v) for k, v in losses.items()}
                if not all(math.isfinite(v) for v in row.values()):
                    if checkpoint_path:
                        raise DGPError(f"training diverged at step {self.step} (non-finite loss {row}); "
                                       f"the last good checkpoint is {checkpoint_path}")
                    raise DGPError(f"training diverged at step {self.step} (non-finite loss {row})")
                now = time.monotonic()
                row["step"] = self.step
                row["it_per_s"] = window_steps / max(now - window_start, 1e-9)
                row["elapsed_s"] = self.elapsed
                window_start, window_steps = now, 0
                self.history.append(row)
                if on_log:
                    on_log(row)
            if samples_dir and self.step % s.sample_every == 0:
                self.save_sample_grid(Path(samples_dir) / f"samples_{self.step:07d}.png")
            if checkpoint_path and self.step % s.checkpoint_every == 0:
                self.save_checkpoint(checkpoint_path)
            if max_minutes is not None and (time.monotonic() - start) > 60.0 * max_minutes:
                reason = "time"
                break
        if checkpoint_path:
            self.save_checkpoint(checkpoint_path)
        return reason

    # -- checkpoints ---------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "settings": json.dumps(dataclasses.asdict(self.settings)),
            "config": self.config.to_json(),
            "class_names": json.dumps(self.dataset.class_names),
            "data_source": self.dataset.source,
            "step": self.step,
            "elapsed": self.elapsed,
            "history": json.dumps(self.history),
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_g": compact_adam_state(self.opt_g.state_dict()),
            "opt_d": compact_adam_state(self.opt_d.state_dict()),
            "rng": self.rng.get_state(),
        }

    def save_checkpoint(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            torch.save(self.state(), tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def load_checkpoint(self, path: str | Path) -> None:
        try:
            ckpt = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is one clear line
            raise DGPUsageError(f"{path}: not a readable training checkpoint ({exc.__class__.__name__})") from None
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise DGPUsageError(f"{path}: not a dgp-toolkit training checkpoint")
        if ckpt["config"] != self.config.to_json():
            raise DGPUsageError(f"{path}: checkpoint architecture differs from this run's settings; "
                                f"checkpoint: {ckpt['config']}")
        self.G.load_state_dict(ckpt["G"])
        self.D.load_state_dict(ckpt["D"])
        self.G_ema.load_state_dict(ckpt["G_ema"])
        self.opt_g.load_state_dict(expand_adam_state(ckpt["opt_g"], self.opt_g))
        self.opt_d.load_state_dict(expand_adam_state(ckpt["opt_d"], self.opt_d))
        self.rng.set_state(ckpt["rng"])
        self.step = int(ckpt["step"])
        self.elapsed = float(ckpt["elapsed"])
        self.history = json.loads(ckpt["history"])

    # -- outputs -------------------------------------------------------------------
    @torch.no_grad()
    def sample_grid_tensor(self, per_class: int = 10, seed: int = 1234) -> torch.Tensor:
        """One row per class of EMA samples from fixed latents, ``(C*per_class, 3, R, R)``."""
        gen = torch.Generator().manual_seed(seed)
        n_classes = self.config.n_classes
        z = torch.randn(per_class, self.G_ema.dim_z, generator=gen).repeat(n_classes, 1).to(self.device)
        y = torch.arange(n_classes).repeat_interleave(per_class).to(self.device)
        return self.G_ema(z, self.G_ema.shared(y)).float().cpu()

    def save_sample_grid(self, path: str | Path, per_class: int = 10) -> None:
        save_grid(self.sample_grid_tensor(per_class), path, ncol=per_class)

    def export_prior(self, path: str | Path, *, recalibrate_batches: int = 0, extra: dict | None = None) -> dict:
        """Write the prior (EMA generator + discriminator) as one safetensors file."""
        G = copy.deepcopy(self.G_ema).eval()
        if recalibrate_batches:
            recalibrate_batch_norm(G, self.config.n_classes, recalibrate_batches,
                                   batch_size=self.settings.batch_size, seed=self.settings.seed)
        meta = {
            "format": PRIOR_FORMAT,
            "config": self.config.to_json(),
            "class_names": json.dumps(self.dataset.class_names),
            "step": str(self.step),
        }
        if extra:
            meta.update({k: json.dumps(v) if not isinstance(v, str) else v for k, v in extra.items()})
        return save_prior_file(path, G, self.D, meta)


def compact_adam_state(state: dict[str, Any]) -> dict[str, Any]:
    """An Adam state dict without ``exp_avg`` when beta1 is 0 (BigGAN's setting).

    With beta1 = 0 the first moment is replaced by the next gradient before it is used
    (``lerp`` with weight 1 returns its end point exactly), so it carries no information
    and dropping it keeps resumption exact while the checkpoint shrinks by a quarter.
    """
    if any(group["betas"][0] != 0.0 for group in state["param_groups"]):
        return state
    slim = {k: {n: v for n, v in st.items() if n != "exp_avg"} for k, st in state["state"].items()}
    return {"state": slim, "param_groups": state["param_groups"]}


def expand_adam_state(state: dict[str, Any], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Undo :func:`compact_adam_state`: zero first moments shaped like their parameters."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    full = {}
    for key, st in state["state"].items():
        st = dict(st)
        if "exp_avg" not in st and "exp_avg_sq" in st:
            st["exp_avg"] = torch.zeros_like(params[int(key)], memory_format=torch.preserve_format)
        full[key] = st
    return {"state": full, "param_groups": state["param_groups"]}


def compact_checkpoint(path: str | Path) -> None:
    """Rewrite a checkpoint in place without the Adam first moments (see :func:`compact_adam_state`)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise DGPUsageError(f"{path}: not a dgp-toolkit training checkpoint")
    ckpt["opt_g"] = compact_adam_state(ckpt["opt_g"])
    ckpt["opt_d"] = compact_adam_state(ckpt["opt_d"])
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def canonicalize_safetensors(path: str | Path) -> None:
    """Rewrite a safetensors file's JSON header with sorted keys, in place.

    safetensors writes its ``__metadata__`` in hash-map order, which changes from one
    process to the next; with sorted keys the same tensors and metadata always give the
    same bytes (and sha256). The data section and its offsets are untouched.
    """
    path = Path(path)
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data section stays 8-byte aligned
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n:])


def save_prior_file(path: str | Path, G: Generator, D: Discriminator, meta: dict[str, str]) -> dict:
    from safetensors.torch import save_file

    tensors = {f"G.{k}": v.detach().float().contiguous().cpu() for k, v in G.state_dict().items()}
    tensors.update({f"D.{k}": v.detach().float().contiguous().cpu() for k, v in D.state_dict().items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        canonicalize_safetensors(tmp)
        os.chmod(tmp, new_file_mode())  # safetensors creates it 0o600
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return meta


@torch.no_grad()
def recalibrate_batch_norm(G: Generator, n_classes: int, batches: int, *, batch_size: int = 64,
                           seed: int = 0) -> None:
    """Replace G's stored batch-norm statistics by their average over ``batches`` batches of
    its own samples ("standing statistics"), which suits the EMA weights better than the
    statistics copied from the raw generator."""
    norms = [m for m in G.modules() if isinstance(m, (BatchNorm, ConditionalBatchNorm))]
    for m in norms:
        m.stored_mean.zero_()
        m.stored_var.fill_(1.0)
    gen = torch.Generator().manual_seed(seed + 99)
    device = next(G.parameters()).device
    G.eval()
    # One thread: the batch statistics are sums whose rounding depends on how the work is
    # split between threads, and the exported file should not depend on the machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for k in range(batches):
                for m in norms:
                    m.training = True  # only the norm itself: spectral norm stays in eval mode
                    m.momentum = 1.0 / (k + 1)  # cumulative average
                z = torch.randn(batch_size, G.dim_z, generator=gen).to(device)
                y = torch.randint(n_classes, (batch_size,), generator=gen).to(device)
                G(z, G.shared(y))
    finally:
        torch.set_num_threads(threads)
    for m in norms:
        m.training = False
        m.momentum = 0.1


def save_grid(images: torch.Tensor, path: str | Path, *, ncol: int, pad: int = 2) -> None:
    """Save ``(N, 3, H, W)`` images in [-1, 1] as a PNG grid (atomically)."""
    import numpy as np
    from PIL import Image

    n, _, h, w = images.shape
    nrow = (n + ncol - 1) // ncol
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, dtype=np.uint8)
    arr = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i in range(n):
        r, c = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top:top + h, left:left + w] = arr[i]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        Image.fromarray(grid).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def export_checkpoint(checkpoint: str | Path, out: str | Path, *, recalibrate_batches: int = 50,
                      batch_size: int = 64) -> dict:
    """Write the prior file (EMA G + D, ``G.*``/``D.*`` safetensors) of a training checkpoint,
    without the data set. Returns the metadata written."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise DGPUsageError(f"{checkpoint}: not a dgp-toolkit training checkpoint")
    config = BigGANConfig.from_dict(json.loads(ckpt["config"]))
    G, D = Generator(config), Discriminator(config)
    G.load_state_dict(ckpt["G_ema"])
    D.load_state_dict(ckpt["D"])
    G.eval()
    D.eval()
    settings = json.loads(ckpt["settings"])
    if recalibrate_batches:
        recalibrate_batch_norm(G, config.n_classes, recalibrate_batches, batch_size=batch_size,
                               seed=int(settings.get("seed", 0)))
    meta = {"format": PRIOR_FORMAT, "config": config.to_json(), "class_names": ckpt["class_names"],
            "step": str(int(ckpt["step"])), "train_seconds": f"{float(ckpt['elapsed']):.0f}",
            "settings": ckpt["settings"]}
    return save_prior_file(out, G, D, meta)
