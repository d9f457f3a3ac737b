"""Images per hour of a folder restored by several processes: one process, torchrun with 1
and 2 ranks, and ``--workers 2``, in the same run (and one rank per GPU where there are GPUs).

    python benchmarks/distributed.py [--task super-resolution] [--images 8] [--iterations-scale 1.0]
        [--settings one,rank1,rank2,workers2] [--gpus N] [--batch B] [--out benchmarks/results/distributed]

Each setting restores the same ``--images`` dev images (``--simulate``, the task's preset,
seed 0, ``--device cpu``) from one folder into a fresh output folder, in fresh processes,
one setting after the other:

- ``one``:      ``dgp-tool restore FOLDER`` (one process, every core)
- ``rank1``:    ``torchrun --standalone --nproc-per-node 1 -m dgp_toolkit restore FOLDER``
- ``rank2``:    the same with 2 ranks (each with half the cores)
- ``workers2``: ``dgp-tool restore FOLDER --workers 2`` (the same two local ranks, started by
                the command through the same launcher)
- ``gpus``:     with ``--gpus N``: torchrun with N ranks, ``--device auto``: one rank per GPU

The wall time includes start-up (interpreter, imports, the prior, the rendezvous): what a
user waits for. Each row has images per hour, the ratio to ``one``, the mean PSNR of the
results (from the JSON list, which also shows that every image was restored). Writes
``distributed.json`` and ``distributed.md`` in ``--out``. ``--iterations-scale`` below 1
gives a quick look (the table says so).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_common import machine  # noqa: E402

TASKS = {"super-resolution": ["downsample:factor=4"], "deblurring": ["blur"], "colorization": ["gray"],
         "inpainting": ["mask"], "denoising": ["noise"]}
SETTINGS = ("one", "rank1", "rank2", "workers2")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def command(setting: str, folder: Path, out: Path, args: argparse.Namespace) -> tuple[list[str], int, int]:
    """The command of one setting, its number of processes and torch threads each."""
    restore = ["restore", str(folder), "-o", str(out), "--simulate", "--quiet", "--seed", "0",
               "--iterations-scale", repr(args.iterations_scale)]
    restore += [x for spec in TASKS[args.task] for x in ("--degrade", spec)]
    restore += ["--batch", str(args.batch)] if args.batch else []
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    module = ["-m", "dgp_toolkit"]
    if setting == "one":
        return [sys.executable, *module, *restore, "--device", "cpu"], 1, _cores()
    if setting in ("rank1", "rank2"):
        n = int(setting[-1])
        return [*torchrun, "--nproc-per-node", str(n), *module, *restore, "--device", "cpu"], n, max(1, _cores() // n)
    if setting == "workers2":
        return [sys.executable, *module, *restore, "--device", "cpu", "--workers", "2"], 2, max(1, _cores() // 2)
    if setting == "gpus":
        return [*torchrun, "--nproc-per-node", str(args.gpus), *module, *restore, "--device", "auto"], args.gpus, 0
    raise ValueError(f"unknown setting {setting!r}; choose from {', '.join((*SETTINGS, 'gpus'))}")


def write_folder(folder: Path, n: int) -> None:
    """The first ``n`` dev images (class-balanced order) as PNG files."""
    from quality import dev_subset

    from dgp_toolkit.images import to_pil

    folder.mkdir(parents=True)
    x, order, _ = dev_subset(n)
    for image, index in zip(x, order):
        to_pil(image[None]).save(folder / f"dev_{index:04d}.png")


def run(args: argparse.Namespace) -> dict:
    settings = list(args.settings) + (["gpus"] if args.gpus else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        write_folder(folder, args.images)
        for setting in settings:
            out = Path(tmp) / f"out-{setting}"
            cmd, processes, threads = command(setting, folder, out, args)
            # torchrun sets OMP_NUM_THREADS=1 where it is not set (and says so); each rank sets its own threads
            setting_env = env if setting == "one" else {**env, "OMP_NUM_THREADS": "1"}
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=setting_env, capture_output=True, text=True, timeout=args.timeout)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise RuntimeError(f"{setting}: exit {proc.returncode}: {proc.stderr[-3000:]}")
            records = json.loads(proc.stdout)
            psnrs = [r["result"]["psnr"] for r in records if r["error"] is None and r["result"]]
            rows.append({"setting": setting, "processes": processes, "threads_each": threads, "images": len(records),
                         "restored": len(psnrs), "wall_s": wall, "images_per_hour": len(records) * 3600 / wall,
                         "mean_psnr": sum(psnrs) / len(psnrs) if psnrs else None,
                         "command": " ".join(Path(c).name if c == sys.executable else c for c in cmd)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    base = next((r for r in rows if r["setting"] == "one"), rows[0])
    for row in rows:
        row["ratio"] = row["images_per_hour"] / base["images_per_hour"]
    return {"task": args.task, "images": args.images, "iterations_scale": args.iterations_scale,
            "batch": args.batch, "machine": machine(), "date": time.strftime("%Y-%m-%d"),
            "command": " ".join(["python", "benchmarks/distributed.py", *sys.argv[1:]]), "rows": rows}


LABELS = {"one": "one process, every core", "rank1": "torchrun, 1 rank", "rank2": "torchrun, 2 ranks",
          "workers2": "--workers 2 (2 local ranks)", "gpus": "torchrun, one rank per GPU"}


def table(data: dict) -> str:
    scale = "" if data["iterations_scale"] == 1.0 else f", iterations x{data['iterations_scale']} (a quick look)"
    lines = ["# A folder over processes: images per hour", "", f"`{data['command']}`  ",
             f"{data['machine']}, {data['date']}; {data['task']}, {data['images']} dev images, "
             f"--batch {data['batch'] or 'default'}{scale}; wall time including start-up.", "",
             "| setting | processes x threads | wall s | images / hour | vs one process | mean PSNR (dB) |",
             "|---|---|---:|---:|---:|---:|"]
    for r in data["rows"]:
        threads = "GPU" if r["setting"] == "gpus" else f"{r['processes']} x {r['threads_each']}"
        psnr = "-" if r["mean_psnr"] is None else f"{r['mean_psnr']:.2f}"
        restored = "" if r["restored"] == r["images"] else f" ({r['restored']} of {r['images']} restored)"
        lines.append(f"| {LABELS[r['setting']]}{restored} | {threads} | {r['wall_s']:.0f} | "
                     f"{r['images_per_hour']:.0f} | {r['ratio']:.2f}x | {psnr} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="super-resolution", choices=sorted(TASKS))
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--iterations-scale", type=float, default=1.0)
    parser.add_argument("--settings", type=lambda s: [v for v in s.split(",") if v], default=list(SETTINGS))
    parser.add_argument("--gpus", type=int, default=0, help="also torchrun with this many ranks on CUDA")
    parser.add_argument("--batch", type=int, default=0, help="--batch of every setting (0: the command's default)")
    parser.add_argument("--timeout", type=float, default=7200)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "distributed")
    args = parser.parse_args()
    unknown = sorted(set(args.settings) - set(SETTINGS))
    if unknown:
        parser.error(f"unknown setting(s) {', '.join(unknown)}; choose from {', '.join(SETTINGS)}")
    data = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "distributed.json").write_text(json.dumps(data, indent=1) + "\n")
    text = table(data)
    (args.out / "distributed.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
