"""Labelled contact sheets and animated GIFs of generated images.

A sheet is rows of tiles, each tile with a caption under it and, optionally, a label
left of each row (``std 0.5``), drawn with Pillow's default font. Small images (a 32-px
prior) are enlarged with nearest-neighbour so that they and their captions stay readable;
the pixels themselves are never smoothed.

>>> from PIL import Image
>>> red, blue = Image.new("RGB", (32, 32), "red"), Image.new("RGB", (32, 32), "blue")
>>> sheet = labelled_sheet([[("a", red), ("b", blue)]], row_labels=["std 0.3"])
>>> sheet.mode, sheet.size[1] > 96
('RGB', True)
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

__all__ = ["labelled_sheet", "chunk_rows", "gif_bytes", "write_gif", "write_sheet"]

#: The smallest tile side on a sheet: a 32-px prior's images are shown 3x.
MIN_TILE = 96
_PAD = 4
_WHITE, _BLACK, _GREY = (255, 255, 255), (0, 0, 0), (90, 90, 90)


@lru_cache(maxsize=4)
def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError, AttributeError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def _text_width(draw: ImageDraw.ImageDraw, text: str, font: Any) -> float:
    return draw.textlength(text, font=font)


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    """``text``, shortened with an ellipsis until it fits ``width`` pixels."""
    if _text_width(draw, text, font) <= width:
        return text
    while text and _text_width(draw, text + "...", font) > width:
        text = text[:-1]
    return text + "..." if text else ""


def tile_size(side: int) -> int:
    """The side a ``side``-px image gets on a sheet (an integer multiple when enlarged).

    >>> tile_size(32), tile_size(100), tile_size(256)
    (96, 100, 256)
    """
    if side >= MIN_TILE:
        return side
    return side * -(-MIN_TILE // side)


def chunk_rows(tiles: Sequence[tuple[str, Image.Image]], ncol: int) -> list[list[tuple[str, Image.Image]]]:
    """``tiles`` wrapped into rows of at most ``ncol``."""
    ncol = max(1, int(ncol))
    return [list(tiles[i:i + ncol]) for i in range(0, len(tiles), ncol)]


def labelled_sheet(rows: Sequence[Sequence[tuple[str, Image.Image]]], *, row_labels: Sequence[str] | None = None,
                   title: str | None = None) -> Image.Image:
    """Rows of ``(caption, image)`` tiles on white, captions under the tiles.

    Rows may have different lengths; ``row_labels`` (one per row, ``""`` for none) are
    drawn left of the rows; ``title`` above everything. Every image is shown at the
    size of the largest one (enlarged to at least :data:`MIN_TILE` pixels).
    """
    rows = [list(r) for r in rows]
    if not any(rows):
        raise ValueError("a sheet needs at least one image")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"{len(row_labels)} row labels for {len(rows)} rows")
    side = tile_size(max(max(img.size) for row in rows for _, img in row))
    font = _font(11 if side < 160 else 14)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line = int(font.getbbox("Ag")[3]) + 4 if hasattr(font, "getbbox") else 14
    label_w = 0
    if row_labels and any(row_labels):
        label_w = int(max(_text_width(probe, text, font) for text in row_labels)) + 2 * _PAD
    ncol = max(len(r) for r in rows)
    cell_w, cell_h = side + _PAD, side + line + _PAD
    top = line + _PAD if title else 0
    width = label_w + ncol * cell_w + _PAD
    height = top + len(rows) * cell_h + _PAD
    sheet = Image.new("RGB", (width, height), _WHITE)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((_PAD, _PAD // 2), _fit_text(draw, title, font, width - 2 * _PAD), fill=_BLACK, font=font)
    for r, row in enumerate(rows):
        y = top + _PAD + r * cell_h
        if row_labels and row_labels[r]:
            draw.text((_PAD, y + side // 2 - line // 2), row_labels[r], fill=_BLACK, font=font)
        for c, (caption, image) in enumerate(row):
            x = label_w + _PAD + c * cell_w
            tile = image.convert("RGB")
            if tile.size != (side, side):
                tile = tile.resize((side, side), Image.Resampling.NEAREST)
            sheet.paste(tile, (x, y))
            if caption:
                draw.text((x + 1, y + side + 1), _fit_text(draw, caption, font, side - 2), fill=_GREY, font=font)
    return sheet


def write_sheet(sheet: Image.Image, path: str | os.PathLike, *, overwrite: bool = False,
                protect: Iterable[str | os.PathLike] = ()) -> Path:
    """Write a sheet as PNG, atomically (see :func:`dgp_toolkit.images.write_image`)."""
    from dgp_toolkit.images import write_image

    return write_image(sheet, path, overwrite=overwrite, protect=protect)


def gif_bytes(frames: Sequence[Image.Image], *, duration_ms: int = 150, loop: int = 0) -> bytes:
    """An animated GIF of ``frames`` (shown ``duration_ms`` each, looping forever by default)."""
    if not frames:
        raise ValueError("a GIF needs at least one frame")
    rgb = [f.convert("RGB") for f in frames]
    buffer = io.BytesIO()
    rgb[0].save(buffer, format="GIF", save_all=True, append_images=rgb[1:], duration=int(duration_ms),
                loop=int(loop), optimize=False, disposal=1)
    return buffer.getvalue()


def write_gif(frames: Sequence[Image.Image], path: str | os.PathLike, *, duration_ms: int = 150,
              overwrite: bool = False, protect: Iterable[str | os.PathLike] = ()) -> Path:
    """Write an animated GIF atomically (same rules as :func:`dgp_toolkit.images.write_atomic`)."""
    from dgp_toolkit.images import write_atomic

    data = gif_bytes(frames, duration_ms=duration_ms)
    return write_atomic(path, lambda handle: handle.write(data), overwrite=overwrite, protect=protect)


def restoration_sheet(result: Any) -> Image.Image:
    """A labelled strip of one restoration (a :class:`~dgp_toolkit.RestoreResult`): input,
    observation, the generator's output at the end of each stage, result."""
    from dgp_toolkit.images import to_pil

    tiles = [("input", result.input), ("observation", result.observation)]
    tiles += [(f"stage {i + 1}", to_pil(s)) for i, s in enumerate(result.snapshots)]
    tiles.append(("result", result.image))
    return labelled_sheet([tiles])
