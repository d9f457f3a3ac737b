"""A small CIFAR-10 classifier, trained by the project, to measure the embedded prior.

It is a measuring instrument, not part of the toolkit: its weights live in
``benchmarks/weights/`` and the package never needs them.

    python benchmarks/classifier.py train      # trains (bf16 autocast on AMX CPUs), writes benchmarks/weights/cifar10_classifier.safetensors
    python benchmarks/classifier.py evaluate   # accuracy on the 1,000-image dev split

Network: three stages of two 3x3 conv-BN-ReLU layers (32, 64, 128 channels) with 2x2
max-pooling between them, global average pooling and a linear layer; trained with SGD +
Nesterov momentum, a one-cycle learning rate, label smoothing 0.1, random crops
(4-pixel reflect padding) and horizontal flips. Its penultimate features (128-d) are
used for the Frechet distance in ``prior_quality.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "cifar10"
WEIGHTS = ROOT / "benchmarks" / "weights" / "cifar10_classifier.safetensors"
MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)


def conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Classifier(nn.Module):
    def __init__(self, widths: tuple[int, int, int] = (32, 64, 128), n_classes: int = 10):
        super().__init__()
        a, b, c = widths
        self.body = nn.Sequential(
            conv_bn(3, a), conv_bn(a, a), nn.MaxPool2d(2),
            conv_bn(a, b), conv_bn(b, b), nn.MaxPool2d(2),
            conv_bn(b, c), conv_bn(c, c), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(c, n_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features of images in [-1, 1] (``(B, 3, 32, 32)``)."""
        x = ((images + 1) / 2 - MEAN.to(images.device)) / STD.to(images.device)
        return self.body(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def load_split(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images in [-1, 1] float32, labels) of ``train`` or ``test_dev``."""
    from dgp_toolkit.priors.biggan.datasets import load_npz

    ds = load_npz(SHARED / f"{name}_jpeg.npz", 32)
    return ds.images.float() / 127.5 - 1, ds.labels


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    dx, dy = torch.randint(0, 9, (2,), generator=gen).tolist()  # one shift per batch: cheap
    return padded[:, :, dy:dy + 32, dx:dx + 32]


def train(epochs: int, batch: int, lr: float, seed: int, precision: str = "auto") -> dict:
    from dgp_toolkit.priors.biggan.train import resolve_precision

    precision = resolve_precision(precision, torch.device("cpu"))
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, y = load_split("train")
    model = Classifier().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = epochs * (len(x) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.25)
    t0 = time.time()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        for i in range(len(x) // batch):
            idx = perm[i * batch:(i + 1) * batch]
            xb = augment(x[idx], gen).contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), y[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        acc = evaluate(model)
        print(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}, dev accuracy {acc:.4f}, "
              f"{time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    from safetensors.torch import save_file

    WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    info = {"epochs": epochs, "batch": batch, "lr": lr, "seed": seed, "precision": precision, "dev_accuracy": acc,
            "train_seconds": round(time.time() - t0, 1)}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(WEIGHTS),
              metadata={"info": json.dumps(info)})
    return info


def load_classifier() -> Classifier:
    from safetensors.torch import load_file

    if not WEIGHTS.exists():
        raise SystemExit(f"{WEIGHTS} is missing: run `python benchmarks/classifier.py train` first")
    model = Classifier()
    model.load_state_dict(load_file(str(WEIGHTS)))
    return model.eval()


@torch.no_grad()
def evaluate(model: Classifier | None = None) -> float:
    model = model or load_classifier()
    model.eval()
    x, y = load_split("test_dev")
    pred = torch.cat([model(x[i:i + 250]).argmax(1) for i in range(0, len(x), 250)])
    return float((pred == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch", type=int, default=256)
    t.add_argument("--lr", type=float, default=0.2)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--precision", choices=["auto", "float32", "bf16"], default="auto",
                   help="auto: bf16 autocast where the CPU does bf16 natively (AMX/AVX-512 BF16)")
    sub.add_parser("evaluate")
    args = parser.parse_args()
    if args.cmd == "train":
        print(json.dumps(train(args.epochs, args.batch, args.lr, args.seed, args.precision)))
    else:
        print(json.dumps({"dev_accuracy": evaluate()}))


if __name__ == "__main__":
    main()
