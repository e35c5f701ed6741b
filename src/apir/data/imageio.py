"""Image files in and out: camera images to float RGB and back to the file's own mode and depth.

Models work on float32 RGB in [0, 1]; users bring 8- and 16-bit gray, RGB and RGBA files in PNG,
TIFF, JPEG and BMP. :func:`read_image` turns any of them into a :class:`LoadedImage` (float RGB, the
untouched alpha channel and an :class:`ImageInfo` describing the file), and :func:`write_image` with
that ``info`` writes a result back in the same mode and bit depth. Every problem with a user's file
is an :class:`~apir.errors.ApirError` reading ``"<path>: cannot read image (<reason>)"`` on one line.

Channel mapping (file → ``LoadedImage``), and back (:func:`to_file_layout`):

* gray (1 channel) → replicated to R = G = B. Back: the mean of R, G and B, computed in float64, so
  it is *exact* for replicated gray (``(x + x + x) / 3 == x``); a model that returns different
  channels for a gray input gets them averaged.
* gray + alpha (2 channels) and RGBA (4 channels) → the colour channels are used; the alpha channel
  is kept aside, in the file's sample type and unchanged, and re-attached unchanged on write.
* 8-bit → divided by 255; 16-bit → divided by 65535; back: ``round(clip(x, 0, 1) * max)``. A read
  followed by :func:`to_file_layout` reproduces the file's samples exactly.
* float TIFF (16-, 32- or 64-bit) → float32, clipped to [0, 1], NaN → 0 (the alpha is not clipped);
  written back as float32.
* palette images (PNG, TIFF) → converted to RGB (RGBA for PNG palettes with transparency) and
  written back as true-colour files. A PNG ``tRNS`` transparency colour makes an RGB file RGBA (as
  OpenCV decodes it); on a gray PNG it is ignored (OpenCV drops it).
* 1-bit TIFF → uint8 0/255. PNG bit depths 1, 2 and 4 are expanded to 8 bits.
* CMYK / YCCK JPEG → RGB (converted by the decoder).
* TIFF ``MinIsWhite`` integer images are inverted to the usual black-is-zero convention, so apir
  sees what image viewers show. Beware: ``tifffile.imwrite`` stores *bool* arrays as MinIsWhite,
  so a bool mask saved that way reads back inverted (Pillow stores them as MinIsBlack).

Orientation and metadata: images are read as stored. EXIF orientation is *not* applied
(``cv2.IMREAD_UNCHANGED`` ignores it, as does tifffile for the TIFF Orientation tag); for
inspection cameras that is what we want, because masks, ground-truth files and defect coordinates
refer to the stored pixel grid. Metadata (EXIF, ICC profiles, resolution) is not copied on write.

The format is recognised from the file's *content* (magic bytes), not its extension, so a PNG named
``.jpg`` still reads (and :attr:`ImageInfo.format` says ``"png"``). Writing picks the format from the
extension and refuses what it cannot store (alpha in JPEG, 16-bit in JPEG or BMP, float outside
TIFF) with an ApirError naming a format that can. PNG, JPEG and BMP are read and written with
OpenCV through ``cv2.imdecode`` / ``cv2.imencode`` on bytes (OpenCV's own file functions fail on
non-ASCII paths on some platforms), TIFF with tifffile (written uncompressed). JPEG is written at
quality 95. Every write is atomic (:mod:`apir.fsutil`) and creates missing parent folders.

TIFF layout: only single-image files are read. A file holding several full-size images (a stack,
multi-page scan) is refused rather than silently reduced to its first page, since writing the
result back would drop the other pages; reduced-resolution pages (thumbnails, pyramid levels) are
ignored. Planar (channel-first, ``PlanarConfiguration=2``) files are transposed to H×W×C, which the
tag makes unambiguous; 3-D volumes (``ImageDepth > 1``), integer types other than uint8/uint16 and
more than 4 channels are refused.

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

import cv2
import numpy as np
import tifffile

from apir.errors import ApirError
from apir.fsutil import atomic_write_bytes

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "ImageInfo",
    "LoadedImage",
    "list_images",
    "mask_is_binary",
    "read_image",
    "read_info",
    "read_mask",
    "read_raw",
    "to_file_layout",
    "write_image",
    "write_mask",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

#: Largest image (height × width) the readers decode; ``APIR_MAX_IMAGE_PIXELS`` overrides it.
#: 2**28 ≈ 268 megapixels (e.g. 16384 × 16384), about 3 GiB as float32 RGB.
MAX_PIXELS = 1 << 28
MAX_PIXELS_ENV = "APIR_MAX_IMAGE_PIXELS"

_EXT_FORMAT = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff", ".bmp": "bmp"}
_FORMAT_NAME = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP"}
_DTYPES = ("uint8", "uint16", "float32")
_MODES = {1: "gray", 2: "gray+alpha", 3: "rgb", 4: "rgba"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_QUALITY = 95
_BMP_DIB_SIZES = {struct.pack("<I", n) for n in (12, 40, 52, 56, 64, 108, 124)}


@dataclass(frozen=True)
class ImageInfo:
    """What an image file holds: size, channels and sample type (not the pixels).

    ``channels`` counts the channels in the file: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA.
    ``dtype`` is the file's sample type: ``"uint8"``, ``"uint16"`` or ``"float32"``.
    ``format`` is the file's format as recognised from its content (``"png"``, ``"jpeg"``,
    ``"tiff"``, ``"bmp"``); None for an info made up by hand.
    """

    path: Path | None
    height: int
    width: int
    channels: int
    dtype: str
    has_alpha: bool
    format: str | None = None

    def __post_init__(self) -> None:
        if self.channels not in _MODES:
            raise ValueError(f"ImageInfo.channels must be 1, 2, 3 or 4, not {self.channels}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"ImageInfo.dtype must be one of {_DTYPES}, not {self.dtype!r}")
        if self.has_alpha != (self.channels in (2, 4)):
            raise ValueError(f"ImageInfo.has_alpha={self.has_alpha} contradicts channels={self.channels}")
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"ImageInfo size must be positive, not {self.width}x{self.height}")

    @property
    def mode(self) -> str:
        """``"gray"``, ``"gray+alpha"``, ``"rgb"`` or ``"rgba"``."""
        return _MODES[self.channels]

    @property
    def is_gray(self) -> bool:
        return self.channels in (1, 2)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return (self.height, self.width)


@dataclass
class LoadedImage:
    """An image ready for a model: float32 H×W×3 RGB in [0, 1], plus what is needed to write it back."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    info: ImageInfo


# --------------------------------------------------------------------------------------- errors


class _Bad(Exception):
    """A reason why a file cannot be read; turned into a one-line ApirError naming the file."""


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    try:
        yield
    except _Bad as err:
        raise ApirError(f"{path}: cannot read image ({_one_line(err)})") from None


def _max_pixels() -> int:
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


def _check_pixels(height: int, width: int) -> None:
    limit = _max_pixels()
    if height * width > limit:
        raise _Bad(
            f"image too large: {width}x{height} is {height * width / 1e6:.0f} megapixels, over the limit of "
            f"{limit / 1e6:.0f}; set {MAX_PIXELS_ENV} to allow more"
        )


# ------------------------------------------------------------------------------ file handling


@contextmanager
def _open(path: Path) -> Iterator[tuple[BinaryIO, int]]:
    """Open ``path`` for reading, with one-line reasons for the usual failures; yields (file, size)."""
    if path.is_dir():
        raise _Bad("is a folder, not a file")
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise _Bad("file not found") from None
    except PermissionError:
        raise _Bad("permission denied") from None
    except OSError as err:
        raise _Bad(err.strerror or _one_line(err)) from None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise _Bad("empty file")
        yield fh, size


def _read_all(path: Path) -> bytes:
    with _open(path) as (fh, _):
        try:
            return fh.read()
        except OSError as err:
            raise _Bad(err.strerror or _one_line(err)) from None


def _sniff(head: bytes) -> str:
    """The format from the first bytes of a file."""
    if head.startswith(_PNG_SIGNATURE):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head.startswith(b"BM") and (len(head) < 18 or head[14:18] in _BMP_DIB_SIZES):
        return "bmp"
    if len(head) < 8 and any(sig.startswith(head) for sig in (_PNG_SIGNATURE, b"\xff\xd8\xff", b"II*\x00")):
        raise _Bad("truncated file (it ends inside the format signature)")
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
        raise _Bad(f"{name} files are not supported; convert to PNG or TIFF")
    if all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        raise _Bad("not an image: the file contains text")
    raise _Bad("not an image: content is not PNG, JPEG, TIFF or BMP")


@dataclass(frozen=True)
class _Header:
    height: int
    width: int
    channels: int | None  # None: only a decode can tell (BMP)
    dtype: str


# ------------------------------------------------------------------------------------- PNG


def _png_header(fh: BinaryIO, size: int, full: bool) -> _Header:
    """Walk the PNG chunks. ``full``: to IEND, checking every CRC; else stop at the first IDAT."""
    fh.seek(len(_PNG_SIGNATURE))
    ihdr: tuple[int, ...] | None = None
    trns = seen_idat = False
    while True:
        pos = fh.tell()
        head = fh.read(8)
        if len(head) < 8:
            if ihdr is None or full:
                raise _Bad("truncated PNG (file ends before the IEND chunk)")
            raise _Bad("truncated PNG (no image data)")
        length, ctype = struct.unpack(">I4s", head)
        if not ctype.isalpha():
            raise _Bad(f"corrupt PNG (bad chunk header at byte {pos})")
        name = ctype.decode("ascii")
        if ihdr is None and ctype != b"IHDR":
            raise _Bad("corrupt PNG (the first chunk is not IHDR)")
        if pos + 12 + length > size:
            raise _Bad(f"truncated PNG (file ends inside the {name} chunk)")
        if full or ctype in (b"IHDR", b"tRNS"):
            body = fh.read(length)
            crc = int.from_bytes(fh.read(4), "big")
            if full and zlib.crc32(ctype + body) != crc:
                raise _Bad(f"corrupt PNG (CRC error in the {name} chunk)")
        else:
            body = b""
            fh.seek(length + 4, io.SEEK_CUR)
        if ctype == b"IHDR":
            if length != 13:
                raise _Bad("corrupt PNG (bad IHDR chunk)")
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
        raise _Bad("corrupt PNG (no image data)")
    width, height, depth, colour, *_ = ihdr
    valid_depths = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
    if width == 0 or height == 0 or depth not in valid_depths.get(colour, ()):
        raise _Bad(f"corrupt PNG (invalid header: {width}x{height}, colour type {colour}, depth {depth})")
    # OpenCV (IMREAD_UNCHANGED) turns tRNS into an alpha channel for RGB and palette images and
    # ignores it for gray ones; gray+alpha comes out as BGRA and is narrowed back to 2 channels.
    channels = {0: 1, 2: 4 if trns else 3, 3: 4 if trns else 3, 4: 2, 6: 4}[colour]
    return _Header(height, width, channels, "uint16" if depth == 16 else "uint8")


def _png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def _encode_png_gray_alpha(arr: np.ndarray) -> bytes:
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
    idat = b"".join(_png_chunk(b"IDAT", data[i : i + step]) for i in range(0, len(data), step))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, 4, 0, 0, 0)
    return _PNG_SIGNATURE + _png_chunk(b"IHDR", ihdr) + idat + _png_chunk(b"IEND", b"")


# ------------------------------------------------------------------------------------ JPEG

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_STANDALONE = {0x01, 0xD8, *range(0xD0, 0xD8)}


def _jpeg_header(fh: BinaryIO, size: int, data: bytes | None) -> _Header:
    """Walk the JPEG markers to the frame header (and, given ``data``, check it is complete)."""
    fh.seek(2)
    sof: tuple[int, int, int, int] | None = None
    while True:
        byte = fh.read(1)
        if byte != b"\xff":
            if not byte:
                raise _Bad("truncated JPEG (file ends in the header)")
            # Stray bytes between segments: libjpeg skips them with a warning, so do we.
            ahead = fh.read(1 << 16)
            skip = ahead.find(b"\xff")
            if skip < 0:
                raise _Bad("corrupt JPEG (no marker where one was expected)")
            fh.seek(-(len(ahead) - skip), io.SEEK_CUR)
            continue
        marker = fh.read(1)
        while marker == b"\xff":  # fill bytes
            marker = fh.read(1)
        if not marker:
            raise _Bad("truncated JPEG (file ends in the header)")
        code = marker[0]
        if code in _JPEG_STANDALONE or code == 0x00:
            continue
        if code == 0xD9:
            raise _Bad("corrupt JPEG (end-of-image marker before the image data)")
        seg = fh.read(2)
        if len(seg) < 2:
            raise _Bad("truncated JPEG (file ends in the header)")
        length = int.from_bytes(seg, "big")
        start = fh.tell()
        if length < 2 or start + length - 2 > size:
            raise _Bad("truncated JPEG (file ends in the header)")
        if code in _JPEG_SOF:
            if length < 8:
                raise _Bad("corrupt JPEG (bad frame header)")
            sof = struct.unpack(">BHHB", fh.read(6))
            if data is None:
                break
        elif code == 0xDA:
            if sof is None:
                raise _Bad("corrupt JPEG (image data before the frame header)")
            # Entropy-coded data cannot contain FF D9, so a complete file has one after the scan header.
            if data is not None and data.rfind(b"\xff\xd9") < start + length - 2:
                raise _Bad("truncated JPEG (no end-of-image marker)")
            break
        fh.seek(start + length - 2)
    if sof is None:
        raise _Bad("corrupt JPEG (no frame header)")
    precision, height, width, components = sof
    if precision != 8:
        raise _Bad(f"unsupported {precision}-bit JPEG (only 8-bit JPEG is supported)")
    if height == 0 or width == 0:
        raise _Bad(f"unsupported JPEG (size {width}x{height} in the frame header)")
    if components not in (1, 3, 4):
        raise _Bad(f"unsupported JPEG with {components} colour components")
    return _Header(height, width, 1 if components == 1 else 3, "uint8")  # CMYK/YCCK decode to RGB


# ------------------------------------------------------------------------------------- BMP


def _bmp_header(fh: BinaryIO, size: int, full: bool) -> _Header:
    fh.seek(0)
    head = fh.read(34)
    if len(head) < 26:
        raise _Bad("truncated BMP (file ends in the header)")
    offset, dib = struct.unpack_from("<II", head, 10)
    if dib == 12:
        width, height, _planes, bpp = struct.unpack_from("<HHHH", head, 18)
        compression = 0
    elif dib >= 40 and len(head) >= 34:
        width, height, _planes, bpp, compression = struct.unpack_from("<iiHHI", head, 18)
        height = abs(height)  # negative: rows stored top-down
    else:
        raise _Bad("corrupt BMP (unknown header)")
    if width <= 0 or height == 0:
        raise _Bad(f"corrupt BMP (size {width}x{height})")
    if full and compression in (0, 3, 6) and bpp in (1, 4, 8, 16, 24, 32):
        stride = (bpp * width + 31) // 32 * 4
        if offset + stride * height > size:
            raise _Bad("truncated BMP (file ends inside the pixel data)")
    return _Header(height, width, None, "uint8")


# ------------------------------------------------------------------------------------ TIFF


@dataclass(frozen=True)
class _TiffLayout:
    height: int
    width: int
    channels: int
    dtype: str
    planar: bool


def _tiff_page(tf: tifffile.TiffFile) -> tifffile.TiffPage:
    """The one full-size image of a TIFF; several (a stack) is an error."""
    main = []
    for page in tf.pages:
        if not int(getattr(page, "subfiletype", 0) or 0) & 1:  # bit 0: reduced-resolution copy
            main.append(page)
            if len(main) > 1:
                n = len(tf.pages)
                raise _Bad(
                    f"multi-page TIFF ({n} pages); apir reads one image per file, so split the stack first"
                )
    if not main:
        if not len(tf.pages):
            raise _Bad("corrupt TIFF (no images)")
        main.append(tf.pages[0])
    page = main[0]
    if not isinstance(page, tifffile.TiffPage):
        page = page.aspage()
    return page


def _tiff_layout(page: tifffile.TiffPage) -> _TiffLayout:
    photometric = tifffile.PHOTOMETRIC
    if int(getattr(page, "imagedepth", 1) or 1) > 1:
        raise _Bad(f"3-D TIFF volume (depth {page.imagedepth}) is not supported")
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
        raise _Bad(f"unsupported TIFF colour space {name} (gray, RGB or palette expected)")
    if channels is None:
        raise _Bad(f"unsupported TIFF with {spp} samples per pixel ({extras} extra)")
    dtype = np.dtype(page.dtype) if page.dtype is not None else None
    if dtype is None:
        raise _Bad(f"unsupported TIFF sample format ({page.bitspersample} bits)")
    if kind == photometric.PALETTE:
        if dtype.kind != "u":
            raise _Bad(f"corrupt TIFF (palette indices of type {dtype.name})")
        colormap = page.colormap
        out = "uint8" if colormap is not None and not np.any(np.asarray(colormap) % 257) else "uint16"
    elif dtype == np.bool_ or dtype == np.uint8:
        out = "uint8"
    elif dtype == np.uint16:
        out = "uint16"
    elif dtype.kind == "f":
        out = "float32"
    else:
        raise _Bad(f"unsupported sample type {dtype.name} (uint8, uint16 and float TIFFs are supported)")
    height, width = int(page.imagelength), int(page.imagewidth)
    planar = spp > 1 and int(page.planarconfig) == 2
    return _TiffLayout(height, width, channels, out, planar)


def _decode_tiff(source: BinaryIO | Path, size: int) -> np.ndarray:
    try:
        with tifffile.TiffFile(source) as tf:
            page = _tiff_page(tf)
            layout = _tiff_layout(page)
            _check_pixels(layout.height, layout.width)
            for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False):
                if offset + count > size:
                    raise _Bad("truncated TIFF (image data runs past the end of the file)")
            arr = page.asarray()
            colormap = page.colormap
            miniswhite = page.photometric == tifffile.PHOTOMETRIC.MINISWHITE
    except _Bad:
        raise
    except MemoryError:
        raise _Bad("not enough memory to decode the image") from None
    except Exception as err:
        raise _Bad(f"corrupt TIFF: {_one_line(err)}") from None
    if layout.planar and arr.ndim == 3:
        arr = np.moveaxis(arr, 0, -1)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if colormap is not None and layout.channels == 3 and arr.ndim == 2 and arr.dtype.kind == "u":
        cmap = np.asarray(colormap, np.uint16)
        if int(arr.max(initial=0)) >= cmap.shape[1]:
            raise _Bad("corrupt TIFF (palette index out of range)")
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
        raise _Bad(f"unsupported TIFF layout (array of shape {arr.shape})")
    return arr


# ---------------------------------------------------------------------------------- reading


def _decode_cv2(data: bytes, fmt: str, header: _Header) -> np.ndarray:
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as err:
        raise _Bad(f"corrupt {_FORMAT_NAME[fmt]} ({_one_line(err)})") from None
    if arr is None:
        raise _Bad(f"corrupt or unsupported {_FORMAT_NAME[fmt]} data (the decoder failed)")
    if arr.dtype not in (np.uint8, np.uint16):
        raise _Bad(f"unsupported sample type {arr.dtype.name}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3:
        if arr.shape[2] == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
        elif arr.shape[2] == 4:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
            if header.channels == 2:  # gray+alpha PNG, decoded as BGRA with B = G = R
                arr = np.ascontiguousarray(arr[..., [0, 3]])
        elif arr.shape[2] != 2:
            raise _Bad(f"unsupported image with {arr.shape[2]} channels")
    if arr.shape[:2] != (header.height, header.width):
        raise _Bad(f"corrupt {_FORMAT_NAME[fmt]} (decoded size differs from the header)")
    return arr


def _info_for(path: Path | None, arr: np.ndarray, fmt: str | None) -> ImageInfo:
    channels = 1 if arr.ndim == 2 else int(arr.shape[2])
    return ImageInfo(
        path=path,
        height=int(arr.shape[0]),
        width=int(arr.shape[1]),
        channels=channels,
        dtype=arr.dtype.name,
        has_alpha=channels in (2, 4),
        format=fmt,
    )


def read_raw(path: str | os.PathLike[str]) -> tuple[np.ndarray, ImageInfo]:
    """The file's samples as stored, in RGB(A) order: H×W (gray) or H×W×C, uint8/uint16/float32."""
    p = Path(path)
    with _reading(p):
        data = _read_all(p)
        fmt = _sniff(data[:32])
        if fmt == "tiff":
            arr = _decode_tiff(io.BytesIO(data), len(data))
        else:
            fh = io.BytesIO(data)
            if fmt == "png":
                header = _png_header(fh, len(data), full=True)
            elif fmt == "jpeg":
                header = _jpeg_header(fh, len(data), data)
            else:
                header = _bmp_header(fh, len(data), full=True)
            _check_pixels(header.height, header.width)
            try:
                arr = _decode_cv2(data, fmt, header)
            except MemoryError:
                raise _Bad("not enough memory to decode the image") from None
        return arr, _info_for(p, arr, fmt)


def read_info(path: str | os.PathLike[str]) -> ImageInfo:
    """The file's size, channels and sample type, from its header where the format allows.

    No size limit applies here (nothing is decoded, except for BMP), so this is the way to see how
    large an image is before reading it. Equal to ``read_image(path).info``.
    """
    p = Path(path)
    with _reading(p):
        with _open(p) as (fh, size):
            fmt = _sniff(fh.read(32))
            if fmt == "png":
                header = _png_header(fh, size, full=False)
            elif fmt == "jpeg":
                header = _jpeg_header(fh, size, None)
            elif fmt == "tiff":
                fh.seek(0)
                try:
                    with tifffile.TiffFile(fh) as tf:
                        layout = _tiff_layout(_tiff_page(tf))
                except _Bad:
                    raise
                except Exception as err:
                    raise _Bad(f"corrupt TIFF: {_one_line(err)}") from None
                header = _Header(layout.height, layout.width, layout.channels, layout.dtype)
            else:
                header = _bmp_header(fh, size, full=False)
        if header.channels is None:  # BMP: OpenCV's channel count depends on palette and bit fields
            return read_raw(p)[1]
        return ImageInfo(
            path=p,
            height=header.height,
            width=header.width,
            channels=header.channels,
            dtype=header.dtype,
            has_alpha=header.channels in (2, 4),
            format=fmt,
        )


def _to_float(arr: np.ndarray) -> np.ndarray:
    if arr.dtype in (np.uint8, np.uint16):
        out = arr.astype(np.float32)
        out /= np.float32(255 if arr.dtype == np.uint8 else 65535)
        return out
    out = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(out, 0.0, 1.0, out=out)


def read_image(path: str | os.PathLike[str]) -> LoadedImage:
    """Read an image as float32 H×W×3 RGB in [0, 1], its alpha (file dtype, untouched) and its info.

    See the module docstring for the channel mapping. Any problem with the file raises
    ``ApirError("<path>: cannot read image (<reason>)")``.
    """
    arr, info = read_raw(path)
    alpha = None
    if info.has_alpha:
        alpha = np.ascontiguousarray(arr[..., -1])
        arr = arr[..., 0] if info.channels == 2 else arr[..., :3]
    rgb = _to_float(arr)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    return LoadedImage(rgb=np.ascontiguousarray(rgb), alpha=alpha, info=info)


# ------------------------------------------------------------------------------------ masks


def _mask_colour(path: str | os.PathLike[str]) -> tuple[np.ndarray, ImageInfo]:
    """A mask's colour samples (alpha dropped): H×W or H×W×3."""
    arr, info = read_raw(path)
    if info.channels == 2:
        arr = arr[..., 0]
    elif info.channels == 4:
        arr = arr[..., :3]
    return arr, info


def read_mask(path: str | os.PathLike[str], shape: tuple[int, int] | None = None) -> np.ndarray:
    """A defect mask as bool H×W.

    A pixel is defect if any colour channel is > 0 (alpha is ignored). JPEG masks are the
    exception: their compression noise puts small non-zero values around every edge, so there a
    pixel is defect if a channel is >= 128, half the 8-bit range. With ``shape`` (height, width),
    a mask of another size is an ApirError naming the file and both sizes.
    """
    arr, info = _mask_colour(path)
    if shape is not None and (info.height, info.width) != tuple(shape):
        raise ApirError(
            f"{path}: mask size {info.width}x{info.height} differs from image size {shape[1]}x{shape[0]}"
        )
    defect = arr >= 128 if info.format == "jpeg" else arr > 0
    if defect.ndim == 3:
        defect = defect.any(axis=2)
    return np.ascontiguousarray(defect)


def mask_is_binary(path: str | os.PathLike[str]) -> bool:
    """True if the mask holds at most two values, 0 and one other (alpha ignored)."""
    arr, _ = _mask_colour(path)
    nonzero = arr[arr != 0]
    return bool(nonzero.size == 0 or np.all(nonzero == nonzero.flat[0]))


# ---------------------------------------------------------------------------------- writing


def _quantise(x: np.ndarray, dtype: str) -> np.ndarray:
    """Float samples → ``dtype``: clip to [0, 1] (NaN → 0) and round, or keep float32."""
    x = np.nan_to_num(np.asarray(x, np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    np.clip(x, 0.0, 1.0, out=x)
    if dtype == "float32":
        return x
    top = 255 if dtype == "uint8" else 65535
    x *= np.float32(top)
    return np.rint(x, out=x).astype(dtype)


def _attach_alpha(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    alpha = np.asarray(alpha)
    if alpha.ndim == 3 and alpha.shape[2] == 1:
        alpha = alpha[..., 0]
    if alpha.shape != colour.shape[:2]:
        raise ValueError(f"alpha of shape {alpha.shape} does not match the image's {colour.shape[:2]}")
    if alpha.dtype != colour.dtype:
        raise ValueError(
            f"alpha is {alpha.dtype.name} but the image is {colour.dtype.name}; the alpha channel is "
            "passed through unchanged, so it must already be in the file's sample type"
        )
    if colour.ndim == 2:
        colour = colour[..., None]
    return np.concatenate([colour, alpha[..., None]], axis=2)


def to_file_layout(rgb: np.ndarray, info: ImageInfo, alpha: np.ndarray | None = None) -> np.ndarray:
    """Float RGB in [0, 1] (H×W×3) → the array the file of ``info`` holds, ready to encode.

    Gray files get the mean of R, G and B (computed in float64: exact when the channels are equal,
    as for a replicated gray image); values are clipped to [0, 1] and rounded to the nearest
    uint8/uint16 step (float32 files keep the clipped floats). For files with alpha, ``alpha`` (in
    the file's dtype, e.g. ``LoadedImage.alpha``) is re-attached unchanged; without one the result is
    fully opaque. Returns H×W for gray, else H×W×C with C = ``info.channels``, in RGB(A) order.
    """
    a = np.asarray(rgb)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3):
        raise ValueError(f"expected an H×W×3 RGB array, got shape {a.shape}")
    if a.dtype.kind != "f":
        raise ValueError(f"expected float RGB in [0, 1], got {a.dtype.name}")
    if info.is_gray:
        colour = a[..., 0] if a.shape[2] == 1 else a.mean(axis=2, dtype=np.float64)
    else:
        colour = np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a
    out = _quantise(colour, info.dtype)
    if info.has_alpha:
        if alpha is None:
            top = 1.0 if info.dtype == "float32" else np.iinfo(info.dtype).max
            alpha = np.full(out.shape[:2], top, dtype=info.dtype)
        return _attach_alpha(out, alpha)
    if alpha is not None:
        raise ValueError(f"an alpha channel was given but the file is {info.mode}")
    return out


def _as_file_array(array: np.ndarray, alpha: np.ndarray | None, fmt: str) -> np.ndarray:
    """An array given without an ImageInfo → file layout (see :func:`write_image`)."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)):
        raise ValueError(f"expected an H×W or H×W×C (C ≤ 4) image array, got shape {a.shape}")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * np.uint8(255)
    elif a.dtype.kind == "f":
        a = a.astype(np.float32) if fmt == "tiff" else _quantise(a, "uint8")
    elif a.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"cannot write a {a.dtype.name} array; expected uint8, uint16, float or bool")
    if alpha is not None:
        if a.ndim == 3 and a.shape[2] != 3:
            raise ValueError(f"alpha given for an image that already has {a.shape[2]} channels")
        a = _attach_alpha(a, alpha)
    return a


def _encode(arr: np.ndarray, fmt: str) -> bytes:
    """Encode a file-layout array; an ApirError reason (str) if the format cannot hold it."""
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    depth = arr.dtype.name
    name = _FORMAT_NAME[fmt]
    if fmt == "tiff":
        buf = io.BytesIO()
        tifffile.imwrite(
            buf,
            np.ascontiguousarray(arr),
            photometric="minisblack" if channels <= 2 else "rgb",
            planarconfig="contig" if channels > 1 else None,
            extrasamples=["unassalpha"] if channels in (2, 4) else None,
        )
        return buf.getvalue()
    if depth == "float32":
        raise _Bad(f"{name} cannot store float samples; write a .tif file")
    if fmt in ("jpeg", "bmp") and depth != "uint8":
        raise _Bad(f"{name} stores 8-bit samples only; write .png or .tif to keep {depth} data")
    if fmt == "jpeg" and channels not in (1, 3):
        raise _Bad("JPEG cannot store an alpha channel; write .png or .tif")
    if channels == 2:
        if fmt == "png":
            return _encode_png_gray_alpha(arr)
        raise _Bad(f"{name} cannot store gray+alpha; write .png or .tif")
    if channels == 3:
        arr = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2BGR)
    elif channels == 4:
        arr = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGBA2BGRA)
    params = [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else f".{fmt}", np.ascontiguousarray(arr), params)
    if not ok:
        raise _Bad(f"the {name} encoder failed")
    return buf.tobytes()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _write_bytes(p: Path, data: bytes) -> None:
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(p, data)
    except OSError as err:
        raise ApirError(f"{p}: cannot write image ({err.strerror or _one_line(err)})") from None


def write_image(
    path: str | os.PathLike[str],
    array_or_rgb: np.ndarray,
    info: ImageInfo | None = None,
    alpha: np.ndarray | None = None,
) -> None:
    """Write an image atomically; the format comes from the extension; parent folders are created.

    With ``info`` (typically ``LoadedImage.info``), ``array_or_rgb`` is float RGB in [0, 1] and is
    written in the mode and sample type of ``info`` via :func:`to_file_layout`, with ``alpha``
    re-attached. Writing over ``info.path`` (the input file itself) is refused.

    Without ``info``, ``array_or_rgb`` is written as it is: H×W (gray) or H×W×C with C = 2, 3, 4 in
    RGB(A) order, uint8 or uint16 (bool → 0/255; float → float32 for TIFF, otherwise clipped to
    [0, 1] and rounded to uint8); ``alpha``, if given, is appended to a gray or RGB array.

    Formats: PNG 8/16-bit, 1–4 channels; TIFF uint8/uint16/float32, 1–4 channels (uncompressed);
    JPEG 8-bit gray or RGB (quality 95); BMP 8-bit gray, RGB or RGBA. What a format cannot hold is
    an ApirError naming one that can.
    """
    p = Path(path)
    fmt = _EXT_FORMAT.get(p.suffix.lower())
    if fmt is None:
        raise ApirError(
            f"{p}: cannot write image (unsupported extension {p.suffix or '(none)'!r}; "
            f"use one of {', '.join(IMAGE_EXTENSIONS)})"
        )
    if info is not None:
        if info.path is not None and _same_file(p, Path(info.path)):
            raise ApirError(f"{p}: refusing to overwrite the input image; choose another output path")
        arr = to_file_layout(array_or_rgb, info, alpha)
    else:
        arr = _as_file_array(array_or_rgb, alpha, fmt)
    try:
        data = _encode(arr, fmt)
    except _Bad as err:
        raise ApirError(f"{p}: cannot write image ({err})") from None
    _write_bytes(p, data)


def write_mask(path: str | os.PathLike[str], mask: np.ndarray) -> None:
    """Write a defect mask atomically as a uint8 0/255 gray image (PNG: the MVTec convention).

    Non-zero (or True) pixels become 255. JPEG is refused: it would blur the mask's edges.
    """
    p = Path(path)
    if p.suffix.lower() in (".jpg", ".jpeg"):
        raise ApirError(f"{p}: cannot write mask (JPEG is lossy; write a .png mask)")
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[..., 0]
    if m.ndim != 2:
        raise ValueError(f"expected an H×W mask, got shape {m.shape}")
    write_image(p, np.where(m != 0, np.uint8(255), np.uint8(0)))


# ---------------------------------------------------------------------------------- listing


def list_images(folder: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """Image files in ``folder`` (and, if ``recursive``, its sub-folders), sorted.

    Files are picked by extension (:data:`IMAGE_EXTENSIONS`, any case); hidden files and hidden
    folders (names starting with ".", which includes apir's temporary files) are skipped. Symlinked
    folders are not followed.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ApirError(f"{root}: not a folder" if root.exists() else f"{root}: folder not found")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")] if recursive else []
        base = Path(dirpath)
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                candidate = base / name
                if candidate.is_file():
                    found.append(candidate)
    return sorted(found)
