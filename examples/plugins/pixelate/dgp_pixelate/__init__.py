"""dgp-toolkit plugin: the ``pixelate`` and ``haze`` degradations and ``dgp-tool pixelate-preview``.

This module is what the entry point names, so it is imported whenever dgp-tool starts:
it imports nothing heavy. The degradation class (which needs torch) is registered by
its ``"module:attribute"`` path and imported only when it is used.
"""

from __future__ import annotations

from pathlib import Path

import click

from dgp_toolkit import DGPUsageError, hookimpl

__version__ = "0.1.0"


@hookimpl
def register_degradations(register):
    register("pixelate", "dgp_pixelate.degradation:Pixelate")
    register("haze", "dgp_pixelate.haze:Haze")  # its amount can be fitted: haze:amount=auto


@click.command("pixelate-preview")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--size", default="8", show_default=True, help="Block size in pixels.")
@click.option("--overwrite", is_flag=True, help="Replace TARGET if it exists.")
def pixelate_preview(source: Path, target: Path, size: str, overwrite: bool) -> None:
    """Write SOURCE pixelated into blocks of SIZE pixels to TARGET (a PNG).

    Shows what `--degrade pixelate:size=SIZE` does to an image.
    """
    import os
    import tempfile

    import numpy as np
    import torch
    from PIL import Image

    import dgp_toolkit

    degradation = dgp_toolkit.get_degradation("pixelate", size=size)  # bad size: exit 2
    if target.resolve() == source.resolve():
        raise DGPUsageError(f"refusing to overwrite the input {source}; choose another TARGET")
    if target.exists() and not overwrite:
        raise DGPUsageError(f"{target} exists; pass --overwrite to replace it")
    with Image.open(source) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None] / 127.5 - 1.0
    with torch.no_grad():
        y = degradation.degrade(x)
    out = ((y[0].permute(1, 2, 0).clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).numpy()
    # Write next to the target, then rename: no half-written file if interrupted.
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=target.parent or Path("."))
    os.close(fd)
    try:
        Image.fromarray(out).save(tmp, format="PNG")
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    click.echo(str(target))
    click.echo(f"wrote {target} ({degradation.spec})", err=True)


@hookimpl
def register_commands(cli):
    cli.add_command(pixelate_preview)
