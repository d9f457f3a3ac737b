"""The README's picture: per task, a CIFAR-10 dev photo, the observation made from it and
the restoration on the embedded 32-px prior, with each one's PSNR against the photo.

    python docs/make_front_sheet.py      (8.5 minutes on a shared 2-core AMD EPYC, one torch thread)

The photos are the demo images in examples/images (never trained on), one per task in a
fixed order, restored once with seed 0 and the task's shipped preset: not picked for how
well they came out. Scores as `restore --simulate` gives them (colorization after putting
back the photo's luminance, inpainting on the hole's box).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from PIL import Image

import dgp_toolkit
from dgp_toolkit.sheets import labelled_sheet, write_sheet

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "examples" / "images"
OUT = ROOT / "docs" / "front_sheet.png"

#: (row label, degradation, demo image)
ROWS = [
    ("colorization", "gray", "cifar_horse_700.png"),
    ("inpainting", "mask", "cifar_cat_300.png"),
    ("super-res. x4", "downsample:factor=4", "cifar_ship_800.png"),
    ("deblurring", "blur", "cifar_frog_600.png"),
    ("denoising", "noise", "cifar_dog_500.png"),
]


def main() -> int:
    prior = dgp_toolkit.load_prior("biggan")
    rows, labels = [], []
    for label, spec, name in ROWS:
        start = time.perf_counter()
        result = dgp_toolkit.restore(IMAGES / name, [spec], prior, simulate=True, seed=0)
        observed, restored = (result.metrics[key]["psnr"] for key in ("observation", "result"))
        print(f"{label}: {spec} on {name}: observation {observed:.2f} dB, DGP {restored:.2f} dB "
              f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
        rows.append([("photo", Image.open(IMAGES / name).convert("RGB")),
                     (f"observed {observed:.1f} dB", result.observation),
                     (f"DGP {restored:.1f} dB", result.image)])
        labels.append(label)
    write_sheet(labelled_sheet(rows, row_labels=labels), OUT, overwrite=True)
    print(OUT, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
