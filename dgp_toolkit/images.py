"""Images in and out: robust reading, fitting to a prior's resolution, atomic writing.

Reading (:func:`read_image`) accepts PNG, JPEG, WebP, TIFF and BMP, applies the EXIF
orientation and converts every colour mode to 8-bit RGB, reporting each conversion as a
human-readable note. Anything that cannot be read (missing file, folder, not an image,
truncated, decompression bomb, unsupported format) raises one
:class:`~dgp_toolkit.errors.DGPUsageError` line naming the file.

Fitting (:func:`fit_image`) brings an image to the prior's size: ``crop`` (centre crop of
the long edge, then resize: the reference's behaviour), ``pad`` (pad to the target's
shape, then resize) or ``resize`` (plain resize, distorts).

Writing (:func:`write_image`, :func:`write_atomic`) goes through a temporary file in the
destination folder and ``os.replace``: a failure leaves nothing half-written, an input is
never overwritten and an existing output only with ``overwrite=True``.

Tensors are ``(1, 3, H, W)`` float in [-1, 1]; arrays are ``H x W x 3`` uint8.

Example::

    >>> from PIL import Image
    >>> fitted = fit_image(Image.new("RGB", (64, 48)), 32)
    >>> fitted.image.size, fitted.note
    ((32, 32), 'centre-cropped 64x48 to 48x48, then resized to 32x32')
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dgp_toolkit.errors import DGPError, DGPUsageError
from dgp_toolkit.paths import same_file
from dgp_toolkit.paths import input_file_problem, new_file_mode

__all__ = [
    "SUPPORTED_FORMATS", "FIT_MODES", "LoadedImage", "FittedImage", "FullFrame", "InputImage", "read_image",
    "load_input", "fit_input", "is_grey", "fit_image", "fit_box",
    "to_tensor", "to_pil", "to_array", "write_image", "write_atomic",
]

#: Pillow format names that :func:`read_image` accepts.
SUPPORTED_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP")
#: How :func:`fit_image` can bring an image to the prior's shape.
FIT_MODES = ("crop", "pad", "resize")
PAD_MODES = ("reflect", "edge", "constant")
_WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP",
                  ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}
_RESAMPLE = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
             "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}
_WHITE = (255, 255, 255)


@dataclass
class LoadedImage:
    """An image read from disk as 8-bit RGB, with what was done to get it there.

    Attributes:
        image: the ``RGB`` PIL image (orientation applied).
        path: the file it came from.
        source_size: ``(width, height)`` after the EXIF orientation, before any fitting.
        format: Pillow's format name (``"PNG"``, ``"JPEG"``, ...).
        notes: one human-readable line per conversion (empty when none was needed).
    """

    image: Image.Image
    path: Path
    source_size: tuple[int, int]
    format: str
    notes: list[str] = field(default_factory=list)


@dataclass
class FittedImage:
    """The result of :func:`fit_image`: the image and one line saying what was done."""

    image: Image.Image
    note: str


def _usage(path: Path, message: str) -> DGPUsageError:
    return DGPUsageError(f"{path}: {message}")


def read_image(path: str | os.PathLike) -> LoadedImage:
    """Read an image file as 8-bit RGB, honouring EXIF orientation.

    Conversions (each reported in ``notes``): greyscale and 1-bit to RGB; palette to RGB;
    transparency (RGBA, LA, palette with a transparent colour) composited on white (a
    fully opaque alpha channel is simply dropped); 16-bit and 32-bit integer and float
    images scaled to 8 bits; CMYK and other colour spaces converted by Pillow (no colour
    management); only the first frame of an animation or multi-page file is used.

    Raises :class:`DGPUsageError` (one line naming the file) for a missing file, a
    folder, a pipe or device (refused before it is opened: reading a FIFO would block), a
    file that is not an image, a format outside :data:`SUPPORTED_FORMATS`, a truncated or
    corrupt file, or a decompression bomb (more pixels than ``PIL.Image.MAX_IMAGE_PIXELS``).

    >>> read_image("no/such/file.png")
    Traceback (most recent call last):
    ...
    dgp_toolkit.errors.DGPUsageError: no/such/file.png: no such file
    """
    path = Path(path)
    problem = input_file_problem(path, "an image file")
    if problem is not None:
        raise _usage(path, problem)
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; refuse both.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                fmt = opened.format or "unknown"
                if fmt not in SUPPORTED_FORMATS:
                    raise _usage(path, f"{fmt} images are not supported "
                                       f"(supported: {', '.join(SUPPORTED_FORMATS)})")
                frames = getattr(opened, "n_frames", 1)
                if frames > 1:
                    opened.seek(0)
                    notes.append(f"used the first of {frames} frames")
                sixteen_bit = opened.mode in ("RGB", "RGBA") and any(
                    ";16" in str(getattr(tile, "args", "")) for tile in (opened.tile or []))
                opened.load()
                image = opened.copy()
                image.format = fmt
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _usage(path, f"refused as a possible decompression bomb ({_first_line(exc)})") from None
    except UnidentifiedImageError:
        raise _usage(path, "is not an image file (or not one that Pillow can read; supported: "
                           f"{', '.join(SUPPORTED_FORMATS)})") from None
    except PermissionError:
        raise _usage(path, "permission denied") from None
    except DGPUsageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, MemoryError) as exc:
        raise _usage(path, f"is truncated or corrupt ({_first_line(exc)})") from None
    if sixteen_bit:
        notes.append("16-bit channels reduced to 8 bits")

    orientation = image.getexif().get(0x0112)
    if orientation not in (None, 1):
        image = ImageOps.exif_transpose(image)
        notes.append(f"rotated/flipped according to its EXIF orientation ({orientation})")
    source_size = image.size
    image, converted = _to_rgb(image, path)
    notes.extend(converted)
    return LoadedImage(image=image, path=path, source_size=source_size, format=fmt, notes=notes)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _composite_on_white(image: Image.Image, what: str) -> tuple[Image.Image, list[str]]:
    rgba = image.convert("RGBA")
    alpha = np.asarray(rgba.getchannel("A"))
    if alpha.min() == 255:
        return rgba.convert("RGB"), [f"{what} with a fully opaque alpha channel: alpha dropped"]
    background = Image.new("RGBA", rgba.size, _WHITE + (255,))
    flat = Image.alpha_composite(background, rgba).convert("RGB")
    share = float((alpha < 255).mean()) * 100
    return flat, [f"{what} with transparency: composited on white ({share:.1f}% of pixels transparent)"]


def _to_rgb(image: Image.Image, path: Path) -> tuple[Image.Image, list[str]]:
    mode = image.mode
    if mode == "RGB":
        return image, []
    if mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        what = {"LA": "greyscale image", "La": "greyscale image", "PA": "palette image"}.get(mode, "RGBA image")
        return _composite_on_white(image, what)
    if mode == "P":
        if "transparency" in image.info:
            return _composite_on_white(image, "palette image")
        return image.convert("RGB"), ["palette image converted to RGB"]
    if mode == "1":
        return image.convert("L").convert("RGB"), ["black-and-white (1-bit) image converted to RGB"]
    if mode == "L":
        return image.convert("RGB"), ["greyscale image converted to RGB"]
    if mode.startswith("I;16") or mode in ("I", "F"):
        data = np.asarray(image).astype(np.float64)
        if mode == "F":
            top = 1.0 if data.max(initial=0.0) <= 1.0 else 255.0
            note = f"32-bit float greyscale image (0..{top:g}) scaled to 8 bits and converted to RGB"
        elif mode == "I" and data.max(initial=0) > 65535:
            top = float(2**32 - 1)
            note = "32-bit greyscale image scaled to 8 bits and converted to RGB"
        else:
            top = 65535.0
            note = "16-bit greyscale image reduced to 8 bits and converted to RGB"
        grey = np.clip(np.rint(data / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB"), [note]
    if mode == "CMYK":
        return image.convert("RGB"), ["CMYK image converted to RGB (without colour management)"]
    try:
        converted = image.convert("RGB")
    except (ValueError, OSError):
        raise _usage(path, f"colour mode {mode} cannot be converted to RGB") from None
    return converted, [f"{mode} image converted to RGB"]


def _target(size: int | tuple[int, int]) -> tuple[int, int]:
    """``(width, height)`` from a square side or a ``(width, height)`` pair."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        width = height = int(size)
    else:
        width, height = (int(v) for v in size)
    if width < 1 or height < 1:
        raise DGPUsageError(f"image size must be positive, got {width}x{height}")
    return width, height


def fit_image(image: Image.Image, size: int | tuple[int, int], *, mode: str = "crop",
              pad_mode: str = "reflect", pad_value: int | tuple[int, ...] = 0,
              resample: str = "bilinear") -> FittedImage:
    """Bring ``image`` to ``size`` (a square side, or ``(width, height)``).

    Args:
        mode: ``crop``: centre crop to the target's aspect ratio (for a square target, the
            long edge is cut), then resize (default; the reference's behaviour);
            ``pad``: pad to the target's aspect ratio with ``pad_mode`` (``reflect``,
            ``edge`` or ``constant`` with ``pad_value``), then resize; ``resize``: plain
            resize (distorts the aspect ratio).
        resample: ``bilinear`` (the reference's), ``bicubic``, ``lanczos`` or ``nearest``.

    Works for any Pillow mode that can be resized (``RGB`` images, ``L`` masks).

    >>> fit_image(Image.new("RGB", (20, 40)), 10, mode="pad").note
    'padded 20x40 to 40x40 (reflect), then resized to 10x10'
    """
    if mode not in FIT_MODES:
        raise DGPUsageError(f"unknown fit mode '{mode}' (choose from {', '.join(FIT_MODES)})")
    if pad_mode not in PAD_MODES:
        raise DGPUsageError(f"unknown pad mode '{pad_mode}' (choose from {', '.join(PAD_MODES)})")
    if resample not in _RESAMPLE:
        raise DGPUsageError(f"unknown resampling '{resample}' (choose from {', '.join(_RESAMPLE)})")
    width, height = _target(size)
    w, h = image.size
    steps = []
    left, top, bw, bh = fit_box(w, h, (width, height), mode)
    if (left, top, bw, bh) != (0, 0, w, h):
        if mode == "crop":
            image = image.crop((left, top, left + bw, top + bh))
            steps.append(f"centre-cropped {w}x{h} to {bw}x{bh}")
        else:
            image = _pad(image, bw, bh, pad_mode, pad_value)
            steps.append(f"padded {w}x{h} to {bw}x{bh} ({pad_mode})")
    if image.size != (width, height):
        before = image.size
        image = image.resize((width, height), _RESAMPLE[resample])
        if steps:
            steps.append(f"then resized to {width}x{height}")
        else:
            steps.append(f"resized {before[0]}x{before[1]} to {width}x{height}")
    note = ", ".join(steps) if steps else f"already {width}x{height}, used as is"
    return FittedImage(image=image, note=note)


def fit_box(width: int, height: int, size: int | tuple[int, int], mode: str = "crop") -> tuple[int, int, int, int]:
    """``(left, top, w, h)``: the region of a ``width x height`` image that :func:`fit_image`
    maps onto ``size``; with ``pad`` it reaches beyond the image (negative ``left``/``top``).

    >>> fit_box(64, 48, 32, "crop"), fit_box(64, 48, 32, "pad"), fit_box(64, 48, 32, "resize")
    ((8, 0, 48, 48), (0, -8, 64, 64), (0, 0, 64, 48))
    """
    tw, th = _target(size)
    if mode == "resize" or width * th == height * tw:
        return (0, 0, width, height)
    wide = width * th > height * tw
    if mode == "crop":  # the largest centred box with the target's aspect ratio
        cw, ch = (max(1, round(height * tw / th)), height) if wide else (width, max(1, round(width * th / tw)))
        return ((width - cw) // 2, (height - ch) // 2, cw, ch)
    pw, ph = (width, max(height, round(width * th / tw))) if wide else (max(width, round(height * tw / th)), height)
    return (-((pw - width) // 2), -((ph - height) // 2), pw, ph)


@dataclass
class FullFrame:
    """A prior-sized result brought back onto the input's own frame, for a degradation's
    full-resolution finish (``Degradation.full_resolution``).

    ``box`` is the input's region that the fit mapped onto the prior (:func:`fit_box`),
    ``region`` ``(x0, y0, x1, y1)`` its part inside the input, ``source`` the input
    (``H x W x 3`` uint8), ``restored`` the finished restoration stretched over the box and
    cut to ``region`` (uint8), ``side`` the prior's resolution.
    """

    source: np.ndarray
    restored: np.ndarray
    box: tuple[int, int, int, int]
    region: tuple[int, int, int, int]
    side: int

    @classmethod
    def of(cls, restored: Image.Image, source: Image.Image, side: int, fit: str) -> "FullFrame":
        width, height = source.size
        left, top, bw, bh = fit_box(width, height, side, fit)
        x0, y0, x1, y1 = max(0, left), max(0, top), min(width, left + bw), min(height, top + bh)
        stretched = restored.convert("RGB").resize((bw, bh), Image.Resampling.BICUBIC)
        cut = stretched.crop((x0 - left, y0 - top, x1 - left, y1 - top))
        return cls(np.asarray(source.convert("RGB")), np.asarray(cut), (left, top, bw, bh), (x0, y0, x1, y1), side)

    @property
    def whole(self) -> bool:
        """The region is the whole input."""
        return self.region == (0, 0, self.source.shape[1], self.source.shape[0])

    def to_region(self, values: np.ndarray) -> np.ndarray:
        """A prior-sized ``side x side`` map (e.g. missing pixels, in [0, 1]) stretched over the
        box (bilinear) and cut to the region, as floats."""
        left, top, bw, bh = self.box
        x0, y0, x1, y1 = self.region
        image = Image.fromarray(np.clip(np.rint(np.asarray(values, dtype=np.float64) * 255), 0, 255).astype(np.uint8))
        stretched = image.resize((bw, bh), Image.Resampling.BILINEAR)
        return np.asarray(stretched.crop((x0 - left, y0 - top, x1 - left, y1 - top)), dtype=np.float64) / 255.0


def _pad(image: Image.Image, width: int, height: int, pad_mode: str, value: Any) -> Image.Image:
    w, h = image.size
    left, top = (width - w) // 2, (height - h) // 2
    widths = [(top, height - h - top), (left, width - w - left)]
    data = np.asarray(image)
    if data.ndim == 3:
        widths.append((0, 0))
    if pad_mode == "constant":
        padded = np.empty((height, width) + data.shape[2:], dtype=data.dtype)
        padded[...] = np.asarray(value, dtype=data.dtype)
        padded[top:top + h, left:left + w] = data
    else:
        padded = np.pad(data, widths, mode="reflect" if min(w, h) > 1 and pad_mode == "reflect" else "edge")
    return Image.fromarray(padded)


def to_tensor(image: Image.Image | np.ndarray, *, device: Any = None, dtype: Any = None):
    """An RGB PIL image or ``H x W x 3`` uint8 array as a ``(1, 3, H, W)`` tensor in [-1, 1].

    >>> to_tensor(Image.new("RGB", (4, 2), (255, 0, 0)))[0, :, 0, 0].tolist()
    [1.0, -1.0, -1.0]
    """
    import torch

    array = to_array(image)
    tensor = torch.from_numpy(np.array(array)).permute(2, 0, 1)[None]  # a writable copy
    tensor = tensor.to(device=device, dtype=dtype or torch.float32)
    return tensor / 127.5 - 1.0


def to_array(image: Any) -> np.ndarray:
    """``H x W x 3`` uint8 from an RGB PIL image, such an array, or a tensor in [-1, 1].

    Tensors may be ``(3, H, W)`` or ``(1, 3, H, W)``; values are clipped and rounded.
    """
    if isinstance(image, Image.Image):
        if image.mode != "RGB":
            raise ValueError(f"expected an RGB image, got mode {image.mode} (use read_image to convert)")
        return np.asarray(image, dtype=np.uint8)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 uint8 array, got {image.dtype} {image.shape}")
        return image
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(image, torch.Tensor):
        t = image.detach()
        if t.ndim == 4:
            if t.shape[0] != 1:
                raise ValueError(f"expected one image, got a batch of {t.shape[0]}")
            t = t[0]
        if t.ndim != 3 or t.shape[0] != 3:
            raise ValueError(f"expected a (1, 3, H, W) or (3, H, W) tensor, got {tuple(image.shape)}")
        t = ((t.float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return t.permute(1, 2, 0).numpy()
    raise TypeError(f"expected a PIL image, a uint8 array or a tensor, got {type(image).__name__}")


def to_pil(image: Any) -> Image.Image:
    """An RGB PIL image from a tensor in [-1, 1] or an ``H x W x 3`` uint8 array."""
    if isinstance(image, Image.Image):
        return image
    return Image.fromarray(to_array(image))


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None], *, overwrite: bool = False,
                 protect: Iterable[str | os.PathLike] = ()) -> Path:
    """Write a file through ``write(binary_file)`` atomically; return its path.

    The data goes to a temporary file in the destination folder (created if missing),
    which then replaces ``path`` with ``os.replace``; on any failure the temporary file is
    removed and ``path`` is untouched. Raises :class:`DGPUsageError` when ``path`` is one
    of ``protect`` (the inputs), is a folder, already exists without ``overwrite``, or its
    folder cannot be written; :class:`DGPError` when writing fails midway.
    """
    path = Path(path)
    for other in protect:
        if same_file(path, Path(other)):
            raise DGPUsageError(f"{path}: refusing to overwrite an input image; choose another output")
    if path.is_dir():
        raise DGPUsageError(f"{path}: is a folder; give an output file name")
    existed = path.exists()
    if existed and not overwrite:
        raise DGPUsageError(f"{path}: already exists; pass --overwrite to replace it")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise DGPUsageError(f"{path}: cannot write to folder {folder} ({exc.strerror or exc})") from None
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, (path.stat().st_mode & 0o777) if existed else new_file_mode())
        os.replace(temp, path)
    except BaseException as exc:
        temp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise DGPError(f"{path}: could not be written ({exc.strerror or exc})") from exc
        raise
    return path


def write_image(image: Any, path: str | os.PathLike, *, overwrite: bool = False,
                protect: Iterable[str | os.PathLike] = (), quality: int = 95) -> Path:
    """Write an image (PIL, tensor in [-1, 1] or uint8 array) atomically; return its path.

    The format follows the suffix (``.png``, ``.jpg``/``.jpeg``, ``.webp``, ``.tif``/``.tiff``,
    ``.bmp``); JPEG and WebP use ``quality``. See :func:`write_atomic` for the rules
    (inputs in ``protect`` are never overwritten; an existing file needs ``overwrite``).

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "x.png"
    >>> write_image(Image.new("RGB", (2, 2)), out).name
    'x.png'
    """
    path = Path(path)
    fmt = _WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DGPUsageError(f"{path}: unknown image suffix '{path.suffix}' "
                            f"(use one of {', '.join(sorted(_WRITE_FORMATS))})")
    pil = to_pil(image)
    params: dict[str, Any] = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}

    def save(handle: BinaryIO) -> None:
        pil.save(handle, format=fmt, **params)

    return write_atomic(path, save, overwrite=overwrite, protect=protect)


# --------------------------------------------------------------------------- a user's input
@dataclass
class InputImage:
    """A user's image as 8-bit RGB (``pil``), plus the exact float tensor when given one."""

    pil: Image.Image
    source: str
    notes: list[str] = field(default_factory=list)
    path: Path | None = None
    tensor: Any = None  # (1, 3, H, W) float in [-1, 1] when the input was a tensor

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return self.pil.size


def load_input(image: Any) -> InputImage:
    """Read a path, PIL image, ``H x W x 3`` uint8 array or ``(3, H, W)`` tensor in [-1, 1].

    Anything else, or data outside those conventions, raises :class:`DGPUsageError`
    (values are never rescaled silently; an image without pixels is refused).
    """
    inp = _load_input(image)
    width, height = inp.size
    if width < 1 or height < 1:
        raise DGPUsageError(f"{inp.source}: the image is empty ({width}x{height} pixels)")
    return inp


def _load_input(image: Any) -> InputImage:
    if isinstance(image, (str, os.PathLike)):
        loaded = read_image(image)
        return InputImage(loaded.image, str(loaded.path), list(loaded.notes), path=loaded.path)
    if isinstance(image, Image.Image):
        rgb, notes = _to_rgb(image, Path("<PIL image>"))  # the same conversions as for files
        return InputImage(rgb, "<PIL image>", list(notes))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            hint = ("; convert floats in [0, 1] with (x * 255).round().astype('uint8')"
                    if image.dtype.kind == "f" else "")
            raise DGPUsageError(f"expected an H x W x 3 uint8 array (or H x W for grey), got {image.dtype} "
                                f"{image.shape}{hint}")
        notes = ["greyscale array converted to RGB"] if image.ndim == 2 else []
        return InputImage(Image.fromarray(image).convert("RGB"), "<array>", notes)
    import torch

    if isinstance(image, torch.Tensor):
        t = image.detach()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3 or t.shape[0] != 3 or not t.is_floating_point():
            raise DGPUsageError(f"expected a float (3, H, W) tensor in [-1, 1], got {t.dtype} {tuple(image.shape)}")
        t = t.float().cpu()
        if t.numel() == 0:
            raise DGPUsageError(f"<tensor>: the image is empty ({t.shape[2]}x{t.shape[1]} pixels)")
        if not bool(torch.isfinite(t).all()):
            raise DGPUsageError("the input tensor holds NaN or infinite values")
        low, high = float(t.min()), float(t.max())
        if low < -1.001 or high > 1.001:
            raise DGPUsageError(f"expected a tensor in [-1, 1], got values in [{low:.3g}, {high:.3g}]; "
                                "map [0, 1] images with x * 2 - 1")
        return InputImage(to_pil(t), "<tensor>", [], tensor=t.clamp(-1, 1)[None])
    raise DGPUsageError(f"expected an image path, PIL image, uint8 array or tensor, got {type(image).__name__}")


def is_grey(image: Image.Image) -> bool:
    """Every pixel has R = G = B (a greyscale file, or a grey photo saved as RGB); ``image``
    is an input's 8-bit RGB image (InputImage.pil)."""
    rgb = np.asarray(image)
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def fit_input(inp: InputImage, width: int, height: int, fit: str, device: Any, notes: list[str]) -> tuple[Any, Image.Image]:
    """The input as a ``(1, 3, height, width)`` tensor on ``device`` and as PIL, fitted."""
    if inp.size == (width, height):
        notes.append(f"already {width}x{height}, used as is")
        if inp.tensor is not None:
            return inp.tensor.to(device), inp.pil
        return to_tensor(inp.pil, device=device), inp.pil
    if inp.tensor is not None:
        notes.append("tensor quantised to 8 bits for fitting")
    fitted = fit_image(inp.pil, (width, height), mode=fit)
    notes.append(fitted.note)
    return to_tensor(fitted.image, device=device), fitted.image
