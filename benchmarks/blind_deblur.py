"""Blind deblurring (issue 28): sigma fitted with the image against fits that are told sigma.

    python benchmarks/blind_deblur.py [--n 20] [--sigmas 1,2,3] [--methods blind,true,half,double]
                                      [--iterations-scale 1] [--select-num 0] [--preset FILE]
                                      [--precision float32] [--device cpu] [--workers 1] [--limit K]
                                      [--out benchmarks/results/blind-deblur] [--fresh] [--report]

For each true sigma and each of the first ``--n`` images of the CIFAR-10 dev split (the
class-balanced order of ``quality.py``), the clean image is blurred with the true sigma
(``restore(..., simulate=True, simulate_with=["blur:sigma=S,size=K"])``) and restored by
DGP with the deblurring preset, fitting:

==========  ============================================================================
``blind``   ``blur:sigma=auto`` (sigma fitted with the image from the plugin's start, or the
            preset's ``[learnable.blur.sigma]``)
``true``    ``blur:sigma=S``: non-blind, the true sigma (the target: blind within 0.5 dB)
``half``    ``blur:sigma=S/2``: non-blind, a sigma half the true one
``double``  ``blur:sigma=2S``: non-blind, a sigma twice the true one
==========  ============================================================================

Every blur, the simulated one and the four fitted ones, uses one kernel size ``K``
(:func:`kernel_size`: the default size for the largest sigma any of them uses, 25 px for
sigmas up to 3, at least the blind fit's own 17): the fits then differ in sigma alone.
Image ``k`` uses seed ``--seed + k`` in every setting (the latent draw; a blur adds no noise).

Reported per true sigma (``blind_deblur.md``, ``blind_deblur.json``): PSNR and SSIM (mean
and 95% confidence interval over images, t distribution), each method's PSNR minus the
non-blind true-sigma fit's on the same image (paired), and for the blind fit the fitted
sigma, its absolute error and how many fits ended at the range's lower bound (the
fine-tuned generator can absorb the blur, pushing sigma down: the issue asks to report it).

Output folder (``--out``): ``rows.jsonl``, one line per (true sigma, method, image), appended
as each finishes: a rerun with the same settings runs only what is missing (an interrupted
run continues; ``--limit K`` runs at most K restorations and writes the table so far, for
runs cut into chunks, e.g. on a device machine with a time limit per command); other
settings are refused unless ``--fresh``. ``--report`` runs nothing and writes the table.

Needs the engine's side of issue 28 (``restore(simulate_with=...)`` and the fitted values
in the result, :func:`fitted_of`); not run yet: no figures here. Cost: a pilot on a
prototype of that engine side (2 images, sigma 2, blind and true, 50 candidates, float32,
one thread on this project's 2-core AMD EPYC) took 28-34 s per restoration; the default
run is 240 restorations at the preset's 500 candidates (about 27 s more each at the
candidate cost quality.py measured): about 4 hours of one process.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_common import machine  # noqa: E402

METHODS = ("blind", "true", "half", "double")
#: The non-blind fits' sigma as a multiple of the true one.
FACTORS = {"true": 1.0, "half": 0.5, "double": 2.0}
KEY = "blur.sigma"
SCHEMA = 1
#: A restoration whose final loss is more than this many times its lowest diverged (the
#: 32-px deblurring preset's lr 1e-3 blows up on some images: in a pilot the non-blind
#: sigma=2 fit of dev image 0 went from loss 0.001 to 0.33 at step 200 and ended at 9 dB).
DIVERGED_RATIO = 10.0


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the rows depend on: a rerun into the same folder must use the same."""

    prior: str = "biggan"
    weights: str | None = None
    iterations_scale: float = 1.0
    select_num: int | None = None  # None: the preset's
    seed: int = 0
    precision: str = "float32"
    check_every: int = 50
    preset: str | None = None  # a preset file; None: the deblurring preset of the prior
    preset_digest: str = ""  # of the preset as run (filled by main)
    kernel: int = 0  # the kernel size of every blur (filled by main)
    #: > 1: each setting's images restored ``batch`` generator copies at a time by the
    #: batched engine, every image with seed ``seed`` (the candidates drawn and scored once
    #: per setting); 1: one restoration per image, image k with seed ``seed + k``
    batch: int = 1


# --------------------------------------------------------------------------- specs
def kernel_size(sigmas: list[float], methods: list[str], high: float | None = None) -> int:
    """One kernel size for every blur of the run: the default size of the largest sigma
    simulated or fitted (with a blind fit, the top of its range: ``high``, default the
    plugin's).

    >>> kernel_size([1, 2, 3], list(METHODS)), kernel_size([1], ["blind", "true"])
    (25, 17)
    """
    from dgp_toolkit.plugins.degradations.blur import SIGMA_LEARNABLE, default_kernel_size

    largest = max(max(sigmas) * max([FACTORS.get(m, 1.0) for m in methods] or [1.0]), max(sigmas))
    if "blind" in methods:
        largest = max(largest, SIGMA_LEARNABLE.high if high is None else high)
    return default_kernel_size(largest)


def specs_for(sigma: float, method: str, kernel: int) -> tuple[str, str]:
    """``(fit spec, simulation spec)`` of one method at one true sigma.

    >>> specs_for(2.0, "blind", 25), specs_for(2.0, "half", 25)
    (('blur:sigma=auto,size=25', 'blur:sigma=2,size=25'), ('blur:sigma=1,size=25', 'blur:sigma=2,size=25'))
    """
    fit = "auto" if method == "blind" else f"{sigma * FACTORS[method]:g}"
    return f"blur:sigma={fit},size={kernel}", f"blur:sigma={sigma:g},size={kernel}"


def fitted_of(result: Any) -> tuple[float | None, list[float] | None]:
    """The blind fit's final sigma and its value at each stage's end (``None`` when absent),
    as the engine reports them: ``result.fitted`` (``{"blur.sigma": value}``) and
    ``result.config["fitted"]["stages"]`` (one ``{key: value}`` per stage)."""
    final = (getattr(result, "fitted", None) or {}).get(KEY)
    stages = ((result.config or {}).get("fitted") or {}).get("stages")
    per_stage = [float(s[KEY]) for s in stages if KEY in s] if stages else None
    return (None if final is None else float(final)), per_stage


def preset_digest(preset: Any) -> str:
    """What of the preset the scores depend on (selection, options, schedule, learnable)."""
    data = preset.to_dict()
    key = json.dumps({k: data.get(k) for k in ("select", "options", "schedule", "learnable")}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- one restoration
class Context:
    """The prior and the preset of one process, loaded on first use."""

    def __init__(self, settings: Settings, device: str = "cpu", prior: Any = None):
        self.settings, self.device, self._prior, self._preset = settings, device, prior, None

    @property
    def prior(self) -> Any:
        if self._prior is None:
            from dgp_toolkit.priors import load_prior

            self._prior = load_prior(self.settings.prior, device=self.device, weights=self.settings.weights)
        return self._prior

    @property
    def preset(self) -> Any:
        if self._preset is None:
            from dgp_toolkit.presets import load_preset

            preset = load_preset(self.settings.preset or "deblurring", self.prior)
            if self.settings.select_num is not None:
                preset = preset.replace(select_num=int(self.settings.select_num))
            self._preset = preset
        return self._preset


def evaluate(ctx: Context, clean: Any, *, sigma: float, method: str, position: int, dev_index: int,
             label: int, seed: int) -> dict[str, Any]:
    """One restoration of the clean image ``(3, R, R)`` in [-1, 1] blurred with ``sigma``;
    returns its row."""
    import dgp_toolkit

    s = ctx.settings
    fit, simulation = specs_for(sigma, method, s.kernel)
    result = dgp_toolkit.restore(clean, [fit], ctx.prior, preset=ctx.preset, seed=int(seed), simulate=True,
                                 simulate_with=[simulation], iterations_scale=s.iterations_scale,
                                 check_every=s.check_every, snapshot_stages=False, precision=s.precision)
    return row_of(ctx, result, sigma=sigma, method=method, position=position, dev_index=dev_index, label=label,
                  seed=seed)


def evaluate_setting(ctx: Context, jobs: list[dict[str, Any]]) -> Any:
    """The jobs of one (sigma, method) through the batched engine, ``batch`` copies at a
    time, every image with seed ``settings.seed``; yields each row as its batch finishes."""
    import torch

    from dgp_toolkit.engine import RunOptions
    from dgp_toolkit.restoration import RestoreFailure, load_input, prepare_restore, restore_stream

    s = ctx.settings
    fit, simulation = specs_for(jobs[0]["sigma"], jobs[0]["method"], s.kernel)
    setup = prepare_restore([fit], ctx.prior, preset=ctx.preset, simulate_with=[simulation])
    options = RunOptions(seed=s.seed, iterations_scale=s.iterations_scale, check_every=s.check_every,
                         snapshots=False, precision=s.precision)
    inputs = [(i, load_input(torch.from_numpy(job["clean"]))) for i, job in enumerate(jobs)]
    for i, out in restore_stream(setup, inputs, options=options, simulate=True, batch=s.batch):
        if isinstance(out, RestoreFailure):
            raise out.error
        job = {k: v for k, v in jobs[i].items() if k != "clean"}
        yield row_of(ctx, out, **{**job, "seed": s.seed})


def row_of(ctx: Context, result: Any, *, sigma: float, method: str, position: int, dev_index: int, label: int,
           seed: int) -> dict[str, Any]:
    """The row of one restoration."""
    fit, simulation = specs_for(sigma, method, ctx.settings.kernel)
    final, stages = fitted_of(result)
    losses = [h["loss"] for h in result.history if math.isfinite(h["loss"])]
    if method == "blind" and final is None:
        raise RuntimeError(f"the blind fit ({fit}) reported no fitted {KEY}: is the engine's side of issue 28 in?")
    low = None
    if final is not None:
        spec = _blind_spec(ctx)
        low = final <= spec.low + 1e-3 * (spec.high - spec.low)
    return {"schema": SCHEMA, "sigma": float(sigma), "method": method, "position": int(position),
            "dev_index": int(dev_index), "label": int(label), "seed": int(seed), "fit": fit, "simulate_with": simulation,
            "psnr": result.metrics["result"]["psnr"], "ssim": result.metrics["result"]["ssim"],
            "observation": dict(result.metrics["observation"]), "fitted_sigma": final, "fitted_stages": stages,
            "at_lower_bound": low, "notes": [n for n in result.notes if KEY in n], "class": int(result.class_index),
            "final_loss": losses[-1] if losses else None,
            "diverged": bool(not losses or losses[-1] > DIVERGED_RATIO * min(losses)),
            "stopped": result.stopped, "steps": len(result.history), "seconds": result.seconds, "machine": machine()}


def _blind_spec(ctx: Context) -> Any:
    from dgp_toolkit.learnable import learnable_specs
    from dgp_toolkit.registry import parse_degradation

    (spec,) = learnable_specs(parse_degradation(f"blur:sigma=auto,size={ctx.settings.kernel}"), ctx.preset)
    return spec


def _probe_kernel(kernel: int, side: int) -> None:
    """A kernel too wide for the prior's images is a usage error now, not at every image."""
    import torch

    from dgp_toolkit.registry import parse_degradation

    parse_degradation(f"blur:sigma=1,size={kernel}")(torch.zeros(1, 3, side, side))


# --------------------------------------------------------------------------- rows
def row_key(row: dict[str, Any]) -> tuple[float, str, int]:
    return (float(row["sigma"]), row["method"], int(row["dev_index"]))


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of ``rows.jsonl``, one per (sigma, method, image), a later line replacing an
    earlier one; a half-written last line (a kill) is ignored."""
    rows: dict[tuple[float, str, int], dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows.pop(row_key(row), None)
            rows[row_key(row)] = row
    return list(rows.values())


def plan_jobs(images: Any, indices: list[int], labels: list[int], sigmas: list[float], methods: list[str],
              done: set[tuple[float, str, int]], seed: int) -> list[dict[str, Any]]:
    """The restorations still to run, image by image (all settings of image 0 first, so a
    partial run already pairs methods on the same images)."""
    jobs = []
    for k, index in enumerate(indices):
        for sigma in sigmas:
            for method in methods:
                if (float(sigma), method, int(index)) not in done:
                    jobs.append({"clean": images[k].numpy(), "sigma": float(sigma), "method": method, "position": k,
                                 "dev_index": int(index), "label": int(labels[k]), "seed": seed + k})
    return jobs


_CONTEXT: Context | None = None
THREADS = 0  # --threads (0: every core) for --batch runs


def _init_worker(settings: Settings, device: str, ignore_sigint: bool = True) -> None:
    import signal
    import warnings

    import torch

    global _CONTEXT
    if ignore_sigint:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", UserWarning)
    _CONTEXT = Context(settings, device)


def _run_job(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    assert _CONTEXT is not None
    return evaluate(_CONTEXT, torch.from_numpy(job["clean"]), **{k: v for k, v in job.items() if k != "clean"})


def run_jobs(jobs: list[dict[str, Any]], settings: Settings, rows_path: Path, *, workers: int = 1,
             device: str = "cpu") -> int:
    """Run ``jobs``, appending each row as it comes (Ctrl-C keeps what is done); the count."""
    from quality import _append

    t0, done = time.perf_counter(), 0

    def report(row: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        _append(rows_path, row)
        fitted = f", sigma {row['fitted_sigma']:.2f}" if row.get("fitted_sigma") is not None else ""
        print(f"[{done}/{len(jobs)} {time.perf_counter() - t0:.0f} s] sigma {row['sigma']:g} {row['method']} "
              f"#{row['position']}: {row['psnr']:.2f} dB (observation {row['observation']['psnr']:.2f}){fitted}",
              file=sys.stderr, flush=True)

    if settings.batch > 1:  # one stream per setting, in the order the settings first appear
        _init_worker(settings, device, ignore_sigint=False)
        import os

        import torch

        torch.set_num_threads(THREADS or os.cpu_count() or 1)
        order = list(dict.fromkeys((j["sigma"], j["method"]) for j in jobs))
        for key in order:
            for row in evaluate_setting(_CONTEXT, [j for j in jobs if (j["sigma"], j["method"]) == key]):
                report(row)
        return done
    if workers <= 1 or len(jobs) <= 1:
        _init_worker(settings, device, ignore_sigint=False)
        for job in jobs:
            report(_run_job(job))
        return done
    import multiprocessing

    pool = multiprocessing.get_context("spawn").Pool(min(workers, len(jobs)), initializer=_init_worker,
                                                     initargs=(settings, device))
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
def summarize(rows: list[dict[str, Any]], sigmas: list[float], methods: list[str]) -> dict[str, Any]:
    """Per true sigma: the observation's PSNR and, per method, PSNR, SSIM, the paired PSNR
    difference to the non-blind true-sigma fit, and the fitted sigma's error (blind)."""
    from quality import mean_ci

    out: dict[str, Any] = {}
    for sigma in sigmas:
        at = [r for r in rows if float(r["sigma"]) == float(sigma)]
        if not at:
            continue
        true_psnr = {r["dev_index"]: r["psnr"] for r in at if r["method"] == "true"}
        observation = {r["dev_index"]: r["observation"]["psnr"] for r in at}
        entry: dict[str, Any] = {"observation_psnr": mean_ci(list(observation.values())), "methods": {}}
        for method in methods:
            mine = [r for r in at if r["method"] == method]
            if not mine:
                continue
            psnr, ssim = mean_ci([r["psnr"] for r in mine]), mean_ci([r["ssim"] for r in mine])
            m: dict[str, Any] = {"n": psnr[2], "psnr": psnr, "ssim": ssim,
                                 "diverged": sum(bool(r.get("diverged")) for r in mine)}
            if method != "true":
                m["minus_true"] = mean_ci([r["psnr"] - true_psnr[r["dev_index"]] for r in mine
                                           if r["dev_index"] in true_psnr])
            fitted = [r["fitted_sigma"] for r in mine if r.get("fitted_sigma") is not None]
            if fitted:
                m["fitted_sigma"] = mean_ci(fitted)
                m["abs_error"] = mean_ci([abs(f - float(sigma)) for f in fitted])
                m["at_lower_bound"] = [sum(bool(r.get("at_lower_bound")) for r in mine), len(fitted)]
            entry["methods"][method] = m
        out[f"{float(sigma):g}"] = entry
    return out


def _fmt(stat: Any, digits: int = 2, sign: bool = False) -> str:
    if not stat or stat[2] == 0 or not math.isfinite(stat[0]):
        return ""
    mean, half, _ = stat
    text = f"{mean:+.{digits}f}" if sign else f"{mean:.{digits}f}"
    return text + (f" ± {half:.{digits}f}" if half is not None else "")


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    s = meta["settings"]
    lines = [
        "# Blind deblurring on CIFAR-10 dev images (32 px)", "",
        f"Command: `{meta['command']}`  ",
        f"{meta['date']} on {meta['machine']}; prior `{s['prior']}`, preset "
        f"`{s['preset'] or 'deblurring'}` (digest {s['preset_digest']}), iterations scale {s['iterations_scale']}, "
        f"latent candidates {s['select_num'] or 'as the preset'}, precision {s['precision']}, every blur "
        f"{s['kernel']}x{s['kernel']}.",
        *(["", f"**Partial: {meta['rows_done']} of {meta['rows_wanted']} restorations so far**; the same command "
           "continues the run."] if meta["rows_done"] < meta["rows_wanted"] else []),
        "",
        "Mean over images ± half-width of the 95% confidence interval (t distribution). PSNR in dB on [0, 1] "
        "images; \"minus true\": the method's PSNR minus the non-blind true-sigma fit's on the same image; "
        "fitted sigma and its absolute error for the blind fit, and how many blind fits ended at the range's "
        f"lower bound; \"diverged\": restorations whose final loss is over {DIVERGED_RATIO:g}x their lowest.",
        "",
        "| true sigma | method | fit | PSNR | minus true | SSIM | fitted sigma | abs error | at lower bound | diverged | N |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for sigma, entry in summary.items():
        lines.append(f"| {sigma} | observation | | {_fmt(entry['observation_psnr'])} | | | | | | | "
                     f"{entry['observation_psnr'][2]} |")
        for method, m in entry["methods"].items():
            fit = "sigma=auto" if method == "blind" else f"sigma={float(sigma) * FACTORS[method]:g}"
            bound = f"{m['at_lower_bound'][0]} / {m['at_lower_bound'][1]}" if "at_lower_bound" in m else ""
            lines.append(f"| {sigma} | {method} | {fit} | {_fmt(m['psnr'])} | {_fmt(m.get('minus_true'), sign=True)} | "
                         f"{_fmt(m['ssim'], 3)} | {_fmt(m.get('fitted_sigma'))} | {_fmt(m.get('abs_error'))} | "
                         f"{bound} | {m['diverged']} | {m['n']} |")
    verdicts = []
    for sigma, entry in summary.items():
        blind = entry["methods"].get("blind", {}).get("minus_true")
        if blind and blind[2]:
            within = "within" if abs(blind[0]) <= 0.5 else "NOT within"
            verdicts.append(f"sigma {sigma}: blind {within} 0.5 dB of non-blind ({blind[0]:+.2f} dB, N {blind[2]})")
    if verdicts:
        lines += ["", "Target (blind within 0.5 dB of the non-blind true-sigma fit): " + "; ".join(verdicts) + "."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main
def _numbers(text: str, what: str, parser: argparse.ArgumentParser) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        parser.error(f"{what} must be numbers separated by ',', got {text!r}")
    if not values or any(not (0 < v <= 10) for v in values):
        parser.error(f"{what} must be numbers in (0, 10], got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20, help="images of the dev split (class-balanced order)")
    parser.add_argument("--sigmas", default="1,2,3", help="true blur sigmas, comma-separated")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"from {', '.join(METHODS)}")
    parser.add_argument("--iterations-scale", type=float, default=Settings.iterations_scale)
    parser.add_argument("--select-num", type=int, default=0, help="latent candidates (0: the preset's)")
    parser.add_argument("--preset", default=None, help="a preset file (default: the prior's deblurring preset)")
    parser.add_argument("--seed", type=int, default=0, help="image k uses seed SEED + k")
    parser.add_argument("--prior", default="biggan")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--precision", default=Settings.precision, choices=["auto", "float32", "bf16"])
    parser.add_argument("--device", default="cpu", help="where the restorations run (not part of the settings)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads of a --batch run (0: every core)")
    parser.add_argument("--batch", type=int, default=1,
                        help="> 1: the batched engine, B generator copies at a time, one seed for every image "
                             "(candidates shared per setting); every core in one process")
    parser.add_argument("--limit", type=int, default=None, help="run at most this many restorations now")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "blind-deblur")
    parser.add_argument("--fresh", action="store_true", help="discard earlier rows in --out")
    parser.add_argument("--report", action="store_true", help="run nothing: write the table from the rows so far")
    args = parser.parse_args(argv)
    global THREADS
    THREADS = args.threads

    sigmas = _numbers(args.sigmas, "--sigmas", parser)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods or any(m not in METHODS for m in methods):
        parser.error(f"--methods {args.methods!r}: choose from {', '.join(METHODS)}")
    if args.n < 1 or args.workers < 1 or not args.iterations_scale > 0 or (args.limit is not None and args.limit < 0):
        parser.error("--n and --workers must be >= 1, --limit >= 0 and --iterations-scale > 0")
    out: Path = args.out
    rows_path, settings_path = out / "rows.jsonl", out / "settings.json"
    if args.report and (args.fresh or not rows_path.exists()):
        parser.error(f"--report: {'--fresh would discard the rows to report' if args.fresh else f'no rows in {out} yet'}")

    import torch

    from dgp_toolkit.restoration import json_safe

    torch.set_num_threads(1)
    settings = Settings(prior=args.prior, weights=args.weights, iterations_scale=args.iterations_scale,
                        select_num=args.select_num or None, seed=args.seed, precision=args.precision,
                        batch=args.batch, preset=None if args.preset is None else str(Path(args.preset).resolve()))
    ctx = Context(settings, args.device)
    high = ctx.preset.learnable.get(KEY, {}).get("high")  # a preset's wider range needs a wider kernel
    settings = dataclasses.replace(settings, preset_digest=preset_digest(ctx.preset),
                                   kernel=kernel_size(sigmas, methods, high))
    ctx.settings = settings
    _blind_spec(ctx)  # a preset whose [learnable.blur.sigma] cannot work fails now, before any image
    _probe_kernel(settings.kernel, ctx.prior.resolution)
    wanted = dataclasses.asdict(settings)
    out.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        rows_path.unlink(missing_ok=True)
    if settings_path.exists() and rows_path.exists() and json.loads(settings_path.read_text()) != wanted:
        raise SystemExit(f"{out} holds rows made with other settings ({settings_path}); "
                         "use another --out or pass --fresh to discard them")
    if not args.report:
        settings_path.write_text(json.dumps(wanted, indent=2) + "\n")

    from quality import dev_subset

    images, indices, labels = dev_subset(args.n)
    rows = read_rows(rows_path)
    jobs = [] if args.report else plan_jobs(images, indices, labels, sigmas, methods, {row_key(r) for r in rows},
                                            args.seed)
    if args.limit is not None:
        jobs = jobs[:args.limit]
    t0 = time.perf_counter()
    try:
        run_jobs(jobs, settings, rows_path, workers=args.workers, device=args.device)
    except KeyboardInterrupt:
        print(f"interrupted; finished rows are kept in {rows_path}: run the same command again to continue",
              file=sys.stderr)
        return 130
    keep = set(indices)
    rows = [r for r in read_rows(rows_path) if r["dev_index"] in keep and float(r["sigma"]) in sigmas
            and r["method"] in methods]
    summary = summarize(rows, sigmas, methods)
    command = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--report"]
    meta = {"command": "python benchmarks/blind_deblur.py " + " ".join(command),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
            "wall_s": None if args.report else time.perf_counter() - t0, "settings": wanted,
            "rows_done": len(rows), "rows_wanted": len(indices) * len(sigmas) * len(methods),
            "torch": torch.__version__}
    (out / "blind_deblur.json").write_text(json.dumps(json_safe({**meta, "summary": summary, "rows": rows}), indent=2)
                                           + "\n")
    table = markdown(summary, meta)
    (out / "blind_deblur.md").write_text(table)
    print(table)
    print(f"wrote {out / 'blind_deblur.md'}, {out / 'blind_deblur.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
