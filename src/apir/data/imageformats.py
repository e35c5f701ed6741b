"""What is inside an image file before it is decoded: its format, size, channels and orientation.

Split from :mod:`apir.data.imageio` (pixels) because this part decides *whether* a file can be read.
Headers come from libraries that read them without decoding: pypng for PNG (Pillow reports a 16-bit
file as 8-bit), Pillow's plugins for JPEG and BMP, tifffile. The size is checked against
:data:`MAX_PIXELS` (``APIR_MAX_IMAGE_PIXELS``) *before* decoding, so a decompression bomb is refused,
not decoded. Every problem is a :class:`BadFile` with a one-line reason, turned into
``"<path>: cannot read image (<reason>)"`` by :func:`reading`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import png
import tifffile
from PIL import Image

from apir.errors import ApirError, safe_name

#: Largest image (height × width) the readers decode; ``APIR_MAX_IMAGE_PIXELS`` overrides it.
#: 2**28 ≈ 268 megapixels (e.g. 16384 × 16384), about 3 GiB as float32 RGB.
MAX_PIXELS = 1 << 28
MAX_PIXELS_ENV = "APIR_MAX_IMAGE_PIXELS"
FORMAT_NAME = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP"}


class BadFile(Exception):
    """A reason why a file cannot be read; turned into a one-line ApirError naming the file."""


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


@contextmanager
def reading(path: Path) -> Iterator[None]:
    try:
        yield
    except BadFile as err:
        raise ApirError(f"{safe_name(path)}: cannot read image ({one_line(err)})") from None
    except MemoryError:
        raise ApirError(f"{safe_name(path)}: cannot read image (not enough memory to decode it)") from None


def check_pixels(height: int, width: int) -> None:
    env = os.environ.get(MAX_PIXELS_ENV)
    if env and (not env.strip().isdigit() or int(env) <= 0):
        raise ApirError(f"{MAX_PIXELS_ENV}={env!r} must be a positive whole number of pixels")
    limit = int(env) if env else MAX_PIXELS
    if height * width > limit:
        raise BadFile(
            f"image too large: {width}x{height} is {height * width / 1e6:.0f} megapixels, over the limit of "
            f"{limit / 1e6:.0f}; set {MAX_PIXELS_ENV} to allow more"
        )


@contextmanager
def open_file(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened for reading, with one-line reasons for the usual failures."""
    if path.is_dir():
        raise BadFile("is a folder, not a file")
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                raise BadFile("empty file")
            yield fh
    except FileNotFoundError:
        raise BadFile("file not found") from None
    except OSError as err:
        raise BadFile(err.strerror or one_line(err)) from None


def sniff(head: bytes) -> str:
    """The format from a file's first bytes, by Pillow's own format checks.

    Pillow's BMP check is just "BM", so a text file is recognised as text first.
    """
    if all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        raise BadFile("not an image: the file contains text")
    Image.init()  # registers every plugin's check
    name = next((n for n, (_, accept) in Image.OPEN.items() if accept and accept(head)), None)
    if name in FORMAT_NAME.values():
        return name.lower()
    if name:
        raise BadFile(f"{name} files are not supported; convert to PNG or TIFF")
    if len(head) < 8 and any(s.startswith(head) for s in (png.signature, b"\xff\xd8\xff", b"II*\x00")):
        raise BadFile("truncated file (it ends inside the format signature)")
    raise BadFile("not an image: content is not PNG, JPEG, TIFF or BMP")


@dataclass(frozen=True)
class Header:
    height: int  # as stored (before orientation)
    width: int
    channels: int | None  # None: only a decode can tell (BMP: OpenCV's choice depends on the palette)
    dtype: str
    orientation: int = 1  # EXIF / TIFF Orientation; 1 = upright as stored


def _orientation(value: object) -> int:
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


class _PngReader(png.Reader):
    """pypng's reader, also keeping the eXIf chunk (pypng hands each chunk to ``_process_<type>``)."""

    exif = b""

    def _process_eXIf(self, data: bytes) -> None:  # noqa: N802 - pypng's naming
        self.exif = data


def png_header(fh: BinaryIO, full: bool) -> Header:
    """IHDR and the chunks before the image data; ``full``: then every chunk to IEND, CRCs checked."""
    reader = _PngReader(file=fh)
    try:
        reader.preamble()  # the chunks before IDAT, eXIf included (where the PNG spec puts it)
        for _ in reader.chunks() if full else [reader.chunk()]:  # chunk() checks the CRC
            pass
    except (png.Error, ValueError) as err:
        text = one_line(err).removeprefix("ChunkError: ").removeprefix("FormatError: ")
        short = any(s in text for s in ("too short", "End of file", "No more chunks"))
        raise BadFile(f"{'truncated' if short else 'corrupt'} PNG ({text})") from None
    exif = Image.Exif()
    try:
        exif.load(reader.exif)
    except Exception:  # a damaged EXIF block does not make the pixels unreadable
        exif = Image.Exif()
    trns = reader.trns is not None
    # OpenCV (IMREAD_UNCHANGED) turns tRNS into an alpha channel for RGB and palette images and
    # ignores it for gray ones; gray+alpha comes out as BGRA and is narrowed back to 2 channels.
    channels = {0: 1, 2: 4 if trns else 3, 3: 4 if trns else 3, 4: 2, 6: 4}[reader.color_type]
    dtype = "uint16" if reader.bitdepth == 16 else "uint8"
    return Header(reader.height, reader.width, channels, dtype, _orientation(exif.get(0x0112)))


def pillow_header(fh: BinaryIO, fmt: str, full: bool) -> Header:
    """A JPEG or BMP header by Pillow's plugin; ``full``: also decode (JPEG at 1/8 scale, which still
    reads the whole scan), so that damage is refused with libjpeg's or Pillow's reason (OpenCV 4
    decodes a truncated JPEG silently and only fails on a broken bitmap)."""
    name = FORMAT_NAME[fmt]
    try:
        im = Image.OPEN[name][0](fh)  # the plugin class: Image.open without its own pixel limit
        exif = im.getexif() if fmt == "jpeg" else {}
        # A bitmap's channels depend on OpenCV's reading of its palette: only a decode can tell.
        channels = None if fmt == "bmp" else 1 if im.mode == "L" else 3  # CMYK, YCCK: decoded to RGB
        header = Header(*im.size[::-1], channels, "uint8", _orientation(exif.get(0x0112)))
        if full:  # (draft() shrinks im.size, hence the header first)
            check_pixels(im.height, im.width)
            if fmt == "jpeg":
                im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except (OSError, SyntaxError, ValueError) as err:
        raise BadFile(
            f"{'truncated' if 'truncated' in str(err) else 'corrupt'} {name} ({one_line(err)})"
        ) from None
    if getattr(im, "bits", 8) != 8:
        raise BadFile(f"unsupported {im.bits}-bit JPEG (only 8-bit JPEG is supported)")
    return header


def _tiff_page(tf: tifffile.TiffFile) -> tifffile.TiffPage:
    """The one full-size image of a TIFF; several (a stack) is an error."""
    main = [p for p in tf.pages if not int(getattr(p, "subfiletype", 0) or 0) & 1]  # bit 0: reduced copy
    if len(main) > 1:
        n = len(tf.pages)
        raise BadFile(f"multi-page TIFF ({n} pages); apir reads one image per file, so split the stack first")
    if not main and not len(tf.pages):
        raise BadFile("corrupt TIFF (no images)")
    page = main[0] if main else tf.pages[0]
    return page if isinstance(page, tifffile.TiffPage) else page.aspage()


def _tiff_header(page: tifffile.TiffPage) -> Header:
    """Size, channels and sample type of a gray, RGB or palette page (with alpha); else BadFile."""
    kinds = tifffile.PHOTOMETRIC
    if int(getattr(page, "imagedepth", 1) or 1) > 1:
        raise BadFile(f"3-D TIFF volume (depth {page.imagedepth}) is not supported")
    spp, extras, kind = int(page.samplesperpixel), len(page.extrasamples or ()), page.photometric
    if kind not in (kinds.MINISBLACK, kinds.MINISWHITE, kinds.RGB, kinds.PALETTE):
        name = getattr(kind, "name", str(kind))
        raise BadFile(f"unsupported TIFF colour space {name} (gray, RGB or palette expected)")
    colour = {kinds.RGB: 3, kinds.PALETTE: 1}.get(kind, 1)
    if spp - extras != colour or spp > colour + 1 or (kind == kinds.PALETTE and spp != 1):
        raise BadFile(f"unsupported TIFF with {spp} samples per pixel ({extras} extra)")
    dtype = np.dtype(page.dtype) if page.dtype is not None else None
    if dtype is None or (kind == kinds.PALETTE and dtype.kind != "u"):
        raise BadFile(f"unsupported TIFF sample format ({page.bitspersample} bits)")
    if kind == kinds.PALETTE:  # an 8-bit palette is stored as 16-bit values that are multiples of 257
        out = "uint16" if page.colormap is None or np.any(np.asarray(page.colormap) % 257) else "uint8"
    elif dtype in (np.bool_, np.uint8, np.uint16):
        out = "uint16" if dtype == np.uint16 else "uint8"
    elif dtype.kind == "f":
        out = "float32"
    else:
        raise BadFile(f"unsupported sample type {dtype.name} (uint8, uint16 and float TIFFs are supported)")
    channels = 3 if kind == kinds.PALETTE else spp
    return Header(page.imagelength, page.imagewidth, channels, out, _orientation(page.tags.valueof(274, 1)))


def tiff_header(fh: BinaryIO) -> Header:
    try:
        with tifffile.TiffFile(fh) as tf:
            return _tiff_header(_tiff_page(tf))
    except BadFile:
        raise
    except Exception as err:
        raise BadFile(f"corrupt TIFF: {one_line(err)}") from None


def decode_tiff(data: bytes) -> tuple[np.ndarray, Header]:
    """The page's samples as H×W or H×W×C (palette expanded, MinIsWhite inverted, float as float32)."""
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tf:
            page = _tiff_page(tf)
            header = _tiff_header(page)
            check_pixels(header.height, header.width)
            if any(o + n > len(data) for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)):
                raise BadFile("truncated TIFF (image data runs past the end of the file)")
            arr, cmap = page.asarray(), page.colormap
            planar = int(page.planarconfig) == 2 and page.samplesperpixel > 1
            miniswhite = page.photometric == tifffile.PHOTOMETRIC.MINISWHITE
    except (BadFile, MemoryError):
        raise
    except Exception as err:
        raise BadFile(f"corrupt TIFF: {one_line(err)}") from None
    arr = np.moveaxis(arr, 0, -1) if planar and arr.ndim == 3 else arr
    arr = arr.astype(arr.dtype.newbyteorder("=")) if not arr.dtype.isnative else arr
    if cmap is not None and header.channels == 3 and arr.ndim == 2:
        if int(arr.max(initial=0)) >= np.shape(cmap)[1]:
            raise BadFile("corrupt TIFF (palette index out of range)")
        arr = np.asarray(cmap, np.uint16)[:, arr].transpose(1, 2, 0)
        arr = (arr // 257).astype(np.uint8) if header.dtype == "uint8" else np.ascontiguousarray(arr)
    arr = arr.astype(np.uint8) * np.uint8(255) if arr.dtype == np.bool_ else arr
    if miniswhite and arr.dtype.kind == "u":  # show what viewers show: 0 is black (alpha kept)
        arr = arr.copy()
        gray = arr if arr.ndim == 2 else arr[..., 0]
        np.subtract(np.iinfo(arr.dtype).max, gray, out=gray)
    arr = arr.astype(np.float32) if arr.dtype.kind == "f" else arr
    arr = arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr
    if arr.shape != (header.height, header.width) + ((header.channels,) if header.channels > 1 else ()):
        raise BadFile(f"unsupported TIFF layout (array of shape {arr.shape})")
    return arr, header


def encode_png_gray_alpha(arr: np.ndarray) -> bytes:
    """A gray+alpha PNG (8 or 16 bit) by pypng: OpenCV's encoder takes 1, 3 or 4 channels only and
    Pillow cannot write 16-bit gray+alpha."""
    height, width, _ = arr.shape
    buf = io.BytesIO()
    writer = png.Writer(width, height, greyscale=True, alpha=True, bitdepth=8 * arr.dtype.itemsize)
    writer.write(buf, arr.reshape(height, -1))
    return buf.getvalue()


def header(fh: BinaryIO, fmt: str, full: bool) -> Header:
    """The header of a ``fmt`` file (as :func:`sniff` named it); ``full``: the rest of the file is
    checked too (TIFF: on decode, by :func:`decode_tiff`)."""
    if fmt == "png":
        return png_header(fh, full)
    return tiff_header(fh) if fmt == "tiff" else pillow_header(fh, fmt, full)
