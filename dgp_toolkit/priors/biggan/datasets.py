"""Image data sets for training a BigGAN prior, decoded once into one uint8 tensor.

Two formats:

* the CIFAR-10 ``.npz`` layout of this project's data (``jpeg`` bytes, ``offsets``,
  ``labels``, ``classes``);
* a folder with one subfolder per class (``data/cat/*.png``, ``data/dog/*.jpg`` ...);
  images are centre-cropped to a square and resized to the training resolution.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import torch

from dgp_toolkit.errors import DGPUsageError
from dgp_toolkit.paths import check_input_file

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


@dataclasses.dataclass
class ImageDataset:
    """All images as ``(N, 3, R, R)`` uint8, labels ``(N,)`` int64, and class names."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    source: str

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    def batch(self, index: torch.Tensor, *, flip: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Images in [-1, 1] (float32) and labels for ``index``; ``flip`` mirrors some."""
        x = self.images[index].float().div_(127.5).sub_(1.0)
        if flip is not None and bool(flip.any()):
            x[flip] = x[flip].flip(-1)
        return x, self.labels[index]


def _fit_square(img, resolution: int):
    from PIL import Image

    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if side != resolution:
        img = img.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return img


def load_npz(path: Path, resolution: int) -> ImageDataset:
    from PIL import Image

    try:
        data = np.load(path, allow_pickle=False)
        buf, offsets, labels = data["jpeg"], data["offsets"], data["labels"]
        classes = [str(c) for c in data["classes"]]
    except (OSError, KeyError, ValueError) as exc:
        raise DGPUsageError(
            f"{path}: not a data set .npz with 'jpeg', 'offsets', 'labels' and 'classes' ({exc})") from None
    n = len(offsets) - 1
    out = np.empty((n, resolution, resolution, 3), dtype=np.uint8)
    for i in range(n):
        img = Image.open(io.BytesIO(buf[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB")
        if img.size != (resolution, resolution):
            img = _fit_square(img, resolution)
        out[i] = np.asarray(img)
    images = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
    return ImageDataset(images, torch.from_numpy(labels.astype(np.int64)), classes, str(path))


def load_folder(path: Path, resolution: int) -> ImageDataset:
    from PIL import Image

    class_dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DGPUsageError(f"{path}: expected one subfolder per class (e.g. {path}/cat/*.png)")
    images, labels = [], []
    for label, folder in enumerate(class_dirs):
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        for f in files:
            try:
                with Image.open(f) as img:
                    img = _fit_square(img.convert("RGB"), resolution)
            except OSError as exc:
                raise DGPUsageError(f"{f}: cannot read this image ({exc})") from None
            images.append(np.asarray(img))
            labels.append(label)
    if not images:
        raise DGPUsageError(f"{path}: no images found in its class subfolders")
    stacked = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return ImageDataset(stacked, torch.tensor(labels, dtype=torch.int64),
                        [d.name for d in class_dirs], str(path))


def load_dataset(path: str | Path, resolution: int) -> ImageDataset:
    """Load an ``.npz`` data set or a class-per-subfolder image folder."""
    path = Path(path)
    if not path.exists():
        raise DGPUsageError(f"data set not found: {path}")
    if path.is_dir():
        return load_folder(path, resolution)
    check_input_file(path, "a data set")  # a FIFO would block np.load
    if path.suffix == ".npz":
        return load_npz(path, resolution)
    raise DGPUsageError(f"{path}: a data set is an .npz file or a folder with one subfolder per class")
