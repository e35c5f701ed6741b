"""Image files in and out: camera images to float RGB and back to the file's own mode and depth.

Models work on float32 RGB in [0, 1]; users bring 8- and 16-bit gray, RGB and RGBA files in PNG, TIFF,
JPEG and BMP. :func:`read_image` gives a :class:`LoadedImage` (float RGB, the untouched alpha and an
:class:`ImageInfo`); :func:`write_image` with that ``info`` writes a result back in the same mode and
depth, so read → :func:`to_file_layout` reproduces the file's samples exactly. ``docs/data.md``
("Image modes") has the full mapping (gray, alpha, palettes, float TIFF, orientation, metadata).

The format comes from the content (:mod:`apir.data.imageformats`, which also refuses huge and broken
files before decoding); writing takes it from the extension. OpenCV decodes and encodes PNG, JPEG and
BMP on bytes (its file functions fail on non-ASCII paths on some platforms), tifffile TIFF, pypng
gray+alpha PNG. Every write is atomic and creates missing parent folders.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tifffile

from apir.data import imageformats as formats
from apir.data.imageformats import BadFile, one_line, reading
from apir.errors import ApirError, safe_name
from apir.fsutil import atomic_write_bytes

__all__ = ["IMAGE_EXTENSIONS", "ImageInfo", "LoadedImage", "list_images", "mask_is_binary", "read_image"]
__all__ += ["read_info", "read_mask", "read_raw", "to_file_layout", "write_image", "write_mask"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_EXT_FORMAT = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff", ".bmp": "bmp"}
_DTYPES = ("uint8", "uint16", "float32")
_MODES = {1: "gray", 2: "gray+alpha", 3: "rgb", 4: "rgba"}
# EXIF / TIFF Orientation → the array operation that shows the image upright (as PIL's exif_transpose)
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


@dataclass(frozen=True)
class ImageInfo:
    """What an image file holds (not the pixels): size upright, ``channels`` (1 gray, 2 gray+alpha,
    3 RGB, 4 RGBA), sample ``dtype`` (uint8, uint16, float32) and the ``format`` recognised from its
    content ("png", "jpeg", "tiff", "bmp"; None for an info made up by hand)."""

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


# ---------------------------------------------------------------------------------- reading


def _decode_cv2(data: bytes, fmt: str, header: formats.Header) -> np.ndarray:
    name = formats.FORMAT_NAME[fmt]
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as err:
        raise BadFile(f"corrupt {name} ({one_line(err)})") from None
    if arr is None:
        raise BadFile(f"corrupt or unsupported {name} data (the decoder failed)")
    if arr.dtype not in (np.uint8, np.uint16):
        raise BadFile(f"unsupported sample type {arr.dtype.name}")
    arr = arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB if arr.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
        if header.channels == 2:  # gray+alpha PNG, decoded as BGRA with B = G = R
            arr = np.ascontiguousarray(arr[..., [0, 3]])
    elif arr.ndim == 3 and arr.shape[2] != 2:
        raise BadFile(f"unsupported image with {arr.shape[2]} channels")
    if arr.shape[:2] != (header.height, header.width):
        raise BadFile(f"corrupt {name} (decoded size differs from the header)")
    return arr


def read_raw(path: str | os.PathLike[str]) -> tuple[np.ndarray, ImageInfo]:
    """The file's samples, upright, in RGB(A) order: H×W or H×W×C, uint8/uint16/float32."""
    p = Path(path)
    with reading(p), formats.open_file(p) as fh:
        try:
            data = fh.read()
        except OSError as err:
            raise BadFile(err.strerror or one_line(err)) from None
        fmt = formats.sniff(data[:4096])
        if fmt == "tiff":
            arr, header = formats.decode_tiff(data)
        else:
            header = formats.header(io.BytesIO(data), fmt, full=True)  # checks size and integrity first
            formats.check_pixels(header.height, header.width)
            arr = _decode_cv2(data, fmt, header)
        if header.orientation in _ORIENT:
            arr = np.ascontiguousarray(_ORIENT[header.orientation](arr))
    channels = 1 if arr.ndim == 2 else int(arr.shape[2])
    return arr, ImageInfo(p, arr.shape[0], arr.shape[1], channels, arr.dtype.name, channels in (2, 4), fmt)


def read_info(path: str | os.PathLike[str]) -> ImageInfo:
    """Equal to ``read_image(path).info``, from the header where the format allows: no size limit
    applies (nothing is decoded, except for BMP), so this is how to see how large an image is."""
    p = Path(path)
    with reading(p):
        with formats.open_file(p) as fh:
            fmt = formats.sniff(fh.read(4096))
            fh.seek(0)
            header = formats.header(fh, fmt, full=False)
        if header.channels is None:
            return read_raw(p)[1]
        h, w = (header.width, header.height) if header.orientation >= 5 else (header.height, header.width)
        return ImageInfo(p, h, w, header.channels, header.dtype, header.channels in (2, 4), fmt)


def read_image(path: str | os.PathLike[str]) -> LoadedImage:
    """Read an image as float32 H×W×3 RGB in [0, 1], its alpha (file dtype, untouched) and its info.

    Any problem with the file raises ``ApirError("<path>: cannot read image (<reason>)")``; so do NaN
    or infinite float samples, which clipping would silently turn into black or white.
    """
    arr, info = read_raw(path)
    alpha = np.ascontiguousarray(arr[..., -1]) if info.has_alpha else None
    arr = arr[..., 0] if info.channels == 2 else arr[..., :3] if info.channels == 4 else arr
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            with reading(Path(path)):
                raise BadFile(f"{bad} of {arr.size} float samples are NaN or infinite; fix or mask them")
        rgb = np.clip(arr.astype(np.float32), 0.0, 1.0)
    else:
        rgb = arr.astype(np.float32) / np.float32(255 if arr.dtype == np.uint8 else 65535)
    rgb = np.repeat(rgb[..., None], 3, axis=2) if rgb.ndim == 2 else rgb
    return LoadedImage(rgb=np.ascontiguousarray(rgb), alpha=alpha, info=info)


def _mask_colour(path: str | os.PathLike[str]) -> tuple[np.ndarray, ImageInfo]:
    """A mask's colour samples (alpha dropped): H×W or H×W×3."""
    arr, info = read_raw(path)
    return (arr[..., 0] if info.channels == 2 else arr[..., :3] if info.channels == 4 else arr), info


def read_mask(path: str | os.PathLike[str], shape: tuple[int, int] | None = None) -> np.ndarray:
    """A defect mask as bool H×W: a pixel is defect if any colour channel is > 0 (alpha is ignored).

    In JPEG masks compression noise puts small values around every edge, so there a channel must be
    >= 128. With ``shape`` (height, width), a mask of another size is an ApirError naming both.
    """
    arr, info = _mask_colour(path)
    if shape is not None and info.shape != tuple(shape):
        raise ApirError(
            f"{safe_name(path)}: mask size {info.width}x{info.height} differs from image size "
            f"{shape[1]}x{shape[0]}"
        )
    defect = arr >= 128 if info.format == "jpeg" else arr > 0
    return np.ascontiguousarray(defect.any(axis=2) if defect.ndim == 3 else defect)


def mask_is_binary(path: str | os.PathLike[str]) -> bool:
    """True if the mask holds at most two values, 0 and one other (alpha ignored)."""
    nonzero = (arr := _mask_colour(path)[0])[arr != 0]
    return bool(nonzero.size == 0 or np.all(nonzero == nonzero.flat[0]))


# ---------------------------------------------------------------------------------- writing


def _quantise(x: np.ndarray, dtype: str) -> np.ndarray:
    """Float samples → ``dtype``: clip to [0, 1] (NaN → 0) and round, or keep float32."""
    x = np.clip(np.nan_to_num(np.asarray(x, np.float32), nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    return x if dtype == "float32" else np.rint(x * np.float32(np.iinfo(dtype).max)).astype(dtype)


def _attach_alpha(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    alpha = np.asarray(alpha)
    alpha = alpha[..., 0] if alpha.ndim == 3 and alpha.shape[2] == 1 else alpha
    if alpha.shape != colour.shape[:2]:
        raise ValueError(f"alpha of shape {alpha.shape} does not match the image's {colour.shape[:2]}")
    if alpha.dtype != colour.dtype:
        raise ValueError(
            f"alpha is {alpha.dtype.name} but the image is {colour.dtype.name}; the alpha channel is "
            "passed through unchanged, so it must already be in the file's sample type"
        )
    return np.concatenate([colour.reshape(*colour.shape[:2], -1), alpha[..., None]], axis=2)


def to_file_layout(rgb: np.ndarray, info: ImageInfo, alpha: np.ndarray | None = None) -> np.ndarray:
    """Float RGB in [0, 1] (H×W×3) → the array the file of ``info`` holds, ready to encode.

    Gray files get the mean of R, G and B in float64 (exact for a replicated gray image); values are
    clipped to [0, 1] and rounded to the nearest uint8/uint16 step (float32 files keep the clipped
    floats). ``alpha`` (in the file's dtype, e.g. ``LoadedImage.alpha``) is re-attached unchanged;
    without one a file with alpha is fully opaque. Returns H×W for gray, else H×W×C in RGB(A) order.
    """
    a = np.asarray(rgb)
    a = a[..., None] if a.ndim == 2 else a
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
        top = 1.0 if info.dtype == "float32" else np.iinfo(info.dtype).max
        return _attach_alpha(out, np.full(out.shape[:2], top, info.dtype) if alpha is None else alpha)
    if alpha is not None:
        raise ValueError(f"an alpha channel was given but the file is {info.mode}")
    return out


def _as_file_array(array: np.ndarray, alpha: np.ndarray | None, fmt: str) -> np.ndarray:
    """An array given without an ImageInfo → file layout (see :func:`write_image`)."""
    a = np.asarray(array)
    a = a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)):
        raise ValueError(f"expected an H×W or H×W×C (C ≤ 4) image array, got shape {a.shape}")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * np.uint8(255)
    elif a.dtype.kind == "f":
        a = a.astype(np.float32) if fmt == "tiff" else _quantise(a, "uint8")
    elif a.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"cannot write a {a.dtype.name} array; expected uint8, uint16, float or bool")
    if alpha is not None and a.ndim == 3 and a.shape[2] != 3:
        raise ValueError(f"alpha given for an image that already has {a.shape[2]} channels")
    return a if alpha is None else _attach_alpha(a, alpha)


def _encode(arr: np.ndarray, fmt: str) -> bytes:
    """Encode a file-layout array; BadFile naming a format that works if this one cannot hold it."""
    channels, depth, name = 1 if arr.ndim == 2 else arr.shape[2], arr.dtype.name, formats.FORMAT_NAME[fmt]
    arr = np.ascontiguousarray(arr)
    if fmt == "tiff":
        buf = io.BytesIO()
        tifffile.imwrite(
            buf,
            arr,
            photometric="minisblack" if channels <= 2 else "rgb",
            planarconfig="contig" if channels > 1 else None,
            extrasamples=["unassalpha"] if channels in (2, 4) else None,
        )
        return buf.getvalue()
    if depth == "float32":
        raise BadFile(f"{name} cannot store float samples; write a .tif file")
    if fmt in ("jpeg", "bmp") and depth != "uint8":
        raise BadFile(f"{name} stores 8-bit samples only; write .png or .tif to keep {depth} data")
    if fmt == "jpeg" and channels not in (1, 3):
        raise BadFile("JPEG cannot store an alpha channel; write .png or .tif")
    if channels == 2 and fmt != "png":
        raise BadFile(f"{name} cannot store gray+alpha; write .png or .tif")
    if channels == 2:
        return formats.encode_png_gray_alpha(arr)
    if channels > 2:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR if channels == 3 else cv2.COLOR_RGBA2BGRA)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else f".{fmt}", arr, params)
    if not ok:
        raise BadFile(f"the {name} encoder failed")
    return buf.tobytes()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def write_image(
    path: str | os.PathLike[str],
    array_or_rgb: np.ndarray,
    info: ImageInfo | None = None,
    alpha: np.ndarray | None = None,
) -> None:
    """Write an image atomically; the format comes from the extension; parent folders are created.

    With ``info`` (typically ``LoadedImage.info``), ``array_or_rgb`` is float RGB in [0, 1] written in
    the mode and sample type of ``info`` (:func:`to_file_layout`), with ``alpha`` re-attached; writing
    over ``info.path`` (the input file itself) is refused. Without ``info``, the array is written as it
    is: H×W or H×W×C (C = 2, 3, 4, RGB(A) order), uint8 or uint16 (bool → 0/255; float → float32 for
    TIFF, else clipped and rounded to uint8); ``alpha`` is appended to a gray or RGB array.

    PNG: 8/16-bit, 1–4 channels; TIFF: uint8/uint16/float32, 1–4 channels, uncompressed; JPEG: 8-bit
    gray or RGB, quality 95; BMP: 8-bit gray, RGB or RGBA. What a format cannot hold is an ApirError
    naming one that can.
    """
    p = Path(path)
    fmt = _EXT_FORMAT.get(p.suffix.lower())
    if fmt is None:
        raise ApirError(
            f"{safe_name(p)}: cannot write image (unsupported extension {p.suffix or '(none)'!r}; "
            f"use one of {', '.join(IMAGE_EXTENSIONS)})"
        )
    if info is not None and info.path is not None and _same_file(p, Path(info.path)):
        raise ApirError(f"{safe_name(p)}: refusing to overwrite the input image; choose another output path")
    arr = (
        to_file_layout(array_or_rgb, info, alpha)
        if info is not None
        else _as_file_array(array_or_rgb, alpha, fmt)
    )
    try:
        data = _encode(arr, fmt)
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(p, data)
    except BadFile as err:
        raise ApirError(f"{safe_name(p)}: cannot write image ({err})") from None
    except OSError as err:
        raise ApirError(f"{safe_name(p)}: cannot write image ({err.strerror or one_line(err)})") from None


def write_mask(path: str | os.PathLike[str], mask: np.ndarray) -> None:
    """Write a defect mask atomically as a uint8 0/255 gray image (PNG: the MVTec convention).

    Non-zero (or True) pixels become 255. JPEG is refused: it would blur the mask's edges.
    """
    p = Path(path)
    if p.suffix.lower() in (".jpg", ".jpeg"):
        raise ApirError(f"{safe_name(p)}: cannot write mask (JPEG is lossy; write a .png mask)")
    m = np.asarray(mask)
    m = m[..., 0] if m.ndim == 3 and m.shape[2] == 1 else m
    if m.ndim != 2:
        raise ValueError(f"expected an H×W mask, got shape {m.shape}")
    write_image(p, np.where(m != 0, np.uint8(255), np.uint8(0)))


def list_images(folder: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """Image files in ``folder`` (and, if ``recursive``, its sub-folders), sorted.

    Files are picked by extension (:data:`IMAGE_EXTENSIONS`, any case); hidden files and folders
    (names starting with ".", which includes apir's temporary files) are skipped; symlinked folders
    are not followed.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ApirError(f"{safe_name(root)}: {'not a folder' if root.exists() else 'folder not found'}")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")] if recursive else []
        for name in filenames:
            path = Path(dirpath) / name
            if not name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
                found.append(path)
    return sorted(found)
