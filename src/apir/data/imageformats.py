"""What is inside an image file, before it is decoded: format sniffing, PNG/JPEG/BMP headers, TIFF layout.

Split from :mod:`apir.data.imageio` (which turns files into arrays and back) because this part is
about file formats, not about pixels: it decides *whether* a file can be read and how large it is.
Every problem is raised as :class:`BadFile` with a one-line reason; :func:`reading` turns it into the
``"<path>: cannot read image (<reason>)"`` ApirError the rest of apir shows.

Huge images: :func:`read_info` reads only headers (PNG: the IHDR chunk and chunk headers up to the
first IDAT; JPEG: the markers up to the frame header; TIFF: tifffile's page headers; BMP: the file
header, plus a decode because OpenCV's choice of channel count for BMP depends on the palette and
bit fields). The readers check the header size against :data:`MAX_PIXELS` (or the environment
variable ``APIR_MAX_IMAGE_PIXELS``) *before* decoding, so a decompression bomb (a small file
claiming a gigantic image) is refused instead of exhausting memory. The PNG and JPEG headers are
parsed by hand because both layouts are fixed by their specifications and short, and neither
OpenCV (decodes everything) nor Pillow (reports 16-bit RGB PNGs as 8-bit mode "RGB" and raises its
own DecompressionBombError in ``Image.open``) gives the bit depth and channel count cheaply.

Before decoding, PNG files are checked chunk by chunk (lengths, CRCs, a final IEND) and JPEG files
for an end-of-image marker after the scan header, so truncated and corrupt files produce a clear
reason instead of OpenCV's None (OpenCV may still print a libpng/libjpeg warning to stderr for
damage inside the compressed data).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import tifffile

from apir.errors import ApirError, safe_name

#: Largest image (height × width) the readers decode; ``APIR_MAX_IMAGE_PIXELS`` overrides it.
#: 2**28 ≈ 268 megapixels (e.g. 16384 × 16384), about 3 GiB as float32 RGB.
MAX_PIXELS = 1 << 28
MAX_PIXELS_ENV = "APIR_MAX_IMAGE_PIXELS"
FORMAT_NAME = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BMP_DIB_SIZES = {struct.pack("<I", n) for n in (12, 40, 52, 56, 64, 108, 124)}

# --------------------------------------------------------------------------------------- errors


class BadFile(Exception):
    """A reason why a file cannot be read; turned into a one-line ApirError naming the file."""


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


@contextmanager
def reading(path: Path) -> Iterator[None]:
    try:
        yield
    except BadFile as err:
        raise ApirError(f"{safe_name(path)}: cannot read image ({one_line(err)})") from None


def max_pixels() -> int:
    env = os.environ.get(MAX_PIXELS_ENV)
    if env:
        try:
            value = int(env)
        except ValueError:
            value = 0
        if value <= 0:
            raise ApirError(f"{MAX_PIXELS_ENV}={env!r} must be a positive whole number of pixels")
        return value
    return MAX_PIXELS


def check_pixels(height: int, width: int) -> None:
    limit = max_pixels()
    if height * width > limit:
        raise BadFile(
            f"image too large: {width}x{height} is {height * width / 1e6:.0f} megapixels, over the limit of "
            f"{limit / 1e6:.0f}; set {MAX_PIXELS_ENV} to allow more"
        )


# ------------------------------------------------------------------------------ file handling


@contextmanager
def open_file(path: Path) -> Iterator[tuple[BinaryIO, int]]:
    """Open ``path`` for reading, with one-line reasons for the usual failures; yields (file, size)."""
    if path.is_dir():
        raise BadFile("is a folder, not a file")
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise BadFile("file not found") from None
    except PermissionError:
        raise BadFile("permission denied") from None
    except OSError as err:
        raise BadFile(err.strerror or one_line(err)) from None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise BadFile("empty file")
        yield fh, size


def read_all(path: Path) -> bytes:
    with open_file(path) as (fh, _):
        try:
            return fh.read()
        except OSError as err:
            raise BadFile(err.strerror or one_line(err)) from None


def sniff(head: bytes) -> str:
    """The format from the first bytes of a file."""
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head.startswith(b"BM") and (len(head) < 18 or head[14:18] in BMP_DIB_SIZES):
        return "bmp"
    if len(head) < 8 and any(sig.startswith(head) for sig in (PNG_SIGNATURE, b"\xff\xd8\xff", b"II*\x00")):
        raise BadFile("truncated file (it ends inside the format signature)")
    other = {
        b"GIF87a": "GIF",
        b"GIF89a": "GIF",
        b"\x00\x00\x00\x0cjP  ": "JPEG 2000",
        b"\xff\x4f\xff\x51": "JPEG 2000",
        b"8BPS": "Photoshop",
        b"%PDF": "PDF",
    }
    name = next((n for magic, n in other.items() if head.startswith(magic)), None)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        name = "WebP"
    elif len(head) >= 3 and head[:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():
        name = "PNM"
    if name is not None:
        raise BadFile(f"{name} files are not supported; convert to PNG or TIFF")
    if all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        raise BadFile("not an image: the file contains text")
    raise BadFile("not an image: content is not PNG, JPEG, TIFF or BMP")


@dataclass(frozen=True)
class Header:
    height: int
    width: int
    channels: int | None  # None: only a decode can tell (BMP)
    dtype: str


# ------------------------------------------------------------------------------------- PNG


def png_header(fh: BinaryIO, size: int, full: bool) -> Header:
    """Walk the PNG chunks. ``full``: to IEND, checking every CRC; else stop at the first IDAT."""
    fh.seek(len(PNG_SIGNATURE))
    ihdr: tuple[int, ...] | None = None
    trns = seen_idat = False
    while True:
        pos = fh.tell()
        head = fh.read(8)
        if len(head) < 8:
            if ihdr is None or full:
                raise BadFile("truncated PNG (file ends before the IEND chunk)")
            raise BadFile("truncated PNG (no image data)")
        length, ctype = struct.unpack(">I4s", head)
        if not ctype.isalpha():
            raise BadFile(f"corrupt PNG (bad chunk header at byte {pos})")
        name = ctype.decode("ascii")
        if ihdr is None and ctype != b"IHDR":
            raise BadFile("corrupt PNG (the first chunk is not IHDR)")
        if pos + 12 + length > size:
            raise BadFile(f"truncated PNG (file ends inside the {name} chunk)")
        if full or ctype in (b"IHDR", b"tRNS"):
            body = fh.read(length)
            crc = int.from_bytes(fh.read(4), "big")
            if full and zlib.crc32(ctype + body) != crc:
                raise BadFile(f"corrupt PNG (CRC error in the {name} chunk)")
        else:
            body = b""
            fh.seek(length + 4, io.SEEK_CUR)
        if ctype == b"IHDR":
            if length != 13:
                raise BadFile("corrupt PNG (bad IHDR chunk)")
            ihdr = struct.unpack(">IIBBBBB", body)
        elif ctype == b"tRNS":
            trns = True
        elif ctype == b"IDAT":
            seen_idat = True
            if not full:
                break
        elif ctype == b"IEND":
            break
    if not seen_idat:
        raise BadFile("corrupt PNG (no image data)")
    width, height, depth, colour, *_ = ihdr
    valid_depths = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
    if width == 0 or height == 0 or depth not in valid_depths.get(colour, ()):
        raise BadFile(f"corrupt PNG (invalid header: {width}x{height}, colour type {colour}, depth {depth})")
    # OpenCV (IMREAD_UNCHANGED) turns tRNS into an alpha channel for RGB and palette images and
    # ignores it for gray ones; gray+alpha comes out as BGRA and is narrowed back to 2 channels.
    channels = {0: 1, 2: 4 if trns else 3, 3: 4 if trns else 3, 4: 2, 6: 4}[colour]
    return Header(height, width, channels, "uint16" if depth == 16 else "uint8")


def png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def encode_png_gray_alpha(arr: np.ndarray) -> bytes:
    """A gray+alpha PNG (colour type 4, 8 or 16 bit).

    Hand-rolled because OpenCV's PNG encoder only takes 1, 3 or 4 channels and Pillow cannot write
    16-bit gray+alpha. Rows use filter type 0 (none) and zlib level 6: correct, a little larger than
    an optimising encoder's output.
    """
    height, width, _ = arr.shape
    depth = 16 if arr.dtype == np.uint16 else 8
    rows = np.ascontiguousarray(arr, dtype=">u2" if depth == 16 else np.uint8).reshape(height, -1)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows.view(np.uint8)], axis=1)
    data = zlib.compress(raw.tobytes(), 6)
    step = 1 << 20
    idat = b"".join(png_chunk(b"IDAT", data[i : i + step]) for i in range(0, len(data), step))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, 4, 0, 0, 0)
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + idat + png_chunk(b"IEND", b"")


# ------------------------------------------------------------------------------------ JPEG

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_STANDALONE = {0x01, 0xD8, *range(0xD0, 0xD8)}


def jpeg_header(fh: BinaryIO, size: int, data: bytes | None) -> Header:
    """Walk the JPEG markers to the frame header (and, given ``data``, check it is complete)."""
    fh.seek(2)
    sof: tuple[int, int, int, int] | None = None
    while True:
        byte = fh.read(1)
        if byte != b"\xff":
            if not byte:
                raise BadFile("truncated JPEG (file ends in the header)")
            # Stray bytes between segments: libjpeg skips them with a warning, so do we.
            ahead = fh.read(1 << 16)
            skip = ahead.find(b"\xff")
            if skip < 0:
                raise BadFile("corrupt JPEG (no marker where one was expected)")
            fh.seek(-(len(ahead) - skip), io.SEEK_CUR)
            continue
        marker = fh.read(1)
        while marker == b"\xff":  # fill bytes
            marker = fh.read(1)
        if not marker:
            raise BadFile("truncated JPEG (file ends in the header)")
        code = marker[0]
        if code in _JPEG_STANDALONE or code == 0x00:
            continue
        if code == 0xD9:
            raise BadFile("corrupt JPEG (end-of-image marker before the image data)")
        seg = fh.read(2)
        if len(seg) < 2:
            raise BadFile("truncated JPEG (file ends in the header)")
        length = int.from_bytes(seg, "big")
        start = fh.tell()
        if length < 2 or start + length - 2 > size:
            raise BadFile("truncated JPEG (file ends in the header)")
        if code in _JPEG_SOF:
            if length < 8:
                raise BadFile("corrupt JPEG (bad frame header)")
            sof = struct.unpack(">BHHB", fh.read(6))
            if data is None:
                break
        elif code == 0xDA:
            if sof is None:
                raise BadFile("corrupt JPEG (image data before the frame header)")
            # Entropy-coded data cannot contain FF D9, so a complete file has one after the scan header.
            if data is not None and data.rfind(b"\xff\xd9") < start + length - 2:
                raise BadFile("truncated JPEG (no end-of-image marker)")
            break
        fh.seek(start + length - 2)
    if sof is None:
        raise BadFile("corrupt JPEG (no frame header)")
    precision, height, width, components = sof
    if precision != 8:
        raise BadFile(f"unsupported {precision}-bit JPEG (only 8-bit JPEG is supported)")
    if height == 0 or width == 0:
        raise BadFile(f"unsupported JPEG (size {width}x{height} in the frame header)")
    if components not in (1, 3, 4):
        raise BadFile(f"unsupported JPEG with {components} colour components")
    return Header(height, width, 1 if components == 1 else 3, "uint8")  # CMYK/YCCK decode to RGB


# ------------------------------------------------------------------------------------- BMP


def bmp_header(fh: BinaryIO, size: int, full: bool) -> Header:
    fh.seek(0)
    head = fh.read(34)
    if len(head) < 26:
        raise BadFile("truncated BMP (file ends in the header)")
    offset, dib = struct.unpack_from("<II", head, 10)
    if dib == 12:
        width, height, _planes, bpp = struct.unpack_from("<HHHH", head, 18)
        compression = 0
    elif dib >= 40 and len(head) >= 34:
        width, height, _planes, bpp, compression = struct.unpack_from("<iiHHI", head, 18)
        height = abs(height)  # negative: rows stored top-down
    else:
        raise BadFile("corrupt BMP (unknown header)")
    if width <= 0 or height == 0:
        raise BadFile(f"corrupt BMP (size {width}x{height})")
    if full and compression in (0, 3, 6) and bpp in (1, 4, 8, 16, 24, 32):
        stride = (bpp * width + 31) // 32 * 4
        if offset + stride * height > size:
            raise BadFile("truncated BMP (file ends inside the pixel data)")
    return Header(height, width, None, "uint8")


# ------------------------------------------------------------------------------------ TIFF


@dataclass(frozen=True)
class TiffLayout:
    height: int
    width: int
    channels: int
    dtype: str
    planar: bool


def tiff_page(tf: tifffile.TiffFile) -> tifffile.TiffPage:
    """The one full-size image of a TIFF; several (a stack) is an error."""
    main = []
    for page in tf.pages:
        if not int(getattr(page, "subfiletype", 0) or 0) & 1:  # bit 0: reduced-resolution copy
            main.append(page)
            if len(main) > 1:
                n = len(tf.pages)
                raise BadFile(
                    f"multi-page TIFF ({n} pages); apir reads one image per file, so split the stack first"
                )
    if not main:
        if not len(tf.pages):
            raise BadFile("corrupt TIFF (no images)")
        main.append(tf.pages[0])
    page = main[0]
    if not isinstance(page, tifffile.TiffPage):
        page = page.aspage()
    return page


def tiff_layout(page: tifffile.TiffPage) -> TiffLayout:
    photometric = tifffile.PHOTOMETRIC
    if int(getattr(page, "imagedepth", 1) or 1) > 1:
        raise BadFile(f"3-D TIFF volume (depth {page.imagedepth}) is not supported")
    spp = int(page.samplesperpixel)
    extras = len(page.extrasamples or ())
    kind = page.photometric
    if kind in (photometric.MINISBLACK, photometric.MINISWHITE):
        channels = {1: 1, 2: 2}.get(spp) if spp - extras == 1 else None
    elif kind == photometric.RGB:
        channels = {3: 3, 4: 4}.get(spp) if spp - extras == 3 else None
    elif kind == photometric.PALETTE:
        channels = 3 if spp == 1 else None
    else:
        name = getattr(kind, "name", str(kind))
        raise BadFile(f"unsupported TIFF colour space {name} (gray, RGB or palette expected)")
    if channels is None:
        raise BadFile(f"unsupported TIFF with {spp} samples per pixel ({extras} extra)")
    dtype = np.dtype(page.dtype) if page.dtype is not None else None
    if dtype is None:
        raise BadFile(f"unsupported TIFF sample format ({page.bitspersample} bits)")
    if kind == photometric.PALETTE:
        if dtype.kind != "u":
            raise BadFile(f"corrupt TIFF (palette indices of type {dtype.name})")
        colormap = page.colormap
        out = "uint8" if colormap is not None and not np.any(np.asarray(colormap) % 257) else "uint16"
    elif dtype == np.bool_ or dtype == np.uint8:
        out = "uint8"
    elif dtype == np.uint16:
        out = "uint16"
    elif dtype.kind == "f":
        out = "float32"
    else:
        raise BadFile(f"unsupported sample type {dtype.name} (uint8, uint16 and float TIFFs are supported)")
    height, width = int(page.imagelength), int(page.imagewidth)
    planar = spp > 1 and int(page.planarconfig) == 2
    return TiffLayout(height, width, channels, out, planar)


def decode_tiff(source: BinaryIO | Path, size: int) -> np.ndarray:
    try:
        with tifffile.TiffFile(source) as tf:
            page = tiff_page(tf)
            layout = tiff_layout(page)
            check_pixels(layout.height, layout.width)
            for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False):
                if offset + count > size:
                    raise BadFile("truncated TIFF (image data runs past the end of the file)")
            arr = page.asarray()
            colormap = page.colormap
            miniswhite = page.photometric == tifffile.PHOTOMETRIC.MINISWHITE
    except BadFile:
        raise
    except MemoryError:
        raise BadFile("not enough memory to decode the image") from None
    except Exception as err:
        raise BadFile(f"corrupt TIFF: {one_line(err)}") from None
    if layout.planar and arr.ndim == 3:
        arr = np.moveaxis(arr, 0, -1)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if colormap is not None and layout.channels == 3 and arr.ndim == 2 and arr.dtype.kind == "u":
        cmap = np.asarray(colormap, np.uint16)
        if int(arr.max(initial=0)) >= cmap.shape[1]:
            raise BadFile("corrupt TIFF (palette index out of range)")
        arr = cmap[:, arr].transpose(1, 2, 0)
        arr = (arr // 257).astype(np.uint8) if layout.dtype == "uint8" else np.ascontiguousarray(arr)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * np.uint8(255)
    if miniswhite and arr.dtype.kind == "u":
        top = np.iinfo(arr.dtype).max
        if arr.ndim == 2:
            arr = top - arr
        else:
            arr = arr.copy()
            arr[..., 0] = top - arr[..., 0]
    if arr.dtype.kind == "f" and arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    expected = (layout.height, layout.width) + ((layout.channels,) if layout.channels > 1 else ())
    if arr.shape != expected:
        raise BadFile(f"unsupported TIFF layout (array of shape {arr.shape})")
    return arr
