"""Reading, fitting, converting and writing images with real files."""

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dgp_toolkit import images
from dgp_toolkit.errors import DGPError, DGPUsageError
from dgp_toolkit.images import fit_image, read_image, to_array, to_pil, to_tensor, write_atomic, write_image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_raw_png(path, width, height, *, bit_depth=8, colour_type=2, rows=None):
    """A PNG written by hand (for 16-bit RGB, and for headers that lie about the size)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    body = b"".join(b"\x00" + row for row in (rows or []))
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
    data += _png_chunk(b"IDAT", zlib.compress(body)) + _png_chunk(b"IEND", b"")
    Path(path).write_bytes(data)
    return Path(path)


def _rgb(width=8, height=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _one_line(exc):
    text = str(exc)
    assert "\n" not in text, text
    return text


# ----------------------------------------------------------------------------- reading


@pytest.mark.parametrize("suffix,fmt,lossless", [(".png", "PNG", True), (".bmp", "BMP", True),
                                                 (".tif", "TIFF", True), (".webp", "WEBP", True),
                                                 (".jpg", "JPEG", False)])
def test_reads_every_supported_format(tmp_path, suffix, fmt, lossless):
    data = _rgb(16, 12)
    path = tmp_path / f"img{suffix}"
    extra = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(data).save(path, format=fmt, **extra)
    loaded = read_image(path)
    assert loaded.image.mode == "RGB" and loaded.image.size == (16, 12)
    assert loaded.format == fmt and loaded.source_size == (16, 12) and loaded.path == path
    assert loaded.notes == []
    if lossless:
        assert np.array_equal(np.asarray(loaded.image), data)


def test_exif_orientation_is_applied(tmp_path):
    data = np.zeros((20, 40, 3), np.uint8)
    data[:, :20] = (255, 0, 0)  # left half red
    data[:, 20:] = (0, 0, 255)  # right half blue
    image = Image.fromarray(data)
    exif = image.getexif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif, quality=95)
    loaded = read_image(path)
    assert loaded.image.size == (20, 40) and loaded.source_size == (20, 40)
    assert any("EXIF orientation (6)" in note for note in loaded.notes)
    top, bottom = np.asarray(loaded.image)[5, 10], np.asarray(loaded.image)[35, 10]
    assert top[0] > 200 and top[2] < 60  # red at the top after a clockwise turn
    assert bottom[2] > 200 and bottom[0] < 60


def test_greyscale_becomes_rgb(tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(path)
    loaded = read_image(path)
    arr = np.asarray(loaded.image)
    assert arr.shape == (8, 8, 3) and np.array_equal(arr[..., 0], arr[..., 2])
    assert arr[7, 7, 1] == 63
    assert loaded.notes == ["greyscale image converted to RGB"]


def test_rgba_is_composited_on_white(tmp_path):
    data = np.zeros((4, 4, 4), np.uint8)
    data[..., 0] = 200
    data[..., 3] = 255
    data[0, 0, 3] = 0    # fully transparent
    data[0, 1, 3] = 128  # half transparent
    path = tmp_path / "rgba.png"
    Image.fromarray(data).save(path)
    loaded = read_image(path)
    arr = np.asarray(loaded.image).astype(int)
    assert arr[0, 0].tolist() == [255, 255, 255]
    assert arr[1, 1].tolist() == [200, 0, 0]
    assert abs(arr[0, 1, 1] - 127) <= 2 and abs(arr[0, 1, 0] - 227) <= 2
    assert len(loaded.notes) == 1 and "composited on white" in loaded.notes[0]
    assert "12.5%" in loaded.notes[0]


def test_opaque_alpha_is_dropped(tmp_path):
    data = np.full((4, 4, 4), 255, np.uint8)
    data[..., :3] = 10
    path = tmp_path / "opaque.png"
    Image.fromarray(data).save(path)
    loaded = read_image(path)
    assert np.asarray(loaded.image).max() == 10
    assert "alpha dropped" in loaded.notes[0]


def test_palette_images(tmp_path):
    image = Image.fromarray(_rgb(8, 8)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    path = tmp_path / "palette.png"
    image.save(path)
    loaded = read_image(path)
    assert loaded.image.mode == "RGB" and loaded.notes == ["palette image converted to RGB"]
    assert np.array_equal(np.asarray(loaded.image), np.asarray(image.convert("RGB")))
    # a palette with a transparent entry (GIF-like)
    image.info["transparency"] = 0
    transparent = tmp_path / "palette_t.png"
    image.save(transparent, transparency=0)
    loaded = read_image(transparent)
    index = np.asarray(image) == 0
    assert index.any() and (np.asarray(loaded.image)[index] == 255).all()
    assert "palette image with transparency" in loaded.notes[0]


def test_sixteen_bit_greyscale_png_is_scaled(tmp_path):
    values = np.array([[0, 257 * 100], [65535, 30000]], dtype=np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    loaded = read_image(path)
    arr = np.asarray(loaded.image)[..., 0]
    assert arr.tolist() == [[0, 100], [255, round(30000 / 257)]]
    assert "16-bit greyscale image reduced to 8 bits" in loaded.notes[0]


def test_sixteen_bit_rgb_png_is_reduced(tmp_path):
    rows = []
    for y in range(2):
        rows.append(struct.pack(">6H", 65535, 0, 257 * 50, 257 * 200, 32896, 0))
    path = write_raw_png(tmp_path / "rgb16.png", 2, 2, bit_depth=16, colour_type=2, rows=rows)
    loaded = read_image(path)
    arr = np.asarray(loaded.image)
    assert arr[0, 0].tolist() == [255, 0, 50] and arr[1, 1].tolist() == [200, 128, 0]
    assert "16-bit channels reduced to 8 bits" in loaded.notes


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(path, quality=95)
    loaded = read_image(path)
    pixel = np.asarray(loaded.image)[4, 4].astype(int)
    assert pixel[0] < 20 and pixel[1] > 235 and pixel[2] > 235  # cyan
    assert loaded.notes == ["CMYK image converted to RGB (without colour management)"]


def test_one_bit_and_float_images(tmp_path):
    bw = tmp_path / "bw.png"
    Image.new("1", (4, 4), 1).save(bw)
    loaded = read_image(bw)
    assert np.asarray(loaded.image).min() == 255 and "1-bit" in loaded.notes[0]
    flt = tmp_path / "float.tif"
    Image.fromarray(np.full((4, 4), 0.5, np.float32)).save(flt)
    loaded = read_image(flt)
    assert np.asarray(loaded.image)[0, 0, 0] == 128 and "float" in loaded.notes[0]


def test_first_frame_of_a_multi_page_tiff(tmp_path):
    path = tmp_path / "pages.tif"
    first, second = Image.new("RGB", (4, 4), (255, 0, 0)), Image.new("RGB", (4, 4), (0, 255, 0))
    first.save(path, save_all=True, append_images=[second])
    loaded = read_image(path)
    assert np.asarray(loaded.image)[0, 0].tolist() == [255, 0, 0]
    assert "used the first of 2 frames" in loaded.notes


def test_truncated_png_is_one_clear_error(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(_rgb(64, 64)).save(path)
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(DGPUsageError) as info:
        read_image(path)
    assert str(path) in _one_line(info.value) and "truncated or corrupt" in str(info.value)


def test_truncated_jpeg_is_one_clear_error(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(_rgb(64, 64)).save(path, quality=90)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(DGPUsageError, match="truncated or corrupt"):
        read_image(path)


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are my notes, not a picture\n")
    with pytest.raises(DGPUsageError) as info:
        read_image(path)
    assert _one_line(info.value).startswith(f"{path}: is not an image file")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(DGPUsageError, match="empty.jpg: is not an image file"):
        read_image(path)


def test_decompression_bomb_from_a_lying_header(tmp_path):
    path = write_raw_png(tmp_path / "bomb.png", 100_000, 100_000, rows=[b"\x00" * 3])
    with pytest.raises(DGPUsageError) as info:
        read_image(path)
    message = _one_line(info.value)
    assert str(path) in message and "decompression bomb" in message


def test_decompression_bomb_limits_warning_and_error(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    warn = tmp_path / "warn.png"   # 144 px: over the limit, under twice it (Pillow only warns)
    Image.new("RGB", (12, 12)).save(warn)
    error = tmp_path / "error.png"  # 400 px: over twice the limit (Pillow raises)
    Image.new("RGB", (20, 20)).save(error)
    for path in (warn, error):
        with pytest.raises(DGPUsageError, match="decompression bomb"):
            read_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert read_image(error).image.size == (20, 20)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DGPUsageError, match="nothing.png: no such file"):
        read_image(tmp_path / "nothing.png")
    with pytest.raises(DGPUsageError, match="is a folder, not an image file"):
        read_image(tmp_path)


def test_unsupported_format_is_named(tmp_path):
    path = tmp_path / "anim.gif"
    Image.new("RGB", (4, 4)).save(path)
    with pytest.raises(DGPUsageError, match=r"GIF images are not supported \(supported: PNG, JPEG"):
        read_image(path)


def test_demo_images_read_cleanly():
    folder = Path(__file__).resolve().parents[1] / "examples" / "images"
    pngs = sorted(folder.glob("*.png"))
    cifar = [p for p in pngs if p.name.startswith("cifar_")]
    assert 4 <= len(cifar) <= 6 and len({p.name.split("_")[1] for p in cifar}) == len(cifar)
    for path in cifar:
        assert read_image(path).image.size == (32, 32)
    for name in ("astronaut.png", "coffee.png", "chelsea.png"):
        loaded = read_image(folder / name)
        assert max(loaded.image.size) == 256 and loaded.notes == []


# ----------------------------------------------------------------------------- fitting


def test_crop_takes_the_centre_of_the_long_edge():
    data = _rgb(64, 48)
    fitted = fit_image(Image.fromarray(data), 48)
    assert fitted.image.size == (48, 48)
    assert np.array_equal(np.asarray(fitted.image), data[:, 8:56])
    assert fitted.note == "centre-cropped 64x48 to 48x48"
    portrait = fit_image(Image.fromarray(_rgb(30, 50)), 30)
    assert np.array_equal(np.asarray(portrait.image), _rgb(30, 50)[10:40])


def test_crop_then_resize_note():
    fitted = fit_image(Image.fromarray(_rgb(640, 480)), 128)
    assert fitted.image.size == (128, 128)
    assert fitted.note == "centre-cropped 640x480 to 480x480, then resized to 128x128"


def test_pad_reflect_and_constant():
    data = _rgb(20, 40)
    reflect = fit_image(Image.fromarray(data), 40, mode="pad")
    expected = np.pad(data, ((0, 0), (10, 10), (0, 0)), mode="reflect")
    assert np.array_equal(np.asarray(reflect.image), expected)
    assert reflect.note == "padded 20x40 to 40x40 (reflect)"
    constant = fit_image(Image.fromarray(data), 20, mode="pad", pad_mode="constant", pad_value=(9, 8, 7))
    assert constant.image.size == (20, 20) and "then resized to 20x20" in constant.note
    big = np.asarray(fit_image(Image.fromarray(data), 40, mode="pad", pad_mode="constant", pad_value=(9, 8, 7)).image)
    assert big[0, 0].tolist() == [9, 8, 7] and np.array_equal(big[:, 10:30], data)


def test_pad_much_longer_image_still_works():
    fitted = fit_image(Image.fromarray(_rgb(100, 5)), 16, mode="pad")
    assert fitted.image.size == (16, 16)


def test_resize_distorts():
    fitted = fit_image(Image.fromarray(_rgb(64, 16)), 32, mode="resize")
    assert fitted.image.size == (32, 32) and fitted.note == "resized 64x16 to 32x32"


def test_already_fitted_and_rectangular_targets():
    same = fit_image(Image.fromarray(_rgb(32, 32)), 32)
    assert same.note == "already 32x32, used as is"
    assert np.array_equal(np.asarray(same.image), _rgb(32, 32))
    wide = fit_image(Image.fromarray(_rgb(40, 40)), (40, 20))
    assert wide.image.size == (40, 20) and np.array_equal(np.asarray(wide.image), _rgb(40, 40)[10:30])


def test_fit_masks_in_l_mode():
    mask = Image.fromarray(np.full((10, 20), 255, np.uint8))
    assert fit_image(mask, 10, mode="pad").image.mode == "L"


def test_fit_bad_arguments():
    image = Image.new("RGB", (4, 4))
    with pytest.raises(DGPUsageError, match="unknown fit mode 'squash'.*crop, pad, resize"):
        fit_image(image, 4, mode="squash")
    with pytest.raises(DGPUsageError, match="pad mode"):
        fit_image(image, 4, mode="pad", pad_mode="wrap")
    with pytest.raises(DGPUsageError, match="positive"):
        fit_image(image, 0)


# ----------------------------------------------------------------------------- conversions


def test_tensor_round_trip_is_exact_for_8_bit():
    data = _rgb(9, 7)
    t = to_tensor(Image.fromarray(data))
    assert t.shape == (1, 3, 7, 9) and t.dtype == torch.float32
    assert t.min() >= -1 and t.max() <= 1
    assert np.array_equal(to_array(t), data) and np.array_equal(to_array(t[0]), data)
    assert np.array_equal(np.asarray(to_pil(t)), data)
    assert to_tensor(data, dtype=torch.float64).dtype == torch.float64
    assert to_tensor(np.zeros((2, 2, 3), np.uint8))[0, 0, 0, 0] == -1


def test_to_array_clips_and_rejects():
    t = torch.full((1, 3, 2, 2), 3.0)
    assert to_array(t).max() == 255
    with pytest.raises(ValueError, match="batch of 2"):
        to_array(torch.zeros(2, 3, 2, 2))
    with pytest.raises(ValueError, match="RGB"):
        to_array(Image.new("L", (2, 2)))
    with pytest.raises(ValueError, match="uint8"):
        to_array(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(TypeError):
        to_array("image.png")


# ----------------------------------------------------------------------------- writing


def _leftovers(folder):
    return [p.name for p in Path(folder).iterdir() if p.name.endswith(".tmp")]


def test_write_and_read_back(tmp_path):
    data = _rgb(12, 10)
    out = write_image(to_tensor(data), tmp_path / "out.png")
    assert out == tmp_path / "out.png"
    assert np.array_equal(np.asarray(Image.open(out)), data)
    assert _leftovers(tmp_path) == []
    assert (out.stat().st_mode & 0o777) == 0o644
    jpg = write_image(data, tmp_path / "out.JPG")
    assert Image.open(jpg).format == "JPEG"


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "out.png"
    write_image(_rgb(), out)
    before = out.read_bytes()
    with pytest.raises(DGPUsageError) as info:
        write_image(_rgb(seed=1), out)
    assert "--overwrite" in _one_line(info.value) and str(out) in str(info.value)
    assert out.read_bytes() == before
    write_image(_rgb(seed=1), out, overwrite=True)
    assert np.array_equal(np.asarray(Image.open(out)), _rgb(seed=1))


def test_input_is_never_overwritten(tmp_path):
    source = tmp_path / "photo.png"
    Image.fromarray(_rgb()).save(source)
    before = source.read_bytes()
    for target in (source, tmp_path / "sub" / ".." / "photo.png"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(DGPUsageError, match="refusing to overwrite an input"):
            write_image(_rgb(seed=2), target, overwrite=True, protect=[source])
    link = tmp_path / "link.png"
    os.link(source, link)
    with pytest.raises(DGPUsageError, match="input"):
        write_image(_rgb(seed=2), link, overwrite=True, protect=[str(source)])
    assert source.read_bytes() == before


def test_missing_folders_are_created(tmp_path):
    out = write_image(_rgb(), tmp_path / "a" / "b" / "out.png")
    assert out.exists()


def test_folder_that_is_a_file_is_a_clear_error(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("a file, not a folder")
    with pytest.raises(DGPUsageError) as info:
        write_image(_rgb(), blocker / "out.png")
    assert "cannot write to folder" in _one_line(info.value)


def test_output_that_is_a_folder(tmp_path):
    (tmp_path / "x.png").mkdir()
    with pytest.raises(DGPUsageError, match="is a folder"):
        write_image(_rgb(), tmp_path / "x.png", overwrite=True)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_unwritable_folder(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(DGPUsageError, match="cannot write to folder"):
            write_image(_rgb(), folder / "out.png")
    finally:
        folder.chmod(0o700)


def test_failure_midway_leaves_nothing(tmp_path):
    out = tmp_path / "out.bin"

    def broken(handle):
        handle.write(b"half of the data")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_atomic(out, broken)
    assert not out.exists() and _leftovers(tmp_path) == []
    out.write_bytes(b"old")
    with pytest.raises(DGPError):
        write_atomic(out, lambda handle: (_ for _ in ()).throw(OSError(28, "No space left on device")),
                     overwrite=True)
    assert out.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_os_errors_while_writing_become_dgp_errors(tmp_path):
    def full(handle):
        raise OSError(28, "No space left on device")

    with pytest.raises(DGPError, match="could not be written \\(No space left on device\\)"):
        write_atomic(tmp_path / "x.bin", full)


def test_unknown_suffix(tmp_path):
    with pytest.raises(DGPUsageError, match=r"unknown image suffix '.gif'.*\.png"):
        write_image(_rgb(), tmp_path / "x.gif")
    assert list(tmp_path.iterdir()) == []


def test_supported_formats_constant():
    assert images.SUPPORTED_FORMATS == ("PNG", "JPEG", "WEBP", "TIFF", "BMP")
