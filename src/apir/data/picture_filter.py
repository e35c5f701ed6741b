"""Which package pictures are fit to train a restorer on, and which of them are the same picture.

A restorer learns what a clean image is from its training pictures, so every artefact in them is
learned as signal: JPEG blocking of low-quality files, sharpening halos, the flat colours of renders
and icons, and maps that are not pictures at all (normal, specular, height and alpha maps). The rules
below (short side ≥ 256 px, lossless or JPEG quality ≥ 90, opaque, photographic colour statistics,
no map/icon/sky names) follow the field notes' image-by-image check of these packages; each rejection
carries its reason so ``corpus_info.json`` can say why a file is out.

Hand-rolled on purpose, each a few lines: the JPEG quality estimate (Pillow exposes the quantisation
tables but no quality; the inverse of libjpeg's quality scaling is standard), and a difference hash for
near-duplicates (the ``imagehash`` package would add a dependency chain for eight lines).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

MIN_SHORT_SIDE = 256
MIN_JPEG_QUALITY = 90
MAX_FLAT_FRACTION = 0.25
MAX_PICTURE_PIXELS = 64_000_000  # larger files are refused before decoding (decompression bombs)

# libjpeg's standard luminance quantisation table (ITU T.81 Annex K), quality 50.
_STD_LUMA = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56]
    + [14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92]
    + [49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    dtype=np.float64,
)

# Name tokens of files that are not photographs of a surface: maps, masks, renders, UI, sky, effects.
_NOT_A_PICTURE = re.compile(
    r"(^|[_\-. ])(nm|norm|normal|normals|n|nrm|bump|height|disp|displace|s|spec|specular|gloss|"
    r"glow|emissive|luma|ao|occlusion|roughness|metallic|mask|colormask|alpha|shadow|"
    r"lightmap|icon|logo|font|gui|hud|button|cursor|sky|skybox|cloud|clouds|particle|flare|spark|"
    r"smoke|fire|explosion|decal|banner|screenshot|thumb|preview)([_\-. ]|$)",
    re.I,
)


@dataclass(frozen=True)
class Verdict:
    """A picture's fate: ``image`` (uint8 H×W×3, or H×W for gray) when usable, else ``reason``."""

    image: np.ndarray | None
    reason: str | None
    quality: int | None  # estimated JPEG quality; None for lossless files

    @property
    def usable(self) -> bool:
        return self.image is not None


def jpeg_quality(img: Image.Image) -> int | None:
    """libjpeg quality (1-100) that would produce ``img``'s luminance table; None if not a JPEG."""
    tables = getattr(img, "quantization", None)
    if not tables:
        return None
    luma = np.asarray(tables[min(tables)], dtype=np.float64)
    scale = 100.0 * luma.mean() / _STD_LUMA.mean()
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return int(np.clip(round(quality), 1, 100))


def _looks_like_normal_map(rgb: np.ndarray) -> bool:
    """Tangent-space normal maps are bluish-violet: mean ≈ (0.5, 0.5, ≥ 0.75) with little colour spread."""
    mean = rgb.reshape(-1, 3).mean(axis=0) / 255.0
    return bool(mean[2] > 0.7 and abs(mean[0] - 0.5) < 0.12 and abs(mean[1] - 0.5) < 0.12)


def judge(name: str, data: bytes) -> Verdict:
    """Decide whether the file ``name`` with bytes ``data`` is a usable photographic picture."""
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    if _NOT_A_PICTURE.search(stem):
        return Verdict(None, "name says map, mask, icon, sky or effect", None)
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            if w * h > MAX_PICTURE_PIXELS:
                return Verdict(None, f"too large ({w}×{h})", None)
            if min(w, h) < MIN_SHORT_SIDE:
                return Verdict(None, f"short side {min(w, h)} px < {MIN_SHORT_SIDE}", None)
            quality = jpeg_quality(img) if img.format == "JPEG" else None
            if quality is not None and quality < MIN_JPEG_QUALITY:
                return Verdict(None, f"JPEG quality {quality} < {MIN_JPEG_QUALITY}", quality)
            if img.mode in ("I;16", "I", "F"):
                img = img.point(lambda v: v / 256).convert("L") if img.mode == "I;16" else img.convert("L")
            has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
            converted = img.convert("RGBA" if has_alpha else ("L" if img.mode in ("L", "1") else "RGB"))
            arr = np.asarray(converted)
    except Exception as e:  # any decoder error: the file is simply not usable
        return Verdict(None, f"unreadable ({type(e).__name__})", None)
    if has_alpha:
        if arr[..., 3].min() < 250:
            return Verdict(None, "transparent pixels (alpha map or cut-out)", quality)
        arr = arr[..., :3]
    if arr.ndim == 3 and np.abs(arr.astype(np.int16) - arr[..., :1]).max() <= 2:
        arr = arr[..., 0]  # an RGB file holding a gray picture is gray
    small = cv2.resize(arr, (128, 128), interpolation=cv2.INTER_AREA)
    if arr.ndim == 3 and _looks_like_normal_map(small):
        return Verdict(None, "colours of a normal map", quality)
    if small.std() < 6:
        return Verdict(None, "nearly flat", quality)
    flat = flat_fraction(downscale(arr))
    if flat > MAX_FLAT_FRACTION:
        return Verdict(None, f"perfectly smooth areas ({flat:.0%}): a render or gradient", quality)
    colours = len(np.unique(small.reshape(-1, small.shape[-1] if small.ndim == 3 else 1), axis=0))
    if colours < (2500 if arr.ndim == 3 else 96):
        return Verdict(None, f"few distinct colours ({colours}): render or drawing", quality)
    return Verdict(arr, None, quality)


def flat_fraction(image: np.ndarray) -> float:
    """Share of 8×8 blocks whose gray values vary by less than one 8-bit step (std < 1).

    A camera's sensor noise and a real surface's texture leave no such block; renders, gradients and
    drawings (most of plasma's wallpapers, game character skins) are full of them.
    """
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape[0] // 8 * 8, gray.shape[1] // 8 * 8
    blocks = gray[:h, :w].astype(np.float32).reshape(h // 8, 8, w // 8, 8)
    return float((blocks.std(axis=(1, 3)) < 1.0).mean())


def downscale(image: np.ndarray, factor: int = 2) -> np.ndarray:
    """Area-average by ``factor``: halves noise, JPEG blocking and sharpening halos of the source."""
    h, w = image.shape[:2]
    return cv2.resize(image, (w // factor, h // factor), interpolation=cv2.INTER_AREA)


def dhash(image: np.ndarray) -> int:
    """64-bit difference hash of a picture (gray 9×8, sign of horizontal differences)."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def near_duplicates(hashes: list[int], max_distance: int = 4) -> list[int | None]:
    """For each hash the index of an earlier near-identical one (Hamming distance ≤ max), else None."""
    arr = np.array(hashes, dtype=np.uint64)
    out: list[int | None] = []
    for i, h in enumerate(arr):
        if i == 0:
            out.append(None)
            continue
        x = np.bitwise_xor(arr[:i], h)
        dist = np.array([bin(int(v)).count("1") for v in x])
        hits = np.nonzero(dist <= max_distance)[0]
        out.append(int(hits[0]) if len(hits) else None)
    return out


_VARIANT = re.compile(
    r"([_\-. ]?\d+|[_\-. ](?:[a-z]|v\d+|var\d*|diffuse|diff|col|color|colour|albedo|base|tile))$", re.I
)


def family(name: str) -> str:
    """The texture family of a file name: variants such as ``rock_a``, ``rock02`` or ``rock_diffuse``
    belong to ``rock``, so a held-out picture never has a sibling variant in the training set."""
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0].lower()
    while True:
        shorter = _VARIANT.sub("", stem)
        if shorter == stem or len(shorter) < 3:
            return stem
        stem = shorter
