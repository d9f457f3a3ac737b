"""Quality figures of a 32-px CIFAR-10 prior (the embedded one by default).

    python benchmarks/prior_quality.py [--prior biggan | --file run/prior.safetensors] [--json OUT]

Prints and optionally writes:
- ``sample_accuracy``: share of 1,000 class-conditional samples (100 per class) that the
  project's classifier (``benchmarks/classifier.py``) assigns to their conditioning class;
- ``frechet_distance``: Frechet distance between the classifier's penultimate features of
  those 1,000 samples and of the 1,000 dev images (lower is better);
- ``nearest``: for 8 samples, the L2 distance (pixels in [0, 1]) to their nearest training
  image, and ``docs/prior_nearest.png`` showing each sample beside that image.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from classifier import load_classifier, load_split  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (rows = samples)."""
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


@torch.no_grad()
def samples(prior, per_class: int = 100, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(prior.n_classes).repeat_interleave(per_class)
    z = prior.sample(len(y), generator=gen)
    out = torch.cat([prior.generate(z[i:i + 200], y[i:i + 200]) for i in range(0, len(y), 200)])
    return out, y


def load(args):
    if args.file:
        from dgp_toolkit.priors.biggan.weights import load_prior_file  # noqa: F401

        import dgp_toolkit

        return dgp_toolkit.load_prior("biggan", weights=args.file)
    import dgp_toolkit

    return dgp_toolkit.load_prior(args.prior)


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prior", default="biggan")
    parser.add_argument("--file", default=None, help="a prior.safetensors written by train-prior")
    parser.add_argument("--json", default=None)
    parser.add_argument("--nearest-png", default=str(ROOT / "docs" / "prior_nearest.png"))
    args = parser.parse_args()
    prior = load(args)
    clf = load_classifier()
    fake, y = samples(prior)
    logits = torch.cat([clf(fake[i:i + 250]) for i in range(0, len(fake), 250)])
    acc = float((logits.argmax(1) == y).float().mean())
    dev, _ = load_split("test_dev")
    f_fake = torch.cat([clf.features(fake[i:i + 250]) for i in range(0, len(fake), 250)]).numpy()
    f_dev = torch.cat([clf.features(dev[i:i + 250]) for i in range(0, len(dev), 250)]).numpy()
    fd = frechet_distance(f_fake.astype(np.float64), f_dev.astype(np.float64))
    train, _ = load_split("train")
    picks = fake[:: len(fake) // 8][:8]
    a = ((picks + 1) / 2).reshape(8, -1)
    best_d, best_i = torch.full((8,), float("inf")), torch.zeros(8, dtype=torch.long)
    for start in range(0, len(train), 5000):
        b = ((train[start:start + 5000] + 1) / 2).reshape(-1, a.shape[1])
        d = torch.cdist(a, b)
        m, i = d.min(1)
        better = m < best_d
        best_d[better], best_i[better] = m[better], i[better] + start
    from dgp_toolkit.priors.biggan.train import save_grid

    pairs = torch.stack([torch.stack([picks[k], train[best_i[k]]]) for k in range(8)]).reshape(16, 3, 32, 32)
    save_grid(pairs, args.nearest_png, ncol=2)
    result = {"prior": getattr(prior, "name", "?"), "source": getattr(prior, "source", ""),
              "sample_accuracy": round(acc, 4), "frechet_distance": round(fd, 3),
              "nearest_l2": [round(float(v), 3) for v in best_d],
              "nearest_train_index": best_i.tolist(), "nearest_png": args.nearest_png}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
