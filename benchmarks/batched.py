"""Throughput of the batched engine: images per hour and peak memory by batch size.

    python benchmarks/batched.py folder --task deblurring --images 8 --batches 1,2,4,8 \\
        --out benchmarks/results/batched
    python benchmarks/batched.py step --sizes 32,128 --batches 1,2,4 --out benchmarks/results/batched
    python benchmarks/batched.py table --out benchmarks/results/batched

``folder``  restores the first ``--images`` dev images (``--simulate``, the task's preset,
            seed 0) in fresh subprocesses, one per setting, in the same run:

            - ``baseline``: what a folder cost before the batched engine, ``--workers 2``:
              two processes of one thread, each image its own batch-1 run with its own
              latent candidates (drawn and scored per image: nothing shared);
            - ``batch B``: one process with every core, ``restore_stream`` with ``batch=B``
              generator copies and the folder's shared candidates (``dgp-tool restore
              FOLDER --batch B``).

            Reports images per hour, the ratio to the baseline, mean PSNR and peak RSS.
``step``    one fine-tuning step per image (G forward, D features, backward, Adam) with B
            stacked generator copies, random weights in the official layout (32 px: the
            embedded prior's architecture; 128 px: ch96 with attention), on ``--device``.
``equivalence``  the same ``--images`` dev images restored with ``--batch 1`` and ``--batch B``
            (``--batches``' last): the classes chosen, PSNR per image and the spread.
``table``   writes ``batched.md`` from the JSON files in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_common import machine  # noqa: E402

TASKS = {"deblurring": ["blur"], "super-resolution": ["downsample:factor=4"], "colorization": ["gray"],
         "inpainting": ["mask"], "denoising": ["noise"]}


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------- folder
def folder_worker(task: str, images: list[int], batch: int, shared: bool, threads: int, scale: float) -> dict:
    """Restore dev images ``images`` in this process; one JSON-able row."""
    import torch

    torch.set_num_threads(threads)
    from quality import dev_subset

    from dgp_toolkit.engine import RunOptions
    from dgp_toolkit.restoration import RestoreFailure, load_input, prepare_restore, restore_stream

    x, _, _ = dev_subset(max(images) + 1)
    setup = prepare_restore(TASKS[task], "biggan", device="cpu")
    options = RunOptions(seed=0, iterations_scale=scale, snapshots=False)
    start = time.perf_counter()
    psnrs = []
    if shared:
        stream = restore_stream(setup, [(i, load_input(x[i])) for i in images], options=options, simulate=True,
                                batch=batch)
        outs = [out for _, out in stream]
    else:  # one stream (and one candidate cache) per image: nothing shared, as before batching
        outs = [out for i in images for _, out in restore_stream(setup, [(i, load_input(x[i]))], options=options,
                                                                  simulate=True, batch=batch)]
    for out in outs:
        if isinstance(out, RestoreFailure):
            raise out.error
        psnrs.append(out.metrics["result"]["psnr"])
    return {"seconds": time.perf_counter() - start, "psnr": psnrs, "peak_rss_mb": _maxrss_mb()}


def _spawn(args: list[str], timeout: float) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{args}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _two_processes(args: argparse.Namespace, images: list[int], batch: int, share: bool) -> dict:
    """``images`` split over two one-thread processes (``--workers 2``), run at once."""
    common = ["--task", args.task, "--iterations-scale", str(args.iterations_scale), "--batch", str(batch),
              "--threads", "1", *([] if share else ["--no-share"])]
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, __file__, "_folder", *common, "--images-list",
                               ",".join(map(str, images[w::2]))],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT) for w in range(2)]
    parts = []
    for p in procs:
        out, err = p.communicate(timeout=args.timeout)
        if p.returncode != 0:
            raise RuntimeError(err[-2000:])
        parts.append(json.loads(out.strip().splitlines()[-1]))
    return {"seconds": time.perf_counter() - t0, "psnr": [v for p in parts for v in p["psnr"]],
            "peak_rss_mb": sum(p["peak_rss_mb"] for p in parts)}


def folder(args: argparse.Namespace) -> dict:
    """Every setting as two one-thread processes, each on half the images (what ``--workers 2``
    does): on a 2-core machine that other jobs share, one process of two threads loses most
    of its time to the threads waiting for each other, which would swamp what batching does."""
    images = list(range(args.images))
    rows = [{"setting": "baseline: --workers 2, batch 1, latent candidates per image", "batch": 1,
             **_two_processes(args, images, 1, share=False)}]
    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    for batch in args.batches:
        rows.append({"setting": f"--workers 2 --batch {batch}, candidates shared", "batch": batch,
                     **_two_processes(args, images, batch, share=True)})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    for row in rows:
        row["images_per_hour"] = len(images) * 3600 / row["seconds"]
        row["mean_psnr"] = sum(row["psnr"]) / len(row["psnr"])
        row["ratio"] = row["images_per_hour"] / rows[0]["images_per_hour"]
    return {"part": "folder", "task": args.task, "images": len(images), "iterations_scale": args.iterations_scale,
            "machine": machine(), "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "rows": rows}


# ----------------------------------------------------------------------------- step
def step_worker(size: str, batch: int, device: str, precision: str, reps: int) -> dict:
    import torch


    from step_cost import CONFIGS

    from dgp_toolkit.precision import autocast
    from dgp_toolkit.priors.biggan.model import BigGANConfig
    from dgp_toolkit.priors.biggan.prior import BigGANPrior
    from dgp_toolkit.priors.biggan.synthetic import random_state_dicts
    from dgp_toolkit.priors.biggan.weights import build_networks

    config = BigGANConfig.from_dict(CONFIGS[size])
    G, D = build_networks(config, *random_state_dicts(config), target=size)  # as step_cost.py: official layout
    prior = BigGANPrior(G, D, name=f"random-{size}", device=device)
    copies = prior.generator_copies(batch)
    params = [p for g in prior.stages(copies) for p in g]
    z = torch.randn(batch, prior.dim_z, device=prior.device, requires_grad=True)
    y = torch.randint(prior.n_classes, (batch,), device=prior.device)
    opt = torch.optim.Adam(params + [z], lr=1e-4, betas=(0.0, 0.999))
    target = torch.rand(batch, 3, config.resolution, config.resolution, device=prior.device) * 2 - 1
    with torch.no_grad():
        target_feats = prior.features(target)

    def step() -> None:
        with autocast(prior.device, precision):
            x = prior.generate(z, embedding=prior.embed(y, model=copies), model=copies)
            feats = prior.features(x)
        loss = sum((f.float() - t).abs().mean() for f, t in zip(feats[-3:], target_feats[-3:])) + (x.float() - target).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if prior.device.type == "cuda" else (lambda: None)
    step()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    mem = (torch.cuda.max_memory_allocated() / 2**20 if prior.device.type == "cuda" else _maxrss_mb())
    return {"size": size, "batch": batch, "device": device, "precision": precision,
            "seconds_per_step": times[len(times) // 2], "ms_per_image": 1000 * times[len(times) // 2] / batch,
            "peak_mb": mem}


def step(args: argparse.Namespace) -> dict:
    rows = []
    for size in args.sizes:
        for batch in args.batches:
            rows.append(_spawn(["_step", "--size", size, "--batch", str(batch), "--device", args.device,
                                "--precision", args.precision, "--reps", str(args.reps)], args.timeout))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    for row in rows:
        base = next(r for r in rows if r["size"] == row["size"] and r["batch"] == min(args.batches))
        row["speedup_per_image"] = base["ms_per_image"] / row["ms_per_image"]
    return {"part": "step", "machine": machine() if args.device == "cpu" else args.device, "date": time.strftime("%Y-%m-%d"),
            "command": " ".join(sys.argv), "rows": rows}


# ----------------------------------------------------------------------------- equivalence
def equivalence(args: argparse.Namespace) -> dict:
    import torch

    from quality import dev_subset

    from dgp_toolkit.engine import RunOptions
    from dgp_toolkit.restoration import load_input, prepare_restore, restore_stream

    x, _, _ = dev_subset(args.images)
    setup = prepare_restore(TASKS[args.task], "biggan", device="cpu")
    options = RunOptions(seed=0, iterations_scale=args.iterations_scale, snapshots=False)
    outs = {}
    for batch in (1, args.batches[-1]):
        t0 = time.perf_counter()
        stream = restore_stream(setup, [(i, load_input(x[i])) for i in range(args.images)], options=options,
                                simulate=True, batch=batch)
        outs[batch] = {i: out for i, out in stream}
        print(f"batch {batch}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    single, batched = outs[1], outs[args.batches[-1]]
    rows = [{"image": i, "class_single": single[i].class_index, "class_batched": batched[i].class_index,
             "psnr_single": single[i].metrics["result"]["psnr"], "psnr_batched": batched[i].metrics["result"]["psnr"],
             "max_pixel_diff": float((single[i].tensor - batched[i].tensor).abs().max())} for i in range(args.images)]
    diffs = torch.tensor([r["psnr_batched"] - r["psnr_single"] for r in rows])
    return {"part": "equivalence", "task": args.task, "images": args.images, "batch": args.batches[-1],
            "iterations_scale": args.iterations_scale, "machine": machine(), "date": time.strftime("%Y-%m-%d"),
            "command": " ".join(sys.argv), "rows": rows,
            "same_class": sum(r["class_single"] == r["class_batched"] for r in rows),
            "mean_psnr_single": sum(r["psnr_single"] for r in rows) / len(rows),
            "mean_psnr_batched": sum(r["psnr_batched"] for r in rows) / len(rows),
            "psnr_diff_mean": float(diffs.mean()), "psnr_diff_abs_max": float(diffs.abs().max()),
            "psnr_diff_std": float(diffs.std()) if len(rows) > 1 else 0.0}


# ----------------------------------------------------------------------------- table
def table(out: Path) -> str:
    lines = ["# Batched engine: throughput by batch size", ""]
    for path in sorted(out.glob("*.json")):
        data = json.loads(path.read_text())
        lines += [f"`{data['command']}`  ", f"{data['machine']}, {data['date']}", ""]
        if data["part"] == "equivalence":
            lines += [f"{data['task']}, {data['images']} dev images, batch 1 against batch {data['batch']}: "
                      f"the same class for {data['same_class']} of {data['images']}; mean PSNR "
                      f"{data['mean_psnr_single']:.2f} against {data['mean_psnr_batched']:.2f} dB; per image, batched "
                      f"minus single {data['psnr_diff_mean']:+.3f} +- {data['psnr_diff_std']:.3f} dB "
                      f"(largest {data['psnr_diff_abs_max']:.3f})."]
        elif data["part"] == "folder":
            lines += [f"{data['task']}, {data['images']} dev images, iterations x{data['iterations_scale']}:", "",
                      "| setting | images / hour | vs baseline | mean PSNR (dB) | peak RSS (MB) |",
                      "|---|---:|---:|---:|---:|"]
            lines += [f"| {r['setting']} | {r['images_per_hour']:.0f} | {r['ratio']:.2f}x | {r['mean_psnr']:.2f} | "
                      f"{r['peak_rss_mb']:.0f} |" for r in data["rows"]]
        else:
            lines += ["| size | device | precision | B | s / step | ms / image | per-image speed-up | peak MB |",
                      "|---|---|---|---:|---:|---:|---:|---:|"]
            lines += [f"| {r['size']} px | {r['device']} | {r['precision']} | {r['batch']} | {r['seconds_per_step']:.3f} | "
                      f"{r['ms_per_image']:.1f} | {r['speedup_per_image']:.2f}x | {r['peak_mb']:.0f} |"
                      for r in data["rows"]]
        lines.append("")
    text = "\n".join(lines)
    (out / "batched.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["folder", "step", "equivalence", "table", "_folder", "_step"])
    parser.add_argument("--task", default="deblurring", choices=sorted(TASKS))
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--images-list", default="")
    parser.add_argument("--batches", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 4, 8])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-share", action="store_true")
    parser.add_argument("--iterations-scale", type=float, default=1.0)
    parser.add_argument("--sizes", type=lambda s: s.split(","), default=["32", "128"])
    parser.add_argument("--size", default="32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="float32", choices=["float32", "bf16"])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "batched")
    args = parser.parse_args()
    if args.part == "_folder":
        images = [int(v) for v in args.images_list.split(",") if v]
        print(json.dumps(folder_worker(args.task, images, args.batch, not args.no_share, args.threads,
                                       args.iterations_scale)))
        return
    if args.part == "_step":
        print(json.dumps(step_worker(args.size, args.batch, args.device, args.precision, args.reps)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    if args.part == "table":
        print(table(args.out))
        return
    result = {"folder": folder, "step": step, "equivalence": equivalence}[args.part](args)
    name = {"folder": f"folder-{args.task}.json", "step": f"step-{args.device}-{args.precision}.json",
            "equivalence": f"equivalence-{args.task}.json"}[args.part]
    (args.out / name).write_text(json.dumps(result, indent=1) + "\n")
    print(table(args.out))


if __name__ == "__main__":
    main()
