"""Speed and memory of the toolkit: per task, per step, selection, a folder of images.

    python benchmarks/speed.py [--parts tasks,steps,selection,folder] [--iterations-scale 1.0]
                               [--precision float32] [--out benchmarks/results/speed]

Parts (each in fresh subprocesses, so that peak memory and start-up are those of one run):

``tasks``      one CIFAR-10 dev image per preset of the embedded prior, ``restore --simulate``
               as a user runs it: seconds per phase (start-up = interpreter, imports, prior
               and preset loading; selection; optimization), total wall time, peak RSS
``steps``      one optimization step of G+D at 32, 64, 128 and 256 px, random weights with the
               official channel widths, float32 and bf16 (``step_cost.py``), on the CPU and on
               CUDA when present (MPS cannot be measured on these machines)
``selection``  latent selection of 500 candidates on the embedded prior: one at a time (the
               reference's way) and batched, float32 and bf16
``folder``     ``dgp-tool restore FOLDER --workers N`` on a folder of 8 dev images
               (super-resolution x4), N = 1 (one process, every core) and 2 (two worker
               processes, half the cores each); images per hour

Writes ``speed.json`` (every figure, with the machine, date and command of the run that made
it) and ``speed.md`` (the tables) in ``--out``; ``benchmarks/docs_tables.py`` copies the
tables into docs/benchmarks.md. A run of some parts replaces those parts in ``speed.json`` and keeps
the others, so the parts can be measured in separate runs (each table names its command).
``--iterations-scale`` below 1 gives a quick look (the tables say so).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_common import machine  # noqa: E402

#: preset -> the degradations of its test image
TASKS = {
    "colorization": ["gray"], "inpainting": ["mask"], "super-resolution": ["downsample:factor=4"],
    "deblurring": ["blur"], "denoising": ["noise"], "reconstruction": [], "hybrid": ["gray", "mask"],
    "manipulation": [],
}
PARTS = ("tasks", "steps", "selection", "folder")


def _maxrss_mb(who: int = resource.RUSAGE_SELF) -> float:
    scale = 1 / (1024 * 1024) if sys.platform == "darwin" else 1 / 1024
    return resource.getrusage(who).ru_maxrss * scale


@functools.lru_cache(maxsize=1)
def _dev_split():
    from classifier import load_split

    return load_split("test_dev")[0]


def dev_image(k: int):
    """Dev image ``k``, ``(3, 32, 32)`` in [-1, 1]."""
    return _dev_split()[k]


# --------------------------------------------------------------------------- workers
def task_worker(task: str, launched: float, scale: float, precision: str, image: str, seed: int) -> dict:
    """One ``restore --simulate`` of the PNG ``image`` in this fresh process (started at wall
    time ``launched``): what ``dgp-tool restore`` does, without the CLI's file writing."""
    import dgp_toolkit  # noqa: F401 - part of the start-up being measured
    from dgp_toolkit.restoration import load_input, prepare_restore, restore_input

    setup = prepare_restore(TASKS[task], "biggan", preset=task)
    inp = load_input(image)
    startup = time.time() - launched
    t0 = time.perf_counter()
    result = restore_input(setup, inp, simulate=True, seed=seed, iterations_scale=scale,
                           snapshot_stages=False, precision=precision)
    return {"task": task, "startup_s": startup, "select_s": result.timings.get("select_s"),
            "optimize_s": result.timings.get("optimize_s"), "restore_s": time.perf_counter() - t0,
            "steps": len(result.history), "select_num": setup.preset.select_num,
            "psnr": (result.metrics or {}).get("result", {}).get("psnr"),
            "peak_rss_mb": _maxrss_mb(), "precision": result.config["engine"]["precision"]}


def selection_worker(n: int, precision: str) -> dict:
    import torch

    import dgp_toolkit
    from dgp_toolkit.engine import d_feature_distance, draw_candidates, score_candidates

    prior = dgp_toolkit.load_prior("biggan")
    deg = dgp_toolkit.parse_degradation("downsample:factor=4")
    target = deg.degrade(dev_image(0)[None], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feats = [f.detach() for f in prior.D(target)[1]]
        z, y = draw_candidates(prior, n, 0.3, None, torch.Generator().manual_seed(0))
        score_candidates(prior, deg, feats, z[:16], y[:16], precision=precision)  # warm-up
        t0 = time.perf_counter()
        batched = score_candidates(prior, deg, feats, z, y, precision=precision)
        t_batched = time.perf_counter() - t0
        t0 = time.perf_counter()
        best, best_score = 0, float("inf")
        for i in range(n):  # the reference's loop: D(target) again for every candidate
            x = deg(prior.G(z[i:i + 1], prior.G.shared(y[i:i + 1])))
            score = float(d_feature_distance(prior.D(x)[1], prior.D(target)[1], 3))
            if score < best_score:
                best, best_score = i, score
        t_single = time.perf_counter() - t0
    return {"candidates": n, "precision": precision, "batched_s": t_batched, "one_at_a_time_s": t_single,
            "same_pick": int(batched.argmin()) == best, "threads": torch.get_num_threads()}


# --------------------------------------------------------------------------- parts
def _python(args: list[str], env: dict | None = None, timeout: float = 3600) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def part_tasks(scale: float, precision: str) -> list[dict]:
    from dgp_toolkit.images import to_pil

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, task in enumerate(TASKS):
            image = Path(tmp) / f"dev_{k}.png"
            to_pil(dev_image(k)[None]).save(image)
            launched = time.time()
            row = _python(["--worker", "task", task, str(image), "--launched", repr(launched),
                           "--iterations-scale", repr(scale), "--precision", precision, "--index", str(k)])
            row["wall_s"] = time.time() - launched
            rows.append(row)
            print(f"tasks: {task}: {row['wall_s']:.1f} s (start-up {row['startup_s']:.1f}, select {row['select_s']:.1f}, "
                  f"optimize {row['optimize_s']:.1f}), {row['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
    return rows


def part_steps(out: Path, reps: int) -> dict:
    import torch

    results = {}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        path = out / f"step_cost_{device}.json"
        cmd = [sys.executable, str(ROOT / "benchmarks" / "step_cost.py"), "--reps", str(reps), "--device", device,
               "--json", str(path), "--budget", "30", "--timeout", "300"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        results[device] = json.loads(path.read_text())["results"]
        path.unlink()
    results["mps"] = "not measured: no Apple GPU on these machines"
    return results


def part_selection(n: int) -> list[dict]:
    rows = []
    for precision in ("float32", "bf16"):
        row = _python(["--worker", "selection", str(n), "--precision", precision])
        rows.append(row)
        print(f"selection {precision}: batched {row['batched_s']:.2f} s, one at a time {row['one_at_a_time_s']:.2f} s",
              file=sys.stderr, flush=True)
    return rows


def part_folder(scale: float, precision: str, count: int = 8) -> list[dict]:
    from dgp_toolkit.images import to_pil

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "in"
        folder.mkdir()
        for k in range(count):
            to_pil(dev_image(100 + k)[None]).save(folder / f"dev_{k}.png")
        exe = str(Path(sys.executable).with_name("dgp-tool"))
        common = ["--degrade", "downsample:factor=4", "--simulate", "--quiet", "--iterations-scale", repr(scale),
                  "--precision", precision]
        cores = os.cpu_count() or 1
        for workers in (1, 2):
            t0 = time.time()
            subprocess.run([exe, "restore", str(folder), "-o", str(tmp / f"out{workers}"), "--workers", str(workers),
                            *common], check=True, stdout=subprocess.DEVNULL)
            wall = time.time() - t0
            rows.append({"workers": workers, "threads_each": max(1, cores // workers), "images": count,
                         "wall_s": wall, "images_per_hour": 3600 * count / wall,
                         "command": f"dgp-tool restore FOLDER --workers {workers} {' '.join(common)}"})
    for r in rows:
        print(f"folder: {r['workers']} worker(s): {r['wall_s']:.0f} s, {r['images_per_hour']:.0f} images/hour",
              file=sys.stderr, flush=True)
    return rows


# --------------------------------------------------------------------------- tables
def _provenance(run: dict) -> list[str]:
    st = run["settings"]
    return [f"Command: `{run['command']}`  ", f"Ran {run['date']} on {run['machine']}; torch {run['torch']}; "
            f"engine precision {st['precision']}; iterations scale {st['iterations_scale']} of each preset.", ""]


def _load(path: Path) -> dict:
    """``speed.json`` as ``{"parts": {part: {command, date, machine, torch, settings, rows}}}``
    (a file of the older one-run layout is read as one run of its parts)."""
    if not path.exists():
        return {"parts": {}}
    data = json.loads(path.read_text())
    if "parts" in data:
        return data
    run = {k: data[k] for k in ("command", "date", "machine", "torch", "settings") if k in data}
    return {"parts": {p: {**run, "rows": data[p]} for p in PARTS if p in data}}


def markdown(data: dict) -> str:
    parts = data["parts"]
    lines: list[str] = []
    last = None

    def header(part: str) -> None:
        nonlocal last
        run = {k: v for k, v in parts[part].items() if k in ("command", "date", "machine", "torch", "settings")}
        if run != last:
            lines.extend(_provenance(run))
            last = run

    if "tasks" in parts:
        header("tasks")
        lines += ["| preset | steps | candidates | start-up s | selection s | optimization s | total s | peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in parts["tasks"]["rows"]:
            lines.append(f"| {r['task']} | {r['steps']} | {r['select_num']} | {r['startup_s']:.1f} | {r['select_s']:.1f} "
                         f"| {r['optimize_s']:.1f} | {r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} |")
        lines.append("")
    if "selection" in parts:
        header("selection")
        lines += ["| latent selection | precision | batched s | one at a time s | ratio | same pick |", "|---|---|---|---|---|---|"]
        for r in parts["selection"]["rows"]:
            lines.append(f"| {r['candidates']} candidates | {r['precision']} | {r['batched_s']:.2f} | "
                         f"{r['one_at_a_time_s']:.2f} | {r['one_at_a_time_s'] / r['batched_s']:.2f}x | {r['same_pick']} |")
        lines.append("")
    if "folder" in parts:
        header("folder")
        lines += ["| folder of 8 images (SR x4) | wall s | images / hour |", "|---|---|---|"]
        for r in parts["folder"]["rows"]:
            lines.append(f"| {r['workers']} process(es), {r['threads_each']} thread(s) each | {r['wall_s']:.0f} | "
                         f"{r['images_per_hour']:.0f} |")
        lines.append("")
    if "steps" in parts:
        header("steps")
        lines += ["One optimization step of G+D, batch 1, random weights with the official widths "
                  "(`step_cost.py`), all cores:", "",
                  "| device | px | G_ch | precision | s / step (median) | peak memory MB |", "|---|---|---|---|---|---|"]
        from step_cost import CONFIGS

        for device, rows in parts["steps"]["rows"].items():
            if isinstance(rows, str):
                lines.append(f"| {device} | - | - | - | {rows} | - |")
                continue
            for r in rows:
                c = CONFIGS[r["config"]]
                if "timed_out_after_s" in r:
                    lines.append(f"| {device} | {c['resolution']} | {c['G_ch']} | {r['precision']} | "
                                 f"> {r['timed_out_after_s']:.0f} (abandoned) | - |")
                    continue
                mem = r.get("peak_cuda_mb", r["peak_rss_mb"])
                lines.append(f"| {device} | {c['resolution']} | {c['G_ch']} | {r['precision']} | "
                             f"{r['median_s']:.3f} | {mem:.0f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {', '.join(PARTS)}")
    parser.add_argument("--iterations-scale", type=float, default=1.0)
    parser.add_argument("--precision", default="float32", choices=["auto", "float32", "bf16"])
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--reps", type=int, default=3, help="timed steps per step-cost configuration")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speed")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--launched", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        kind, *rest = args.worker
        if kind == "task":
            row = task_worker(rest[0], args.launched, args.iterations_scale, args.precision, rest[1], args.index)
        else:
            row = selection_worker(int(rest[0]), args.precision)
        print(json.dumps(row))
        return 0

    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not parts or any(p not in PARTS for p in parts):
        parser.error(f"--parts {args.parts!r}: choose from {', '.join(PARTS)}")
    if not args.iterations_scale > 0:
        parser.error("--iterations-scale must be positive")
    import torch

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    run = {"command": "python benchmarks/speed.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
           "torch": torch.__version__,
           "settings": {"iterations_scale": args.iterations_scale, "precision": args.precision,
                        "candidates": args.candidates}}
    measure = {"tasks": lambda: part_tasks(args.iterations_scale, args.precision),
               "selection": lambda: part_selection(args.candidates),
               "folder": lambda: part_folder(args.iterations_scale, args.precision),
               "steps": lambda: part_steps(out, args.reps)}
    data = _load(out / "speed.json")
    for part in PARTS:
        if part in parts:
            before = os.getloadavg()
            rows = measure[part]()
            data["parts"][part] = {**run, "loadavg_before": before, "loadavg_after": os.getloadavg(), "rows": rows}
            # written after every part: an interrupted run keeps what it measured
            (out / "speed.json").write_text(json.dumps(data, indent=2) + "\n")
    table = markdown(data)
    (out / "speed.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
