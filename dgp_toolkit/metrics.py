"""PSNR and SSIM as the DGP reference computes them, with today's scikit-image.

Images are compared as ``H x W x 3`` floats in [0, 1] with ``data_range=1``; SSIM runs
over the colour channels (``channel_axis=-1``, scikit-image's default 7x7 uniform
window). Every function accepts, for each image:

- a numpy ``H x W x 3`` array: float in [0, 1], or uint8 (divided by 255);
- a torch tensor in the toolkit's [-1, 1] convention, ``(3, H, W)`` or ``(1, 3, H, W)``;
- an RGB PIL image.

Task variants (the reference's evaluation protocol):

- colorization: the result's Lab L channel is replaced by the grey input's L before
  scoring (so only the colours are judged);
- inpainting: both images are cropped to the bounding box of the missing pixels.

>>> import numpy as np
>>> a = np.zeros((16, 16, 3)); b = a + 0.1
>>> round(psnr(a, b), 6)
20.0
>>> scores(a, a)["ssim"]
1.0
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

__all__ = ["to_unit_array", "psnr", "ssim", "scores", "colorization_scores", "inpainting_scores",
           "put_luminance", "missing_bbox"]

#: The reference's luminance weights (as in the ``gray`` degradation).
_LUMA = np.array([0.2989, 0.5870, 0.1140])


def to_unit_array(image: Any) -> np.ndarray:
    """``H x W x 3`` float64 in [0, 1] from an array, a tensor in [-1, 1] or a PIL image.

    >>> to_unit_array(np.full((2, 2, 3), 255, np.uint8)).max()
    np.float64(1.0)
    """
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        try:
            import torch
        except ImportError:  # pragma: no cover
            torch = None
        if torch is None or not isinstance(image, torch.Tensor):
            raise TypeError(f"expected an image array, tensor or PIL image, got {type(image).__name__}")
        t = image.detach().float().cpu()
        if t.ndim == 4:
            if t.shape[0] != 1:
                raise ValueError(f"expected one image, got a batch of {t.shape[0]}")
            t = t[0]
        if t.ndim != 3 or t.shape[0] != 3:
            raise ValueError(f"expected a (3, H, W) or (1, 3, H, W) tensor, got {tuple(image.shape)}")
        return ((t.permute(1, 2, 0).numpy().astype(np.float64) + 1) / 2).clip(0, 1)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"expected a float array in [0, 1] or uint8, got {image.dtype}")
    return image.astype(np.float64)


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = to_unit_array(a), to_unit_array(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in size: {a.shape[1]}x{a.shape[0]} and {b.shape[1]}x{b.shape[0]}")
    return a, b


def psnr(restored: Any, clean: Any) -> float:
    """Peak signal-to-noise ratio in dB (``data_range=1``); ``inf`` for identical images."""
    from skimage.metrics import peak_signal_noise_ratio

    a, b = _pair(restored, clean)
    if np.array_equal(a, b):
        return float("inf")
    return float(peak_signal_noise_ratio(b, a, data_range=1.0))


def ssim(restored: Any, clean: Any) -> float:
    """Structural similarity over the colour channels (``channel_axis=-1``, ``data_range=1``).

    Images smaller than scikit-image's 7-pixel window use the largest odd window that
    fits (at least 3 pixels per side are needed).
    """
    from skimage.metrics import structural_similarity

    a, b = _pair(restored, clean)
    side = min(a.shape[:2])
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        raise ValueError(f"SSIM needs at least 3x3 pixels, got {a.shape[1]}x{a.shape[0]}")
    return float(structural_similarity(b, a, data_range=1.0, channel_axis=-1, win_size=win))


def scores(restored: Any, clean: Any) -> dict[str, float]:
    """``{"psnr": ..., "ssim": ...}`` of a restoration against the clean image."""
    return {"psnr": psnr(restored, clean), "ssim": ssim(restored, clean)}


def put_luminance(restored: Any, grey: Any) -> np.ndarray:
    """``restored`` with its Lab L channel replaced by ``grey``'s L; ``H x W x 3`` in [0, 1]."""
    from skimage.color import lab2rgb, rgb2lab

    a, g = _pair(restored, grey)
    lab = rgb2lab(a)
    lab[..., 0] = rgb2lab(g)[..., 0]
    return np.clip(lab2rgb(lab), 0, 1)


def colorization_scores(restored: Any, clean: Any, grey: Any | None = None) -> dict[str, float]:
    """Scores after putting back the grey input's lightness (Lab L) on the result.

    ``grey`` is the observed grey input; when omitted it is made from ``clean`` with the
    reference's weights (0.2989, 0.5870, 0.1140).
    """
    clean = to_unit_array(clean)
    if grey is None:
        grey = np.repeat((clean @ _LUMA)[..., None], 3, axis=2).clip(0, 1)
    return scores(put_luminance(restored, grey), clean)


def missing_bbox(missing: Any) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` (exclusive ends) of the ``True`` pixels of an H x W mask.

    >>> m = np.zeros((8, 8), bool); m[2:5, 3:7] = True
    >>> missing_bbox(m)
    (2, 5, 3, 7)
    """
    missing = np.asarray(missing, dtype=bool)
    if missing.ndim != 2:
        raise ValueError(f"expected an H x W mask of missing pixels, got shape {missing.shape}")
    rows, cols = np.flatnonzero(missing.any(axis=1)), np.flatnonzero(missing.any(axis=0))
    if rows.size == 0:
        raise ValueError("the mask has no missing pixels")
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def inpainting_scores(restored: Any, clean: Any, missing: Any) -> dict[str, float]:
    """Scores on the bounding box of the missing pixels (``missing``: H x W, True = missing).

    ``Mask.missing(h, w)`` of the ``mask`` degradation gives such an array.
    """
    a, b = _pair(restored, clean)
    top, bottom, left, right = missing_bbox(missing)
    if np.asarray(missing).shape != a.shape[:2]:
        raise ValueError(f"mask is {np.asarray(missing).shape[::-1]} but the images are {a.shape[1::-1]}")
    return scores(a[top:bottom, left:right], b[top:bottom, left:right])
