"""Colorization judged as the paper judges it: does a classifier recognise the image better?

    python benchmarks/quality.py --tasks colorization --n 240 --methods gan-inversion,dgp \\
        --iterations-scale 1 --select-num 0 --precision bf16 --save-images \\
        --out benchmarks/results/colorization
    python benchmarks/colorization_accuracy.py benchmarks/results/colorization

PSNR rewards a grey image over a plausible colouring that is not the true one, so the DGP
paper scores colorization by the top-1 accuracy of an ImageNet classifier on the colorized
images (after Zhang et al., "Colorful Image Colorization"). Here the classifier is the
project's CIFAR-10 one (``classifier.py``, 86.4% on the 1,000 dev images), run on the
tiles that ``quality.py --save-images`` wrote for each scored image:

- ``clean``: the dev image (the ceiling), ``observation``: the grey input;
- each generative method's result with the grey input's Lab L put back (the image the
  PSNR table scores), and without it (raw: as generated).

Per method: top-1 accuracy with its 95% Wilson interval, the mean probability of the true
class, and against the grey input the paired counts (method right and grey wrong, and the
reverse) with the exact two-sided McNemar p-value, the paired gain in the probability of
the true class (mean and 95% t interval), mean PSNR and the mean Lab chroma (how colourful
the images are; the clean images' figure is the true one). Also reported: how often the class the
engine's latent selection chose (from the grey image alone) is the true one.
Writes ``accuracy.json`` and ``accuracy.md`` into the folder.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_common import machine  # noqa: E402
from quality import TIE_DB, _image_path, mean_ci, read_rows  # noqa: E402

GENERATIVE = ("gan-inversion", "dip", "dgp")


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``k / n``."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value of ``b`` against ``c`` discordant pairs."""
    from scipy.stats import binomtest

    return 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)


def load_tiles(folder: Path) -> tuple[list[dict[str, Any]], dict[str, list[np.ndarray]]]:
    """The colorization rows that have every tile, and the tiles per name (``H x W x 3`` in [0, 1])."""
    from PIL import Image

    rows = sorted((r for r in read_rows(folder / "rows.jsonl") if r["task"] == "colorization"),
                  key=lambda r: r["position"])
    if not rows:
        raise SystemExit(f"{folder / 'rows.jsonl'}: no colorization rows (run quality.py first, see --help)")
    methods = [m for m in GENERATIVE if any(m in r["scores"] for r in rows)]
    names = ["clean", "observation", *methods]
    kept, tiles = [], {name: [] for name in names}
    for row in rows:
        paths = {name: _image_path(folder / "images", "colorization", row["position"], name) for name in names}
        if not all(p.exists() for p in paths.values()) or not all(m in row["scores"] for m in methods):
            continue
        kept.append(row)
        for name, path in paths.items():
            tiles[name].append(np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0)
    if not kept:
        raise SystemExit(f"{folder}: no colorization row has its images; rerun quality.py with --save-images")
    return kept, tiles


def classify(model: Any, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class and softmax probabilities of ``[0, 1]`` images."""
    import torch

    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() * 2 - 1
    with torch.no_grad():
        prob = torch.softmax(model(x), dim=1).numpy()
    return prob.argmax(1), prob


def chroma(image: np.ndarray) -> float:
    """Mean Lab chroma (sqrt(a^2 + b^2)) of a ``[0, 1]`` image: how colourful it is."""
    from skimage.color import rgb2lab

    lab = rgb2lab(image)
    return float(np.hypot(lab[..., 1], lab[..., 2]).mean())


def dev_split_accuracy(model: Any) -> dict[str, float]:
    """The classifier's accuracy on the whole 1,000-image dev split, in colour and made grey
    (the ``gray`` degradation): how much the colour is worth to it at all."""
    import torch

    from classifier import load_split
    from dgp_toolkit.plugins.degradations.gray import gray

    x, y = load_split("test_dev")
    out = {}
    with torch.no_grad():
        for name, images in (("clean", x), ("grey", gray(x))):
            pred = torch.cat([model(images[i:i + 250]).argmax(1) for i in range(0, len(images), 250)])
            out[name] = float((pred == y).float().mean())
    return out


def evaluate(folder: Path) -> dict[str, Any]:
    from classifier import load_classifier
    from dgp_toolkit.metrics import put_luminance

    rows, tiles = load_tiles(folder)
    labels = np.array([r["label"] for r in rows])
    methods = [name for name in tiles if name in GENERATIVE]
    variants: dict[str, list[np.ndarray]] = {"clean": tiles["clean"], "observation": tiles["observation"]}
    for m in methods:
        variants[m] = [put_luminance(img, grey) for img, grey in zip(tiles[m], tiles["observation"])]
        variants[f"{m} (raw)"] = tiles[m]
    n = len(rows)
    model = load_classifier()
    correct: dict[str, np.ndarray] = {}
    true_p: dict[str, np.ndarray] = {}
    out: dict[str, Any] = {}
    for name, images in variants.items():
        pred, prob = classify(model, images)
        correct[name] = pred == labels
        true_p[name] = prob[np.arange(n), labels]
        k = int(correct[name].sum())
        low, high = wilson(k, n)
        out[name] = {"accuracy": k / n, "correct": k, "wilson95": [low, high],
                     "true_class_probability": float(true_p[name].mean()),
                     "mean_chroma": float(np.mean([chroma(img) for img in images])),
                     "predictions": pred.tolist()}
    for name in out:
        if name != "observation":
            b = int((correct[name] & ~correct["observation"]).sum())
            c = int((~correct[name] & correct["observation"]).sum())
            diff, half, _ = mean_ci((true_p[name] - true_p["observation"]).tolist())
            out[name]["vs_observation"] = {"right_where_grey_wrong": b, "wrong_where_grey_right": c,
                                           "mcnemar_p": mcnemar_p(b, c), "true_class_probability_gain": diff,
                                           "true_class_probability_gain_ci95": half}
    selection = {}
    for m in methods:
        if m == "dip":  # DIP has no latent selection (its "class" is a random draw)
            continue
        chosen = np.array([r["scores"][m].get("class", -1) for r in rows])
        right = chosen == labels
        # The colours follow the chosen class: top-1 accuracy of the originals, the grey
        # inputs and the method on the images where that class is the true one, and elsewhere.
        split = {part: {"n": int(mask.sum()), **{name: int(correct[name][mask].sum())
                                                   for name in ("clean", "observation", m)}}
                 for part, mask in (("class_true", right), ("class_wrong", ~right))}
        selection[m] = {"chosen_class_is_true": int(right.sum()), "n": n, "correct_by_selection": split}
    psnr = {m: float(np.mean([r["scores"][m]["psnr"] for r in rows])) for m in ["observation", *methods]}
    grey_psnr = np.array([r["scores"]["observation"]["psnr"] for r in rows])
    per_image = {m: {"median_psnr": float(np.median([r["scores"][m]["psnr"] for r in rows])),
                     "above_grey": int(sum(r["scores"][m]["psnr"] > g + TIE_DB for r, g in zip(rows, grey_psnr)))}
                 for m in ["observation", *methods]}
    return {"folder": str(folder), "n": n, "dev_split": dev_split_accuracy(model),
            "dev_indices": [r["dev_index"] for r in rows], "labels": labels.tolist(),
            "methods": out, "latent_selection": selection, "mean_psnr": psnr, "psnr_per_image": per_image,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine()}


def markdown(result: dict[str, Any]) -> str:
    n = result["n"]
    lines = [f"# Colorization: classifier accuracy on {n} CIFAR-10 dev images", "",
             f"Command: `python benchmarks/colorization_accuracy.py {result['folder']}` ({result['date']}); "
             "the project's CIFAR-10 classifier; generative results with the grey "
             "input's Lab L put back (raw: as generated).", "",
             f"On the whole 1,000-image dev split the classifier is right on {100 * result['dev_split']['clean']:.1f}% "
             f"of the colour images and {100 * result['dev_split']['grey']:.1f}% of them made grey.", "",
             "| image | top-1 accuracy | 95% interval | mean p(true class) | p(true class) gain over grey (95% CI) | right where grey wrong / wrong where grey right (McNemar p) | mean PSNR (dB) | mean Lab chroma |",
             "|---|---|---|---|---|---|---|---|"]
    for name, v in result["methods"].items():
        low, high = v["wilson95"]
        vs = v.get("vs_observation")
        paired = f"{vs['right_where_grey_wrong']} / {vs['wrong_where_grey_right']} (p = {vs['mcnemar_p']:.3f})" if vs else ""
        gain = (f"{vs['true_class_probability_gain']:+.3f} ± {vs['true_class_probability_gain_ci95']:.3f}"
                if vs and vs["true_class_probability_gain_ci95"] is not None else "")
        label = "grey input (observation)" if name == "observation" else name
        psnr = result["mean_psnr"].get(name)
        lines.append(f"| {label} | {100 * v['accuracy']:.0f}% ({v['correct']}/{n}) | {100 * low:.0f}-{100 * high:.0f}% "
                     f"| {v['true_class_probability']:.3f} | {gain} | {paired} | {'' if psnr is None else f'{psnr:.2f}'} | {v['mean_chroma']:.1f} |")
    lines.append("")
    grey = result["psnr_per_image"]["observation"]["median_psnr"]
    for m, v in result["psnr_per_image"].items():
        if m != "observation":
            lines.append(f"- {m}: PSNR above the grey input's (by more than {TIE_DB} dB) on {v['above_grey']} of {n} images; median PSNR "
                         f"{v['median_psnr']:.2f} dB (grey {grey:.2f}).")
    for m, s in result["latent_selection"].items():
        lines.append(f"- {m}: the class its latent selection chose from the grey image is the true one for "
                     f"{s['chosen_class_is_true']} of {s['n']} images.")
        for part, words in (("class_true", "true"), ("class_wrong", "not the true one")):
            c = s["correct_by_selection"][part]
            if c["n"]:
                lines.append(f"  - where it is {words} ({c['n']} images), top-1 right on: originals {c['clean']}, "
                             f"grey inputs {c['observation']}, {m} {c[m]}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a quality.py --out folder run with --save-images")
    args = parser.parse_args(argv)
    if not (args.folder / "rows.jsonl").is_file():
        parser.error(f"{args.folder}: no rows.jsonl (a quality.py --out folder is needed)")
    import warnings

    warnings.simplefilter("ignore", UserWarning)  # skimage's Lab gamut clipping
    result = evaluate(args.folder)
    (args.folder / "accuracy.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (args.folder / "accuracy.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
