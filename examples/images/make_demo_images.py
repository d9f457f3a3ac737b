"""Regenerate the demo images in this folder (run from anywhere: ``python make_demo_images.py``).

- ``cifar_<class>_<index>.png``: CIFAR-10 development images (32 px) from
  ``shared/data/cifar10/test_dev_jpeg.npz`` (never used for training), one per class
  listed in ``CIFAR_PICKS``; ``<index>`` is the image's index in that file.
- ``astronaut.png``, ``coffee.png``, ``chelsea.png``: scikit-image's bundled photos,
  downscaled (Lanczos) to 256 px on the long side.
- ``mask_32_scribble.png``: a 32x32 inpainting mask (black = missing) for the CIFAR
  images: ``--degrade mask:file=examples/images/mask_32_scribble.png``.

CIFAR-10: Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009.
The photos come with scikit-image (see its ``skimage/data`` licence notes).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# The shared data folder sits beside the checkout (../shared) or inside it (shared/).
DATA = next((base / "data" / "cifar10" / "test_dev_jpeg.npz" for base in (ROOT / "shared", ROOT.parent / "shared")
             if (base / "data" / "cifar10" / "test_dev_jpeg.npz").exists()),
            ROOT.parent / "shared" / "data" / "cifar10" / "test_dev_jpeg.npz")
CIFAR_PICKS = ("cat", "dog", "airplane", "ship", "horse", "frog")
PHOTOS = ("astronaut", "coffee", "chelsea")
LONG_SIDE = 256


def cifar_images(path: Path = DATA) -> dict[str, Image.Image]:
    """The first development image of each class in ``CIFAR_PICKS``, by file name."""
    with np.load(path) as data:
        buf, offsets, labels = data["jpeg"], data["offsets"], data["labels"]
        classes = [str(c) for c in data["classes"]]
    images = {}
    for name in CIFAR_PICKS:
        index = int(np.flatnonzero(labels == classes.index(name))[0])
        raw = buf[offsets[index]:offsets[index + 1]].tobytes()
        images[f"cifar_{name}_{index}.png"] = Image.open(io.BytesIO(raw)).convert("RGB")
    return images


def photos() -> dict[str, Image.Image]:
    """scikit-image's photos, downscaled to ``LONG_SIDE`` on the long edge."""
    import skimage.data

    images = {}
    for name in PHOTOS:
        image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        scale = LONG_SIDE / max(image.size)
        size = (round(image.width * scale), round(image.height * scale))
        images[f"{name}.png"] = image.resize(size, Image.Resampling.LANCZOS)
    return images


def scribble_mask(size: int = 32) -> Image.Image:
    """White (known) with a black stroke and a black blob (missing)."""
    mask = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(mask)
    draw.line([(4, 6), (14, 16), (26, 10)], fill=0, width=3)
    draw.ellipse((16, 19, 25, 28), fill=0)
    return mask


def main() -> None:
    outputs = {**cifar_images(), **photos(), "mask_32_scribble.png": scribble_mask()}
    for name, image in outputs.items():
        image.save(HERE / name, optimize=True)
        print(f"{name}: {image.width}x{image.height}")


if __name__ == "__main__":
    main()
