"""Quality figures of a 32-px CIFAR-10 prior (the embedded one by default).

    python benchmarks/prior_quality.py [--prior biggan] [--prior run/prior.safetensors=early] [--json OUT]

Prints and optionally writes:
- ``sample_accuracy``: share of 1,000 class-conditional samples (100 per class) that the
  project's classifier (``benchmarks/classifier.py``) assigns to their conditioning class;
- ``frechet_distance``: Frechet distance between the classifier's penultimate features of
  those 1,000 samples and of the 1,000 dev images (lower is better);
- ``nearest``: for 8 samples, the L2 distance (pixels in [0, 1]) to their nearest training
  image, and ``docs/prior_nearest.png`` showing each sample beside that image; for scale,
  ``dev_to_train_nearest_l2`` is the same distance for 8 dev images (never trained on).
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
    covmean = linalg.sqrtm(s1 @ s2)
    if isinstance(covmean, tuple):  # older SciPy returned (sqrtm, error estimate) with disp=False
        covmean = covmean[0]
    covmean = np.asarray(covmean).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


@torch.no_grad()
def samples(prior, per_class: int = 100, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(prior.n_classes).repeat_interleave(per_class)
    z = prior.sample(len(y), generator=gen)
    out = torch.cat([prior.generate(z[i:i + 200], y[i:i + 200]) for i in range(0, len(y), 200)])
    return out, y


def load(spec: str):
    """``biggan`` (the shipped prior) or a prior file written by train-prior / an export."""
    import dgp_toolkit

    if spec == "biggan":
        return dgp_toolkit.load_prior("biggan")
    return dgp_toolkit.load_prior("biggan", weights=spec)


def file_step(path: str) -> int | None:
    from safetensors import safe_open

    with safe_open(path, "pt") as handle:
        step = (handle.metadata() or {}).get("step")
    return int(step) if step is not None else None


@torch.no_grad()
def measure(prior, clf, dev: torch.Tensor, train: torch.Tensor, nearest_png: str | None) -> dict:
    fake, y = samples(prior)
    logits = torch.cat([clf(fake[i:i + 250]) for i in range(0, len(fake), 250)])
    acc = float((logits.argmax(1) == y).float().mean())
    f_fake = torch.cat([clf.features(fake[i:i + 250]) for i in range(0, len(fake), 250)]).numpy()
    f_dev = torch.cat([clf.features(dev[i:i + 250]) for i in range(0, len(dev), 250)]).numpy()
    fd = frechet_distance(f_fake.astype(np.float64), f_dev.astype(np.float64))
    picks = fake[:: len(fake) // 8][:8]
    best_d, best_i = nearest_training(picks, train)
    if nearest_png:
        from dgp_toolkit.priors.biggan.train import save_grid

        pairs = torch.stack([torch.stack([picks[k], train[best_i[k]]]) for k in range(8)]).reshape(16, 3, 32, 32)
        # 8 rows of (sample, nearest training image), 3x enlarged so that they can be seen
        save_grid(torch.nn.functional.interpolate(pairs, scale_factor=3, mode="nearest"), nearest_png, ncol=2)
    return {"sample_accuracy": round(acc, 4), "frechet_distance": round(fd, 3),
            "nearest_l2": [round(float(v), 3) for v in best_d], "nearest_train_index": best_i.tolist(),
            "nearest_png": nearest_png}


@torch.no_grad()
def nearest_training(images: torch.Tensor, train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each image, the L2 distance (pixels in [0, 1]) to its nearest training image and
    that image's index, searched in chunks of 5,000."""
    a = ((images + 1) / 2).reshape(len(images), -1)
    best_d, best_i = torch.full((len(images),), float("inf")), torch.zeros(len(images), dtype=torch.long)
    for start in range(0, len(train), 5000):
        b = ((train[start:start + 5000] + 1) / 2).reshape(-1, a.shape[1])
        m, i = torch.cdist(a, b).min(1)
        better = m < best_d
        best_d[better], best_i[better] = m[better], i[better] + start
    return best_d, best_i


def dev_to_train_l2(dev: torch.Tensor, train: torch.Tensor, n: int = 8) -> list[float]:
    """The same distance for ``n`` dev images (never trained on): what "close" means for two
    different CIFAR-10 images."""
    return [round(float(v), 3) for v in nearest_training(dev[:: len(dev) // n][:n], train)[0]]


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prior", action="append", default=None, metavar="biggan|FILE[=LABEL]",
                        help="a prior to measure (repeatable): biggan (the shipped one) or a prior file, "
                             "optionally with a label; default: biggan")
    parser.add_argument("--json", default=None)
    parser.add_argument("--nearest-png", default=str(ROOT / "docs" / "prior_nearest.png"),
                        help="sample / nearest-training-image pairs of the first prior")
    args = parser.parse_args()
    clf = load_classifier()
    from classifier import evaluate

    dev, _ = load_split("test_dev")
    train, _ = load_split("train")
    rows = []
    for k, item in enumerate(args.prior or ["biggan"]):
        spec, _, label = item.partition("=")
        prior = load(spec)
        step = file_step(prior.source) if getattr(prior, "source", None) else None
        row = {"label": label or spec, "prior": spec, "step": step,
               **measure(prior, clf, dev, train, args.nearest_png if k == 0 else None)}
        if row["nearest_png"]:  # the JSON names it relative to the repository when it is inside
            path = Path(row["nearest_png"]).resolve()
            row["nearest_png"] = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    result = {"command": "python benchmarks/prior_quality.py " + " ".join(sys.argv[1:]),
              "classifier_dev_accuracy": round(evaluate(clf), 4),
              "dev_to_train_nearest_l2": dev_to_train_l2(dev, train), "rows": rows}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
