"""The known BigGAN variants (``variants.json`` beside this file) and their class names.

Nothing here imports torch: the plugin and ``dgp-tool weights list`` read it to describe
the priors without loading any weights.

>>> v = get_variant("biggan-imagenet-256")
>>> v.config["resolution"], v.files["G_ema"]
(256, 'G_ema_256.pth')
>>> class_names_of("cifar10", 10)[3]
'cat'
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from dgp_toolkit.errors import DGPError

_HERE = Path(__file__).resolve().parent
_PACKAGE = _HERE.parents[1]

#: The default prior's name.
DEFAULT_PRIOR = "biggan"

#: Points the embedded ``biggan`` prior at another file of the same format (a safetensors
#: file with ``G.*``/``D.*`` keys, e.g. a ``dgp-tool train-prior`` output) without
#: rebuilding the package. Used by tests and by whoever trains the shipped prior.
ENV_EMBEDDED = "DGP_TOOLKIT_EMBEDDED_WEIGHTS"

#: Where the packaged weights live (``dgp_toolkit/priors/weights``).
EMBEDDED_DIR = _PACKAGE / "priors" / "weights"

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

#: Where the DGP authors distribute the official checkpoint pairs.
DOWNLOAD_HINT = "the DGP authors' release, linked from the README of the DGP reference code"


@dataclass(frozen=True)
class Variant:
    """One known BigGAN: its architecture (official argument names) and where weights come from.

    ``kind`` is ``"embedded"`` (shipped with the package) or ``"official"`` (a
    BigGAN-PyTorch checkpoint pair the user downloads and imports). ``files`` names the
    official pair (roles ``G_ema`` and ``D``); ``classes`` names the class list
    (``"imagenet"`` or ``"cifar10"``).
    """

    name: str
    description: str
    kind: str
    config: dict[str, Any]
    classes: str
    files: dict[str, str] = field(default_factory=dict)
    embedded_file: str | None = None

    def how_to_get(self) -> str:
        """One sentence telling the user how to install this variant's weights."""
        if self.kind == "embedded":
            return (f"this copy of dgp-toolkit ships without {embedded_weights_path()}; reinstall "
                    f"the package, or set {ENV_EMBEDDED}=FILE to a prior file (G.*/D.* safetensors)")
        g, d = self.files["G_ema"], self.files["D"]
        return (f"download {g} and {d} ({DOWNLOAD_HINT}), then run "
                f"`dgp-tool weights import {g} {d} --variant {self.name}`, "
                f"or pass --weights DIR (a folder holding both)")


@lru_cache(maxsize=1)
def _table() -> dict[str, Variant]:
    raw = json.loads((_HERE / "variants.json").read_text(encoding="utf-8"))
    return {
        name: Variant(name=name, description=entry["description"], kind=entry["kind"],
                      config=dict(entry["config"]), classes=entry["classes"],
                      files=dict(entry.get("files", {})), embedded_file=entry.get("embedded_file"))
        for name, entry in raw.items()
    }


def known_variants() -> dict[str, Variant]:
    """Every known variant by name, the embedded default first."""
    return dict(_table())


def get_variant(name: str) -> Variant | None:
    """The variant called ``name``, or ``None`` when it is not a known one."""
    return _table().get(name)


def embedded_weights_path() -> Path:
    """The file of the embedded ``biggan`` prior (``$DGP_TOOLKIT_EMBEDDED_WEIGHTS`` wins)."""
    override = os.environ.get(ENV_EMBEDDED, "").strip()
    if override:
        return Path(override).expanduser()
    variant = _table()[DEFAULT_PRIOR]
    return EMBEDDED_DIR / str(variant.embedded_file)


def embedded_card_path() -> Path:
    """The model card (JSON) beside the embedded weights file."""
    return embedded_weights_path().with_suffix(".json")


def read_embedded_card() -> dict[str, Any]:
    """The embedded prior's model card, or ``{}`` when there is none (or it is unreadable)."""
    try:
        card = json.loads(embedded_card_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return card if isinstance(card, dict) else {}


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[tuple[str, str], ...]:
    """The 1000 ImageNet classes in BigGAN's index order, as ``(name, wnid)`` pairs."""
    path = _PACKAGE / "data" / "imagenet_classes.json"
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["classes"]
    except (OSError, ValueError, KeyError) as exc:
        raise DGPError(f"the ImageNet class list {path} is missing or unreadable ({exc}); reinstall dgp-toolkit") from None
    rows = sorted(rows, key=lambda r: int(r["index"]))
    return tuple((str(r["name"]), str(r["wnid"])) for r in rows)


def class_names_of(classes: str | None, n_classes: int) -> tuple[str, ...]:
    """Class names for a class list name (``"imagenet"``, ``"cifar10"``) of ``n_classes``.

    A list that does not have ``n_classes`` entries (or no list) gives the indices as names.
    """
    names: tuple[str, ...] = ()
    if classes == "imagenet":
        names = tuple(name for name, _ in imagenet_classes())
    elif classes == "cifar10":
        names = CIFAR10_CLASSES
    if len(names) != n_classes:
        names = tuple(str(i) for i in range(n_classes))
    return names


def guess_classes(config: dict[str, Any]) -> str | None:
    """The class list a configuration most likely uses: ImageNet for 1000 classes."""
    n = int(config.get("n_classes", 0))
    if n == 1000:
        return "imagenet"
    if n == 10 and int(config.get("resolution", 0)) == 32:
        return "cifar10"
    return None
