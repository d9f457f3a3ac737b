"""How much averaging runs (a preset's ``runs``, ``restore --runs``) gains, on held-out images.

    python benchmarks/runs_study.py --task super-resolution --n 12 --runs 4

For each of the *last* ``--n`` images of the class-balanced dev order (the held-out images
``tune_presets.py`` tunes on; never the ones ``quality.py`` scores; ``--images first``
takes quality.py's first ``--n`` instead, to check a choice, not to make it) it restores once per
seed ``0 .. RUNS-1`` with the task's built-in preset at ``runs = 1`` (the observation is the
one of seed 0, as ``restore(seed=0, runs=k)`` simulates it), then forms for every ``k`` the
mean of the first ``k`` runs exactly as ``restore(..., seed=0, runs=k)`` does (the same
divergence rule: :func:`dgp_toolkit.restoration.averaged_runs`; each run is a whole,
independent engine run, so the first ``k`` of them are what ``runs=k`` computes) and
scores it the way ``restore --simulate`` scores. Prints the mean PSNR of the observation,
of scikit-image's method and of the mean of 1 .. RUNS runs; appends one JSON row per image
to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import TASKS, Context, Settings, classical_tensor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GREY_DB = 60.0  # an observation scoring above this is a grey original (colorization)
_CTX = None


def _init(settings_dict: dict) -> None:
    import torch

    global _CTX
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", UserWarning)
    _CTX = Context(Settings(**settings_dict))


def _run(job: dict) -> dict:
    """One seed of one image: the raw output and what the divergence rule reads."""
    import torch

    from dgp_toolkit.restoration import final_loss, load_input, restore_input

    setup = _CTX.setup(job["task"], "dgp")
    clean = torch.from_numpy(job["clean"]).float()[None]
    result = restore_input(setup, load_input(clean[0]), simulate=True, seed=job["seed"], snapshot_stages=False,
                           precision=job["precision"], runs=1, iterations_scale=_CTX.settings.iterations_scale)
    return {"position": job["position"], "seed": job["seed"], "raw": result.raw.numpy(),
            "loss": final_loss(result),
            "stopped": result.stopped, "psnr": result.metrics["result"]["psnr"], "seconds": result.seconds}


class _Run:  # what averaged_runs reads of an engine result
    def __init__(self, row: dict) -> None:
        self.history, self.stopped = [{"loss": row["loss"]}], row["stopped"]


def score_means(setup, clean, runs: list[dict]) -> list[float]:
    """PSNR of the mean of the first k runs, k = 1 .. len(runs) (``restore(seed=0, runs=k)``)."""
    import torch

    from dgp_toolkit.restoration import averaged_runs

    with torch.no_grad():
        target = setup.degradation.degrade(clean, generator=torch.Generator().manual_seed(0))
        out = []
        for k in range(1, len(runs) + 1):
            kept = averaged_runs([_Run(r) for r in runs[:k]])
            raw = torch.from_numpy(np.mean([runs[i]["raw"] for i in kept], axis=0)).float()
            finished = setup.degradation.finish(raw, target).clamp(-1, 1)
            out.append(setup.score(finished, target, clean)["result"]["psnr"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", required=True, choices=sorted(TASKS))
    ap.add_argument("--n", type=int, default=6, help="held-out images (the last N of the dev order)")
    ap.add_argument("--images", choices=["last", "first"], default="last",
                    help="last: held-out images (for choosing); first: the first N images that quality.py "
                         "scores (to check a choice made on the held-out ones, never to make it)")
    ap.add_argument("--runs", type=int, default=4, help="seeds per image; means of 1 .. RUNS are scored")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--iterations-scale", type=float, default=1.0, help="(for quick checks; shortens the preset)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "runs_study.jsonl"))
    args = ap.parse_args(argv)
    if args.n < 1 or args.runs < 1 or args.workers < 1:
        ap.error("--n, --runs and --workers must be >= 1")
    if args.task == "denoising":
        ap.error("denoising: the simulated noise depends on the seed, so the runs of one image would "
                 "see different observations; the study needs a deterministic degradation")

    import multiprocessing

    import torch

    from quality import dev_subset, machine

    images, dev_idx, _ = dev_subset(1000)
    positions = list(range(len(dev_idx) - args.n, len(dev_idx))) if args.images == "last" else list(range(args.n))
    settings = Settings(methods="dgp", precision=args.precision, iterations_scale=args.iterations_scale)
    jobs = [{"task": args.task, "clean": images[p].numpy(), "position": p, "seed": s, "precision": args.precision}
            for p in positions for s in range(args.runs)]
    t0 = time.time()
    with multiprocessing.get_context("spawn").Pool(args.workers, _init, (settings.__dict__,)) as pool:
        done = pool.map(_run, jobs, chunksize=1)
    _init(settings.__dict__)
    setup = _CTX.setup(args.task, "dgp")
    table: dict[str, list[float]] = {"observation": [], "classical": []}
    with open(args.out, "a") as fh:
        for p in positions:
            runs = sorted((r for r in done if r["position"] == p), key=lambda r: r["seed"])
            clean = images[p].float()[None]
            with torch.no_grad():
                target = setup.degradation.degrade(clean, generator=torch.Generator().manual_seed(0))
                base = setup.score(classical_tensor(args.task, setup, clean, target), target, clean)
            means = score_means(setup, clean, runs)
            table["observation"].append(base["observation"]["psnr"])
            table["classical"].append(base["result"]["psnr"])
            for k, v in enumerate(means, 1):
                table.setdefault(f"mean of {k}", []).append(v)
            fh.write(json.dumps({"task": args.task, "images": args.images, "position": p, "dev_index": int(dev_idx[p]),
                                 "observation": base["observation"]["psnr"], "classical": base["result"]["psnr"],
                                 "single": [r["psnr"] for r in runs], "final_loss": [r["loss"] for r in runs],
                                 "mean_of_k": means, "precision": args.precision,
                                 "iterations_scale": args.iterations_scale, "machine": machine()}) + "\n")
    which = f"last {args.n} held-out images" if args.images == "last" else f"first {args.n} benchmark images"
    print(f"{args.task}, {which}, {args.runs} seeds each, {time.time() - t0:.0f} s:")
    for name, values in table.items():
        finite = [v for v in values if np.isfinite(v)]
        print(f"  {name:12s} {np.mean(finite):6.2f} dB  (n={len(finite)})")
    grey = [i for i, v in enumerate(table["observation"]) if v > GREY_DB]
    if grey:  # colorization of an image that was grey already: the observation is (nearly) exact
        print(f"  without the {len(grey)} image(s) whose observation scores over {GREY_DB:g} dB (grey originals):")
        for name, values in table.items():
            rest = [v for i, v in enumerate(values) if i not in grey and np.isfinite(v)]
            print(f"  {name:12s} {np.mean(rest):6.2f} dB  (n={len(rest)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
