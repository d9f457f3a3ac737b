"""``dgp-tool restore``: restore images with a deep generative prior, one after the other
(or ``--workers N`` at a time, in N processes).

Everything that can be checked before any work is (exit 2): the output folder, the
metrics file and the --save-state files (that their folders can be created; nothing is
created yet), inputs whose outputs would have the same names, the degradations, the
prior, the class, the preset, the device. Then each input in turn: read, check that
none of its outputs exists (unless ``--overwrite``), restore, write its outputs
atomically (creating the folders). A bad input is reported (one line on stderr, its
``error`` in the JSON list) and skipped; the others go on. SIGTERM stops the command
as Ctrl-C does (exit 143 instead of 130).
"""

from __future__ import annotations

import json
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from dgp_toolkit.cli.output import FOLDER, POSITIVE, SEED
from dgp_toolkit.cli.signals import INTERRUPT_SIGNALS, Terminated, interrupt_for
from dgp_toolkit.hookspecs import hookimpl
from dgp_toolkit.paths import check_output_file, check_output_folder

#: Suffixes of the images a folder input expands to.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
#: What this command writes per input NAME (file name suffixes).
OUTPUT_SUFFIXES = {"restored": "_restored.png", "observed": "_observed.png", "run": "_run.json",
                   "sheet": "_sheet.png", "full_resolution": "_restored_full.png"}
FIT_CHOICES = ("auto", "crop", "pad", "resize")  # auto + dgp_toolkit.images.FIT_MODES, without importing numpy

EPILOG = """\b
Outputs per input NAME (in --output):
  NAME_restored.png       the restoration (prior-sized)
  NAME_observed.png       the observation it was fitted to
  NAME_run.json           the full resolved configuration, versions, notes, metrics, losses
  NAME_sheet.png          with --sheet: input, observation, one image per stage, result
  NAME_restored_full.png  with gray or mask, for inputs larger than the prior (after
                          --fit): the full-resolution colorization, or the input with
                          the filled hole pasted back

\b
stdout (and --metrics FILE): a JSON list, one object per input:
  {"input", "output", "degradations", "preset", "class", "seconds",
   "observation": {"psnr", "ssim"} or null, "result": {"psnr", "ssim"} or null,
   "error": null or a message}
  Scores only with --simulate; an infinite PSNR (identical images) is written null.

\b
Exit codes: 0 all restored; 2 a usage error (nothing done, nothing written); 3 some
inputs failed (one input alone: 2 for a bad input, 1 for a runtime failure); 130
interrupted (Ctrl-C); 143 stopped by SIGTERM (handled as Ctrl-C).

\b
Examples:
  dgp-tool restore photo.png --degrade gray
  dgp-tool restore small.png --degrade downsample:factor=4 --class cat --sheet
  dgp-tool restore photos/ --degrade blur:sigma=2 --simulate --metrics scores.json
  dgp-tool restore photos/ --degrade gray --workers 2   # two images at a time
"""


@dataclass
class _Entry:
    """One input as given (or found in a folder), with an error found before reading it."""

    path: Path
    error: str | None = None


def _usage(message: str) -> Exception:
    from dgp_toolkit.errors import DGPUsageError

    return DGPUsageError(message)


def _is_our_output(path: Path) -> bool:
    return any(path.name.endswith(suffix) for suffix in OUTPUT_SUFFIXES.values())


def _is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _holds_images(folder: Path) -> bool:
    try:
        return any(_is_image_file(p) for p in folder.iterdir())
    except OSError:  # unreadable: not worth a hint
        return False


def expand_inputs(inputs: tuple[Path, ...], out_dir: Path) -> list[_Entry]:
    """Files as given, folders as their images (sorted, not recursive), each once.

    In the output folder itself, this command's own outputs are skipped.
    """
    entries: list[_Entry] = []
    seen: set[Path] = set()
    out_resolved = out_dir.resolve()

    def add(entry: _Entry) -> None:
        key = entry.path.resolve()
        if key not in seen:
            seen.add(key)
            entries.append(entry)

    for arg in inputs:
        if arg.is_dir():
            own = arg.resolve() == out_resolved
            found = sorted(p for p in arg.iterdir() if _is_image_file(p) and not (own and _is_our_output(p)))
            if not found:
                nested = sorted(d.name for d in arg.iterdir() if d.is_dir() and not d.name.startswith(".")
                                and _holds_images(d))
                hint = ""
                if nested:
                    shown = ", ".join(nested[:3]) + (", ..." if len(nested) > 3 else "")
                    hint = (f"; folders are not searched recursively, and {len(nested)} subfolder(s) hold images "
                            f"({shown}): pass them instead")
                entries.append(_Entry(arg, f"{arg}: no images in this folder ({', '.join(IMAGE_SUFFIXES)}){hint}"))
            for path in found:
                add(_Entry(path))
        else:
            add(_Entry(arg))
    return entries


def _planned_outputs(out_dir: Path, name: str, *, sheet: bool, full: bool) -> dict[str, Path]:
    keys = ["restored", "observed"] + (["sheet"] if sheet else []) + (["full_resolution"] if full else []) + ["run"]
    return {key: out_dir / f"{name}{OUTPUT_SUFFIXES[key]}" for key in keys}


def _check_free(outputs: dict[str, Path], overwrite: bool, inputs: list[Path]) -> None:
    for path in outputs.values():
        for source in inputs:
            if path.resolve() == source.resolve():
                raise _usage(f"{path}: refusing to overwrite an input image; choose another --output")
    if overwrite:
        return
    existing = [str(p) for p in outputs.values() if p.exists()]
    if existing:
        more = f" (and {len(existing) - 1} more of its outputs)" if len(existing) > 1 else ""
        raise _usage(f"{existing[0]} already exists{more}; pass --overwrite to replace it")


def _error_line(entry_path: Path, message: str) -> str:
    message = " ".join(str(message).split())
    label = str(entry_path)
    return message if message.startswith(label) else f"{label}: {message}"


def _scores(metrics: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    from dgp_toolkit.restoration import json_safe

    if not metrics:
        return None
    return json_safe({"psnr": metrics[key]["psnr"], "ssim": metrics[key]["ssim"]})


def _command_line(path: Path, specs: list[str], opts: dict[str, Any], preset_name: str) -> str:
    args = ["dgp-tool", "restore", str(path)]
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
    if opts["iterations_scale"] != 1.0:
        args += ["--iterations-scale", repr(opts["iterations_scale"])]
    if opts.get("runs") is not None:
        args += ["--runs", str(opts["runs"])]
    args += ["--precision", opts["precision"]]
    return shlex.join(args)


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


def _stage_text(stage: int, n_stages: int, run: int = 0, n_runs: int = 1) -> str:
    text = f"stage {stage + 1}/{n_stages}"
    return f"run {run + 1}/{n_runs}, {text}" if n_runs > 1 else text


class _ProgressDisplay(_LiveBars):
    """One image's bar: stage, step, loss, elapsed, ETA."""

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


def _write_outputs(result: Any, outputs: dict[str, Path], run: dict[str, Any], *, overwrite: bool,
                   protect: list[Path]) -> None:
    """Write every output atomically; on Ctrl-C or failure remove the ones this call wrote."""
    from dgp_toolkit.images import write_atomic, write_image

    images = {"restored": result.image, "observed": result.observation,
              "full_resolution": result.full_resolution}
    written: list[Path] = []
    try:
        for key, path in outputs.items():
            if key == "run":
                data = json.dumps(run, indent=2, allow_nan=False).encode("utf-8") + b"\n"
                write_atomic(path, lambda handle: handle.write(data), overwrite=overwrite, protect=protect)
            else:
                image = result.sheet() if key == "sheet" else images[key]
                write_image(image, path, overwrite=overwrite, protect=protect)
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def _summary(name: str, result: Any, record: dict[str, Any], prior: Any) -> str:
    names = getattr(prior, "class_names", ())
    cls = result.class_index
    label = f"{cls} ({names[cls]})" if 0 <= cls < len(names) else str(cls)
    how = {"done": "restored", "early_stop": "restored (early stop)",
           "non_finite": "stopped early (non-finite loss)"}.get(result.stopped, result.stopped)
    text = f"{name}: {how} in {record['seconds']:.1f} s, class {label}, preset {record['preset']} -> {record['output']}"
    if record["observation"] and record["result"]:
        def fmt(value: Any) -> str:
            return "inf" if value is None else f"{value:.2f}"
        obs, res = record["observation"], record["result"]
        text += (f"; PSNR {fmt(obs['psnr'])} -> {fmt(res['psnr'])} dB, "
                 f"SSIM {obs['ssim']:.3f} -> {res['ssim']:.3f}")
    return text


def _emit(records: list[dict[str, Any]], metrics_path: Path | None, overwrite: bool) -> None:
    text = json.dumps(records, indent=2, allow_nan=False)
    click.echo(text)
    if metrics_path is not None:
        from dgp_toolkit.images import write_atomic

        data = text.encode("utf-8") + b"\n"
        write_atomic(metrics_path, lambda handle: handle.write(data), overwrite=True)


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
              help="auto picks CUDA, then MPS, then the CPU (cuda:N also works).")
@click.option("-o", "--output", "out_dir", type=FOLDER, default=Path("restored"),
              show_default=True, metavar="DIR", help="Folder for the outputs (created if missing).")
@click.option("--fit", type=click.Choice(FIT_CHOICES), default="auto", show_default=True,
              help="How an image of another size is brought to the prior's: centre crop, pad or resize; auto: "
                   "resize (the whole photo) for gray and mask, whose results come back at the input's size, "
                   "else crop.")
@click.option("--simulate", is_flag=True,
              help="The input is clean: degrade it first, then score the observation and the result against it.")
@click.option("--metrics", "metrics_path", type=click.Path(path_type=Path), default=None, metavar="FILE.json",
              help="Also write the JSON list to this file (its folder created if missing; not on exit 2).")
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
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True, metavar="N",
              help="Restore N inputs at a time in N processes, each with 1/N of the torch threads "
                   "(more images per hour on a CPU; each process holds its own prior).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or summaries on stderr (errors still).")
@click.pass_context
def restore_command(ctx: click.Context, inputs: tuple[Path, ...], degrade: tuple[str, ...], prior: str,
                    weights: Path | None, class_: str | None, preset: str | None, seed: int, device: str,
                    out_dir: Path, fit: str, simulate: bool, metrics_path: Path | None, sheet: bool,
                    iterations_scale: float, runs: int | None, precision: str, save_state: Path | None,
                    workers: int, overwrite: bool, quiet: bool) -> None:
    """Restore INPUT images (files or folders) with a deep generative prior.

    The degradations say what happened to the images (--degrade gray: they lost their
    colours; --degrade mask: a hole; --degrade downsample:factor=4: they are small;
    --degrade blur, --degrade noise); DGP finds the clean image that, degraded the same
    way, matches. With --simulate the inputs are clean images: they are degraded first
    and the results are scored against them (PSNR, SSIM).
    """
    opts = dict(prior=prior, weights=weights, class_=class_, preset=preset, seed=seed, device=device,
                fit=fit, simulate=simulate, iterations_scale=iterations_scale, runs=runs, precision=precision)
    from dgp_toolkit.cli.output import stderr_console
    from dgp_toolkit.restoration import prepare_restore

    console = stderr_console()
    debug = bool(ctx.find_root().params.get("debug"))

    # ---- everything a user can get wrong, before any work (exit 2); nothing is created yet
    check_output_folder(out_dir, "--output")
    entries = expand_inputs(inputs, out_dir)
    _check_name_clashes(entries)
    protect = [e.path for e in entries]
    if metrics_path is not None:
        _check_metrics_path(metrics_path, out_dir, overwrite, protect)
    if save_state is not None:
        _check_save_state(save_state, entries, out_dir, protect)
    setup = prepare_restore(list(degrade), prior, preset=preset, label=class_, device=device, weights=weights)
    preset_name = getattr(setup.preset, "name", str(preset))

    job = _Job(degrade=list(degrade), opts=opts, out_dir=out_dir, sheet=sheet, overwrite=overwrite,
               quiet=quiet, save_state=save_state, protect=protect, preset_name=preset_name, debug=debug)
    if workers > 1 and sum(1 for e in entries if not e.error) > 1:
        records, codes = _run_parallel(job, setup, entries, workers, metrics_path)
    else:
        records, codes = [], []
        hold = _CommitHold()
        for entry in entries:
            record = _new_record(entry, setup, preset_name)
            try:
                try:
                    with _ProgressDisplay(entry.path.stem, enabled=not quiet) as display:
                        code, lines = _restore_entry(setup, job, entry, record, display, hold)
                finally:
                    records.append(record)
                codes.append(code)
                _print_lines(console, lines)
                hold.release()  # a Ctrl-C during the writes stops the batch here, this input done
            except KeyboardInterrupt:
                _emit(records, metrics_path, overwrite)
                raise

    failed = [c for c in codes if c]
    code = (failed[0] if len(codes) == 1 else 3) if failed else 0
    _emit(records, None if code == 2 else metrics_path, overwrite)  # exit 2: nothing done, nothing written
    if code:
        ctx.exit(code)


# ----------------------------------------------------------------------------- one input
@dataclass
class _Job:
    """What every input of one ``restore`` call shares (picklable: a worker rebuilds the set-up)."""

    degrade: list[str]
    opts: dict[str, Any]
    out_dir: Path
    sheet: bool
    overwrite: bool
    quiet: bool
    save_state: Path | None
    protect: list[Path]
    preset_name: str
    debug: bool

    def setup(self) -> Any:
        from dgp_toolkit.restoration import prepare_restore

        o = self.opts
        return prepare_restore(list(self.degrade), o["prior"], preset=o["preset"], label=o["class_"],
                               device=o["device"], weights=o["weights"])


def _check_name_clashes(entries: list[_Entry]) -> None:
    """Two inputs whose outputs would have the same names (x/a.png, y/a.png): exit 2, naming both."""
    names: dict[str, Path] = {}
    for entry in entries:
        if entry.error:
            continue
        name = entry.path.stem
        if name in names:
            raise _usage(f"{names[name]} and {entry.path} would both write {name}_restored.png (and the rest "
                         "of their outputs) into the same --output; restore them separately, each with its "
                         "own --output")
        names[name] = entry.path


def _check_metrics_path(path: Path, out_dir: Path, overwrite: bool, protect: list[Path]) -> None:
    check_output_file(path, "--metrics", overwrite=overwrite, protect=protect)
    _check_not_an_output(path, out_dir, "--metrics")


def _check_not_an_output(path: Path, out_dir: Path, option: str) -> None:
    if path.parent.resolve() == out_dir.resolve() and _is_our_output(path):
        raise _usage(f"{option} {path}: an input's outputs may take this name; give another file name")


def _state_path(template: Path, name: str) -> Path:
    return Path(str(template).replace("{name}", name))


def _check_save_state(template: Path, entries: list[_Entry], out_dir: Path, protect: list[Path]) -> None:
    """--save-state: {name} with several inputs, and each input's file can be written (whether
    it exists already is that input's error, as for its other outputs)."""
    if len(entries) > 1 and "{name}" not in str(template):
        raise _usage(f"--save-state {template}: with several inputs, put {{name}} in the file name "
                     "(e.g. --save-state states/{name}.safetensors)")
    for entry in entries:
        if not entry.error:
            path = _state_path(template, entry.path.stem)
            check_output_file(path, "--save-state", overwrite=True, protect=protect)
            _check_not_an_output(path, out_dir, "--save-state")


def _new_record(entry: _Entry, setup: Any, preset_name: str) -> dict[str, Any]:
    return {"input": str(entry.path), "output": None, "degradations": list(setup.specs),
            "preset": preset_name, "class": setup.class_index, "seconds": None,
            "observation": None, "result": None, "error": None}


def _print_lines(console: Any, lines: list[tuple[str, str | None]]) -> None:
    for text, style in lines:
        if style == "error":
            click.echo(text, err=True)
        elif style == "traceback":
            click.echo(text, err=True, nl=False)
        else:
            console.print(text, markup=False, style=style)


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


def _restore_entry(setup: Any, job: _Job, entry: _Entry, record: dict[str, Any], display: Any,
                   hold: _CommitHold) -> tuple[int, list[tuple[str, str | None]]]:
    """Restore one input and write its outputs; fills ``record`` (the JSON object) in place.

    Returns the input's exit code (0, 1 or 2) and the lines for stderr (text, style). On
    Ctrl-C during the restoration, ``record`` says ``interrupted``, nothing of this input is
    left, and the KeyboardInterrupt goes on. From the writes on, ``hold`` keeps Ctrl-C back:
    the caller records the input, then calls ``hold.release()``.
    """
    from dgp_toolkit.errors import DGPError, DGPUsageError
    from dgp_toolkit.restoration import full_resolution_task, json_safe, load_input, restore_input

    o = job.opts
    start = time.perf_counter()
    lines: list[tuple[str, str | None]] = []
    try:
        if entry.error:
            raise DGPUsageError(entry.error)
        name = entry.path.stem
        inp = load_input(entry.path)
        setup.degradation.check_image_size(*inp.size)
        full = full_resolution_task(setup, inp, fit=o["fit"], simulate=o["simulate"]) is not None
        outputs = _planned_outputs(job.out_dir, name, sheet=job.sheet, full=full)
        _check_free(outputs, job.overwrite, job.protect)
        state_path = _state_path(job.save_state, name) if job.save_state is not None else None
        if state_path is not None:
            check_output_file(state_path, "--save-state", overwrite=job.overwrite, protect=job.protect)
        result = restore_input(setup, inp, fit=o["fit"], simulate=o["simulate"], seed=o["seed"],
                               iterations_scale=o["iterations_scale"], progress=display,
                               precision=o["precision"], runs=o.get("runs"))
        record.update(output=str(outputs["restored"]), **{"class": result.class_index},
                      observation=_scores(result.metrics, "observation"),
                      result=_scores(result.metrics, "result"))
        run = {**result.config, "notes": result.notes, "metrics": result.metrics,
               "outputs": {k: str(v) for k, v in outputs.items()},
               "command": _command_line(entry.path, setup.specs, o, job.preset_name),
               "history": result.history}
        hold.take()
        _write_outputs(result, outputs, json_safe(run), overwrite=job.overwrite, protect=job.protect)
        if state_path is not None:
            from dgp_toolkit.state import reconstruction_from_result, save_state as write_state

            write_state(state_path, reconstruction_from_result(setup.prior, result, preset=setup.preset,
                                                               seed=o["seed"], source=str(entry.path)),
                        overwrite=job.overwrite, protect=job.protect)
        record["seconds"] = round(time.perf_counter() - start, 3)
        if not job.quiet:
            lines.append((_summary(name, result, record, setup.prior), None))
            lines += [(f"  {note}", "dim") for note in result.notes]
            if result.stopped == "non_finite":
                lines.append((f"  warning: {result.message}", "yellow"))
        return 0, lines
    except KeyboardInterrupt:
        record.update(error="interrupted", seconds=round(time.perf_counter() - start, 3), output=None)
        raise
    except Exception as exc:  # one bad input must not stop the batch
        if isinstance(exc, DGPError):
            message, code = str(exc), 2 if isinstance(exc, DGPUsageError) else 1
        else:
            if job.debug:
                import traceback

                lines.append(("".join(traceback.format_exception(exc)), "traceback"))
            message, code = f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())}", 1
            if not job.debug:
                message += " (run `dgp-tool --debug restore ...` for the traceback)"
        record.update(error=_error_line(entry.path, message), output=None,
                      seconds=round(time.perf_counter() - start, 3))
        lines.append((f"Error: {record['error']}", "error"))
        return code, lines


# ----------------------------------------------------------------------------- --workers N
def _worker_main(wid: int, job: _Job, threads: int, tasks: Any, results: Any) -> None:
    """One worker process: rebuild the set-up, then restore the inputs it is handed.

    Messages to the parent: ``("start", wid, index, name)``,
    ``("progress", wid, index, stage, n_stages, step, total, loss, run, n_runs)``, ``("done", wid, index,
    record, code, lines)``, ``("interrupted", wid, index, record, terminated)``, ``("failed", wid,
    message)``, ``("exit", wid)``. SIGINT and SIGTERM interrupt it alike (``terminated``: it was SIGTERM).
    """
    import io
    import signal
    import sys

    import torch

    interrupted = []

    def on_interrupt(signum: int, frame: Any) -> None:
        # Only the first signal interrupts: the terminal's Ctrl-C and the parent's forwarded
        # one both arrive (or a scheduler's SIGTERM to every process and the parent's
        # forwarded one), and a second must not cut short the clean-up of the first.
        if not interrupted:
            interrupted.append(signum)
            raise interrupt_for(signum)

    for signum in INTERRUPT_SIGNALS:
        signal.signal(signum, on_interrupt)
    hold = _CommitHold()
    torch.set_num_threads(threads)
    try:
        real_stderr, sys.stderr = sys.stderr, io.StringIO()  # plugin warnings: the parent showed them
        try:
            setup = job.setup()
        finally:
            sys.stderr = real_stderr
        while True:
            item = tasks.get()
            if item is None:
                break
            index, entry = item
            results.put(("start", wid, index, entry.path.stem))

            def progress(event: Any, index: int = index) -> None:
                results.put(("progress", wid, index, event.stage, event.n_stages, event.step,
                             event.total_steps, event.loss, 0, 1))

            record = _new_record(entry, setup, job.preset_name)
            try:
                code, lines = _restore_entry(setup, job, entry, record,
                                             None if job.quiet else progress, hold)
            except KeyboardInterrupt as exc:
                results.put(("interrupted", wid, index, record, isinstance(exc, Terminated)))
                return
            results.put(("done", wid, index, record, code, lines))
            hold.release()  # a Ctrl-C during the writes takes effect now that the input is reported
    except KeyboardInterrupt:
        pass
    except BaseException as exc:  # the set-up worked in the parent: this is unexpected
        results.put(("failed", wid, f"worker {wid + 1}: unexpected {type(exc).__name__}: "
                                    f"{' '.join(str(exc).split())}"))
    finally:
        results.put(("exit", wid))


class _WorkerDisplay(_LiveBars):
    """One progress row per worker, under a row counting the inputs done."""

    def __init__(self, workers: int, total: int, enabled: bool) -> None:
        from dgp_toolkit.cli.output import stderr_console

        self.console = stderr_console()
        self.rows: dict[int, Any] = {}
        if enabled and self.console.is_terminal:
            self.progress = self.make(self.console)
            self.overall = self.progress.add_task(f"{total} inputs, {workers} workers", total=total, loss="-")
            for wid in range(workers):
                self.rows[wid] = self.progress.add_task(f"worker {wid + 1}: starting", total=None, loss="-")

    def start(self, wid: int, name: str) -> None:
        if self.progress is not None:
            self.progress.reset(self.rows[wid], total=None, description=f"{name}: selecting a latent", loss="-")

    def update(self, wid: int, name: str, stage: int, n_stages: int, step: int, total: int, loss: float,
               run: int = 0, n_runs: int = 1) -> None:
        if self.progress is not None:
            self.progress.update(self.rows[wid], completed=step, total=total, loss=f"{loss:.4g}",
                                 description=f"{name}: {_stage_text(stage, n_stages, run, n_runs)}")

    def finished(self, wid: int) -> None:
        if self.progress is not None:
            self.progress.update(self.rows[wid], description=f"worker {wid + 1}: idle", loss="-")
            self.progress.advance(self.overall)

    def print(self, lines: list[tuple[str, str | None]]) -> None:
        _print_lines(self.console, lines)


def _run_parallel(job: _Job, setup: Any, entries: list[_Entry], workers: int,
                  metrics_path: Path | None) -> tuple[list[dict[str, Any]], list[int]]:
    """Restore the inputs in ``workers`` processes; records and codes in input order.

    Each worker takes the next input when it is free, with ``threads // workers`` torch
    threads. Ctrl-C (in the parent or in a worker) stops every worker: the inputs in flight
    are cleaned up and reported ``interrupted``, finished ones stay whole, and the
    KeyboardInterrupt goes on (exit 130). SIGTERM does the same, and goes on as
    :class:`Terminated` (exit 143).
    """
    import multiprocessing
    import queue as queue_module
    import signal

    import torch

    mp = multiprocessing.get_context("spawn")  # the parent has torch's thread pools: no fork
    todo = list(range(len(entries)))
    workers = min(workers, len(todo))
    threads = max(1, torch.get_num_threads() // workers)
    tasks, results = mp.Queue(), mp.Queue()
    for i in todo:
        tasks.put((i, entries[i]))
    for _ in range(workers):
        tasks.put(None)
    procs = [mp.Process(target=_worker_main, args=(wid, job, threads, tasks, results), daemon=True)
             for wid in range(workers)]
    done: dict[int, tuple[dict[str, Any], int]] = {}
    running: dict[int, tuple[int, str]] = {}  # wid -> (index, name)
    exited: set[int] = set()
    interrupted: dict[int, dict[str, Any]] = {}
    terminated: list[bool] = []  # a worker was stopped by SIGTERM
    failure: str | None = None
    display = _WorkerDisplay(workers, len(todo), enabled=not job.quiet)

    def handle(msg: tuple) -> None:
        nonlocal failure
        kind, wid = msg[0], msg[1]
        if kind == "start":
            running[wid] = (msg[2], msg[3])
            display.start(wid, msg[3])
        elif kind == "progress":
            if wid in running:
                display.update(wid, running[wid][1], *msg[3:])
        elif kind == "done":
            _, _, index, record, code, lines = msg
            done[index] = (record, code)
            running.pop(wid, None)
            display.finished(wid)
            display.print(lines)
        elif kind == "interrupted":
            interrupted[msg[2]] = msg[3]
            if msg[4]:
                terminated.append(True)
            running.pop(wid, None)
        elif kind == "failed":
            failure = failure or msg[2]
        elif kind == "exit":
            exited.add(wid)

    def collect(until_all_exit: bool, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(exited) < len(procs) and time.monotonic() < deadline:
            try:
                handle(results.get(timeout=0.2))
            except queue_module.Empty:
                if all(not p.is_alive() for p in procs):
                    # drain what they left, then stop
                    try:
                        while True:
                            handle(results.get_nowait())
                    except queue_module.Empty:
                        break
            if not until_all_exit and (interrupted or failure):
                return

    try:
        with display:
            for p in procs:
                p.start()
            collect(until_all_exit=False, timeout=float("inf"))
            if interrupted or failure:
                raise (interrupt_for(signal.SIGTERM if terminated else signal.SIGINT) if interrupted
                       else _WorkerFailure(failure or ""))
    except (KeyboardInterrupt, _WorkerFailure) as exc:
        if isinstance(exc, Terminated):
            terminated.append(True)
        for p in procs:  # a terminal's Ctrl-C reached them too; a `kill -INT parent` did not
            if p.is_alive() and p.pid is not None:
                try:
                    os.kill(p.pid, signal.SIGTERM if terminated else signal.SIGINT)
                except ProcessLookupError:
                    pass
        try:
            collect(until_all_exit=True, timeout=60.0)
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
            pass
        for p in procs:
            if p.is_alive():
                p.kill()  # stuck: it takes SIGTERM as an interrupt, and it has had one
            p.join(5)
        reported = {i: done[i][0] for i in done} | interrupted
        for index, _name in running.values():  # in flight, but the worker could not say so
            if index not in reported:
                reported[index] = {**_new_record(entries[index], setup, job.preset_name), "error": "interrupted"}
        _emit([reported[i] for i in sorted(reported)], metrics_path, job.overwrite)
        if isinstance(exc, _WorkerFailure):
            from dgp_toolkit.errors import DGPError

            raise DGPError(str(exc)) from None
        raise interrupt_for(signal.SIGTERM if terminated else signal.SIGINT) from None
    for p in procs:
        p.join(5)
    for i in todo:  # a worker that died (killed, out of memory) took its input with it
        if i not in done:
            record = _new_record(entries[i], setup, job.preset_name)
            record["error"] = _error_line(entries[i].path, "its worker process ended before it was restored "
                                                           "(killed or out of memory?); run it again")
            done[i] = (record, 1)
            click.echo(f"Error: {record['error']}", err=True)
    return [done[i][0] for i in todo], [done[i][1] for i in todo]


class _WorkerFailure(Exception):
    """A worker process could not go on (its message is the error line)."""


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(restore_command)
