"""``dgp-tool restore``: restore images with a deep generative prior, a batch of generator
copies at a time, in one process, in ``--workers N`` local processes or in the ranks that
``torchrun`` starts on one machine or several.

Everything that can be checked before any work is (exit 2): the output folder, the
metrics file and the --save-state files (that their folders can be created; nothing is
created yet), inputs whose outputs would have the same names, the degradations, the
prior, the class, the preset, the device, and with --resume that the folder's finished
inputs were made by the same command. The work itself is :mod:`dgp_toolkit.batch`
(discovery, naming, resuming, sharding, batches, atomic writes) and
:mod:`dgp_toolkit.distributed` (ranks); this module is the command line around them:
options, help, the progress display and the JSON list. A bad input is reported (one line
on stderr, its ``error`` in the JSON list) and skipped; the others go on. SIGTERM stops
the command as Ctrl-C does (exit 143 instead of 130).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from dgp_toolkit.cli.output import FOLDER, POSITIVE, SEED
from dgp_toolkit.cli.signals import INTERRUPT_SIGNALS, interrupt_for
from dgp_toolkit.hookspecs import hookimpl

FIT_CHOICES = ("auto", "crop", "pad", "resize")  # auto + dgp_toolkit.images.FIT_MODES, without importing numpy

EPILOG = """\b
Outputs per input NAME (in --output):
  NAME_restored.png       the restoration (prior-sized)
  NAME_observed.png       the observation it was fitted to
  NAME_run.json           the full resolved configuration, versions, notes, metrics, losses;
                          written last: an input with it is complete (--resume)
  NAME_sheet.png          with --sheet: input, observation, one image per stage, result
  NAME_restored_full.png  with gray or mask, for inputs larger than the prior (after
                          --fit): the full-resolution colorization, or the input with
                          the filled hole pasted back

\b
stdout (and --metrics FILE): a JSON list, one object per input, in input order:
  {"input", "output", "degradations", "preset", "class", "seconds",
   "observation": {"psnr", "ssim"} or null, "result": {"psnr", "ssim"} or null,
   "error": null or a message}
  Scores only with --simulate; an infinite PSNR (identical images) is written null.
  The same files and keys whatever --batch, --workers or the number of ranks.

\b
Many processes, GPUs or machines (torchrun; run the same line on every machine, HOST
being one of them, with the inputs and --output on a folder they all share):
  torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
      --rdzv-id photos -m dgp_toolkit restore photos/ -o restored/ --resume -d gray
  Each rank takes every WORLD_SIZE-th input still to do, on cuda:LOCAL_RANK (or the CPU,
  with cores / local ranks threads); rank 0 shows the one progress bar and writes the one
  JSON list. A rank that is killed stops the group: run the same command again (--resume
  finishes the rest). With torchrun --max-restarts N the group restarts and resumes by
  itself; the last attempt writes the JSON list.

\b
Exit codes: 0 all restored; 2 a usage error (nothing done, nothing written); 3 some
inputs failed (one input alone: 2 for a bad input, 1 for a runtime failure); 1 a worker
died (--workers; the finished inputs stay: rerun with --resume); 130 interrupted
(Ctrl-C); 143 stopped by SIGTERM (handled as Ctrl-C: the inputs in flight are reported
"interrupted" and nothing of theirs is left). Under torchrun rank 0 exits with these
codes, the other ranks with 0 once their share is done, and torchrun with 1 when any
rank does not exit 0.

\b
Examples:
  dgp-tool restore photo.png --degrade gray
  dgp-tool restore small.png --degrade downsample:factor=4 --class cat --sheet
  dgp-tool restore photos/ --degrade blur:sigma=2 --simulate --metrics scores.json
  dgp-tool restore photos/ --degrade gray --workers 2 --resume   # two processes; rerun to finish
"""


def _usage(message: str) -> Exception:
    from dgp_toolkit.errors import DGPUsageError

    return DGPUsageError(message)


def _command_args(opts: dict[str, Any], specs: list[str], preset_name: str) -> tuple[str, ...]:
    """The options of the command that restores one input this way (after its path):
    written into each NAME_run.json, and what --resume compares."""
    args: list[str] = []
    for spec in specs:
        args += ["--degrade", spec]
    args += ["--prior", opts["prior"]]
    if opts["weights"] is not None:
        args += ["--weights", str(opts["weights"])]
    if opts["class_"] is not None:
        args += ["--class", str(opts["class_"])]
    args += ["--preset", str(opts["preset"] or preset_name), "--seed", str(opts["seed"]),
             "--device", opts["device"], "--fit", opts["fit"]]
    if opts["simulate"]:
        args.append("--simulate")
    for spec in opts.get("simulate_with") or ():
        args += ["--simulate-with", spec]
    if opts["iterations_scale"] != 1.0:
        args += ["--iterations-scale", repr(opts["iterations_scale"])]
    if opts.get("runs") is not None:
        args += ["--runs", str(opts["runs"])]
    args += ["--precision", opts["precision"]]
    return tuple(args)


def _same_command(ctx: click.Context, drop: tuple[str, ...] = ("workers",)) -> list[str]:
    """This command's arguments, rebuilt from its parsed parameters (without ``drop``):
    what the local ranks of --workers run."""
    args = ["--debug"] if ctx.find_root().params.get("debug") else []
    args.append(ctx.info_name or "restore")
    positional: list[str] = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name in drop or value is None:
            continue
        if isinstance(param, click.Argument):
            positional += [str(v) for v in value]
            continue
        opt = max(param.opts, key=len)
        if getattr(param, "is_flag", False):
            args += [opt] if value else []
        elif getattr(param, "multiple", False):
            for item in value:
                args += [opt, str(item)]
        elif value != param.default:
            args += [opt, str(value)]
    return args + ["--", *positional]


# ----------------------------------------------------------------------------- progress on stderr
class _LiveBars:
    """Rich progress rows on stderr, shown on terminals only (logs get the summary lines)."""

    progress: Any = None

    @staticmethod
    def make(console: Any) -> Any:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(),
                        TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=True)

    def __enter__(self) -> "_LiveBars":
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()


def _stage_text(stage: int, n_stages: int) -> str:
    return f"stage {stage + 1}/{n_stages}"


class _ProgressDisplay(_LiveBars):
    """One image's bar: stage, step, loss, elapsed, ETA (the editing commands' display)."""

    def __init__(self, name: str, enabled: bool) -> None:
        from dgp_toolkit.cli.output import stderr_console

        self.name = name
        console = stderr_console()
        if enabled and console.is_terminal:
            self.progress = self.make(console)
            self.task = self.progress.add_task(f"{name}: selecting a latent", total=None, loss="-")

    def __call__(self, event: Any) -> None:
        if self.progress is None:
            return
        self.progress.update(self.task, completed=event.step, total=event.total_steps,
                             description=f"{self.name}: {_stage_text(event.stage, event.n_stages)}",
                             loss=f"{event.loss:.4g}")


class _FolderDisplay(_LiveBars):
    """Two rows: the inputs done (on every rank) out of those to do, and this process's
    current batch (stage, step, mean loss of the images still running)."""

    def __init__(self, total: int, where: str, enabled: bool) -> None:
        from dgp_toolkit.cli.output import stderr_console

        self.console = stderr_console()
        self.step = 0
        if enabled and total and self.console.is_terminal:
            self.progress = self.make(self.console)
            self.overall = self.progress.add_task(f"{total} inputs{where}", total=total, loss="-")
            self.batch = self.progress.add_task("batch: selecting latents", total=None, loss="-")

    def event(self, event: Any) -> None:
        if self.progress is None:
            return
        if event.step < self.step:  # the next batch: its own elapsed time and ETA
            self.progress.reset(self.batch)
        self.step = event.step
        self.progress.update(self.batch, completed=event.step, total=event.total_steps, loss=f"{event.loss:.4g}",
                             description=f"batch of {event.batch} ({event.running} running): "
                                         f"{_stage_text(event.stage, event.n_stages)}")

    def count(self, done: int) -> None:
        if self.progress is not None:
            self.progress.update(self.overall, completed=done)

    def lines(self, lines: list[tuple[str, str | None]]) -> None:
        _print_lines(self.console, lines)


def _print_lines(console: Any, lines: list[tuple[str, str | None]]) -> None:
    for text, style in lines:
        if style == "error":
            click.echo(text, err=True)
        elif style == "traceback":
            click.echo(text, err=True, nl=False)
        else:
            console.print(text, markup=False, style=style)


def _emit(records: list[dict[str, Any]], metrics_path: Path | None) -> None:
    text = json.dumps(records, indent=2, allow_nan=False)
    click.echo(text)
    if metrics_path is not None:
        from dgp_toolkit.images import write_atomic

        data = text.encode("utf-8") + b"\n"
        write_atomic(metrics_path, lambda handle: handle.write(data), overwrite=True)


# ----------------------------------------------------------------------------- the command
@click.command("restore", epilog=EPILOG)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="INPUT...")
@click.option("--degrade", "-d", "degrade", multiple=True, metavar="SPEC",
              help="A degradation NAME[:key=value,...], repeatable, in the order they hit the image "
                   "(see `dgp-tool degradations`); none: plain reconstruction.")
@click.option("--prior", default="biggan", show_default=True, metavar="NAME", help="The prior (see `dgp-tool weights list`).")
@click.option("--weights", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="A folder holding an official G_ema_*.pth + D_*.pth pair (or a prior file), used "
                   "without importing it.")
@click.option("--class", "class_", default=None, metavar="INDEX|NAME",
              help="The image's class; default: latent selection picks one.")
@click.option("--preset", default=None, metavar="NAME|FILE",
              help="A preset name (`dgp-tool presets`) or a TOML file; default: chosen from the degradations.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Makes a CPU run bit-for-bit repeatable.")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda|mps",
              help="auto picks CUDA, then MPS, then the CPU (cuda:N also works; under torchrun, auto and "
                   "cuda are cuda:LOCAL_RANK).")
@click.option("-o", "--output", "out_dir", type=FOLDER, default=Path("restored"),
              show_default=True, metavar="DIR", help="Folder for the outputs (created if missing).")
@click.option("--fit", type=click.Choice(FIT_CHOICES), default="auto", show_default=True,
              help="How an image of another size is brought to the prior's: centre crop, pad or resize; auto: "
                   "resize (the whole photo) for gray and mask, whose results come back at the input's size, "
                   "else crop.")
@click.option("--simulate", is_flag=True,
              help="The input is clean: degrade it first, then score the observation and the result against it.")
@click.option("--simulate-with", "simulate_with", multiple=True, metavar="SPEC",
              help="Degrade the clean input with SPEC (repeatable, in order) instead of --degrade; implies "
                   "--simulate. For a fit that starts blind: --degrade blur:sigma=auto --simulate-with "
                   "blur:sigma=2.")
@click.option("--metrics", "metrics_path", type=click.Path(path_type=Path), default=None, metavar="FILE.json",
              help="Also write the JSON list to this file (its folder created if missing; not on exit 2; "
                   "replaced by --resume).")
@click.option("--sheet", is_flag=True, help="Also write NAME_sheet.png: input, observation, stages, result.")
@click.option("--iterations-scale", type=POSITIVE, default=1.0, show_default=True,
              metavar="F", help="Multiply every stage's iterations (0.1 for a quick look).")
@click.option("--runs", type=click.IntRange(1), default=None, metavar="N",
              help="Average N restorations, each from its own latent selection (seeds SEED, SEED+1, ...): "
                   "higher PSNR where the prior is unsure, N times the time [default: the preset's runs].")
@click.option("--precision", type=click.Choice(["auto", "float32", "bf16"]), default="auto", show_default=True,
              help="bf16: G and D under bf16 autocast (faster where the hardware computes bf16: AMX "
                   "CPUs, recent GPUs); auto: bf16 only there, float32 elsewhere.")
@click.option("--save-state", "save_state", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="Also save each reconstruction (z, class, tuned generator) for "
              "`jitter/transfer --from-state`; with several inputs FILE must contain {name} "
              "(folders created if missing).")
@click.option("--batch", type=click.IntRange(1), default=None, metavar="N",
              help="Optimize N generator copies together (images x runs: memory and compute grow with N); "
                   "the results do not depend on N beyond float rounding [default: on a CPU 4 for priors up "
                   "to 64 px (2x the images per hour of batch 1 at 32 px), 1 above (a 128-px image fills "
                   "the CPU); 16 on CUDA, a guess until measured on a GPU].")
@click.option("--resume", is_flag=True,
              help="Skip each input that is complete (its NAME_run.json, written last, was made by this same "
                   "command and every output it lists exists) and still report it, its record read back "
                   "from NAME_run.json; the outputs an unfinished input left are replaced. For a rerun after "
                   "a stop, and for torchrun.")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True, metavar="N",
              help="Restore with N processes on this machine: N local ranks, started as `torchrun "
                   "--standalone --nproc-per-node N` would, each with its share of the inputs and 1/N of "
                   "the cores (or its own GPU). A worker that dies stops the others: --resume finishes.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or summaries on stderr (errors still).")
@click.pass_context
def restore_command(ctx: click.Context, inputs: tuple[Path, ...], degrade: tuple[str, ...], prior: str,
                    weights: Path | None, class_: str | None, preset: str | None, seed: int, device: str,
                    out_dir: Path, fit: str, simulate: bool, simulate_with: tuple[str, ...],
                    metrics_path: Path | None, sheet: bool,
                    iterations_scale: float, runs: int | None, precision: str, save_state: Path | None,
                    batch: int | None, resume: bool, workers: int, overwrite: bool, quiet: bool) -> None:
    """Restore INPUT images (files or folders) with a deep generative prior.

    The degradations say what happened to the images (--degrade gray: they lost their
    colours; --degrade mask: a hole; --degrade downsample:factor=4: they are small;
    --degrade blur, --degrade noise); DGP finds the clean image that, degraded the same
    way, matches. With --simulate the inputs are clean images: they are degraded first
    and the results are scored against them (PSNR, SSIM).

    A folder's images are restored --batch N generator copies at a time, sharing their
    latent candidates; --workers N or torchrun (see below) spread them over processes
    and machines, and --resume finishes a run that was stopped.
    """
    from dgp_toolkit import batch as folder
    from dgp_toolkit.distributed import Ranks, launch_local_ranks, run_plan
    from dgp_toolkit.engine import RunOptions
    from dgp_toolkit.paths import check_output_folder
    from dgp_toolkit.restoration import prepare_restore

    ranks = Ranks.from_environ()
    if ranks is not None and workers > 1:
        raise _usage("--workers: under torchrun every rank is a worker already; drop --workers "
                     "(or start more ranks with --nproc-per-node)")
    resume = resume or (ranks is not None and ranks.restart > 0)  # an elastic restart resumes, not redoes

    # ---- everything a user can get wrong, before any work (exit 2); nothing is created yet
    check_output_folder(out_dir, "--output")
    entries = folder.expand_inputs(inputs, out_dir)
    clash = folder.name_clash(entries)
    if clash:
        raise _usage(clash)
    protect = tuple(e.path for e in entries)
    if metrics_path is not None:
        _check_metrics_path(metrics_path, out_dir, overwrite or resume, protect)
    if save_state is not None:
        _check_save_state(save_state, entries, out_dir, protect)
    simulate = simulate or bool(simulate_with)
    setup = prepare_restore(list(degrade), prior, preset=preset, label=class_, weights=weights,
                            device=device if ranks is None else ranks.device(device),
                            simulate_with=list(simulate_with) or None)
    if simulate:
        from dgp_toolkit.restoration import simulation_of

        simulation_of(setup)  # blur:sigma=auto with --simulate and no --simulate-with: exit 2 now
    opts = dict(prior=prior, weights=weights, class_=class_, preset=preset, seed=seed, device=device,
                fit=fit, simulate=simulate, simulate_with=list(simulate_with), iterations_scale=iterations_scale,
                runs=runs, precision=precision)
    job = folder.FolderJob(
        out_dir=out_dir, options=RunOptions(seed=seed, precision=precision, iterations_scale=iterations_scale,
                                            runs=runs),
        command=_command_args(opts, setup.specs, folder.preset_name(setup)),
        fit=fit, simulate=simulate, batch=batch or folder.default_batch(setup.prior.device, setup.prior.resolution),
        sheet=sheet,
        overwrite=overwrite, resume=resume, save_state=save_state, protect=protect, quiet=quiet,
        debug=bool(ctx.find_root().params.get("debug")))
    plan = folder.make_plan(entries, job)

    if ranks is None and workers > 1 and len(plan.todo) > 1:
        code = launch_local_ranks(min(workers, len(plan.todo)), _same_command(ctx))
        ctx.exit(code)
    lead = ranks is None or ranks.rank == 0
    where = "" if ranks is None else f" on {ranks.world} ranks"
    display = _FolderDisplay(len(plan.todo), where, enabled=lead and not quiet)
    if plan.done and lead and not quiet:
        display.lines([(f"--resume: {len(plan.done)} of {len(entries)} inputs are complete, skipped", None)])
    with display:
        outcome = run_plan(setup, job, plan, ranks=ranks, lines=display.lines, progress=display.event,
                           count=display.count, stopped=lambda records, _: _emit(records, metrics_path),
                           hold=_CommitHold())
    if outcome is None:  # a rank other than 0: rank 0 reports
        return
    records, codes = outcome
    code = folder.exit_code(codes)
    if ranks is not None and code and not ranks.last_attempt:
        display.lines([(f"{sum(1 for c in codes if c)} inputs failed; torchrun restarts the group, which tries "
                        "them again", "yellow")])
    else:
        _emit(records, None if code == 2 else metrics_path)  # exit 2: nothing done, nothing written
    if code:
        ctx.exit(code)


def _check_metrics_path(path: Path, out_dir: Path, overwrite: bool, protect: tuple[Path, ...]) -> None:
    from dgp_toolkit.paths import check_output_file

    check_output_file(path, "--metrics", overwrite=overwrite, protect=protect)
    _check_not_an_output(path, out_dir, "--metrics")


def _check_not_an_output(path: Path, out_dir: Path, option: str) -> None:
    from dgp_toolkit.batch import is_own_output

    if path.parent.resolve() == out_dir.resolve() and is_own_output(path):
        raise _usage(f"{option} {path}: an input's outputs may take this name; give another file name")


def _check_save_state(template: Path, entries: list[Any], out_dir: Path, protect: tuple[Path, ...]) -> None:
    """--save-state: {name} with several inputs, and each input's file can be written (whether
    it exists already is that input's error, as for its other outputs)."""
    from dgp_toolkit.paths import check_output_file

    if len(entries) > 1 and "{name}" not in str(template):
        raise _usage(f"--save-state {template}: with several inputs, put {{name}} in the file name "
                     "(e.g. --save-state states/{name}.safetensors)")
    for entry in entries:
        if not entry.error:
            path = Path(str(template).replace("{name}", entry.name))
            check_output_file(path, "--save-state", overwrite=True, protect=protect)
            _check_not_an_output(path, out_dir, "--save-state")


class _CommitHold:
    """Holds Ctrl-C (and SIGTERM) back while an input's outputs are written and until it is
    reported done.

    Once an input is restored, writing its files takes milliseconds; a Ctrl-C that lands
    between the last write and the record saying "done" would otherwise leave whole files
    behind an input reported ``interrupted`` (or, in the parent, no JSON at all). ``take()``
    (before the writes) makes SIGINT and SIGTERM only be noted; ``release()`` (once the
    caller has recorded the input) puts the previous handlers back and, if a signal came
    meanwhile, hands the first one on now. Several signals in between count as one (a
    terminal's Ctrl-C and the parent's forwarded one both reach a worker). Outside the
    main thread it does nothing.
    """

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}
        self.pending: int | None = None

    def take(self) -> None:
        import signal
        import threading

        if self.previous or threading.current_thread() is not threading.main_thread():
            return
        for signum in INTERRUPT_SIGNALS:
            self.previous[signum] = signal.signal(signum, self._note)

    def _note(self, signum: int, frame: Any) -> None:
        if self.pending is None:
            self.pending = signum

    def release(self) -> None:
        import signal

        previous, self.previous = self.previous, {}
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signum, self.pending = self.pending, None
        if signum is None:
            return
        handler = previous[signum]
        if callable(handler):
            handler(signum, None)
        elif handler != signal.SIG_IGN:
            raise interrupt_for(signum)


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(restore_command)
