"""Seconds per training iteration of train-prior (D steps + 1 G step), float32 and bf16.

    python benchmarks/train_step.py [--batch-size 64] [--d-steps 2] [--iters 2] [--precision float32 bf16]

Random CIFAR-sized data, the embedded prior's architecture (G_ch = D_ch = 32, 32 px); the first
iteration is a warm-up and not counted. Reproduces the training-speed figures of docs/priors.md.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    from dgp_toolkit.priors.biggan.datasets import ImageDataset
    from dgp_toolkit.priors.biggan.train import Trainer, TrainSettings, cpu_has_fast_bf16

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--d-steps", type=int, default=2)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--precision", nargs="+", default=["float32", "bf16"])
    args = parser.parse_args()
    data = ImageDataset(torch.randint(0, 256, (512, 3, 32, 32), dtype=torch.uint8),
                        torch.randint(0, 10, (512,)), [str(i) for i in range(10)], "random")
    rows = []
    for precision in args.precision:
        t = Trainer(TrainSettings(batch_size=args.batch_size, d_steps=args.d_steps, precision=precision), data)
        t.train_step()
        start = time.perf_counter()
        for _ in range(args.iters):
            t.train_step()
        rows.append({"precision": precision, "batch_size": args.batch_size, "d_steps": args.d_steps,
                     "seconds_per_iteration": round((time.perf_counter() - start) / args.iters, 3),
                     "threads": torch.get_num_threads(), "cpu_fast_bf16": cpu_has_fast_bf16()})
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
