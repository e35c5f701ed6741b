"""Image I/O: exact round trips in every mode and depth, RGB order, clear one-line errors."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from apir.data import imageformats
from apir.data.imageio import (
    ImageInfo,
    list_images,
    mask_is_binary,
    read_image,
    read_info,
    read_mask,
    read_raw,
    to_file_layout,
    write_image,
    write_mask,
)
from apir.errors import ApirError

H, W = 5, 7
RNG = np.random.default_rng(0)


def _u8(*shape):
    a = RNG.integers(0, 256, (H, W, *shape), dtype=np.uint8)
    a.flat[0], a.flat[-1] = 0, 255
    return a


def _u16(*shape):
    a = RNG.integers(0, 65536, (H, W, *shape), dtype=np.uint16)
    a.flat[0], a.flat[-1] = 0, 65535
    return a


def _f32(*shape):
    a = RNG.random((H, W, *shape), dtype=np.float32)
    a.flat[0], a.flat[-1] = 0.0, 1.0
    return a


# (name, file array in RGB(A) order, suffix): every mode and depth apir must keep.
CASES = [
    ("gray8.png", _u8(), ".png"),
    ("rgb8.png", _u8(3), ".png"),
    ("rgba8.png", _u8(4), ".png"),
    ("gray_alpha8.png", _u8(2), ".png"),
    ("gray16.png", _u16(), ".png"),
    ("rgb16.png", _u16(3), ".png"),
    ("rgba16.png", _u16(4), ".png"),
    ("gray_alpha16.png", _u16(2), ".png"),
    ("gray16.tif", _u16(), ".tif"),
    ("rgb16.tiff", _u16(3), ".tiff"),
    ("rgba8.tif", _u8(4), ".tif"),
    ("gray_alpha16.tif", _u16(2), ".tif"),
    ("float_rgb.tif", _f32(3), ".tif"),
    ("float_gray.tif", _f32(), ".tif"),
    ("gray8.bmp", _u8(), ".bmp"),
    ("rgb8.bmp", _u8(3), ".bmp"),
    ("rgba8.bmp", _u8(4), ".bmp"),
]


@pytest.mark.parametrize(("name", "array", "suffix"), CASES, ids=[c[0] for c in CASES])
def test_round_trip_is_exact(tmp_path, name, array, suffix):
    path = tmp_path / name
    write_image(path, array)
    raw, info = read_raw(path)
    assert raw.dtype == array.dtype and raw.shape == array.shape
    np.testing.assert_array_equal(raw, array)

    channels = 1 if array.ndim == 2 else array.shape[2]
    assert (info.height, info.width, info.channels, info.dtype) == (H, W, channels, array.dtype.name)
    assert info.has_alpha == (channels in (2, 4))
    assert read_info(path) == info  # the header read agrees with the decode

    loaded = read_image(path)
    assert loaded.info == info
    assert loaded.rgb.shape == (H, W, 3) and loaded.rgb.dtype == np.float32
    assert loaded.rgb.min() >= 0.0 and loaded.rgb.max() <= 1.0
    if info.has_alpha:
        assert loaded.alpha.dtype == array.dtype
        np.testing.assert_array_equal(loaded.alpha, array[..., -1])
    else:
        assert loaded.alpha is None
    if info.channels in (1, 2):
        assert np.array_equal(loaded.rgb[..., 0], loaded.rgb[..., 1])
        assert np.array_equal(loaded.rgb[..., 0], loaded.rgb[..., 2])

    # float RGB → file layout reproduces the file's samples exactly, and so does a full write-back
    np.testing.assert_array_equal(to_file_layout(loaded.rgb, info, loaded.alpha), array)
    out = tmp_path / "out" / f"restored{suffix}"
    write_image(out, loaded.rgb, info=info, alpha=loaded.alpha)
    again, again_info = read_raw(out)
    np.testing.assert_array_equal(again, array)
    assert again_info.channels == info.channels and again_info.dtype == info.dtype


def test_scaling_of_8_and_16_bit(tmp_path):
    write_image(tmp_path / "a.png", np.array([[0, 65535, 257]], np.uint16))
    write_image(tmp_path / "b.png", np.array([[0, 255, 51]], np.uint8))
    np.testing.assert_allclose(read_image(tmp_path / "a.png").rgb[0, :, 0], [0, 1, 257 / 65535], rtol=1e-6)
    np.testing.assert_allclose(read_image(tmp_path / "b.png").rgb[0, :, 0], [0, 1, 0.2], rtol=1e-6)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".bmp", ".jpg"])
def test_rgb_channel_order_is_kept(tmp_path, suffix):
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    path = tmp_path / f"red{suffix}"
    write_image(path, red)
    # an independent decoder sees red, so the file itself is right (not just a symmetric BGR bug)
    assert Image.open(path).convert("RGB").getpixel((3, 3))[0] > 250
    assert Image.open(path).convert("RGB").getpixel((3, 3))[1:] == (0, 0) or suffix == ".jpg"
    rgb = read_image(path).rgb
    assert rgb[..., 0].min() > 0.98 and rgb[..., 1:].max() < 0.02


def test_rgba_channel_order_and_pil_written_files(tmp_path):
    pixels = np.zeros((4, 4, 4), np.uint8)
    pixels[..., 0], pixels[..., 3] = 255, 77
    Image.fromarray(pixels, "RGBA").save(tmp_path / "pil.png")
    loaded = read_image(tmp_path / "pil.png")
    assert loaded.rgb[0, 0].tolist() == [1.0, 0.0, 0.0] and (loaded.alpha == 77).all()
    write_image(tmp_path / "ours.png", pixels)
    assert Image.open(tmp_path / "ours.png").getpixel((0, 0)) == (255, 0, 0, 77)


def test_gray_alpha_png_is_standard(tmp_path):
    ga = _u8(2)
    write_image(tmp_path / "ga.png", ga)
    pil = Image.open(tmp_path / "ga.png")
    assert pil.mode == "LA"
    np.testing.assert_array_equal(np.asarray(pil), ga)


def test_jpeg_keeps_mode_approximately(tmp_path):
    gray = np.tile(np.linspace(0, 255, W, dtype=np.uint8), (H, 1))
    write_image(tmp_path / "g.jpg", gray)
    info = read_info(tmp_path / "g.jpg")
    assert (info.channels, info.dtype, info.format) == (1, "uint8", "jpeg")
    assert read_image(tmp_path / "g.jpg").info == info
    raw, _ = read_raw(tmp_path / "g.jpg")
    assert np.abs(raw.astype(int) - gray).max() <= 8


def test_palette_png_becomes_rgb_or_rgba(tmp_path):
    idx = RNG.integers(0, 3, (H, W), dtype=np.uint8)
    pal = Image.fromarray(idx, "P")
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    pal.save(tmp_path / "p.png")
    pal.save(tmp_path / "pt.png", transparency=0)
    raw, info = read_raw(tmp_path / "p.png")
    assert info.mode == "rgb" and read_info(tmp_path / "p.png") == info
    np.testing.assert_array_equal(raw[idx == 1], [[0, 255, 0]] * int((idx == 1).sum()))
    info_t = read_info(tmp_path / "pt.png")
    assert info_t.mode == "rgba" and read_image(tmp_path / "pt.png").info == info_t


def test_float_tiff_is_clipped_but_alpha_untouched(tmp_path):
    data = np.zeros((2, 2, 4), np.float32)
    data[..., 0] = [[-0.5, 2.0], [0.0, 0.25]]
    data[..., 3] = [[-1.0, 3.0], [0.5, 0.5]]
    write_image(tmp_path / "f.tif", data)
    loaded = read_image(tmp_path / "f.tif")
    np.testing.assert_array_equal(loaded.rgb[..., 0], [[0.0, 1.0], [0.0, 0.25]])
    np.testing.assert_array_equal(loaded.alpha, data[..., 3])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_tiff_is_refused_not_painted_black(tmp_path, bad):
    all_bad = np.full((2, 3), bad, np.float32)
    tifffile.imwrite(tmp_path / "all.tif", all_bad)
    assert "NaN or infinite" in _error(read_image, tmp_path / "all.tif")
    one_bad = np.full((2, 3, 3), 0.5, np.float32)
    one_bad[1, 2, 0] = bad
    tifffile.imwrite(tmp_path / "one.tif", one_bad, photometric="rgb")
    assert "1 of 18" in _error(read_image, tmp_path / "one.tif")


def test_control_characters_in_file_names_are_escaped(tmp_path):
    path = tmp_path / "evil\nname\x1b[31m.png"
    path.write_bytes(b"plain text, not an image")
    with pytest.raises(ApirError) as exc:
        read_image(path)
    msg = str(exc.value)
    assert "\n" not in msg and "\x1b" not in msg
    assert "evil\\nname\\x1b[31m.png: cannot read image" in msg


def test_planar_tiff_is_transposed(tmp_path):
    planar = RNG.integers(0, 256, (3, H, W), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    raw, info = read_raw(tmp_path / "planar.tif")
    assert info.mode == "rgb"
    np.testing.assert_array_equal(raw, planar.transpose(1, 2, 0))


def test_miniswhite_tiff_is_inverted(tmp_path):
    stored = np.array([[0, 10, 255]], np.uint8)
    tifffile.imwrite(tmp_path / "w.tif", stored, photometric="miniswhite")
    np.testing.assert_array_equal(read_raw(tmp_path / "w.tif")[0], 255 - stored)


def _error(func, path) -> str:
    with pytest.raises(ApirError) as exc:
        func(path)
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def _png_bytes(array) -> bytes:
    ok, buf = cv2.imencode(".png", array)
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("func", [read_image, read_info, read_mask, mask_is_binary])
def test_bad_files_are_one_line_errors(tmp_path, func):
    png = _png_bytes(RNG.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    corrupt = bytearray(png)
    corrupt[60] ^= 0xFF
    cases = {
        "missing.png": None,
        "empty.png": b"",
        "notes.png": b"these are my notes, not an image\n",
        "random.png": bytes(range(256)),
        "bmw.png": b"BMW service notes: oil changed, tyres rotated\n",
        "truncated.png": png[: len(png) // 2],
        "header_only.png": png[:20],
    }
    if func is not read_info:  # read_info reads headers only, so damage after them is found on decode
        cases["tail_cut.png"] = png[:-5]
        cases["bad_crc.png"] = bytes(corrupt)
    expected = {
        "missing": "not found",
        "empty": "empty",
        "notes": "text",
        "bmw": "text",
        "truncated": "truncated",
    }
    for name, data in cases.items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        msg = _error(func, path)
        assert msg.startswith(f"{path}: cannot read image (")
        if name.split(".")[0] in expected:
            assert expected[name.split(".")[0]] in msg


def test_truncated_jpeg_and_tiff(tmp_path):
    write_image(tmp_path / "ok.jpg", _u8(3))
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) - 10])
    assert "truncated" in _error(read_image, tmp_path / "cut.jpg")
    write_image(tmp_path / "ok.tif", _u16(3))
    data = (tmp_path / "ok.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    assert "truncated" in _error(read_image, tmp_path / "cut.tif")
    assert "folder" in _error(read_image, tmp_path)


def test_unsupported_tiffs(tmp_path):
    tifffile.imwrite(tmp_path / "int32.tif", np.zeros((H, W), np.int32))
    assert "int32" in _error(read_image, tmp_path / "int32.tif")
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, H, W), np.uint8), photometric="minisblack")
    assert "multi-page" in _error(read_image, tmp_path / "stack.tif")
    assert "multi-page" in _error(read_info, tmp_path / "stack.tif")
    five = np.zeros((H, W, 5), np.uint8)
    tifffile.imwrite(tmp_path / "five.tif", five, photometric="rgb", extrasamples=["unspecified"] * 2)
    assert "samples per pixel" in _error(read_image, tmp_path / "five.tif")


def test_format_comes_from_content_not_extension(tmp_path):
    (tmp_path / "really_png.jpg").write_bytes(_png_bytes(_u8()))
    raw, info = read_raw(tmp_path / "really_png.jpg")
    assert info.format == "png" and raw.shape == (H, W)


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_claiming(100_000, 100_000))
    info = read_info(bomb)  # header only: fine
    assert (info.width, info.height, info.channels) == (100_000, 100_000, 1)
    assert "too large" in _error(read_image, bomb)
    monkeypatch.setenv(imageformats.MAX_PIXELS_ENV, "10")
    write_image(tmp_path / "small.png", _u8())
    assert "too large" in _error(read_image, tmp_path / "small.png")
    monkeypatch.delenv(imageformats.MAX_PIXELS_ENV)
    monkeypatch.setattr(imageformats, "MAX_PIXELS", 10)  # where the limit lives since the split
    assert "too large" in _error(read_mask, tmp_path / "small.png")


def test_non_ascii_path(tmp_path):
    path = tmp_path / "Prüfung 画像" / "bild_ä.png"
    write_image(path, _u16(3))
    assert read_info(path).dtype == "uint16"
    assert read_image(path).rgb.shape == (H, W, 3)


def test_read_mask_binarises_and_checks_size(tmp_path):
    mask = np.array([[0, 1, 128, 255]], np.uint8)
    write_image(tmp_path / "m.png", mask)
    assert read_mask(tmp_path / "m.png").tolist() == [[False, True, True, True]]
    assert read_mask(tmp_path / "m.png", (1, 4)).dtype == np.bool_
    with pytest.raises(ApirError) as exc:
        read_mask(tmp_path / "m.png", (2, 4))
    msg = str(exc.value)
    assert str(tmp_path / "m.png") in msg and "4x1" in msg and "4x2" in msg and "\n" not in msg


def test_read_mask_any_colour_channel_and_alpha_ignored(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 3] = 255  # opaque everywhere: must not count as defect
    rgba[0, 1, 1] = 200  # green mark
    rgba[1, 2, 2] = 9  # faint blue mark
    write_image(tmp_path / "rgb_mask.png", rgba)
    assert read_mask(tmp_path / "rgb_mask.png").tolist() == [[False, True, False], [False, False, True]]


def test_read_mask_jpeg_uses_half_range(tmp_path):
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 255
    ok, buf = cv2.imencode(".jpg", mask, [cv2.IMWRITE_JPEG_QUALITY, 60])
    (tmp_path / "m.jpg").write_bytes(buf.tobytes())
    assert (read_mask(tmp_path / "m.jpg") == (mask > 0)).mean() > 0.99


def test_mask_is_binary(tmp_path):
    cases = {
        "mvtec": ([0, 255, 255], True),
        "zero_one": ([0, 1, 0], True),
        "empty": ([0, 0, 0], True),
        "full": ([255, 255, 255], True),
        "grey": ([0, 100, 255], False),
    }
    for name, (values, binary) in cases.items():
        write_image(tmp_path / f"{name}.png", np.array([values], np.uint8))
        assert mask_is_binary(tmp_path / f"{name}.png") is binary, name


def test_write_mask_is_uint8_0_255_png(tmp_path):
    mask = np.zeros((H, W), bool)
    mask[1:3, 2:5] = True
    write_mask(tmp_path / "gt" / "000_mask.png", mask)
    raw, info = read_raw(tmp_path / "gt" / "000_mask.png")
    assert (info.format, info.channels, info.dtype) == ("png", 1, "uint8")
    np.testing.assert_array_equal(raw, mask.astype(np.uint8) * 255)
    with pytest.raises(ApirError, match="lossy"):
        write_mask(tmp_path / "m.jpg", mask)


def test_to_file_layout_details():
    info = ImageInfo(None, 1, 2, 1, "uint8", False)
    rgb = np.array([[[0.0, 0.5, 1.0], [1.0, 1.0, 1.0]]], np.float32)
    np.testing.assert_array_equal(to_file_layout(rgb, info), [[128, 255]])  # gray = channel mean
    rgba = ImageInfo(None, 1, 2, 4, "uint16", True)
    assert (to_file_layout(rgb, rgba)[..., 3] == 65535).all()  # no alpha given: opaque
    with pytest.raises(ValueError, match="alpha"):
        to_file_layout(rgb, rgba, alpha=np.zeros((1, 2), np.uint8))  # wrong dtype: not passed through
    with pytest.raises(ValueError, match="alpha"):
        to_file_layout(rgb, info, alpha=np.zeros((1, 2), np.uint8))
    with pytest.raises(ValueError, match="has_alpha"):
        ImageInfo(None, 1, 2, 3, "uint8", True)
    over = np.array([[[-1.0, 2.0, np.nan]]], np.float32)
    rgb8 = ImageInfo(None, 1, 1, 3, "uint8", False)
    np.testing.assert_array_equal(to_file_layout(over, rgb8), [[[0, 255, 0]]])  # clipped, NaN → 0


def test_write_errors_name_a_format_that_works(tmp_path):
    rgba16 = ImageInfo(None, H, W, 4, "uint16", True)
    rgb = np.zeros((H, W, 3), np.float32)
    with pytest.raises(ApirError, match="JPEG"):
        write_image(tmp_path / "a.jpg", _u8(4))
    with pytest.raises(ApirError, match="8-bit"):
        write_image(tmp_path / "a.jpg", rgb, info=ImageInfo(None, H, W, 3, "uint16", False))
    with pytest.raises(ApirError, match=r"\.tif"):
        write_image(tmp_path / "a.png", rgb, info=ImageInfo(None, H, W, 3, "float32", False))
    with pytest.raises(ApirError, match="extension"):
        write_image(tmp_path / "a.gif", _u8())
    write_image(tmp_path / "ok.png", rgb, info=rgba16)  # 16-bit RGBA PNG is fine
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp files left


def test_write_refuses_to_overwrite_the_input(tmp_path):
    path = tmp_path / "in.png"
    write_image(path, _u8(3))
    before = path.read_bytes()
    loaded = read_image(path)
    with pytest.raises(ApirError, match="overwrite"):
        write_image(path, loaded.rgb * 0, info=loaded.info)
    assert path.read_bytes() == before


def test_list_images(tmp_path):
    files = ["b.png", "a.JPG", "c.tiff", "notes.txt", ".hidden.png", ".cache/x.png", "sub/d.bmp"]
    files.append("sub/e.Jpeg")
    for rel in files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "folder.png").mkdir()  # a folder with an image-like name is not an image
    names = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert names == ["a.JPG", "b.png", "c.tiff", "sub/d.bmp", "sub/e.Jpeg"]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["a.JPG", "b.png", "c.tiff"]
    with pytest.raises(ApirError, match="not found"):
        list_images(tmp_path / "nope")


def _with_orientation(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_viewers_do(tmp_path, orientation):
    from PIL import ImageOps

    stored = Image.fromarray(_u8(3))  # 7 wide, 5 high: a transposition shows in the size
    stored.save(tmp_path / "o.png", exif=_with_orientation(stored, orientation))
    upright = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")))
    raw, info = read_raw(tmp_path / "o.png")
    np.testing.assert_array_equal(raw, upright)
    assert read_info(tmp_path / "o.png") == info and info.shape == upright.shape[:2]

    tifffile.imwrite(tmp_path / "o.tif", np.asarray(stored), extratags=[(274, "H", 1, orientation, True)])
    np.testing.assert_array_equal(read_raw(tmp_path / "o.tif")[0], upright)


def test_jpeg_exif_orientation_rotates_image_and_size(tmp_path):
    stored = np.zeros((16, 32, 3), np.uint8)
    stored[:, :16] = 255  # left half white
    image = Image.fromarray(stored)
    image.save(tmp_path / "cam.jpg", exif=_with_orientation(image, 6), quality=95)  # 6: turn 90° clockwise
    loaded = read_image(tmp_path / "cam.jpg")
    assert loaded.info.shape == (32, 16) == read_info(tmp_path / "cam.jpg").shape
    assert loaded.rgb[:16].mean() > 0.9 and loaded.rgb[16:].mean() < 0.1  # the white half is now on top
    write_image(tmp_path / "out.png", loaded.rgb, info=loaded.info)  # written upright, without the tag
    assert read_info(tmp_path / "out.png").shape == (32, 16)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "JPEG2000"])
def test_other_formats_are_named_in_the_error(tmp_path, fmt):
    path = tmp_path / "image.png"  # the extension does not matter: the content does
    Image.fromarray(_u8(3)).save(path, fmt)
    assert f"{fmt} files are not supported" in _error(read_image, path)
    assert f"{fmt} files are not supported" in _error(read_info, path)
