"""Many images with one set-up: the home of input discovery for the whole project, and of
restoring a folder (``dgp-tool restore FOLDER``) in one process or as one rank of many.

- **Discovery**: :func:`expand_inputs` turns the files and folders of a command line into
  :class:`Entry` objects (folders as their images, sorted, not recursive; each file once;
  this command's own outputs skipped in the output folder); :func:`is_image_file` is the
  one rule for what counts as an image file.
- **Naming**: :func:`planned_outputs` (``NAME_restored.png`` ... ``NAME_run.json``, last),
  :func:`name_clash` (two inputs that would write the same names).
- **Resuming**: :func:`make_plan` finds the inputs that are complete (their
  ``NAME_run.json``, written last, made by the same command, and every output it lists
  exist) and rebuilds their records from that file; :class:`Plan` holds what is left.
- **Sharding**: :func:`shard` deals the inputs still to do to ranks, deterministically.
- **Running**: :func:`run_shard` restores a shard through
  :func:`~dgp_toolkit.restoration.restore_stream`, ``batch`` generator copies at a time,
  writes each input's outputs atomically (``NAME_run.json`` last) as its batch finishes,
  and hands each input's record to a callback; :func:`merge_records` puts the records of
  every rank and the resumed ones back in input order.

The process side (ranks, devices, the records' way to rank 0, running a plan alone or as
one rank) is :mod:`dgp_toolkit.distributed`.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dgp_toolkit.errors import DGPError, DGPUsageError
from dgp_toolkit.paths import check_output_file

__all__ = ["IMAGE_SUFFIXES", "OUTPUT_SUFFIXES", "DEFAULT_BATCH", "Entry", "FolderJob", "Plan", "is_image_file",
           "is_own_output", "expand_inputs", "planned_outputs", "name_clash", "default_batch", "make_plan",
           "shard", "run_shard", "merge_records", "exit_code", "new_record", "preset_name"]

#: Suffixes of the images a folder input expands to.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
#: What ``restore`` writes per input NAME (file name suffixes), in the order it writes them:
#: ``run`` last, so that an input whose ``NAME_run.json`` exists has all its outputs.
OUTPUT_SUFFIXES = {"restored": "_restored.png", "observed": "_observed.png", "sheet": "_sheet.png",
                   "full_resolution": "_restored_full.png", "run": "_run.json"}
#: ``--batch`` when not given, per device type: generator copies optimized together. CPU:
#: 4 (at 32 px 2.02x the images per hour of batch 1 with --workers 2; docs/benchmarks.md,
#: benchmarks/batched.py), but 1 for priors above :data:`CPU_BATCH_MAX_SIDE` px (at 128 px
#: batch 4 costs 1.28x per image: one image fills the CPU). CUDA: 16 is a guess until
#: measured on a GPU (issue 29).
DEFAULT_BATCH = {"cpu": 4, "cuda": 16, "mps": 4}
CPU_BATCH_MAX_SIDE = 64


def default_batch(device: Any, resolution: int = 32) -> int:
    """``--batch`` for a device (a ``torch.device`` or its type name) and a prior's resolution.

    >>> default_batch("cpu"), default_batch("cpu", 128), default_batch("cuda", 128)
    (4, 1, 16)
    """
    kind = getattr(device, "type", str(device))
    if kind == "cpu" and resolution > CPU_BATCH_MAX_SIDE:
        return 1
    return DEFAULT_BATCH.get(kind, DEFAULT_BATCH["cpu"])


# ----------------------------------------------------------------------------- discovery
@dataclass
class Entry:
    """One input as given (or found in a folder), with an error found before reading it."""

    path: Path
    error: str | None = None

    @property
    def name(self) -> str:
        """The stem its outputs are named after (``photo`` for ``photo.jpg``)."""
        return self.path.stem


def is_image_file(path: Path) -> bool:
    """A regular, visible file with an image suffix (:data:`IMAGE_SUFFIXES`, any case)."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def is_own_output(path: Path) -> bool:
    """Named like one of ``restore``'s outputs (``*_restored.png``, ``*_run.json`` ...)."""
    return any(path.name.endswith(suffix) for suffix in OUTPUT_SUFFIXES.values())


def _holds_images(folder: Path) -> bool:
    try:
        return any(is_image_file(p) for p in folder.iterdir())
    except OSError:  # unreadable: not worth a hint
        return False


def expand_inputs(inputs: Iterable[Path], out_dir: Path) -> list[Entry]:
    """Files as given, folders as their images (sorted, not recursive), each file once.

    In the output folder itself, ``restore``'s own outputs are skipped. A folder without
    images becomes an :class:`Entry` with its error (and a hint when subfolders hold some).

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("b.png", "a.JPG", "notes.txt", ".hidden.png"):
    ...     _ = (folder / name).write_bytes(b"")
    >>> [e.path.name for e in expand_inputs([folder, folder / "b.png"], folder / "out")]
    ['a.JPG', 'b.png']
    """
    entries: list[Entry] = []
    seen: set[Path] = set()
    out_resolved = Path(out_dir).resolve()

    def add(entry: Entry) -> None:
        key = entry.path.resolve()
        if key not in seen:
            seen.add(key)
            entries.append(entry)

    for arg in inputs:
        arg = Path(arg)
        if not arg.is_dir():
            add(Entry(arg))
            continue
        own = arg.resolve() == out_resolved
        found = sorted(p for p in arg.iterdir() if is_image_file(p) and not (own and is_own_output(p)))
        if not found:
            nested = sorted(d.name for d in arg.iterdir() if d.is_dir() and not d.name.startswith(".")
                            and _holds_images(d))
            hint = ""
            if nested:
                shown = ", ".join(nested[:3]) + (", ..." if len(nested) > 3 else "")
                hint = (f"; folders are not searched recursively, and {len(nested)} subfolder(s) hold images "
                        f"({shown}): pass them instead")
            entries.append(Entry(arg, f"{arg}: no images in this folder ({', '.join(IMAGE_SUFFIXES)}){hint}"))
        for path in found:
            add(Entry(path))
    return entries


# ----------------------------------------------------------------------------- naming
def planned_outputs(out_dir: Path, name: str, *, sheet: bool, full: bool) -> dict[str, Path]:
    """The files ``restore`` writes for input NAME, in writing order (``run`` last).

    >>> [p.name for p in planned_outputs(Path("out"), "cat", sheet=True, full=False).values()]
    ['cat_restored.png', 'cat_observed.png', 'cat_sheet.png', 'cat_run.json']
    """
    wanted = {"restored", "observed", "run"} | ({"sheet"} if sheet else set()) | ({"full_resolution"} if full else set())
    return {key: Path(out_dir) / f"{name}{suffix}" for key, suffix in OUTPUT_SUFFIXES.items() if key in wanted}


def name_clash(entries: Sequence[Entry]) -> str | None:
    """The first two inputs whose outputs would have the same names, as an error line
    (``None`` when there are none): x/a.png and y/a.png both write a_restored.png."""
    names: dict[str, Path] = {}
    for entry in entries:
        if entry.error:
            continue
        if entry.name in names:
            return (f"{names[entry.name]} and {entry.path} would both write {entry.name}_restored.png (and the rest "
                    "of their outputs) into the same --output; restore them separately, each with its own --output")
        names[entry.name] = entry.path
    return None


# ----------------------------------------------------------------------------- the job
@dataclass(frozen=True)
class FolderJob:
    """What every input of one ``restore`` run shares, apart from the loaded set-up.

    ``command`` is the command line's options after the input (``--degrade ... --seed
    0 ...``), written into each ``NAME_run.json`` and compared by ``--resume``;
    ``save_state`` a file name template with ``{name}``; ``protect`` the inputs (never
    overwritten).
    """

    out_dir: Path
    options: Any  # a RunOptions
    command: tuple[str, ...]
    fit: str = "crop"
    simulate: bool = False
    batch: int = 1
    sheet: bool = False
    overwrite: bool = False
    resume: bool = False
    save_state: Path | None = None
    protect: tuple[Path, ...] = ()
    quiet: bool = False
    debug: bool = False

    def command_line(self, path: Path) -> str:
        """The ``dgp-tool restore`` command that restores ``path`` alone this way."""
        return shlex.join(["dgp-tool", "restore", str(path), *self.command])

    def state_path(self, name: str) -> Path | None:
        return None if self.save_state is None else Path(str(self.save_state).replace("{name}", name))


def new_record(entry: Entry, setup: Any) -> dict[str, Any]:
    """An input's JSON object before it is restored (``error`` and the scores empty)."""
    return {"input": str(entry.path), "output": None, "degradations": list(setup.specs),
            "preset": preset_name(setup), "class": setup.class_index, "seconds": None,
            "observation": None, "result": None, "error": None}


def preset_name(setup: Any) -> str:
    """The name of the set-up's preset (its file name for a preset file)."""
    return str(getattr(setup.preset, "name", None) or setup.preset)


def _scores(metrics: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    from dgp_toolkit.restoration import json_safe

    if not metrics:
        return None
    return json_safe({"psnr": metrics[key]["psnr"], "ssim": metrics[key]["ssim"]})


# ----------------------------------------------------------------------------- resuming
@dataclass
class Plan:
    """The inputs of one run and, with ``--resume``, those already complete.

    ``done`` maps the index of each complete input to its record (rebuilt from its
    ``NAME_run.json``); ``replace`` holds the inputs whose outputs from an unfinished run
    (no ``NAME_run.json``, or one whose outputs are missing) ``--resume`` replaces.
    """

    entries: list[Entry]
    done: dict[int, dict[str, Any]] = field(default_factory=dict)
    replace: frozenset[int] = frozenset()

    @property
    def todo(self) -> list[int]:
        """Indices of the inputs still to restore, in input order."""
        return [i for i in range(len(self.entries)) if i not in self.done]


def _without_device(args: Sequence[str]) -> list[str]:
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--device":
            skip = True  # where a run computed does not change what it restores
        else:
            out.append(arg)
    return out


def _read_run(path: Path) -> dict[str, Any] | None:
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return run if isinstance(run, dict) and isinstance(run.get("outputs"), dict) else None


def _resume_state(entry: Entry, job: FolderJob) -> tuple[str, Any]:
    """``("complete", record)``, ``("leftovers", None)`` (no usable ``NAME_run.json``, or
    outputs missing: restore again, replacing what is there), or ``("other", what)``
    (made by another command: ``what`` says how)."""
    run_path = Path(job.out_dir) / f"{entry.name}{OUTPUT_SUFFIXES['run']}"
    run = _read_run(run_path) if run_path.exists() else None
    if run is None:
        return "leftovers", None
    try:
        theirs = _without_device(shlex.split(str(run.get("command", "")))[3:])
    except ValueError:
        theirs = []
    ours = _without_device(job.command)
    if theirs != ours:
        return "other", _difference(theirs, ours)
    wanted = set(run["outputs"]) | ({"sheet"} if job.sheet else set())
    outputs = planned_outputs(job.out_dir, entry.name, sheet=job.sheet, full="full_resolution" in wanted)
    state = job.state_path(entry.name)
    if not all(outputs[k].is_file() for k in wanted if k in outputs) or (state is not None and not state.is_file()):
        return "leftovers", None
    record = {"input": str(entry.path), "output": str(outputs["restored"]), "degradations": run.get("degradations"),
              "preset": (run.get("preset") or {}).get("name"), "class": (run.get("class") or {}).get("index"),
              "seconds": run.get("seconds"), "observation": _scores(run.get("metrics"), "observation"),
              "result": _scores(run.get("metrics"), "result"), "error": None}
    return "complete", record


def _difference(theirs: list[str], ours: list[str]) -> str:
    """The first option whose value differs, both ways round.

    >>> _difference(["--seed", "0", "--iterations-scale", "0.5"], ["--seed", "0"])
    '--iterations-scale 0.5 there, no --iterations-scale here'
    """
    def options(args: list[str]) -> dict[str, str]:
        out: dict[str, list[str]] = {}
        key = ""
        for arg in args:
            if arg.startswith("--"):
                key = arg
                out.setdefault(key, [])
            else:
                out.setdefault(key, []).append(arg)
        return {k: " ".join(v) for k, v in out.items()}

    a, b = options(theirs), options(ours)
    for key in dict.fromkeys([*a, *b]):
        if a.get(key) != b.get(key):
            def say(side: dict[str, str]) -> str:
                return f"{key} {side[key]}".strip() if key in side else f"no {key}"
            return f"{say(a)} there, {say(b)} here"
    return "its command differs"


def make_plan(entries: list[Entry], job: FolderJob) -> Plan:
    """The run's :class:`Plan`; without ``job.resume`` every input is to do.

    With ``--resume``, an input whose ``NAME_run.json`` was made by another command (other
    degradations, preset, seed, iterations ...; the device may differ) is a usage error
    unless ``--overwrite`` (then it is restored again): resuming would mix two settings in
    one folder.
    """
    if not job.resume:
        return Plan(list(entries))
    done: dict[int, dict[str, Any]] = {}
    replace: set[int] = set()
    other: list[tuple[Entry, str]] = []
    for index, entry in enumerate(entries):
        if entry.error:
            continue
        state, value = _resume_state(entry, job)
        if state == "complete":
            done[index] = value
        elif state == "leftovers" or job.overwrite:
            replace.add(index)
        else:
            other.append((entry, value))
    if other:
        entry, how = other[0]
        more = f" (and {len(other) - 1} more inputs)" if len(other) > 1 else ""
        run_path = Path(job.out_dir) / f"{entry.name}{OUTPUT_SUFFIXES['run']}"
        raise DGPUsageError(f"--resume: {run_path} was made by another command: {how}{more}; use the same "
                            "options, another --output, or --overwrite to restore those inputs again")
    return Plan(list(entries), done, frozenset(replace))


# ----------------------------------------------------------------------------- sharding
def shard(todo: Sequence[int], rank: int, world: int) -> list[int]:
    """Rank ``rank``'s share of ``todo`` (in order) among ``world`` ranks: every
    ``world``-th input from the ``rank``-th, so that every rank gets inputs from the whole
    folder and the shares differ by at most one. The same on every rank and every restart.

    >>> shard(list(range(7)), 0, 3), shard(list(range(7)), 2, 3)
    ([0, 3, 6], [2, 5])
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in 0..{world - 1}")
    return list(todo[rank::world])


# ----------------------------------------------------------------------------- running
#: What :func:`run_shard` hands back per input: (index, record, exit code, stderr lines),
#: the lines as (text, style) with style ``None``, ``"dim"``, ``"yellow"``, ``"error"``
#: or ``"traceback"``.
Report = Callable[[int, dict[str, Any], int, list[tuple[str, str | None]]], None]


@dataclass
class _Open:
    """An input read and checked, on its way through the stream."""

    entry: Entry
    record: dict[str, Any]
    outputs: dict[str, Path]
    replace: bool
    start: float


def run_shard(setup: Any, job: FolderJob, plan: Plan, indices: Sequence[int], *, report: Report,
              progress: Callable[[Any], None] | None = None, hold: Any = None) -> None:
    """Restore ``plan.entries[i]`` for ``i`` in ``indices``, ``job.batch`` generator copies
    at a time, calling ``report`` for each input as it is done (bad inputs at once, the
    others as their batch finishes), in no fixed order.

    Each input is read and checked just before it joins a batch (its outputs must not
    exist unless ``--overwrite``, or ``--resume`` found them unfinished). Its outputs are
    written atomically, ``NAME_run.json`` last. A failing input is reported with its error
    and the others go on; an unexpected exception in a batch fails that batch's inputs
    and the run goes on with the rest. On Ctrl-C (or SIGTERM, with
    :mod:`dgp_toolkit.cli.signals`) the inputs in flight are reported ``interrupted``,
    nothing of theirs is left, and the KeyboardInterrupt goes on. ``hold`` (an object with
    ``take()`` and ``release()``) keeps interrupts back from the first write of an input
    until it is reported.
    """
    from dgp_toolkit.restoration import restore_stream

    remaining = list(indices)
    flight: dict[int, _Open] = {}  # read and checked, not yet reported

    def landed(index: int, record: dict[str, Any], code: int, lines: list[tuple[str, str | None]]) -> None:
        flight.pop(index, None)
        report(index, record, code, lines)

    while remaining:
        pulled = [0]

        def inputs() -> Iterable[tuple[int, Any]]:
            for index in remaining:
                pulled[0] += 1
                entry = plan.entries[index]
                record = new_record(entry, setup)
                try:
                    inp, opened = _open(setup, job, plan, index, entry, record)
                except Exception as exc:  # noqa: BLE001 - one bad input must not stop the others
                    _report_failure(landed, job, index, entry, record, exc, time.perf_counter())
                    continue
                flight[index] = opened
                yield index, inp

        stream = restore_stream(setup, inputs(), options=job.options, fit=job.fit, simulate=job.simulate,
                                batch=job.batch, progress=progress)
        try:
            for index, out in stream:
                _finish(setup, job, flight[index], index, out, landed, hold)
            remaining = []
        except KeyboardInterrupt:
            for index, opened in list(flight.items()):
                opened.record.update(error="interrupted", seconds=round(time.perf_counter() - opened.start, 3))
                landed(index, opened.record, 130, [])
            raise
        except Exception as exc:  # noqa: BLE001 - a batch failed in an unexpected way: its inputs fail
            for index, opened in list(flight.items()):
                _report_failure(landed, job, index, opened.entry, opened.record, exc, opened.start)
            remaining = remaining[pulled[0]:]
        finally:
            stream.close()


def _open(setup: Any, job: FolderJob, plan: Plan, index: int, entry: Entry,
          record: dict[str, Any]) -> tuple[Any, _Open]:
    from dgp_toolkit.restoration import full_resolution_task, load_input

    start = time.perf_counter()
    if entry.error:
        raise DGPUsageError(entry.error)
    inp = load_input(entry.path)
    setup.degradation.check_image_size(*inp.size)
    full = full_resolution_task(setup, inp, fit=job.fit, simulate=job.simulate) is not None
    outputs = planned_outputs(job.out_dir, entry.name, sheet=job.sheet, full=full)
    replace = job.overwrite or index in plan.replace
    _check_free(outputs, replace, job.protect)
    state = job.state_path(entry.name)
    if state is not None:
        check_output_file(state, "--save-state", overwrite=replace, protect=job.protect)
    return inp, _Open(entry, record, outputs, replace, start)


def _check_free(outputs: dict[str, Path], replace: bool, inputs: Sequence[Path]) -> None:
    for path in outputs.values():
        for source in inputs:
            if path.resolve() == Path(source).resolve():
                raise DGPUsageError(f"{path}: refusing to overwrite an input image; choose another --output")
    if replace:
        return
    existing = [str(p) for p in outputs.values() if p.exists()]
    if existing:
        more = f" (and {len(existing) - 1} more of its outputs)" if len(existing) > 1 else ""
        raise DGPUsageError(f"{existing[0]} already exists{more}; pass --overwrite to replace it")


def _finish(setup: Any, job: FolderJob, opened: _Open, index: int, out: Any, report: Report, hold: Any) -> None:
    """Write a restored input's outputs (or report its failure), then report it."""
    from dgp_toolkit.restoration import RestoreFailure, json_safe

    if isinstance(out, RestoreFailure):
        _report_failure(report, job, index, opened.entry, opened.record, out.error, opened.start)
        return
    record, outputs = opened.record, opened.outputs
    record.update(output=str(outputs["restored"]), **{"class": out.class_index},
                  observation=_scores(out.metrics, "observation"), result=_scores(out.metrics, "result"),
                  seconds=round(out.seconds, 3))
    state = job.state_path(opened.entry.name)
    run = {**out.config, "notes": out.notes, "metrics": out.metrics, "seconds": record["seconds"],
           "outputs": {k: str(v) for k, v in outputs.items()}, "command": job.command_line(opened.entry.path),
           "history": out.history}
    if hold is not None:
        hold.take()
    try:
        _write_outputs(setup, job, out, outputs, json_safe(run), state, opened)
    except Exception as exc:  # noqa: BLE001 - reported as this input's error; the others go on
        _report_failure(report, job, index, opened.entry, record, exc, opened.start)
    else:
        lines: list[tuple[str, str | None]] = []
        if not job.quiet:
            lines.append((_summary(opened.entry.name, out, record, setup.prior), None))
            lines += [(f"  {note}", "dim") for note in out.notes]
            if out.stopped == "non_finite":
                lines.append((f"  warning: {out.message}", "yellow"))
        report(index, record, 0, lines)
    finally:
        if hold is not None:
            hold.release()  # a Ctrl-C during the writes takes effect now that the input is reported


def _write_outputs(setup: Any, job: FolderJob, result: Any, outputs: dict[str, Path], run: dict[str, Any],
                   state: Path | None, opened: _Open) -> None:
    """Write every output atomically, the saved state (if any) before ``NAME_run.json``;
    on Ctrl-C or failure remove the ones this call wrote."""
    from dgp_toolkit.images import write_atomic, write_image

    images = {"restored": result.image, "observed": result.observation, "full_resolution": result.full_resolution}
    written: list[Path] = []
    replace, protect = opened.replace, job.protect
    try:
        for key, path in outputs.items():
            if key == "run":
                if state is not None:
                    from dgp_toolkit.state import reconstruction_from_result, save_state

                    save_state(state, reconstruction_from_result(setup.prior, result, preset=setup.preset,
                                                                 seed=job.options.seed, source=str(opened.entry.path)),
                               overwrite=replace, protect=protect)
                    written.append(state)
                data = json.dumps(run, indent=2, allow_nan=False).encode("utf-8") + b"\n"
                write_atomic(path, lambda handle: handle.write(data), overwrite=replace, protect=protect)
            else:
                image = result.sheet() if key == "sheet" else images[key]
                write_image(image, path, overwrite=replace, protect=protect)
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def _report_failure(report: Report, job: FolderJob, index: int, entry: Entry, record: dict[str, Any],
                    exc: BaseException, start: float) -> None:
    lines: list[tuple[str, str | None]] = []
    if isinstance(exc, DGPError):
        message, code = str(exc), 2 if isinstance(exc, DGPUsageError) else 1
    else:
        if job.debug:
            import traceback

            lines.append(("".join(traceback.format_exception(exc)), "traceback"))
        message, code = f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())}", 1
        if not job.debug:
            message += " (run `dgp-tool --debug restore ...` for the traceback)"
    record.update(error=_error_line(entry.path, message), output=None, seconds=round(time.perf_counter() - start, 3))
    lines.append((f"Error: {record['error']}", "error"))
    report(index, record, code, lines)


def _error_line(path: Path, message: str) -> str:
    message = " ".join(str(message).split())
    label = str(path)
    return message if message.startswith(label) else f"{label}: {message}"


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


# ----------------------------------------------------------------------------- gathering
def merge_records(plan: Plan, reported: dict[int, tuple[dict[str, Any], int]]) -> tuple[list[dict[str, Any]], list[int]]:
    """The records and exit codes in input order: the resumed inputs' and those reported
    (``index -> (record, code)``, from every rank); inputs neither done nor reported (not
    started when a run was stopped) are left out."""
    merged = {i: (record, 0) for i, record in plan.done.items()} | dict(reported)
    order = sorted(merged)
    return [merged[i][0] for i in order], [merged[i][1] for i in order]


def exit_code(codes: Sequence[int]) -> int:
    """0 when every input was restored; one input alone: its code (2 a bad input, 1 a
    runtime failure); several: 3 when any failed."""
    failed = [c for c in codes if c]
    if not failed:
        return 0
    return failed[0] if len(codes) == 1 else 3
