"""Tune a 32-px preset: variants of one task's preset on held-out dev images, PSNR per stage.

    python benchmarks/tune_presets.py --task denoising --n 6 \\
        --variant base='{}' \\
        --variant d0.1='{"schedule": {"weights": {"discriminator": [0.1, 0.1, 0.1, 0.1]}}}'

With ``--prior dip`` the base is the deep-image-prior preset of ``quality.py``
(:func:`dgp_toolkit.priors.dip.dip_preset`) run on the random generator, e.g. to choose
DIP's number of steps (split into stages of equal settings, each stage end is a
checkpoint of one run).

Each variant is a JSON object deep-merged into the task's built-in preset (a list
replaces a list). The images are the *last* ``--n`` of the class-balanced dev order
that ``quality.py`` uses from the front, so tuning never sees the images the quality
table and the acceptance run score (the first 100). For every variant the script
prints the mean PSNR of the observation, of scikit-image's method and of the result
after each stage (the stage snapshots, finished and scored as ``restore --simulate``
scores), so one run shows where a schedule starts to fit the degradation instead of
the image. Rows go to ``--out`` (JSON lines), appended.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import tomllib
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import TASKS, Context, Settings, classical_tensor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "dgp_toolkit" / "plugins" / "presets" / "biggan-32"


def merge(base: dict, change: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def variant_toml(base: dict, change: dict, name: str = "variant", family: str = "biggan-32") -> str:
    """The text of a preset file: ``base`` (a preset TOML's data) with ``change`` merged in,
    validated as a preset and written by :func:`dgp_toolkit.priors.dip.preset_toml`."""
    from dgp_toolkit.presets import preset_from_dict
    from dgp_toolkit.priors.dip import preset_toml

    return preset_toml(preset_from_dict(merge(base, change), name, family=family, source=f"variant {name}"))


_CTX = None


def _init(settings_dict):
    import torch

    global _CTX
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", UserWarning)
    _CTX = Context(Settings(**settings_dict))


def _job(job):
    import torch

    from dgp_toolkit.presets import load_preset
    from dgp_toolkit.restoration import load_input, prepare_restore, restore_input

    ctx = _CTX
    prior = ctx.dip if job["prior"] == "dip" else ctx.prior
    preset = load_preset(ROOT / job["preset_file"], prior)
    setup = prepare_restore([TASKS[job["task"]]], prior, preset=preset)
    clean = torch.from_numpy(job["clean"]).float()[None]
    seed = job["seed"]
    with torch.no_grad():
        target = setup.degradation.degrade(clean, generator=torch.Generator().manual_seed(seed))
    base = setup.score(classical_tensor(job["task"], setup, clean, target), target, clean)
    t0 = time.perf_counter()
    result = restore_input(setup, load_input(clean[0]), simulate=True, seed=seed, snapshot_stages=True,
                           precision=job["precision"])
    stages = []
    for snap in result.snapshots:
        with torch.no_grad():
            fin = setup.degradation.finish(snap.float(), target).clamp(-1, 1)
        stages.append(setup.score(fin, target, clean)["result"]["psnr"])
    return {"task": job["task"], "prior": job["prior"], "variant": job["variant"], "overrides": job["overrides"],
            "preset_file": job["preset_file"], "position": job["position"],
            "observation": base["observation"]["psnr"], "classical": base["result"]["psnr"],
            "result": result.metrics["result"]["psnr"], "stages": stages, "class": result.class_index,
            "seconds": time.perf_counter() - t0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", required=True, choices=sorted(TASKS))
    ap.add_argument("--variant", action="append", required=True, help="NAME=JSON overrides")
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--prior", default="biggan", choices=["biggan", "dip"],
                    help="biggan: the task's built-in 32-px preset is the base; dip: quality.py's DIP preset")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tuning.jsonl"))
    args = ap.parse_args(argv)

    from quality import dev_subset

    images, dev_idx, _ = dev_subset(1000)
    positions = list(range(1000 - args.n, 1000))
    if args.prior == "dip":
        from dgp_toolkit.priors.dip import dip_preset_toml

        base, family, stem = tomllib.loads(dip_preset_toml(args.task)), "dip", f"dip-{args.task}"
    else:
        base, family, stem = tomllib.loads((PRESETS / f"{args.task}.toml").read_text()), "biggan-32", args.task
    tmp = ROOT / "benchmarks" / "results" / "tuning-presets"
    tmp.mkdir(parents=True, exist_ok=True)
    jobs = []
    for spec in args.variant:
        name, _, text = spec.partition("=")
        path = tmp / f"{stem}-{name}.toml"
        path.write_text(variant_toml(base, json.loads(text or "{}"), name, family))
        for pos in positions:
            jobs.append({"task": args.task, "variant": name, "overrides": text or "{}",
                         "preset_file": str(path.relative_to(ROOT)), "position": pos,
                         "clean": images[pos].numpy(), "seed": pos, "precision": args.precision,
                         "prior": args.prior})
    import multiprocessing

    rows = []
    t0 = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.workers, initializer=_init,
                                                   initargs=({"select_num": None},)) as pool:
        for row in pool.imap_unordered(_job, jobs):
            rows.append(row)
            print(f"[{len(rows)}/{len(jobs)} {time.perf_counter() - t0:.0f}s] {row['variant']} #{row['position']}: "
                  f"obs {row['observation']:.2f} cls {row['classical']:.2f} "
                  f"stages {' '.join(f'{s:.2f}' for s in row['stages'])}", file=sys.stderr, flush=True)
            with open(args.out, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    names = [s.partition("=")[0] for s in args.variant]
    print(f"\n{args.task}, {args.n} held-out dev images, mean PSNR (dB):")
    for name in names:
        r = [x for x in rows if x["variant"] == name]
        st = np.mean([x["stages"] for x in r], axis=0)
        print(f"  {name:>14}: obs {np.mean([x['observation'] for x in r]):.2f}  "
              f"classical {np.mean([x['classical'] for x in r]):.2f}  result {np.mean([x['result'] for x in r]):.2f}  "
              f"stages {' '.join(f'{s:.2f}' for s in st)}  ({np.mean([x['seconds'] for x in r]):.0f} s/image)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
