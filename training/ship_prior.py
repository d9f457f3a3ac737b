"""Ship the embedded prior: export the training checkpoint into the package with its model card.

    python training/ship_prior.py [--checkpoint training/cifar10-32/checkpoint.pt] [--quality q.json]

Writes ``dgp_toolkit/priors/weights/biggan_cifar10_32.safetensors`` (EMA generator +
discriminator, batch-norm statistics re-estimated over 50 batches of samples), the model card
``biggan_cifar10_32.json`` beside it, and the sample grid ``docs/prior_samples.png`` (one
row per class).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "dgp_toolkit" / "priors" / "weights" / "biggan_cifar10_32.safetensors"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "training" / "cifar10-32" / "checkpoint.pt"))
    parser.add_argument("--quality", default=None, help="JSON written by benchmarks/prior_quality.py")
    parser.add_argument("--hardware", default=None, help="where the training ran (default: this machine)")
    parser.add_argument("--status", default="final", help="'final', or what this interim checkpoint is")
    args = parser.parse_args()

    import torch

    from dgp_toolkit.priors.biggan.train import export_checkpoint, save_grid

    meta = export_checkpoint(args.checkpoint, WEIGHTS)
    settings = json.loads(meta["settings"])
    digest = hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()
    card = {
        "name": "biggan",
        "status": args.status,
        "description": "Class-conditional BigGAN (generator EMA + discriminator) trained by dgp-toolkit on CIFAR-10",
        "architecture": json.loads(meta["config"]),
        "data": "CIFAR-10 training split, 50,000 images (../shared/data/cifar10/train_jpeg.npz); "
                "the 1,000-image dev split was never used for training",
        "class_names": json.loads(meta["class_names"]),
        "iterations": int(meta["step"]),
        "train_seconds": int(meta["train_seconds"]),
        "hardware": args.hardware or f"{cpu_name()}, {torch.get_num_threads()} threads (CPU, float32)",
        "recipe": {k: settings[k] for k in ("batch_size", "d_steps", "lr_g", "lr_d", "adam_eps", "ortho",
                                            "ema_decay", "ema_start", "flip", "seed")},
        "batch_norm": "stored statistics re-estimated over 50 batches of 64 EMA samples",
        "file": WEIGHTS.name,
        "sha256": digest,
        "bytes": WEIGHTS.stat().st_size,
        "quality": json.loads(Path(args.quality).read_text()) if args.quality else None,
        "samples": "docs/prior_samples.png",
        "command": "dgp-tool train-prior ../shared/data/cifar10/train_jpeg.npz -o training/cifar10-32 "
                   + " ".join(f"--{k.replace('_', '-')} {settings[k]}" for k in
                              ("batch_size", "d_steps", "lr_g", "lr_d", "ema_decay", "ema_start", "seed")),
    }
    WEIGHTS.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")

    import dgp_toolkit

    prior = dgp_toolkit.load_prior("biggan")
    gen = torch.Generator().manual_seed(0)
    z = prior.sample(10, generator=gen).repeat(prior.n_classes, 1)
    y = torch.arange(prior.n_classes).repeat_interleave(10)
    with torch.no_grad():
        images = prior.generate(z, y)
    save_grid(images, ROOT / "docs" / "prior_samples.png", ncol=10)
    print(json.dumps({k: card[k] for k in ("iterations", "train_seconds", "sha256", "bytes")}))


if __name__ == "__main__":
    main()
