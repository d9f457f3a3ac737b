"""The built-in BigGAN prior plugin: ``biggan``, the official ImageNet variants, imported names.

Registers one prior per known variant (``variants.json``) and one per name imported into
the weights cache (``dgp-tool weights import ... --as NAME``). Nothing heavy happens
here: each factory imports torch and reads weights only when called.
"""

from __future__ import annotations

from typing import Any

from dgp_toolkit.hookspecs import hookimpl


class BigGANFactory:
    """Builds the BigGAN prior ``name``: ``factory(device="cpu", weights=None)``.

    ``device``: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``. ``weights``: a folder
    holding an official ``G_ema_*.pth`` + ``D_*.pth`` pair, or a prior file, used instead
    of the installed weights.
    """

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description
        self.__doc__ = f"BigGAN prior {name}: {description}.\n\n{BigGANFactory.__doc__}"

    def __call__(self, device: str = "cpu", weights: str | None = None) -> Any:
        from dgp_toolkit.priors.biggan.prior import load_biggan

        return load_biggan(self.name, device=device, weights=weights)

    def __repr__(self) -> str:
        return f"BigGANFactory({self.name!r})"


@hookimpl
def register_priors(register: Any) -> None:
    from dgp_toolkit.priors import store
    from dgp_toolkit.priors.biggan.variants import known_variants

    variants = known_variants()
    for name, variant in variants.items():
        register(name, BigGANFactory(name, variant.description))
    # A broken cache record must not break the tool: `dgp-tool weights list` reports it.
    for record in store.list_records():
        if record.name not in variants:
            what = f"imported {record.variant}" if record.variant else "imported BigGAN"
            register(record.name, BigGANFactory(record.name, f"{what} ({record.config.get('resolution')} px)"))
