"""Restoration quality: DGP against the observation, scikit-image, GAN inversion and DIP.

    python benchmarks/quality.py [--n 10] [--tasks colorization,inpainting,...] [--workers 2]
                                 [--iterations-scale 0.1] [--select-num 100] [--out DIR] [--fresh] [--report]

For each task, on ``--n`` images of the CIFAR-10 dev split (a fixed, class-balanced
subset: the first image of each class, then the second, ...; the same subset as
``engine_vs_reference.py``), PSNR and SSIM of:

==================  =====================================================================
``observation``     the degraded image itself
``classical``       the best scikit-image method for the task (see :data:`CLASSICAL`)
``gan-inversion``   the task's preset with the ``latent-only`` schedule (G frozen), same prior
``dip``             deep image prior: the prior's generator architecture, random weights,
                    fitted with MSE (``dgp_toolkit.priors.dip``; ``full`` schedule, one stage
                    at ``--dip-lr``, latent fixed) for a number of steps per task
                    (:data:`DIP_ITERATIONS`; ``--dip-iterations N`` gives every task N)
``dgp``             the task's preset (``blockwise``) on the prior
==================  =====================================================================

Tasks: colorization (``gray``), inpainting (``mask``, the centred hole), super-resolution
(``downsample:factor=4``), deblurring (``blur``, sigma 2), denoising (``noise``, sigma 0.1).

Scores are those of ``dgp-tool restore --simulate`` (the three generative methods run
through :func:`dgp_toolkit.restoration.restore_input`, the classical one is scored by the
same function): images in [0, 1], ``data_range=1``, SSIM over the colour channels;
colorization after putting back the observation's Lab L; inpainting on the bounding box
of the hole. Image ``k`` of the subset uses seed ``--seed + k`` (the simulated noise and
the latent draw), so one row is reproduced by, e.g.::

    dgp-tool restore OUT/images/denoising/00K_clean.png --degrade noise --simulate --seed K \\
        --iterations-scale S --preset OUT/presets/dgp-denoising.toml
        # DIP: --prior dip --preset OUT/presets/dip-denoising.toml; GAN inversion: gan-inversion-*.toml

(the clean tiles are the dev images exactly, for the first ``--sheet-images`` images).

Output folder (``--out``, default ``benchmarks/results/quality``):

- ``rows.jsonl``: one line per (task, image), appended as each finishes. A rerun with the
  same settings skips what is there, so an interrupted run continues (Ctrl-C is safe);
  other settings are refused unless ``--fresh``. Each row records a digest of every
  method's preset (:func:`preset_digest`): after a preset changes, a rerun runs only the
  methods whose preset changed on the rows already there (for a task preset: DGP and GAN
  inversion, which uses it with the generator frozen), and the table never mixes scores of
  two presets. ``--report`` runs nothing and writes the outputs below from the rows so far
  (the table then says how many of the rows it holds; scores of changed presets are left out);
- ``quality.md``: the table (mean and 95% confidence interval over images, t distribution,
  with N), ``quality.json``: the same summary plus every row, ``sheet.png``: the first
  ``--sheet-images`` images of each task with every method, ``presets/``: the preset file
  of every generative method and task, ``images/``: the sheet's tiles (every image's with
  ``--save-images``).

Classical parameters were chosen on 30 dev images outside the first 900 of the subset
order (never in a benchmark with ``--n`` <= 900), mean PSNR: bicubic spline upscaling
(``skimage.transform.resize``, order 3, symmetric borders) 21.78 dB vs 21.69 torch bicubic,
21.61 PIL bicubic; Wiener deconvolution with the known PSF, balance 0.003, 24.03 dB vs
23.81 (0.01) and Richardson-Lucy 22.75 (20 iterations, worse beyond); TV (Chambolle)
weight 0.06 for sigma 0.1, 25.34 dB vs 25.09 (0.08) and 24.73 (0.04) (wavelet denoising
needs PyWavelets, not installed); biharmonic inpainting 17.96 dB on the hole vs 13.50 for
the zero-filled observation.

Time (measured on this project's 2-core AMD EPYC, one thread per process, while a GAN
training job held one core; :data:`TIMING`): 0.184 s per DGP step, 0.135 per GAN-inversion
step, 0.148 per DIP step, 0.054 per latent candidate. One image through all five tasks is
5,200 preset steps for DGP and for GAN inversion and 4,100 DIP steps (:data:`DIP_ITERATIONS`),
times the scale, plus 10 x ``--select-num`` candidates: about ``2270 * scale + 0.54 *
select_num + 10`` seconds of one process at those (pessimistic, loaded-machine) step costs.
The defaults (10 images, scale 0.1, 100 candidates) are about 290 s per image, 48 min of one
process: about 25 minutes with the two workers on a 2-core machine that has both cores
free. The bf16 engine is faster: the full presets (scale 1, no extra candidates, bf16) took
about 2 min of one process per image and task for GAN inversion and DGP together in the
20-image acceptance run.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_common import machine  # noqa: E402

TASKS = {"colorization": "gray", "inpainting": "mask", "super-resolution": "downsample:factor=4",
         "deblurring": "blur", "denoising": "noise"}
METHODS = ("observation", "classical", "gan-inversion", "dip", "dgp")
GENERATIVE = ("gan-inversion", "dip", "dgp")
CLASSICAL = {
    "colorization": "grey (the observation)",
    "inpainting": "biharmonic (skimage inpaint_biharmonic)",
    "super-resolution": "bicubic spline x4 (skimage resize, order 3)",
    "deblurring": "Wiener, known PSF, balance 0.003 (skimage wiener)",
    "denoising": "TV Chambolle, weight 0.06 (skimage)",
}
WIENER_BALANCE = 0.003
TV_WEIGHT = 0.06
#: Seconds per optimization step (DGP blockwise, GAN inversion, DIP) and per latent
#: candidate, measured on this project's 2-core CPU, one thread, one process, while a GAN
#: training job held the other core (``--n 2 --iterations-scale 0.02 --select-num 8``).
TIMING = {"dgp_step_s": 0.184, "latent_only_step_s": 0.135, "dip_step_s": 0.148, "candidate_s": 0.054}
#: DIP's number of steps per task: its regulariser (run long enough, DIP reproduces the
#: degradation). Chosen like the 32-px presets, on the last 6 images of the class-balanced
#: dev order (never the scored first 100), as the best of the checkpoints 250, 500, 1000 and
#: 2000 steps of one run at lr 1e-3 (denoising also 50, 100, 150), bf16; mean PSNR dB:
#: deblurring 20.83 / 21.57 / 21.64 / 21.43; inpainting 14.86 / 14.93 / 14.05 / 14.39;
#: super-resolution 19.68 / 19.70 / 19.68 / 19.55; denoising 21.34 / 21.94 / 20.91 (50-150),
#: 20.62 / 20.32 / 20.52 / 17.83; colorization 10.65 / 10.65 / 10.66 / 11.51 (a random
#: network fitted to the grey leaves the colour as it starts: DIP has no colour to give).
#: Rows: ``benchmarks/results/tuning.jsonl``; the checkpoint presets they ran:
#: ``benchmarks/results/tuning-presets/dip-*-ckpt*.toml`` (``tune_presets.py --prior dip
#: --task TASK --n 6 --variant 'ckpt=...'``, the variant being that file's [schedule]).
DIP_ITERATIONS = {"colorization": 2000, "inpainting": 500, "super-resolution": 500, "deblurring": 1000,
                  "denoising": 100}
#: GAN inversion runs the task's preset with the generator frozen (the ``latent-only``
#: schedule), except where a file ``gan-inversion-TASK.toml`` here gives its schedule: for
#: the tasks whose shipped preset is a short fast fit of the generator (super-resolution,
#: deblurring: 300 steps), too few steps for the latent alone; those files hold the
#: 1,000-step schedules of the session-3 presets.
GAN_INVERSION_PRESETS = ROOT / "benchmarks" / "presets"
SCHEMA = 1


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the rows depend on: a rerun into the same folder must use the same."""

    prior: str = "biggan"
    weights: str | None = None
    iterations_scale: float = 0.1
    select_num: int | None = 100  # None: the preset's
    seed: int = 0
    dip_iterations: int | None = None  # None: DIP_ITERATIONS per task
    dip_lr: float = 1e-3
    check_every: int = 50
    methods: str = "gan-inversion,dip,dgp"  # the generative methods to run (comma-separated)
    precision: str = "float32"  # the engine's (dgp_toolkit.precision); DIP too
    true_class: bool = False  # give GAN inversion and DGP each image's true class (no class search)

    @property
    def generative(self) -> tuple[str, ...]:
        return tuple(m for m in GENERATIVE if m in self.methods.split(","))


# --------------------------------------------------------------------------- data
def dev_subset(n: int) -> tuple[Any, list[int], list[int]]:
    """The first ``n`` images of the class-balanced order: ``(images (n,3,32,32) in [-1,1],
    dev indices, labels)``."""
    from classifier import load_split

    x, y = load_split("test_dev")
    labels = [int(v) for v in y]
    seen: dict[int, int] = {}
    rank = []
    for label in labels:
        rank.append(seen.get(label, 0))
        seen[label] = rank[-1] + 1
    order = sorted(range(len(labels)), key=lambda i: (rank[i], labels[i]))[:n]
    return x[order], order, [labels[i] for i in order]


# --------------------------------------------------------------------------- classical
def gaussian_psf(size: int, sigma: float) -> np.ndarray:
    """The blur degradation's kernel (kornia's normalised Gaussian), ``size x size``."""
    ax = np.arange(size) - size // 2
    g = np.exp(-(ax**2) / (2 * sigma**2))
    psf = np.outer(g, g)
    return psf / psf.sum()


def classical(task: str, degradation: Any, clean: Any, target: Any) -> np.ndarray:
    """The classical restoration of ``target`` (``H x W x 3`` in [0, 1]).

    Only super-resolution looks at ``clean``: to take the low-resolution image that the
    simulated observation was made from (the observation is its bilinear enlargement).
    """
    from skimage import restoration, transform

    from dgp_toolkit.metrics import to_unit_array

    obs = to_unit_array(target)
    if task == "colorization":
        return obs
    if task == "inpainting":
        missing = degradation.missing(*obs.shape[:2])
        return restoration.inpaint_biharmonic(obs, missing, channel_axis=-1)
    if task == "super-resolution":
        from dgp_toolkit.plugins.degradations.downsample import pil_lanczos_resize

        low = to_unit_array(pil_lanczos_resize(clean, degradation.observation_size(obs.shape[0])))
        return transform.resize(low, obs.shape, order=3, mode="symmetric", anti_aliasing=False)
    if task == "deblurring":
        size = int(degradation.options["size"])
        psf = gaussian_psf(size, float(degradation.options["sigma"]))
        padded = np.pad(obs, ((size, size), (size, size), (0, 0)), mode="reflect")  # the blur's own borders
        out = np.stack([restoration.wiener(padded[..., c], psf, WIENER_BALANCE) for c in range(3)], axis=-1)
        return out[size:-size, size:-size]
    if task == "denoising":
        return restoration.denoise_tv_chambolle(obs, weight=TV_WEIGHT, channel_axis=-1)
    raise ValueError(f"unknown task {task!r}")


def classical_tensor(task: str, setup: Any, clean: Any, target: Any) -> Any:
    """:func:`classical` as a ``(1, 3, H, W)`` tensor in [-1, 1], finished like a restoration
    (``degradation.finish``: e.g. the known pixels of an inpainting kept)."""
    import torch

    out = classical(task, setup.degradation, clean, target)
    restored = torch.from_numpy(np.ascontiguousarray(out) * 2 - 1).permute(2, 0, 1)[None].float().to(target.device)
    with torch.no_grad():
        return setup.degradation.finish(restored.clamp(-1, 1), target).clamp(-1, 1)


# --------------------------------------------------------------------------- one image
class Context:
    """The priors and per-(task, method) set-ups of one process, built on first use."""

    def __init__(self, settings: Settings, prior: Any = None, dip: Any = None):
        self.settings = settings
        self._prior, self._dip = prior, dip
        self._setups: dict[tuple[str, str], Any] = {}

    @property
    def prior(self) -> Any:
        if self._prior is None:
            from dgp_toolkit.priors import load_prior

            self._prior = load_prior(self.settings.prior, weights=self.settings.weights)
        return self._prior

    @property
    def dip(self) -> Any:
        if self._dip is None:
            from dgp_toolkit.priors.dip import load_dip

            self._dip = load_dip(base=self.settings.prior, weights=self.settings.weights)
        return self._dip

    def preset(self, task: str, method: str) -> Any:
        from dgp_toolkit.plugins.schedules import build_schedule
        from dgp_toolkit.presets import load_preset
        from dgp_toolkit.priors.dip import dip_preset

        s = self.settings
        if method == "dip":
            return dip_preset(task, iterations=s.dip_iterations or DIP_ITERATIONS[task], g_lr=s.dip_lr)
        own = GAN_INVERSION_PRESETS / f"gan-inversion-{task}.toml"
        preset = load_preset(own if method == "gan-inversion" and own.is_file() else task, self.prior)
        if s.select_num is not None:
            preset = preset.replace(select_num=int(s.select_num))
        if method == "gan-inversion":
            table = {k: v for k, v in preset.schedule.to_dict().items() if k != "name"}
            preset = preset.replace(name=f"{preset.name} (latent-only)", schedule=build_schedule("latent-only", **table))
        return preset

    def setup(self, task: str, method: str) -> Any:
        from dgp_toolkit.restoration import prepare_restore

        key = (task, method)
        if key not in self._setups:
            prior = self.dip if method == "dip" else self.prior
            self._setups[key] = prepare_restore([TASKS[task]], prior, preset=self.preset(task, method))
        return self._setups[key]


def evaluate_image(ctx: Context, task: str, clean: Any, *, dev_index: int, label: int, position: int,
                   seed: int, image_dir: Path | None = None, methods: Sequence[str] | None = None) -> dict[str, Any]:
    """Every method (or the generative ``methods`` given) on one clean image ``(3, R, R)`` in
    [-1, 1]; returns the row.

    ``row["scores"][method]`` holds ``psnr`` and ``ssim`` (plus ``seconds`` and, for the
    generative methods, the engine's class, steps and how it stopped); ``row["presets"]``
    the :func:`preset_digest` of each generative method's preset. With ``image_dir`` the
    clean, observed and restored images are written there as PNGs.
    """
    import torch

    from dgp_toolkit.restoration import load_input, restore_input

    s = ctx.settings
    setup = ctx.setup(task, "dgp")
    clean = clean.detach().float().cpu().reshape(1, 3, *clean.shape[-2:]).to(setup.prior.device)
    images: dict[str, Any] = {"clean": clean}
    # The observation exactly as restore_input simulates it (same seed, same call).
    with torch.no_grad():
        target = setup.degradation.degrade(clean, generator=torch.Generator().manual_seed(int(seed)))
    images["observation"] = target
    protocol = setup.protocol
    start = time.perf_counter()
    restored = classical_tensor(task, setup, clean, target)
    seconds = time.perf_counter() - start
    images["classical"] = restored
    # restore_input's own scoring, so that the table and `restore --simulate` agree.
    metrics = setup.score(restored, target, clean)
    scores: dict[str, Any] = {
        "observation": dict(metrics["observation"]),
        "classical": {**metrics["result"], "method": CLASSICAL[task], "seconds": seconds},
    }
    inp = load_input(clean[0].cpu())
    methods = tuple(s.generative if methods is None else methods)
    for method in methods:
        method_setup = ctx.setup(task, method)
        if s.true_class and method != "dip":  # DIP has no classes to choose from
            method_setup = dataclasses.replace(method_setup, class_index=int(label), label=int(label))
        result = restore_input(method_setup, inp, simulate=True, seed=int(seed),
                               iterations_scale=s.iterations_scale, check_every=s.check_every,
                               snapshot_stages=False, precision=s.precision)
        seen = result.metrics["observation"]
        if not math.isclose(seen["psnr"], scores["observation"]["psnr"], rel_tol=1e-9, abs_tol=1e-9):
            raise RuntimeError(f"{task}: restore_input simulated another observation ({seen['psnr']:.4f} dB) "
                               f"than the benchmark ({scores['observation']['psnr']:.4f} dB)")
        scores[method] = {**result.metrics["result"], "seconds": result.seconds,
                          "select_s": result.timings.get("select_s"), "optimize_s": result.timings.get("optimize_s"),
                          "class": result.class_index, "steps": len(result.history), "stopped": result.stopped,
                          "machine": machine()}
        images[method] = result.tensor
    if image_dir is not None:
        _save_images(image_dir, task, position, images)
    return {"schema": SCHEMA, "task": task, "degradation": TASKS[task], "protocol": protocol, "position": position,
            "dev_index": int(dev_index), "label": int(label), "seed": int(seed), "scores": scores,
            "presets": {m: preset_digest(ctx.preset(task, m)) for m in methods}}


def preset_digest(preset: Any) -> str:
    """What of a preset a row's scores depend on (selection, options, schedule; not its name,
    description or file), as a short hash: a row is rerun for a method whose digest changed."""
    data = preset.to_dict()
    key = json.dumps({k: data[k] for k in ("select", "options", "schedule")}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def stale_methods(row: dict[str, Any], current: dict[str, str]) -> list[str]:
    """The generative methods (keys of ``current``: method -> digest) that ``row`` lacks or
    scored with another preset than the current one."""
    made = row.get("presets") or {}
    return [m for m in current if m not in row["scores"] or made.get(m) != current[m]]


def _image_path(image_dir: Path, task: str, position: int, name: str) -> Path:
    return Path(image_dir) / task / f"{position:03d}_{name}.png"


def _save_images(image_dir: Path, task: str, position: int, images: dict[str, Any]) -> None:
    from dgp_toolkit.images import to_pil, write_image

    for name, tensor in images.items():
        write_image(to_pil(tensor.detach().cpu()), _image_path(image_dir, task, position, name), overwrite=True)


# --------------------------------------------------------------------------- workers
_CONTEXT: Context | None = None


def _init_worker(settings: Settings, ignore_sigint: bool = True) -> None:
    import signal

    import torch

    global _CONTEXT
    if ignore_sigint:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", UserWarning)  # skimage's Lab gamut clipping
    _CONTEXT = Context(settings)


def _run_job(job: dict[str, Any]) -> dict[str, Any]:
    assert _CONTEXT is not None
    import torch

    clean = torch.from_numpy(job["clean"])
    return evaluate_image(_CONTEXT, job["task"], clean, dev_index=job["dev_index"], label=job["label"],
                          position=job["position"], seed=job["seed"], image_dir=job["image_dir"],
                          methods=job.get("methods"))


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``rows.jsonl`` file, one per (task, image): a later line replaces an
    earlier one (a rerun of some methods appends the merged row); a half-written last line,
    from a kill, is ignored."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows.pop((row["task"], row["dev_index"]), None)
            rows[(row["task"], row["dev_index"])] = row
    return list(rows.values())


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Replace ``rows.jsonl`` with ``rows``, atomically (a kill leaves the old file or the new)."""
    from dgp_toolkit.restoration import json_safe

    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(json_safe(r)) + "\n" for r in rows))
    os.replace(tmp, path)


def _append(path: Path, row: dict[str, Any]) -> None:
    from dgp_toolkit.restoration import json_safe

    text = json.dumps(json_safe(row)) + "\n"
    with open(path, "a+b") as handle:
        if handle.tell() > 0:  # a line cut short by a killed run must not swallow this one
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                text = "\n" + text
        handle.write(text.encode())
        handle.flush()
        os.fsync(handle.fileno())


def run_jobs(jobs: list[dict[str, Any]], settings: Settings, rows_path: Path, workers: int,
             earlier: dict[tuple[str, int], dict[str, Any]] | None = None) -> int:
    """Run ``jobs``, appending each row as it comes; returns the number done.

    A job with ``methods`` reruns only those for a row of ``earlier`` (keyed by task and dev
    index): the appended row is the earlier one with those methods' scores replaced.
    Workers ignore Ctrl-C: the parent stops them (their unfinished images are simply
    run again next time) and re-raises ``KeyboardInterrupt``.
    """
    done = 0
    t0 = time.perf_counter()
    earlier = earlier or {}

    def report(row: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        old = earlier.get((row["task"], row["dev_index"]))
        if old is not None:
            row = {**old, **row, "scores": {**old["scores"], **row["scores"]},
                   "presets": {**(old.get("presets") or {}), **row["presets"]}}
        _append(rows_path, row)
        sc = row["scores"]
        line = ", ".join(f"{m} {sc[m]['psnr']:.2f}" for m in METHODS if sc.get(m, {}).get("psnr") is not None)
        print(f"[{done}/{len(jobs)} {time.perf_counter() - t0:.0f} s] {row['task']} #{row['position']}: {line}",
              file=sys.stderr, flush=True)

    if workers <= 1 or len(jobs) <= 1:
        _init_worker(settings, ignore_sigint=False)
        for job in jobs:
            report(_run_job(job))
        return done
    import multiprocessing

    # spawn, not fork: the parent has imported torch (its thread pools do not survive a fork)
    pool = multiprocessing.get_context("spawn").Pool(min(workers, len(jobs)), initializer=_init_worker,
                                                     initargs=(settings,))
    try:
        for row in pool.imap_unordered(_run_job, jobs, chunksize=1):
            report(row)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
    return done


# --------------------------------------------------------------------------- summary
def mean_ci(values: list[float]) -> tuple[float, float | None, int]:
    """Mean, half-width of the 95% confidence interval (t distribution; ``None`` for one
    value) and the number of finite values."""
    from scipy import stats

    v = np.array([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return float("nan"), None, 0
    if v.size == 1:
        return float(v[0]), None, 1
    half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return float(v.mean()), half, int(v.size)


TIE_DB = 0.01  # closer than this counts as a tie, not a win: for colorization the observation
# is the classical method, scored twice (float noise: 1e-6 dB, 0.002 dB for a grey original at 90 dB)


def _finite(x: Any) -> bool:
    return x is not None and bool(np.isfinite(x))


def summarize(rows: list[dict[str, Any]], tasks: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for task in tasks:
        task_rows = [r for r in rows if r["task"] == task]
        if not task_rows:
            continue
        out[task] = {}
        for method in METHODS:
            entries = [r["scores"][method] for r in task_rows if method in r["scores"]]
            if not entries:
                continue
            psnr, psnr_ci, n = mean_ci([e.get("psnr") for e in entries])
            ssim, ssim_ci, _ = mean_ci([e.get("ssim") for e in entries])
            secs = [e["seconds"] for e in entries if e.get("seconds") is not None]
            finite = [e["psnr"] for e in entries if _finite(e.get("psnr"))]
            # Paired with the classical baseline on the same images: a mean can hide that a
            # method wins on few images by much, or on most by little.
            pairs = [(r["scores"][method]["psnr"], r["scores"]["classical"]["psnr"]) for r in task_rows
                     if method != "classical" and method in r["scores"] and "classical" in r["scores"]
                     and _finite(r["scores"][method].get("psnr")) and _finite(r["scores"]["classical"].get("psnr"))]
            out[task][method] = {"n": n, "psnr_mean": psnr, "psnr_ci95": psnr_ci, "ssim_mean": ssim,
                                 "ssim_ci95": ssim_ci, "seconds_mean": float(np.mean(secs)) if secs else None,
                                 "psnr_median": float(np.median(finite)) if finite else float("nan"),
                                 "above_classical": [sum(m > c + TIE_DB for m, c in pairs), len(pairs)] if pairs else None}
    return out


def _fmt(mean: float, ci: float | None, digits: int) -> str:
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f}" + (f" ± {ci:.{digits}f}" if ci is not None else "")


def _comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings that rows depend on: DIP's only when DIP runs; ``true_class`` only when
    set (folders from before it existed ran without it)."""
    settings = {k: v for k, v in settings.items() if k != "true_class" or v}
    if "dip" in str(settings.get("methods", "")).split(","):
        return settings
    return {k: v for k, v in settings.items() if not k.startswith("dip_")}


def _dip_steps(s: dict[str, Any]) -> str:
    if s.get("dip_iterations"):
        return f"{s['dip_iterations']} steps"
    return "steps per task " + ", ".join(f"{t} {n}" for t, n in DIP_ITERATIONS.items())


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    s = meta["settings"]
    lines = [
        "# Restoration quality on CIFAR-10 dev images (32 px)", "",
        f"Command: `{meta['command']}`  ",
        f"{'Table written from the rows (--report)' if meta.get('wall_s') is None else 'Ran'} {meta['date']} "
        f"on {meta['machine']} ({meta['workers']} worker process(es), 1 thread each), "
        + (f"{meta['wall_s'] / 60:.1f} min wall for the images computed in this run; " if meta.get("wall_s") else "")
        + f"{meta['compute_s'] / 60:.1f} min of compute in all rows (sum of the methods' seconds).  ",
        f"Prior `{s['prior']}`; iterations scale {s['iterations_scale']} of each preset; latent candidates "
        f"{s['select_num'] or 'as the preset'}; "
        + (f"DIP {_dip_steps(s)} (scaled too) at lr {s['dip_lr']}; " if "dip" in s.get("methods", "dip") else "")
        + f"engine precision {s.get('precision', 'float32')}"
        + ("; GAN inversion and DGP given each image's true class (--true-class)." if s.get("true_class") else "."),
        *([f"The restorations (method runs) were computed on "
           + "; ".join(f"{m} ({n})" for m, n in sorted(meta["row_machines"].items(), key=lambda kv: -kv[1]))
           + ": seconds per image depend on the machine."] if len(meta.get("row_machines") or {}) > 1 else []),
        *(["", f"**Partial: {meta['rows_done']} of {meta['rows_wanted']} (task, image) rows so far**; the same "
           "command continues the run."] if meta.get("rows_done", 0) < meta.get("rows_wanted", 0) else []),
        "",
        "Mean over images ± half-width of the 95% confidence interval (t distribution); N images; "
        "the best mean PSNR of each task in bold; the median PSNR; on how many images the method's PSNR is "
        f"above the classical method's on the same image (by more than {TIE_DB} dB). PSNR in dB, [0, 1] images, SSIM over colour channels; "
        "colorization scored after putting back the observation's Lab L, inpainting on the hole's bounding box.",
        "",
        "| Task | Method | PSNR (dB) | median | above classical | SSIM | N | s / image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, methods in summary.items():
        best = max((m for m in methods if np.isfinite(methods[m]["psnr_mean"])),
                   key=lambda m: methods[m]["psnr_mean"], default=None)
        for method, v in methods.items():
            psnr = _fmt(v["psnr_mean"], v["psnr_ci95"], 2)
            if method == best:
                psnr = f"**{psnr}**"
            name = f"classical: {CLASSICAL[task]}" if method == "classical" else method
            secs = f"{v['seconds_mean']:.1f}" if v["seconds_mean"] is not None else ""
            median = f"{v['psnr_median']:.2f}" if _finite(v.get("psnr_median")) else ""
            above = f"{v['above_classical'][0]} / {v['above_classical'][1]}" if v.get("above_classical") else ""
            lines.append(f"| {task} | {name} | {psnr} | {median} | {above} | "
                         f"{_fmt(v['ssim_mean'], v['ssim_ci95'], 3)} | {v['n']} | {secs} |")
    return "\n".join(lines) + "\n"


def write_sheet(out: Path, rows: list[dict[str, Any]], tasks: list[str], count: int) -> Path | None:
    from PIL import Image

    from dgp_toolkit.sheets import labelled_sheet, write_sheet as write

    short = {"observation": "obs", "classical": "skimage", "gan-inversion": "GAN-inv", "dip": "DIP", "dgp": "DGP"}
    grid, labels = [], []
    for task in tasks:
        for row in sorted((r for r in rows if r["task"] == task and r["position"] < count), key=lambda r: r["position"]):
            tiles = []
            for name in ("clean",) + METHODS:
                if name != "clean" and name not in row["scores"]:
                    continue
                path = _image_path(out / "images", task, row["position"], name)
                if not path.exists():
                    break
                psnr = row["scores"].get(name, {}).get("psnr")
                caption = "clean" if name == "clean" else f"{short[name]} {psnr:.1f}" if psnr is not None else short[name]
                tiles.append((caption, Image.open(path).convert("RGB")))
            else:
                grid.append(tiles)
                labels.append(f"{task} #{row['position']}")
    if not grid:
        return None
    shown = [m for m in METHODS if any(m in r["scores"] for r in rows)]
    sheet = labelled_sheet(grid, row_labels=labels, title=", ".join(["clean"] + [short[m] for m in shown]) + " (PSNR dB)")
    return write(sheet, out / "sheet.png", overwrite=True)


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10, help="images per task (default 10: one per class)")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, from {', '.join(TASKS)}")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quality")
    parser.add_argument("--workers", type=int, default=2, help="worker processes, one thread each")
    parser.add_argument("--iterations-scale", type=float, default=Settings.iterations_scale,
                        help="multiplies every method's steps (presets and DIP)")
    parser.add_argument("--select-num", type=int, default=Settings.select_num,
                        help="latent candidates for DGP and GAN inversion (0: the preset's 500)")
    parser.add_argument("--seed", type=int, default=0, help="image k uses seed SEED + k")
    parser.add_argument("--prior", default="biggan")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--dip-iterations", type=int, default=Settings.dip_iterations,
                        help="DIP steps for every task (default: per task, DIP_ITERATIONS)")
    parser.add_argument("--dip-lr", type=float, default=Settings.dip_lr)
    parser.add_argument("--methods", default=Settings.methods,
                        help="generative methods to run, from gan-inversion, dip, dgp (observation and "
                             "classical always run)")
    parser.add_argument("--precision", default=Settings.precision, choices=["auto", "float32", "bf16"],
                        help="the engine's precision (bf16 autocast for G and D where the CPU has AMX)")
    parser.add_argument("--sheet-images", type=int, default=3, help="images per task on the sheet")
    parser.add_argument("--save-images", action="store_true",
                        help="write every image's tiles to OUT/images, not only the sheet's (for "
                             "colorization_accuracy.py)")
    parser.add_argument("--fresh", action="store_true", help="discard earlier rows in --out")
    parser.add_argument("--true-class", action="store_true",
                        help="give GAN inversion and DGP each image's true class, as `restore --class` would "
                             "(latent selection then only picks z)")
    parser.add_argument("--report", action="store_true",
                        help="run nothing: write the table, JSON and sheet from the rows so far (a partial run "
                             "says so); give the run's other options too")
    args = parser.parse_args(argv)

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        parser.error(f"unknown task(s) {unknown}; choose from {', '.join(TASKS)}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods or any(m not in GENERATIVE for m in methods):
        parser.error(f"--methods {args.methods!r}: choose from {', '.join(GENERATIVE)}")
    if args.n < 1 or args.workers < 1 or not args.iterations_scale > 0 or (args.dip_iterations is not None and args.dip_iterations < 1):
        parser.error("--n, --workers and --dip-iterations must be >= 1 and --iterations-scale > 0")
    settings = Settings(prior=args.prior, weights=args.weights, iterations_scale=args.iterations_scale,
                        select_num=args.select_num or None, seed=args.seed, dip_iterations=args.dip_iterations,
                        dip_lr=args.dip_lr, methods=",".join(m for m in GENERATIVE if m in methods),
                        precision=args.precision, true_class=args.true_class)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    rows_path, settings_path = out / "rows.jsonl", out / "settings.json"
    if args.report and (args.fresh or not rows_path.exists()):
        parser.error(f"--report: {'--fresh would discard the rows to report' if args.fresh else f'no rows in {out} yet'}")
    if args.fresh:
        rows_path.unlink(missing_ok=True)
    wanted = dataclasses.asdict(settings)
    if settings_path.exists() and rows_path.exists():
        earlier = json.loads(settings_path.read_text())
        if _comparable(earlier) != _comparable(wanted):
            raise SystemExit(f"{out} holds rows made with other settings ({settings_path}); "
                             "use another --out or pass --fresh to discard them")
        wanted = earlier  # e.g. a DIP step count of a run without DIP stays as it was
    settings_path.write_text(json.dumps(wanted, indent=2) + "\n")

    import torch

    from dgp_toolkit.restoration import json_safe

    torch.set_num_threads(1)
    warnings.simplefilter("ignore", UserWarning)
    ctx = Context(settings)
    (out / "presets").mkdir(exist_ok=True)
    from dgp_toolkit.presets import load_preset
    from dgp_toolkit.priors.dip import preset_toml

    current = {task: {m: preset_digest(ctx.preset(task, m)) for m in settings.generative} for task in tasks}
    rows = read_rows(rows_path)
    if any("presets" not in r for r in rows):
        # Rows from before rows recorded their presets were made with the preset files this
        # folder holds (each run writes them): take their digests from those files.
        def file_digest(task: str, method: str, prior: Any = ctx.prior) -> str | None:
            path = out / "presets" / f"{method}-{task}.toml"
            return preset_digest(load_preset(path, prior)) if path.is_file() else None

        for r in rows:
            if "presets" not in r:
                r["presets"] = {m: file_digest(r["task"], m) for m in GENERATIVE if m in r["scores"]}
        if not args.report:
            write_rows(rows_path, rows)
    if not args.report:  # --report only reads the rows (a run may be appending to them)
        for task in tasks:
            for method in settings.generative:
                (out / "presets" / f"{method}-{task}.toml").write_text(preset_toml(ctx.preset(task, method)))
    del ctx  # the workers load their own priors

    images, indices, labels = dev_subset(args.n)
    earlier = {(r["task"], r["dev_index"]): r for r in rows}
    jobs, reruns = [], 0
    for k in range(len(indices)):
        for task in tasks:
            job = {"task": task, "clean": images[k].numpy(), "dev_index": indices[k], "label": labels[k],
                   "position": k, "seed": args.seed + k, "image_dir": out / "images" if args.save_images or k < args.sheet_images else None}
            row = earlier.get((task, indices[k]))
            if row is None:
                jobs.append(job)
            elif stale := stale_methods(row, current[task]):
                jobs.append({**job, "methods": stale})
                reruns += 1
    wanted_rows = len(indices) * len(tasks)
    if args.report:
        print(f"report: {wanted_rows - len(jobs) + reruns} of {wanted_rows} (task, image) rows in {rows_path}"
              + (f"; {reruns} of them have methods scored with other presets, left out" if reruns else ""),
              file=sys.stderr)
        jobs = []
    else:
        print(f"{len(jobs) - reruns} (task, image) pairs to run and {reruns} to rerun for a changed preset; "
              f"{len(earlier)} rows in {rows_path}", file=sys.stderr)
    t0 = time.perf_counter()
    try:
        run_jobs(jobs, settings, rows_path, args.workers, earlier)
    except KeyboardInterrupt:
        print(f"interrupted; finished rows are kept in {rows_path}: run the same command again to continue",
              file=sys.stderr)
        return 130
    wall = None if args.report else time.perf_counter() - t0

    keep = set(indices)
    if not args.report:
        rows = read_rows(rows_path)
        write_rows(rows_path, rows)  # one line per row again
    rows = [r for r in rows if r["task"] in tasks and r["dev_index"] in keep]
    for r in rows:  # only scores of the presets as they are now
        for m in stale_methods(r, current[r["task"]]):
            r["scores"].pop(m, None)
    summary = summarize(rows, tasks)
    command = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--report"]
    meta = {"command": "python benchmarks/quality.py " + " ".join(command),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
            "workers": args.workers, "wall_s": wall, "settings": wanted,
            "compute_s": sum(v.get("seconds") or 0.0 for r in rows for v in r["scores"].values()),
            "row_machines": dict(Counter(v.get("machine", "not recorded") for r in rows for v in r["scores"].values()
                                         if v.get("seconds") is not None and "steps" in v)),
            "n": args.n, "tasks": tasks, "rows_done": len(rows), "rows_wanted": wanted_rows,
            "torch": torch.__version__, "classical": CLASSICAL}
    (out / "quality.json").write_text(json.dumps(json_safe({**meta, "summary": summary, "rows": rows}), indent=2) + "\n")
    table = markdown(summary, meta)
    (out / "quality.md").write_text(table)
    sheet = write_sheet(out, rows, tasks, args.sheet_images)
    print(table)
    print(f"wrote {out / 'quality.md'}, {out / 'quality.json'}" + (f", {sheet}" if sheet else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
