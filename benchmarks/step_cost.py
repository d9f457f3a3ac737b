"""Cost of one DGP optimisation step of a BigGAN prior: seconds and peak memory.

One step is what the DGP engine does per iteration with batch 1: a trainable copy of G
(every stage tuned) renders ``G(z, e)``, the frozen discriminator D gives its feature
list, an L1 feature loss plus MSE is backpropagated through D into G and z, and Adam
steps G and z. Weights are random with the official layout (no download needed).

Each configuration runs in a fresh subprocess so that the peak resident memory
(``resource`` maxrss, which includes torch's allocator caches; tracemalloc does not see
torch) belongs to that configuration alone. On CUDA the peak allocated device memory is
reported instead.

    python benchmarks/step_cost.py --reps 5 --json step_cost.json
    python benchmarks/step_cost.py --only 32,128 --precision float32 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

#: name -> (BigGAN config with official argument names, description)
CONFIGS: dict[str, dict] = {
    "32": dict(resolution=32, G_ch=32, D_ch=32, dim_z=128, shared_dim=128, n_classes=10,
               G_attn="0", D_attn="0"),
    "64": dict(resolution=64, G_ch=64, D_ch=64, dim_z=120, shared_dim=128, n_classes=1000,
               G_attn="32", D_attn="32"),
    "128": dict(resolution=128, G_ch=96, D_ch=96, dim_z=120, shared_dim=128, n_classes=1000,
                G_attn="64", D_attn="64"),
    "256": dict(resolution=256, G_ch=96, D_ch=96, dim_z=120, shared_dim=128, n_classes=1000,
                G_attn="64", D_attn="64"),
}
PRECISIONS = ("float32", "bf16")


def _maxrss_mb() -> float:
    # Linux reports kilobytes, macOS bytes.
    scale = 1 / (1024 * 1024) if sys.platform == "darwin" else 1 / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def worker(name: str, precision: str, reps: int, device: str, threads: int | None,
           budget_s: float = 60.0) -> dict:
    """Measure one configuration in this process; returns a JSON-able dict.

    After the warm-up step, up to ``reps`` timed steps while the time spent stays under
    ``budget_s``; with none (a very slow configuration) the warm-up step is the figure.
    """
    import torch

    from dgp_toolkit.priors.biggan.model import BigGANConfig
    from dgp_toolkit.priors.biggan.prior import BigGANPrior
    from dgp_toolkit.priors.biggan.synthetic import random_state_dicts
    from dgp_toolkit.priors.biggan.weights import build_networks

    if threads:
        torch.set_num_threads(threads)
    cfg = BigGANConfig.from_dict(CONFIGS[name])
    G0, D0 = build_networks(cfg, *random_state_dicts(cfg), target=name)
    prior = BigGANPrior(G0, D0, name=f"bench-{name}", device=device)
    dev = prior.device
    G = prior.fresh_generator()
    z = prior.sample(1, std=0.3, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    y = torch.tensor([1], device=dev)
    target = torch.zeros(1, 3, cfg.resolution, cfg.resolution, device=dev)
    with torch.no_grad():
        target_feats = [f.detach() for f in prior.features(target)]
    opt = torch.optim.Adam([{"params": s} for s in prior.stages(G)] + [{"params": [z]}],
                           lr=1e-5, betas=(0.0, 0.999))
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    rss_models = _maxrss_mb()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    def step() -> float:
        with autocast:
            out = prior.generate(z, y, model=G)
            feats = prior.features(out)
            loss = sum((f.float() - t).abs().mean() for f, t in zip(feats, target_feats))
            loss = loss + (out.float() - target).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss)

    def timed() -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        start = time.perf_counter()
        step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter() - start

    first = timed()  # includes one-off costs (spectral norms of frozen layers, allocator)
    times: list[float] = []
    while len(times) < reps and first + sum(times) < budget_s:
        times.append(timed())
    result = {
        "config": name, "precision": precision, "device": str(dev), "threads": torch.get_num_threads(),
        "first_step_s": first, "median_s": statistics.median(times or [first]), "min_s": min(times or [first]),
        "steps": len(times), "G_params_M": sum(p.numel() for p in G.parameters()) / 1e6,
        "D_params_M": sum(p.numel() for p in prior.D.parameters()) / 1e6,
        "rss_after_build_mb": rss_models, "peak_rss_mb": _maxrss_mb(),
    }
    if dev.type == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="timed steps per configuration (after 1 warm-up)")
    parser.add_argument("--only", default=",".join(CONFIGS), help="comma-separated configurations")
    parser.add_argument("--precision", default=",".join(PRECISIONS), help="float32,bf16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--budget", type=float, default=60.0,
                        help="seconds of timed steps per configuration before stopping early")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds after which a configuration is abandoned and reported as slower")
    parser.add_argument("--json", dest="json_path", default="step_cost.json", help="where to write the results")
    parser.add_argument("--note", default="", help="a remark stored with the results (e.g. machine load)")
    parser.add_argument("--worker", nargs=2, metavar=("CONFIG", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.reps, args.device, args.threads,
                                args.budget)))
        return 0

    rows = []
    load_before = os.getloadavg()
    for name in args.only.split(","):
        for precision in args.precision.split(","):
            cmd = [sys.executable, __file__, "--worker", name, precision, "--reps", str(args.reps),
                   "--device", args.device, "--budget", str(args.budget)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                rows.append({"config": name, "precision": precision, "timed_out_after_s": args.timeout})
                print(f"{name} px {precision}: abandoned after {args.timeout:.0f} s", file=sys.stderr)
                continue
            if proc.returncode != 0:
                print(f"{name} {precision}: failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{name} px {precision}: {row['median_s']:.3f} s/step", file=sys.stderr)
    info = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "note": args.note}
    with open(args.json_path, "w") as f:
        json.dump({"info": info, "results": rows}, f, indent=2)

    memory_col = "peak CUDA MB" if args.device.startswith("cuda") else "peak RSS MB"
    print(f"| resolution | G_ch | attention | G+D params (M) | precision | s/step (median) | first step s | {memory_col} |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        c = CONFIGS[row["config"]]
        if "timed_out_after_s" in row:
            print(f"| {c['resolution']} | {c['G_ch']} | {c['G_attn']} | - | {row['precision']} "
                  f"| > {row['timed_out_after_s']:.0f} (abandoned) | - | - |")
            continue
        memory = row.get("peak_cuda_mb", row["peak_rss_mb"])
        steps = f" ({row['steps']} timed)" if row["steps"] else " (warm-up only)"
        print(f"| {c['resolution']} | {c['G_ch']} | {c['G_attn']} | {row['G_params_M'] + row['D_params_M']:.1f} "
              f"| {row['precision']} | {row['median_s']:.3f}{steps} | {row['first_step_s']:.3f} | {memory:.0f} |")
    threads = next((r["threads"] for r in rows if "threads" in r), "?")
    print(f"\n{info['cpus']} CPUs, torch threads {threads}, load average before "
          f"{load_before[0]:.1f}, after {info['loadavg_after'][0]:.1f}. {args.note}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
