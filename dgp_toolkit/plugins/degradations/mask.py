"""``mask``: inpainting; missing pixels are set to 0 (mid-grey) in [-1, 1], like the reference.

The hole is, by priority: ``file=PATH`` (a mask image, black = missing, fitted to the
prior's size like the image it belongs to, with ``fit``), ``box=x/y/w/h`` (in pixels of the
prior-sized image), or by default a centred square of side ``min(h, w) // 3``.

>>> import torch
>>> m = Mask()
>>> known = m.known(32, 32)
>>> int((known == 0).sum())  # a 10x10 hole
100
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dgp_toolkit.plugins.degradations.base import Degradation, Option


def centre_square(height: int, width: int) -> tuple[int, int, int, int]:
    """``(x, y, w, h)`` of the reference's hole: a centred square of side ``min(h, w) // 3``.

    >>> centre_square(128, 128)
    (43, 43, 42, 42)
    """
    side = min(height, width) // 3
    return ((width - side) // 2, (height - side) // 2, side, side)


class Mask(Degradation):
    """Inpainting: zero the missing pixels.

    ``observe`` zeroes the hole of the user's image too (whatever colour the hole was
    painted), so that the target equals ``forward`` of the truth; ``finish`` keeps the
    observed (known) pixels and takes only the hole from the restoration.
    """

    name = "mask"
    task = "inpainting"
    protocol = "inpainting"
    default_fit = "resize"  # the whole photo: the fill is pasted back into it at its own size
    OPTIONS = {
        "box": Option(int, None, "hole as x/y/w/h in pixels of the prior-sized image", length=4,
                      check=lambda v: v[0] >= 0 and v[1] >= 0 and v[2] > 0 and v[3] > 0,
                      allowed="x, y >= 0 and w, h > 0", metavar="x/y/w/h",
                      default_text="centred square, side min(h,w)//3"),
        "file": Option(Path, None, "mask image, black = missing (same size as the input image)"),
        "fit": Option(str, None, "how the mask file is fitted (as the image: crop, pad or resize)",
                      choices=("crop", "pad", "resize"), default_text="resize (with file)"),
    }

    _source = None

    def __init__(self, **options):
        super().__init__(**options)
        self._cache: dict = {}

    def resolve_options(self, options):
        if options["box"] is not None and options["file"] is not None:
            raise self.usage_error("give either 'box' or 'file', not both")
        if options["file"] is None:
            if options["fit"] is not None:
                raise self.usage_error("option 'fit' only applies together with 'file'")
        else:
            if options["fit"] is None:
                options["fit"] = "resize"  # as an inpainting input is fitted by default (the whole frame)
            self._source = self._read_mask(options["file"])
        return options

    def _read_mask(self, path: Path):
        from dgp_toolkit.images import read_image

        loaded = read_image(path)
        grey = np.asarray(loaded.image.convert("L"))
        known = grey >= 128
        if known.all():
            raise self.usage_error(f"mask file {path} has no black (missing) pixels")
        if not known.any():
            raise self.usage_error(f"mask file {path} is entirely black: every pixel would be missing")
        return loaded

    def check_image_size(self, width: int, height: int) -> None:
        """A mask file must have the size of the image it belongs to (before fitting)."""
        if self._options["file"] is None:
            return
        mw, mh = self._source.source_size
        if (mw, mh) != (width, height):
            raise self.usage_error(
                f"mask file {self._options['file']} is {mw}x{mh} but the image is {width}x{height}; "
                "draw the mask at the image's size")

    def known(self, height: int, width: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
        """``(1, 1, height, width)`` with 1 for known and 0 for missing pixels.

        Cached per size, device and dtype: the optimization loop calls it every step.
        """
        key = (height, width, str(torch.device(device or "cpu")), dtype)
        cached = self._cache.get(key)
        if cached is None:
            if len(self._cache) > 16:
                self._cache.clear()
            cached = self._cache[key] = self._known(height, width).to(device=device, dtype=dtype)[None, None]
        return cached

    def _known(self, height: int, width: int) -> torch.Tensor:
        if self._options["file"] is not None:
            from dgp_toolkit.images import fit_image

            grey = self._source.image.convert("L")
            fitted = fit_image(grey, (width, height), mode=self._options["fit"]).image
            return torch.from_numpy(np.asarray(fitted) >= 128)
        box = self._options["box"] or centre_square(height, width)
        x, y, w, h = box
        if w <= 0 or h <= 0:
            raise ValueError(f"{self.spec}: images of {width}x{height} px are too small for a hole")
        if x + w > width or y + h > height:
            raise self.usage_error(f"box {x}/{y}/{w}/{h} does not fit inside the {width}x{height} image")
        if w >= width and h >= height:
            raise self.usage_error(f"box {x}/{y}/{w}/{h} covers the whole {width}x{height} image: every pixel "
                                   "would be missing")
        known = torch.ones(height, width, dtype=torch.bool)
        known[y:y + h, x:x + w] = False
        return known

    def missing(self, height: int, width: int) -> np.ndarray:
        """``height x width`` boolean array, ``True`` where pixels are missing (for metrics)."""
        return ~self.known(height, width, dtype=torch.bool)[0, 0].numpy()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.check_images(x)
        return x * self.known(*x.shape[-2:], device=x.device, dtype=x.dtype)

    def observe(self, image, *, size=None):
        return self(super().observe(image, size=size))

    def finish(self, restored: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        restored, observed = self.check_pair(restored, observed)
        known = self.known(*restored.shape[-2:], device=restored.device, dtype=restored.dtype)
        return known * observed + (1 - known) * restored

    def scores(self, restored, clean, observation):
        """Scored on the bounding box of the missing pixels."""
        from dgp_toolkit.metrics import inpainting_scores

        side = restored.shape[-1]
        return inpainting_scores(restored, clean, self.missing(side, side))

    def full_resolution(self, frame):
        """The input with the filled hole pasted back at its own resolution: a mask file drawn
        at the input's size is used exactly, a box is stretched as the fit stretched the input."""
        x0, y0, x1, y1 = frame.region
        file = self.options.get("file")
        outside = 0
        if file is not None:
            from dgp_toolkit.images import read_image

            grey = np.asarray(read_image(file).image.convert("L"))
            alpha = (grey < 128).astype(np.float64)[y0:y1, x0:x1]
            outside = int((grey < 128).sum() - (grey[y0:y1, x0:x1] < 128).sum())
        else:
            alpha = frame.to_region(self.missing(frame.side, frame.side))
        out = frame.source.astype(np.float64).copy()
        alpha = alpha[..., None]
        out[y0:y1, x0:x1] = alpha * frame.restored + (1 - alpha) * out[y0:y1, x0:x1]
        height, width = frame.source.shape[:2]
        note = f"full-resolution inpainting: the filled hole pasted back into the {width}x{height} input"
        if outside:
            note += f" ({outside} missing pixels lie outside the fitted region and were left as they are)"
        return np.clip(np.rint(out), 0, 255).astype(np.uint8), note
