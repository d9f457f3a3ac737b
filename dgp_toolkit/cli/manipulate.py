"""``dgp-tool jitter``, ``transfer``, ``morph`` and ``sample``: editing images with a prior.

Thin layers over :mod:`dgp_toolkit.manipulate`. Each command checks everything a user
can get wrong before any work (exit 2): the prior, the classes, the preset, the device,
the output folder and that none of its outputs exists (unless ``--overwrite``). Then it
reconstructs (or loads ``--from-state``), renders, and writes every output atomically;
if writing fails or is interrupted, the files it already wrote are removed. Results go
to stdout as JSON (the written files and what they show), progress and summaries to
stderr.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from dgp_toolkit.cli.output import FOLDER, POSITIVE, SEED
from dgp_toolkit.hookspecs import hookimpl
from dgp_toolkit.paths import check_output_file, check_output_folder

FIT_CHOICES = ("crop", "pad", "resize")  # dgp_toolkit.images.FIT_MODES, without importing numpy here
EXIT_CODES = ("Exit codes: 0 done; 1 a runtime failure; 2 a usage error (nothing written); 130 interrupted "
              "(Ctrl-C); 143 stopped by SIGTERM (handled as Ctrl-C).")


# --------------------------------------------------------------------------- shared options
def _options(*, reconstruction: bool = True, output: str) -> Callable[[Any], Any]:
    """The options every manipulation command shares (reconstruction ones only where one happens)."""
    shared = [
        click.option("--prior", default=None, metavar="NAME",
                     help="The prior (see `dgp-tool weights list`); default: the state's, else biggan."),
        click.option("--weights", type=click.Path(path_type=Path), default=None, metavar="DIR|FILE",
                     help="A folder holding an official G_ema_*.pth + D_*.pth pair (or a prior file), "
                          "used without importing it."),
        click.option("--seed", type=SEED, default=0, show_default=True,
                     help="Makes a CPU run bit-for-bit repeatable."),
        click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda|mps",
                     help="auto picks CUDA, then MPS, then the CPU (cuda:N also works)."),
        click.option("-o", "--output", "out_dir", type=FOLDER, default=Path(output),
                     show_default=True, metavar="DIR", help="Folder for the outputs (created if missing)."),
        click.option("--overwrite", is_flag=True, help="Replace existing outputs."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bars or summaries on stderr (errors still)."),
    ]
    if reconstruction:
        shared += [
            click.option("--preset", default=None, metavar="NAME|FILE",
                         help="Preset of the reconstruction (`dgp-tool presets`) or a TOML file "
                              "[default: manipulation]."),
            click.option("--iterations-scale", type=POSITIVE, default=1.0,
                         show_default=True, metavar="F",
                         help="Multiply every stage's iterations (0.1 for a quick look)."),
            click.option("--fit", type=click.Choice(FIT_CHOICES), default="crop", show_default=True,
                         help="How an image of another size is brought to the prior's: centre crop, pad or resize."),
        ]

    def apply(f: Any) -> Any:
        for option in reversed(shared):
            f = option(f)
        return f

    return apply


def _state_options(f: Any) -> Any:
    f = click.option("--from-state", "from_state", type=click.Path(path_type=Path), default=None, metavar="FILE",
                     help="Start from a saved reconstruction instead of IMAGE (no optimization).")(f)
    f = click.option("--save-state", "save_state_path", type=click.Path(path_type=Path), default=None,
                     metavar="FILE", help="Also save the reconstruction (z, class, fine-tuned generator) "
                                          "for --from-state.")(f)
    return f


# --------------------------------------------------------------------------- helpers
def _usage(message: str) -> Exception:
    from dgp_toolkit.errors import DGPUsageError

    return DGPUsageError(message)


def slug(text: str) -> str:
    """A file-name-safe form of a class name.

    >>> slug("great white shark"), slug("Rhodesian ridgeback, (dog)")
    ('great-white-shark', 'rhodesian-ridgeback-dog')
    """
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "class"


class Outputs:
    """The files a command will write: checked before any work, written atomically, all or none."""

    def __init__(self, overwrite: bool, protect: list[Path]) -> None:
        self.overwrite = overwrite
        self.protect = [p for p in protect if p is not None]
        self.planned: list[Path] = []
        self.written: list[Path] = []

    def plan(self, path: Path, option: str = "") -> Path:
        """Check ``path`` (see :func:`~dgp_toolkit.paths.check_output_file`; ``option`` names
        where it comes from) and add it to the files to write."""
        if path in self.planned:
            raise _usage(f"{option + ' ' if option else ''}{path}: two outputs would have the same name")
        check_output_file(path, option, overwrite=self.overwrite, protect=self.protect)
        self.planned.append(path)
        return path

    def write(self, path: Path, write: Callable[[Path], Any]) -> None:
        write(path)
        self.written.append(path)

    def image(self, image: Any, path: Path) -> None:
        from dgp_toolkit.images import write_image

        self.write(path, lambda p: write_image(image, p, overwrite=self.overwrite, protect=self.protect))

    def remove_written(self) -> None:
        for path in self.written:
            path.unlink(missing_ok=True)
        self.written.clear()


def _write_all(outputs: Outputs, jobs: list[Callable[[], None]]) -> None:
    try:
        for job in jobs:
            job()
    except BaseException:
        outputs.remove_written()
        raise


def _progress(name: str, quiet: bool) -> Any:
    from dgp_toolkit.cli.restore import _ProgressDisplay

    return _ProgressDisplay(name, enabled=not quiet)


def _emit(record: dict[str, Any]) -> None:
    click.echo(json.dumps(record, indent=2, allow_nan=False))


def _say(quiet: bool, text: str, style: str | None = None) -> None:
    if quiet:
        return
    from dgp_toolkit.cli.output import stderr_console

    stderr_console().print(text, markup=False, style=style)


def _load_prior(name: str | None, device: str, weights: Path | None, state: Any = None) -> Any:
    from dgp_toolkit.priors import load_prior

    prior = load_prior(name or (state.prior_name if state is not None else "biggan"), device=device,
                       weights=None if weights is None else str(weights))
    if state is not None:
        try:
            state.check_prior(prior)
        except Exception as exc:
            raise _usage(f"--from-state {state.path}: {exc}") from None
    return prior


def _class_record(prior: Any, index: int) -> dict[str, Any]:
    names = tuple(prior.class_names)
    return {"index": int(index), "name": names[index] if 0 <= index < len(names) else None}


def _start(image: Path | None, from_state: Path | None, save_state_path: Path | None, class_: str | None) -> Any:
    """Check IMAGE / --from-state / --save-state and load the state (usage errors only)."""
    if (image is None) == (from_state is None):
        raise _usage("give an IMAGE to reconstruct or --from-state FILE, not both" if image is not None
                     else "give an IMAGE to reconstruct, or --from-state FILE")
    if from_state is None:
        return None
    if save_state_path is not None:
        raise _usage("--save-state with --from-state: the state is already saved")
    if class_ is not None:
        raise _usage("--class applies to a new reconstruction; the state already has its class")
    from dgp_toolkit.state import load_state

    return load_state(from_state)


def _reconstruct(image: Path, prior: Any, *, preset: str | None, class_: str | None, seed: int, fit: str,
                 iterations_scale: float, quiet: bool, update_embed: bool | None = None) -> Any:
    from dgp_toolkit.manipulate import reconstruct

    start = time.perf_counter()
    with _progress(image.stem, quiet) as display:
        rec = reconstruct(image, prior, preset=preset, label=class_, seed=seed, fit=fit,
                          iterations_scale=iterations_scale, update_embed=update_embed, progress=display)
    label = f"{rec.class_index} ({rec.class_name})" if rec.class_name else str(rec.class_index)
    _say(quiet, f"{image.name}: reconstructed in {time.perf_counter() - start:.1f} s, class {label}")
    for note in rec.notes:
        _say(quiet, f"  {note}", "dim")
    return rec


def _reconstruct_image(image: Path, prior: Any, opts: dict[str, Any]) -> Any:
    """IMAGE reconstructed with the command's options (``jitter``, ``transfer``)."""
    return _reconstruct(image, prior, preset=opts["preset"], class_=opts["class_"], seed=opts["seed"], fit=opts["fit"],
                        iterations_scale=opts["iterations_scale"], quiet=opts["quiet"])


def _prepare(image: Path | None, from_state: Path | None, save_state_path: Path | None, opts: dict[str, Any],
             ) -> tuple[Any, Any, str, list[Path]]:
    """The state (or ``None``), the prior, the name of the outputs and the inputs to protect."""
    check_output_folder(opts["out_dir"], "--output")
    state = _start(image, from_state, save_state_path, opts["class_"])
    prior = _load_prior(opts["prior"], opts["device"], opts["weights"], state)
    if state is None:
        from dgp_toolkit.manipulate import load_manipulation_preset

        load_manipulation_preset(opts["preset"], prior, None)  # a bad preset is a usage error before any work
        if opts["class_"] is not None:
            prior.class_index(opts["class_"])
    name = (image if image is not None else from_state).stem  # type: ignore[union-attr]
    if from_state is not None and name.endswith(".state"):
        name = name[:-len(".state")]
    protect = [p for p in (image, from_state) if p is not None]
    return state, prior, name, protect


def _save_state_job(outputs: Outputs, path: Path | None, rec: Any) -> list[Callable[[], None]]:
    if path is None:
        return []
    from dgp_toolkit.state import save_state

    return [lambda: outputs.write(path, lambda p: save_state(p, rec, overwrite=outputs.overwrite,
                                                             protect=outputs.protect))]


def _parse_stds(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise _usage(f"--std {text!r}: give numbers separated by commas, e.g. 0.3,0.5,0.7") from None
    if not values:
        raise _usage("--std: give at least one value")
    return values


# --------------------------------------------------------------------------- jitter
@click.command("jitter", epilog=f"""\b
Outputs (in --output; NAME is the image's or the state file's stem):
  NAME_reconstruction.png           the reconstruction
  NAME_jitter_std<S>_<K>.png        variation K for each std S
  NAME_jitter_sheet.png             input, reconstruction, one labelled row per std
stdout: a JSON object with the written files.
{EXIT_CODES}

\b
Examples:
  dgp-tool jitter cat.png --class cat
  dgp-tool jitter cat.png --save-state cat.state.safetensors
  dgp-tool jitter --from-state cat.state.safetensors --std 0.2,0.4 --count 8 --seed 3
""")
@click.argument("image", required=False, type=click.Path(path_type=Path))
@click.option("--std", "std_text", default="0.3,0.5,0.7", show_default=True, metavar="S[,S...]",
              help="Noise levels: each variation renders G(z + std * n), n ~ N(0, I).")
@click.option("--count", type=click.IntRange(1), default=4, show_default=True, help="Variations per std.")
@click.option("--class", "class_", default=None, metavar="INDEX|NAME",
              help="The image's class; default: latent selection picks one.")
@_state_options
@_options(output="jittered")
def jitter_command(image: Path | None, std_text: str, count: int, **opts: Any) -> None:
    """Random jittering: reconstruct IMAGE, then render G(z + std * n) with the fine-tuned generator."""
    from dgp_toolkit.manipulate import check_stds, jitter

    start = time.perf_counter()
    stds = check_stds(_parse_stds(std_text))
    from_state, save_path = opts.pop("from_state"), opts.pop("save_state_path")
    state, prior, name, protect = _prepare(image, from_state, save_path, opts)
    out, outputs = opts["out_dir"], Outputs(opts["overwrite"], protect)
    recon_path = outputs.plan(out / f"{name}_reconstruction.png")
    variation_paths = {(s, k): outputs.plan(out / f"{name}_jitter_std{s:g}_{k + 1:02d}.png")
                       for s in stds for k in range(count)}
    sheet_path = outputs.plan(out / f"{name}_jitter_sheet.png")
    if save_path is not None:
        outputs.plan(save_path, "--save-state")
    rec = state if state is not None else _reconstruct_image(image, prior, opts)  # type: ignore[arg-type]
    result = jitter(rec, prior=prior, std=stds, count=count, seed=opts["seed"])
    jobs = [lambda: outputs.image(result.reconstruction.image, recon_path)]
    for img, s, k in zip(result.images, result.stds, result.indices):
        jobs.append(lambda img=img, path=variation_paths[(s, k)]: outputs.image(img, path))
    jobs.append(lambda: outputs.image(result.sheet(), sheet_path))
    jobs += _save_state_job(outputs, save_path, rec)
    _write_all(outputs, jobs)
    _say(opts["quiet"], f"{name}: {len(result.images)} variations ({count} per std {', '.join(f'{s:g}' for s in stds)}) "
                        f"-> {sheet_path}")
    _emit({"command": "jitter", "input": None if image is None else str(image),
           "from_state": None if from_state is None else str(from_state), "prior": prior.name,
           "class": _class_record(prior, rec.class_index), "seed": opts["seed"], "stds": stds, "count": count,
           "reconstruction": str(recon_path), "sheet": str(sheet_path),
           "variations": [{"file": str(variation_paths[(s, k)]), "std": s, "index": k + 1}
                          for s, k in zip(result.stds, result.indices)],
           "state": None if save_path is None else str(save_path),
           "files": [str(p) for p in outputs.written], "seconds": round(time.perf_counter() - start, 3)})


# --------------------------------------------------------------------------- transfer
@click.command("transfer", epilog=f"""\b
Outputs (in --output; NAME is the image's or the state file's stem):
  NAME_reconstruction.png           the reconstruction
  NAME_to_<INDEX>_<CLASS>.png       the image rendered as each class of --to
  NAME_transfer_sheet.png           input, reconstruction, the transfers (labelled)
stdout: a JSON object with the written files.
{EXIT_CODES}

\b
Examples:
  dgp-tool transfer dog.png --to cat --to horse
  dgp-tool transfer dog.png --to all --class dog --save-state dog.state.safetensors
  dgp-tool transfer --from-state dog.state.safetensors --to 3
""")
@click.argument("image", required=False, type=click.Path(path_type=Path))
@click.option("--to", "to", multiple=True, required=True, metavar="CLASS|all",
              help="A class to render the image as (index or name), repeatable; 'all' for every class.")
@click.option("--class", "class_", default=None, metavar="INDEX|NAME",
              help="The image's class; default: latent selection picks one.")
@_state_options
@_options(output="transferred")
def transfer_command(image: Path | None, to: tuple[str, ...], **opts: Any) -> None:
    """Category transfer: reconstruct IMAGE, then render its z with the fine-tuned G as other classes."""
    from dgp_toolkit.manipulate import resolve_classes, transfer

    start = time.perf_counter()
    from_state, save_path = opts.pop("from_state"), opts.pop("save_state_path")
    state, prior, name, protect = _prepare(image, from_state, save_path, opts)
    classes = resolve_classes(prior, list(to))
    out, outputs = opts["out_dir"], Outputs(opts["overwrite"], protect)
    width = len(str(prior.n_classes - 1))
    names = tuple(prior.class_names)
    recon_path = outputs.plan(out / f"{name}_reconstruction.png")
    class_paths = {}
    for c in classes:
        suffix = "" if names[c] == str(c) else f"_{slug(names[c])}"
        class_paths[c] = outputs.plan(out / f"{name}_to_{c:0{width}d}{suffix}.png")
    sheet_path = outputs.plan(out / f"{name}_transfer_sheet.png")
    if save_path is not None:
        outputs.plan(save_path, "--save-state")
    rec = state if state is not None else _reconstruct_image(image, prior, opts)  # type: ignore[arg-type]
    result = transfer(rec, classes, prior=prior)
    jobs = [lambda: outputs.image(result.reconstruction.image, recon_path)]
    for img, c in zip(result.images, result.classes):
        jobs.append(lambda img=img, path=class_paths[c]: outputs.image(img, path))
    jobs.append(lambda: outputs.image(result.sheet(), sheet_path))
    jobs += _save_state_job(outputs, save_path, rec)
    _write_all(outputs, jobs)
    _say(opts["quiet"], f"{name}: rendered as {len(classes)} class(es) -> {sheet_path}")
    _emit({"command": "transfer", "input": None if image is None else str(image),
           "from_state": None if from_state is None else str(from_state), "prior": prior.name,
           "class": _class_record(prior, rec.class_index), "seed": opts["seed"],
           "reconstruction": str(recon_path), "sheet": str(sheet_path),
           "transfers": [{"file": str(class_paths[c]), **_class_record(prior, c)} for c in result.classes],
           "state": None if save_path is None else str(save_path),
           "files": [str(p) for p in outputs.written], "seconds": round(time.perf_counter() - start, 3)})


# --------------------------------------------------------------------------- morph
@click.command("morph", epilog=f"""\b
IMAGE_A and IMAGE_B may also be state files (from --save-state): those skip their optimization.

\b
Outputs (in --output; A and B are the inputs' stems):
  A_B_morph_<I>.png                 frame I (alpha = I / (steps - 1); 00 is A, the last B)
  A_B_morph_sheet.png               inputs, reconstructions and the frames (labelled)
  A_B_morph.gif                     the frames as an animated GIF
stdout: a JSON object with the written files.
{EXIT_CODES}

\b
Examples:
  dgp-tool morph cat.png dog.png
  dgp-tool morph cat.png dog.png --steps 21 --class cat --class dog
""")
@click.argument("image_a", type=click.Path(path_type=Path))
@click.argument("image_b", type=click.Path(path_type=Path))
@click.option("--steps", type=click.IntRange(2), default=11, show_default=True,
              help="Frames, both ends included.")
@click.option("--class", "class_", multiple=True, metavar="INDEX|NAME",
              help="The images' class: once for both, or twice (A's, then B's); default: latent selection.")
@click.option("--frame-ms", type=click.IntRange(10), default=150, show_default=True,
              help="How long the GIF shows each frame (milliseconds).")
@_options(output="morphed")
def morph_command(image_a: Path, image_b: Path, steps: int, class_: tuple[str, ...], frame_ms: int,
                  **opts: Any) -> None:
    """Morphing: reconstruct IMAGE_A and IMAGE_B, then interpolate z, class embedding and every G weight."""
    from dgp_toolkit.manipulate import load_manipulation_preset, morph
    from dgp_toolkit.state import is_state_file, load_state

    start = time.perf_counter()
    if len(class_) > 2:
        raise _usage(f"--class: give it once (both images) or twice (A, then B), not {len(class_)} times")
    labels = (class_[0], class_[-1]) if class_ else (None, None)
    check_output_folder(opts["out_dir"], "--output")
    from dgp_toolkit.images import read_image

    states = []
    for path in (image_a, image_b):
        state = load_state(path) if is_state_file(path) else None
        if state is None:
            read_image(path)  # an unreadable B is reported before A's reconstruction
        states.append(state)
    if any(s is not None for s in states) and class_:
        raise _usage("--class applies to new reconstructions; a state file already has its class")
    prior = _load_prior(opts["prior"], opts["device"], opts["weights"], next((s for s in states if s), None))
    for state in states:
        if state is not None:
            try:
                state.check_prior(prior)
            except Exception as exc:
                raise _usage(f"{state.path}: {exc}") from None
    load_manipulation_preset(opts["preset"], prior, True)
    for label in labels:
        if label is not None:
            prior.class_index(label)
    stem = lambda p: p.stem[:-len(".state")] if p.stem.endswith(".state") else p.stem  # noqa: E731
    name = f"{stem(image_a)}_{stem(image_b)}"
    out, outputs = opts["out_dir"], Outputs(opts["overwrite"], [image_a, image_b])
    width = max(2, len(str(steps - 1)))
    frame_paths = [outputs.plan(out / f"{name}_morph_{i:0{width}d}.png") for i in range(steps)]
    sheet_path = outputs.plan(out / f"{name}_morph_sheet.png")
    gif_path = outputs.plan(out / f"{name}_morph.gif")
    recs = []
    for path, state, label in zip((image_a, image_b), states, labels):
        recs.append(state if state is not None else _reconstruct(
            path, prior, preset=opts["preset"], class_=label, seed=opts["seed"], fit=opts["fit"],
            iterations_scale=opts["iterations_scale"], quiet=opts["quiet"], update_embed=True))
    result = morph(recs[0], recs[1], steps=steps, prior=prior)
    jobs = [lambda f=f, p=p: outputs.image(f, p) for f, p in zip(result.frames, frame_paths)]
    jobs.append(lambda: outputs.image(result.sheet(), sheet_path))
    from dgp_toolkit.sheets import write_gif

    jobs.append(lambda: outputs.write(gif_path, lambda p: write_gif(result.frames, p, duration_ms=frame_ms,
                                                                     overwrite=outputs.overwrite,
                                                                     protect=outputs.protect)))
    _write_all(outputs, jobs)
    _say(opts["quiet"], f"{name}: {steps} frames -> {gif_path}, {sheet_path}")
    _emit({"command": "morph", "inputs": [str(image_a), str(image_b)], "prior": prior.name,
           "classes": [_class_record(prior, r.class_index) for r in recs], "seed": opts["seed"], "steps": steps,
           "frames": [{"file": str(p), "alpha": a} for p, a in zip(frame_paths, result.alphas)],
           "sheet": str(sheet_path), "gif": str(gif_path),
           "files": [str(p) for p in outputs.written], "seconds": round(time.perf_counter() - start, 3)})


# --------------------------------------------------------------------------- sample
@click.command("sample", epilog=f"""\b
Outputs (in --output; CLASS is the class's name, absent for random classes):
  sample_<CLASS>_seed<S>_<K>.png    sample K
  sample_<CLASS>_seed<S>_sheet.png  all of them, labelled with their classes
stdout: a JSON object with the written files.
{EXIT_CODES}

\b
Examples:
  dgp-tool sample --class cat --count 16 --seed 1
  dgp-tool sample --count 8 --std 0.5
""")
@click.option("--class", "class_", default=None, metavar="INDEX|NAME",
              help="The class of every sample; default: a random class per sample.")
@click.option("--count", type=click.IntRange(1), default=8, show_default=True, help="Number of samples.")
@click.option("--std", type=POSITIVE, default=1.0, show_default=True,
              help="Standard deviation of the latents (smaller: more typical, less varied).")
@_options(reconstruction=False, output="samples")
def sample_command(class_: str | None, count: int, std: float, **opts: Any) -> None:
    """Plain samples of a prior: what it knows, before any image is given."""
    from dgp_toolkit.manipulate import sample

    start = time.perf_counter()
    check_output_folder(opts["out_dir"], "--output")
    prior = _load_prior(opts["prior"], opts["device"], opts["weights"])
    index = None if class_ is None else int(prior.class_index(class_))
    names = tuple(prior.class_names)
    part = "" if index is None else f"_{slug(names[index]) if names[index] != str(index) else index}"
    base = f"sample{part}_seed{opts['seed']}"
    out, outputs = opts["out_dir"], Outputs(opts["overwrite"], [])
    width = max(2, len(str(count)))
    paths = [outputs.plan(out / f"{base}_{k + 1:0{width}d}.png") for k in range(count)]
    sheet_path = outputs.plan(out / f"{base}_sheet.png")
    result = sample(prior, label=index, count=count, seed=opts["seed"], std=std)
    jobs = [lambda img=img, p=p: outputs.image(img, p) for img, p in zip(result.images, paths)]
    jobs.append(lambda: outputs.image(result.sheet(), sheet_path))
    _write_all(outputs, jobs)
    _say(opts["quiet"], f"{count} samples of {prior.name} -> {sheet_path}")
    _emit({"command": "sample", "prior": prior.name, "seed": opts["seed"], "std": std, "count": count,
           "samples": [{"file": str(p), **_class_record(prior, c)} for p, c in zip(paths, result.classes)],
           "sheet": str(sheet_path), "files": [str(p) for p in outputs.written],
           "seconds": round(time.perf_counter() - start, 3)})


@hookimpl
def register_commands(cli: click.Group) -> None:
    for command in (jitter_command, transfer_command, morph_command, sample_command):
        cli.add_command(command)
