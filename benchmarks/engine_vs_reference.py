"""The engine against a reference-style loop: same prior, candidates, steps; time and quality.

    python benchmarks/engine_vs_reference.py [--n 20] [--task super-resolution] [--scale 1.0] [--json OUT]

The reference implementation cannot be run here (no network), so its way of doing the
same work is emulated on the same networks, faithfully to what DGP-METHOD.md and the
issue tracker list as its costs:

- latent selection one candidate at a time, the target's D features recomputed for each;
- in every optimization step: the target's D features recomputed; weight gradients for
  the discriminator and for frozen generator stages (learning rate 0, gradients still
  computed); spectral norm re-estimated for every layer (no cache); losses copied to the
  host every step.

Both run on the same dev images with the same seed, so they draw the same candidates and
should reach the same PSNR (the target: within 0.1 dB). Images are interleaved (ours,
then the reference-style loop, per image) so that machine load hits both alike.
Output: per-phase seconds (import/setup excluded: both share one process), the ratio,
mean PSNR of each, and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_common import machine  # noqa: E402

REFERENCE_SR = ROOT / "benchmarks" / "presets" / "reference-super-resolution.toml"
SPEC = {"super-resolution": "downsample:factor=4", "colorization": "gray", "inpainting": "mask",
        "deblurring": "blur", "denoising": "noise"}


def dev_images(n: int) -> torch.Tensor:
    from classifier import load_split

    x, y = load_split("test_dev")
    # one image per class first, then the next ones: a balanced, fixed subset
    order = sorted(range(len(y)), key=lambda i: (list(y[:i + 1]).count(y[i]) - 1, int(y[i])))
    return x[order[:n]]


def reference_style_run(prior, degradation, target, preset, seed):
    """The same DGP run, with the reference implementation's per-step costs."""
    from dgp_toolkit.engine import d_feature_distance, draw_candidates

    G0, D = prior.G, prior.D
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    z_all, y_all = draw_candidates(prior, preset.select_num, preset.sample_std, None, gen)
    best, best_score = 0, float("inf")
    with torch.no_grad():
        for i in range(preset.select_num):
            x = degradation(G0(z_all[i:i + 1], G0.shared(y_all[i:i + 1])))
            score = float(d_feature_distance(D(x)[1], D(target)[1], 3))
            if score < best_score:
                best, best_score = i, score
    t_select = time.perf_counter() - t0

    t0 = time.perf_counter()
    G = prior.fresh_generator()
    D.requires_grad_(True)  # the reference leaves D's weights trainable: their gradients get computed
    try:
        groups = prior.stages(G, include_embedding=preset.update_embed)
        for g in groups:
            for p in g:
                p.requires_grad_(True)
        y = y_all[best:best + 1]
        z = z_all[best:best + 1].clone().requires_grad_(True)
        opt_g = torch.optim.Adam([{"params": g, "lr": 0.0} for g in groups], betas=(0.0, 0.999))
        opt_z = torch.optim.Adam([z], lr=preset.schedule.stages[0].z_lr, betas=(0.0, 0.999))
        losses = {n: __import__("dgp_toolkit").get_loss(n) for n in ("discriminator", "mse", "nll")}
        from dgp_toolkit.plugins.losses import LossState

        for stage in preset.schedule.stages:
            for i, group in enumerate(opt_g.param_groups):
                group["lr"] = stage.group_lr(i)
            opt_z.param_groups[0]["lr"] = stage.z_lr
            for _ in range(stage.iterations):
                x = G(z, G.shared(y))
                target_feats = D(target)[1]  # recomputed every step
                st = LossState(generated=degradation(x), target=target, z=z, target_features=target_feats,
                               ftr_num=stage.ftr_num, feature_fn=lambda im: D(im)[1])
                loss = sum(losses[n](st) * w for n, w in stage.weights.items() if w)
                opt_g.zero_grad()
                opt_z.zero_grad()
                D.zero_grad()
                loss.backward()
                opt_g.step()
                opt_z.step()
                _ = loss.item()  # host sync every step (logging/metrics)
        with torch.no_grad():
            image = G(z, G.shared(y))
    finally:
        D.requires_grad_(False)
        D.zero_grad(set_to_none=True)
    return image, {"select_s": t_select, "optimize_s": time.perf_counter() - t0}


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    from dgp_toolkit.metrics import psnr as _psnr

    to = lambda t: ((t[0].clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()  # noqa: E731
    return float(_psnr(to(a), to(b)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--task", default="super-resolution", choices=sorted(SPEC))
    parser.add_argument("--preset", default=None,
                        help="a preset name or TOML file (default: the reference measurement's super-resolution "
                             "settings, benchmarks/presets/reference-super-resolution.toml, for the super-resolution "
                             "task; the package's preset for the other tasks)")
    parser.add_argument("--scale", type=float, default=1.0, help="iterations scale (1.0 = the preset)")
    parser.add_argument("--select-num", type=int, default=None)
    parser.add_argument("--precision", default="float32", choices=["auto", "float32", "bf16"],
                        help="our engine's precision (the reference-style loop is float32, as the reference)")
    parser.add_argument("--channels-last", default="auto", choices=["auto", "on", "off"],
                        help="our engine's layout (auto: channels-last for bf16 on a CPU)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import dgp_toolkit
    from dgp_toolkit.engine import RunOptions, run_dgp
    from dgp_toolkit.presets import load_preset

    prior = dgp_toolkit.load_prior("biggan")
    degradation = dgp_toolkit.parse_degradation(SPEC[args.task])
    if args.preset is None:
        args.preset = str(REFERENCE_SR) if args.task == "super-resolution" else args.task
    preset = load_preset(args.preset, prior)
    if args.scale != 1.0:
        preset = preset.replace(schedule=preset.schedule.scaled(args.scale))
    if args.select_num:
        preset = preset.replace(select_num=args.select_num)
    rows = []
    for k, clean in enumerate(dev_images(args.n)):
        clean = clean[None]
        target = degradation.degrade(clean, generator=torch.Generator().manual_seed(k))
        options = RunOptions(seed=k, snapshots=False, precision=args.precision,
                             channels_last={"auto": None, "on": True, "off": False}[args.channels_last])
        ours = run_dgp(prior, degradation, target, preset=preset, options=options)
        ref_image, ref_t = reference_style_run(prior, degradation, target, preset, seed=k)
        rows.append({"image": k, "ours": ours.timings, "reference_style": ref_t,
                     "psnr_ours": psnr(degradation.finish(ours.image, target), clean),
                     "psnr_reference_style": psnr(degradation.finish(ref_image, target), clean),
                     "psnr_observation": psnr(target, clean)})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)

    def mean(key, sub=None):
        vals = [r[key][sub] if sub else r[key] for r in rows]
        return float(np.mean(vals))

    summary = {
        "command": "python benchmarks/engine_vs_reference.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
        "task": args.task, "preset": preset.source, "n": len(rows), "scale": args.scale, "select_num": preset.select_num,
        "steps": preset.schedule.total_iterations, "threads": torch.get_num_threads(),
        "precision": ours.config["precision"], "channels_last": ours.config["channels_last"],
        "ours": {"select_s": mean("ours", "select_s"), "optimize_s": mean("ours", "optimize_s")},
        "reference_style": {"select_s": mean("reference_style", "select_s"),
                            "optimize_s": mean("reference_style", "optimize_s")},
        "psnr": {"ours": mean("psnr_ours"), "reference_style": mean("psnr_reference_style"),
                 "observation": mean("psnr_observation")},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    total = lambda d: d["select_s"] + d["optimize_s"]  # noqa: E731
    summary["speedup"] = {"select": summary["reference_style"]["select_s"] / summary["ours"]["select_s"],
                          "optimize": summary["reference_style"]["optimize_s"] / summary["ours"]["optimize_s"],
                          "total": total(summary["reference_style"]) / total(summary["ours"])}
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
