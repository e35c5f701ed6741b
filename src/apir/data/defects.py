"""Synthetic defects with exact pixel masks, for training restoration from good images alone.

apir must denoise and deblur *without* erasing anomalies, but real defective images are rare. Like
DRAEM and anomalib, we paint realistic defects onto good images and keep the defect-free original,
so training and metrics can measure how much of a defect survives restoration.

The mask is the *measured* footprint of the change, not the nominal shape: a pixel is in the mask
when the defect moved it by more than 1/255 in some channel (plus, rarely, pinholes filled inside a
defect's solid core); faint tails of a shape (below 10% opacity) are not painted at all, and every
pixel outside the mask is bit-identical to the input. A nominal-shape mask would label invisible
pixels as defective (anti-aliasing tails, places where a blended texture happens to match the image,
clipped highlights), which would reward a restorer for "preserving" something that was never there.

Contrast is relative to the local image statistics (a scratch on a busy texture needs more contrast
to be seen than on a flat surface) and scaled by ``strength``: about 0.2 is subtle (a few grey levels,
the case restoration tends to erase), 1.0 clearly visible; ``None`` draws uniformly from [0.2, 1.0].
Everything is vectorised numpy/OpenCV so it can run on the fly in DataLoader workers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from scipy import ndimage as ndi

from apir.data.perlin import fractal_noise, perlin_noise, perlin_noise_fast
from apir.errors import ApirError
from apir.registry import Registry

__all__ = ["DEFECT_KINDS", "Defect", "perlin_noise", "random_defect", "synthesize_defect"]

#: Defect generators by kind, with ``min_pixels``: the smallest acceptable mask (below it a defect is a
#: few stray pixels, not a useful example). A new kind: ``@DEFECT_GENERATORS.register("dent",
#: min_pixels=10)`` on a generator with the signature of the built-in ones.
DEFECT_GENERATORS: Registry[Callable[..., Any]] = Registry("defect kind")

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_MIN_CHANGE = np.float32(1.05 / 255)  # a hair above the 1/255 contract, so rounding cannot break it
_MIN_AMP = 4.0 / 255  # any positive strength still yields a (barely) measurable defect
_MAX_ATTEMPTS = 12
_ALPHA_CUT = 0.1  # shape opacity below which a defect's tail is dropped (alpha is 0..1 before contrast)

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 (half-open)
Patch = tuple[Box, np.ndarray, np.ndarray]  # box, additive delta (h×w×1 or h×w×C), shape alpha h×w in [0,1]


@dataclass(frozen=True, eq=False)
class Defect:
    """A defective image, where it differs from the input, and which kind of defect made it."""

    image: np.ndarray  # float32 H×W×C in [0, 1]
    mask: np.ndarray  # bool H×W, True exactly where the defect changed the image
    kind: str


# ----------------------------------------------------------------------------------------- helpers


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] not in (1, 3):
        shape = getattr(image, "shape", type(image).__name__)
        raise ApirError(f"defect synthesis needs an H×W×C image with C=1 or 3, got shape {shape}")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise ApirError(f"defect synthesis needs an image of at least 8×8 pixels, got {image.shape[:2]}")
    if not np.issubdtype(image.dtype, np.floating):
        raise ApirError(f"defect synthesis needs a float image in [0, 1], got dtype {image.dtype}")
    img = image.astype(np.float32, copy=False)
    lo, hi = float(img.min()), float(img.max())
    if not (lo >= 0.0 and hi <= 1.0):
        raise ApirError(f"defect synthesis needs image values in [0, 1], got range [{lo:.3g}, {hi:.3g}]")
    return img


def _resolve_strength(rng: np.random.Generator, strength: float | None) -> float:
    drawn = float(rng.uniform(0.2, 1.0))  # always drawn, so a given seed keeps its geometry at any strength
    if strength is None:
        return drawn
    s = float(strength)
    if not (math.isfinite(s) and 0.0 < s <= 10.0):
        raise ApirError(f"defect strength must be in (0, 10], got {strength!r}")
    return s


def _amp(s: float, std: float, base: float, k: float, hi: float) -> float:
    """Defect contrast: grows with the local texture contrast ``std`` so it stays visible on busy surfaces."""
    return float(np.clip(s * (base + k * std), _MIN_AMP, hi))


def _stats(lum: np.ndarray, box: Box, pad: int = 8) -> tuple[float, float]:
    y0, y1, x0, x1 = box
    region = lum[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad]
    return float(region.mean()), float(region.std())


def _polarity(rng: np.random.Generator, p_bright: float, mean: float, amp: float) -> float:
    """+1 (brighter) or -1 (darker); flipped when the chosen direction would mostly clip away."""
    sign = 1.0 if rng.random() < p_bright else -1.0
    room, other = (1.0 - mean, mean) if sign > 0 else (mean, 1.0 - mean)
    return -sign if room < 0.5 * amp and other > room else sign


def _chroma(hue: float) -> np.ndarray:
    """RGB direction of zero luminance (the YUV chroma plane) at angle ``hue``, max |component| = 1."""
    s, c = math.sin(hue), math.cos(hue)
    v = np.array([1.140 * s, -0.395 * c - 0.581 * s, 2.032 * c], dtype=np.float32)
    return v / np.abs(v).max()


def _box_around(cx: float, cy: float, rx: float, ry: float, h: int, w: int) -> Box | None:
    y0, y1 = max(0, int(math.floor(cy - ry))), min(h, int(math.ceil(cy + ry)) + 1)
    x0, x1 = max(0, int(math.floor(cx - rx))), min(w, int(math.ceil(cx + rx)) + 1)
    return (y0, y1, x0, x1) if y1 > y0 and x1 > x0 else None


def _grid(box: Box, cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
    y0, y1, x0, x1 = box
    dy = (np.arange(y0, y1, dtype=np.float32) - np.float32(cy))[:, None]
    dx = (np.arange(x0, x1, dtype=np.float32) - np.float32(cx))[None, :]
    return np.broadcast_to(dx, (y1 - y0, x1 - x0)), np.broadcast_to(dy, (y1 - y0, x1 - x0))


def _blob_radius(dx: np.ndarray, dy: np.ndarray, rng: np.random.Generator, irregular: float) -> np.ndarray:
    """Distance from the centre of a rotated, squashed, wobbly ellipse (1 px per px along the major axis).

    Low harmonics of the angle perturb the radius, which gives smooth irregular outlines far cheaper
    than warping by noise.
    """
    rot, aspect = rng.uniform(0.0, np.pi), rng.uniform(0.55, 1.0)
    c, s = math.cos(rot), math.sin(rot)
    xr, yr = c * dx + s * dy, (-s * dx + c * dy) / np.float32(aspect)
    phi = np.arctan2(yr, xr)
    ks = np.arange(2, 6, dtype=np.float32)
    amps = rng.uniform(0.0, irregular, 4).astype(np.float32) / ks
    phases = rng.uniform(0.0, 2 * np.pi, 4).astype(np.float32)
    wobble = 1.0 + (amps * np.cos(ks * phi[..., None] + phases)).sum(-1)
    return np.hypot(xr, yr) / wobble


def _path(anchor: np.ndarray, headings: np.ndarray, step: float, centred: bool) -> np.ndarray:
    """Polyline (N+1)×2 (x, y) of unit steps along ``headings``, through ``anchor`` (its middle or start)."""
    d = np.stack([np.cos(headings), np.sin(headings)], axis=-1) * step
    pts = np.concatenate([np.zeros((1, 2)), np.cumsum(d, axis=0)])
    return pts - pts[len(pts) // 2] + anchor if centred else pts + anchor


def _draw(canvas: np.ndarray, pts: np.ndarray, thickness: int) -> None:
    # cv2 anti-aliases only on 8-bit images; shift=4 keeps 1/16-px precision of the vertices.
    cv2.polylines(canvas, [np.round(pts * 16).astype(np.int32)], False, 255, int(thickness), cv2.LINE_AA, 4)


def _canvas_alpha(canvas: np.ndarray, pad: int = 0) -> tuple[Box, np.ndarray] | None:
    rows, cols = np.flatnonzero(canvas.any(axis=1)), np.flatnonzero(canvas.any(axis=0))
    if rows.size == 0:
        return None
    h, w = canvas.shape
    box = (
        max(0, rows[0] - pad),
        min(h, rows[-1] + 1 + pad),
        max(0, cols[0] - pad),
        min(w, cols[-1] + 1 + pad),
    )
    return box, canvas[box[0] : box[1], box[2] : box[3]].astype(np.float32) / 255.0


# ------------------------------------------------------------------------------------ defect kinds


def _scratch(
    img: np.ndarray, lum: np.ndarray, rng: np.random.Generator, s: float, _tex: object
) -> Patch | None:
    h, w = lum.shape
    n_lines = 1 if rng.random() < 0.6 else int(rng.integers(2, 5))
    step, theta = 2.0, rng.uniform(0.0, np.pi)
    n = max(4, int((rng.uniform(0.2, 0.7) * min(h, w) + 6) / step))
    # A gentle constant bend plus a slow random drift of the heading: tool marks are smooth curves.
    headings = (
        theta + rng.uniform(-0.012, 0.012) * np.arange(n) + np.cumsum(rng.normal(0, rng.uniform(0, 0.04), n))
    )
    base = _path(np.array([rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h]), headings, step, True)
    normal = np.array([-math.sin(theta), math.cos(theta)])
    # One scratch of 1-3 px, or a set of finer parallel ones (1-2 px) with clear gaps between them.
    thickness = int(rng.choice(3, p=[0.5, 0.3, 0.2]) if n_lines == 1 else rng.choice(2, p=[0.7, 0.3])) + 1
    spacing = rng.uniform(thickness + 2.0, thickness + 6.0)
    canvas = np.zeros((h, w), np.uint8)
    for k in range(n_lines):  # parallel scratches, as left by grit dragged across a surface
        off = (k - (n_lines - 1) / 2) * spacing + rng.normal(0.0, 0.4)
        a, b = int(rng.integers(0, n // 4 + 1)), n + 1 - int(rng.integers(0, n // 4 + 1))
        _draw(canvas, base[a:b] + off * normal, thickness)
    found = _canvas_alpha(canvas)
    if found is None:
        return None
    box, alpha = found
    hh, ww = alpha.shape
    # Pressure varies along a scratch, so its contrast fades in and out.
    alpha *= 0.6 + 0.4 * perlin_noise_fast((hh, ww), (max(1.0, hh / 24), max(1.0, ww / 24)), rng)
    mean, std = _stats(lum, box)
    amp = _amp(s, std, 0.12, 1.2, 0.6)
    return box, (_polarity(rng, 0.6, mean, amp) * amp * alpha)[..., None], alpha


def _crack_path(
    anchor: np.ndarray,
    theta: float,
    length: float,
    step: float,
    jag: float,
    rng: np.random.Generator,
    centred: bool,
) -> tuple[np.ndarray, np.ndarray]:
    n = max(3, int(length / step))
    trend = theta + np.cumsum(rng.normal(0.0, 0.07, n))  # the crack wanders slowly ...
    return _path(anchor, trend + rng.normal(0.0, jag, n), step, centred), trend  # ... and zigzags fast


def _crack(
    img: np.ndarray, lum: np.ndarray, rng: np.random.Generator, s: float, _tex: object
) -> Patch | None:
    h, w = lum.shape
    length, step = rng.uniform(0.25, 0.7) * min(h, w) + 8, rng.uniform(1.5, 3.0)
    jag, width = rng.uniform(0.25, 0.7), int(rng.choice(3, p=[0.45, 0.35, 0.2])) + 1
    mid = np.array([rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h])
    main, trend = _crack_path(mid, rng.uniform(0, 2 * np.pi), length, step, jag, rng, True)
    canvas = np.zeros((h, w), np.uint8)
    _draw(canvas, main, max(1, width - 1))
    if width > 1:  # widest in the middle, tapering towards the tips
        _draw(canvas, main[len(main) // 4 : 3 * len(main) // 4 + 1], width)
    for _ in range(int(rng.integers(0, 4))):
        i = int(rng.integers(len(main) // 8, len(main) - 1))
        head = trend[min(i, len(trend) - 1)] + rng.choice([-1.0, 1.0]) * rng.uniform(0.35, 1.1)
        branch, btrend = _crack_path(main[i], head, length * rng.uniform(0.15, 0.45), step, jag, rng, False)
        _draw(canvas, branch, 1)
        if rng.random() < 0.3 and len(branch) > 3:
            j = int(rng.integers(1, len(branch) - 1))
            twig_head = btrend[min(j, len(btrend) - 1)] + rng.choice([-1.0, 1.0]) * rng.uniform(0.35, 1.0)
            _draw(
                canvas,
                _crack_path(branch[j], twig_head, length * rng.uniform(0.08, 0.2), step, jag, rng, False)[0],
                1,
            )
    found = _canvas_alpha(canvas, pad=3)
    if found is None:
        return None
    box, alpha = found
    if rng.random() < 0.5:  # a faint shadow along the edges, as a crack's broken rim casts one
        alpha = np.maximum(alpha, 0.25 * cv2.GaussianBlur(alpha, (0, 0), 1.0))
    mean, std = _stats(lum, box)
    amp = _amp(s, std, 0.25, 1.5, 0.85)
    return box, (_polarity(rng, 0.0, mean, amp) * amp * alpha)[..., None], alpha


def _spot(img: np.ndarray, lum: np.ndarray, rng: np.random.Generator, s: float, _tex: object) -> Patch | None:
    h, w, c = img.shape
    n = int(rng.integers(2, 7)) if rng.random() < 0.4 else 1
    radii = rng.uniform(2.0, 10.0, n) if n == 1 else rng.uniform(2.0, 6.0, n)
    cx0, cy0 = rng.uniform(0, w - 1), rng.uniform(0, h - 1)
    centres = np.array([cx0, cy0]) + np.concatenate(
        [np.zeros((1, 2)), rng.normal(0, rng.uniform(3, 10), (n - 1, 2))]
    )
    lo, hi = (centres - radii[:, None] * 1.4 - 2).min(0), (centres + radii[:, None] * 1.4 + 2).max(0)
    box = _box_around(
        (lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, (hi[0] - lo[0]) / 2, (hi[1] - lo[1]) / 2, h, w
    )
    if box is None:
        return None
    edge = rng.uniform(0.8, 3.0)  # edge width in px: crisp paint dots to soft droplets
    alpha = np.zeros((box[1] - box[0], box[3] - box[2]), np.float32)
    for (cx, cy), r in zip(centres, radii, strict=True):
        d = _blob_radius(*_grid(box, cx, cy), rng, 0.25)
        np.maximum(alpha, np.clip((r - d) / min(edge, r) + 0.5, 0.0, 1.0), out=alpha)
    mean, std = _stats(lum, box)
    amp = _amp(s, std, 0.15, 1.5, 0.7)
    look = int(rng.choice(3, p=[0.45, 0.25, 0.3]))  # dark, bright, coloured
    if c == 3 and look == 2:
        hue = rng.uniform(1.9, 2.9) if rng.random() < 0.5 else rng.uniform(0, 2 * np.pi)  # rust is common
        colour = _chroma(hue) + np.float32(rng.uniform(-0.5, 0.3))
        return box, alpha[..., None] * (amp * colour), alpha
    sign = _polarity(rng, 1.0 if look == 1 else 0.0, mean, amp)
    return box, (sign * amp * alpha)[..., None], alpha


def _hole(img: np.ndarray, lum: np.ndarray, rng: np.random.Generator, s: float, _tex: object) -> Patch | None:
    h, w = lum.shape
    r = min(rng.uniform(4.0, 15.0), min(h, w) / 4)
    cx, cy = rng.uniform(r, w - 1 - r), rng.uniform(r, h - 1 - r)
    rim_w, rim_off = rng.uniform(0.8, 2.0), rng.uniform(-0.5, 1.5)
    pad = r + rim_off + 3 * rim_w + 2
    box = _box_around(cx, cy, pad, pad, h, w)
    if box is None:
        return None
    dx, dy = _grid(box, cx, cy)
    edge = _blob_radius(dx, dy, rng, 0.3) - np.float32(r)  # signed distance to the outline, in px
    interior = np.clip(0.5 - edge, 0.0, 1.0)
    light = rng.uniform(0, 2 * np.pi)
    facing = (dx * math.cos(light) + dy * math.sin(light)) / np.float32(r)  # ~[-1, 1] across the hole
    shade = np.clip(0.75 + 0.25 * facing, 0.4, 1.0)  # the pit's wall facing away from the light is darker
    mean, std = _stats(lum, box)
    depth = float(np.clip(s * rng.uniform(0.5, 0.9), 0.03, 0.95))  # fraction of the brightness removed
    floor = _amp(s, std, 0.08, 0.5, 0.3)  # plus an absolute darkening, so pits show on dark surfaces too
    src = img[box[0] : box[1], box[2] : box[3]]
    dark = (interior * shade)[..., None] * (depth * src + np.float32(floor))
    rim = np.exp(-(((edge - rim_off) / rim_w) ** 2)) * (np.abs(edge - rim_off) < 3 * rim_w)
    rim *= 0.6 - 0.4 * facing.clip(-1, 1)  # a raised burr catches the light on one side
    rim_amp = _amp(s, std, 0.12, 1.2, 0.5)
    rim_sign = _polarity(rng, 0.6, mean, rim_amp)
    delta = (rim_sign * rim_amp * rim)[..., None] - dark
    return box, delta.astype(np.float32), np.maximum(interior, np.clip(rim, 0.0, 1.0))


def _stain(
    img: np.ndarray, lum: np.ndarray, rng: np.random.Generator, s: float, _tex: object
) -> Patch | None:
    h, w, c = img.shape
    a = max(5.0, rng.uniform(0.06, 0.2) * min(h, w))
    cx, cy = rng.uniform(0, w - 1), rng.uniform(0, h - 1)
    warp, soft = rng.uniform(0.15, 0.45), rng.uniform(0.25, 0.7)
    box = _box_around(cx, cy, a * (1 + warp) + 2, a * (1 + warp) + 2, h, w)
    if box is None:
        return None
    hh, ww = box[1] - box[0], box[3] - box[2]
    rho = _blob_radius(*_grid(box, cx, cy), rng, 0.2) / np.float32(a)
    cells = (max(1.0, hh / (0.7 * a)), max(1.0, ww / (0.7 * a)))
    rho = rho + np.float32(warp) * fractal_noise((hh, ww), cells, rng)  # ragged, liquid-like outline
    t = np.clip((1.0 - rho) / np.float32(soft), 0.0, 1.0)
    # Soft inside but steepest at the outline: a smoothstep would leave a wide rim of invisible change.
    alpha = 1.0 - (1.0 - t) ** 2
    alpha *= 0.75 + 0.25 * fractal_noise((hh, ww), cells, rng, octaves=2)
    if rng.random() < 0.35:  # coffee-ring tide line: pigment collects at the drying edge
        alpha = np.maximum(0.6 * alpha, np.exp(-(((rho - 1.0 + 0.3 * soft) / (0.04 + 0.05 * soft)) ** 2)))
    mean, std = _stats(lum, box)
    if c == 3:  # mostly a chroma shift (zero-luminance direction) with little luminance change
        hue = rng.uniform(1.9, 2.9) if rng.random() < 0.6 else rng.uniform(0, 2 * np.pi)
        amp = _amp(s, std, 0.1, 0.5, 0.35)
        colour = amp * (_chroma(hue) + np.float32(rng.uniform(-0.3, 0.1)))
        return box, alpha[..., None] * colour, alpha
    amp = _amp(s, std, 0.1, 0.8, 0.4)
    return box, (_polarity(rng, 0.2, mean, amp) * amp * alpha)[..., None], alpha


def _fit_texture(texture: np.ndarray, h: int, w: int, c: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of ``texture``, resized to h×w×c (textures may be any size, uint8 or float)."""
    tex = np.asarray(texture)
    if tex.ndim == 2:
        tex = tex[..., None]
    if tex.ndim != 3 or tex.shape[2] not in (1, 3) or min(tex.shape[:2]) < 2:
        raise ApirError(f"defect texture must be an H×W or H×W×C image with C=1 or 3, got shape {tex.shape}")
    if tex.dtype == np.uint8:
        tex = tex.astype(np.float32) / 255.0
    elif np.issubdtype(tex.dtype, np.floating):
        tex = np.clip(tex.astype(np.float32, copy=False), 0.0, 1.0)
    else:
        raise ApirError(f"defect texture must be uint8 or float in [0, 1], got dtype {tex.dtype}")
    th, tw = tex.shape[:2]
    z = min(th / h, tw / w) * rng.uniform(0.5, 1.0)
    ch, cw = min(th, max(2, round(h * z))), min(tw, max(2, round(w * z)))
    y, x = int(rng.integers(0, th - ch + 1)), int(rng.integers(0, tw - cw + 1))
    crop = cv2.resize(
        np.ascontiguousarray(tex[y : y + ch, x : x + cw]), (w, h), interpolation=cv2.INTER_LINEAR
    )
    crop = crop.reshape(h, w, -1)
    if crop.shape[2] == c:
        return crop
    return (crop @ _LUMA)[..., None] if c == 1 else np.repeat(crop, 3, axis=2)


def _colour_shift(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """DRAEM-style appearance changes of the anomaly source, so it does not blend in invisibly."""
    c = t.shape[2]
    for op in rng.choice(6, size=int(rng.integers(1, 4)), replace=False):
        if op == 0:  # brightness / contrast
            m = t.mean()
            t = (t - m) * np.float32(rng.uniform(0.5, 1.6)) + m + np.float32(rng.uniform(-0.25, 0.25))
        elif op == 1:  # per-channel gain (a tint on colour images)
            t = t * rng.uniform(0.6, 1.4, c).astype(np.float32)
        elif op == 2:
            t = np.clip(t, 0.0, 1.0) ** np.float32(rng.uniform(0.5, 2.0))
        elif op == 3:  # posterize
            levels = np.float32(rng.integers(3, 9))
            t = np.floor(np.clip(t, 0.0, 1.0) * levels) / levels
        elif op == 4:  # solarize
            t = np.where(t > np.float32(rng.uniform(0.4, 0.9)), 1.0 - t, t)
        else:
            t = 1.0 - t
        t = np.clip(t, 0.0, 1.0).astype(np.float32, copy=False)
    return t


def _perlin(
    img: np.ndarray, lum: np.ndarray, rng: np.random.Generator, s: float, texture: np.ndarray | None
) -> Patch | None:
    h, w, c = img.shape
    # Lattice cells of 2^0..2^5 per axis, but never finer than 4 px, as in DRAEM.
    ky = int(rng.integers(0, int(np.clip(math.floor(math.log2(h / 4)), 0, 5)) + 1))
    kx = int(rng.integers(0, int(np.clip(math.floor(math.log2(w / 4)), 0, 5)) + 1))
    noise = perlin_noise_fast((h, w), (2.0**ky, 2.0**kx), rng, angle=rng.uniform(-np.pi, np.pi))
    # Threshold at a quantile rather than a fixed level, so the area is always in 0.4%-15%.
    frac = math.exp(rng.uniform(math.log(0.004), math.log(0.15)))
    sample = (noise[::2, ::2] if h * w > 1 << 16 else noise).ravel()  # the quantile of a subsample will do
    k = max(8, int(sample.size * frac))
    thr = np.partition(sample, sample.size - k)[sample.size - k]
    above = noise > thr
    rows, cols = np.flatnonzero(above.any(1)), np.flatnonzero(above.any(0))
    if rows.size == 0:
        return None
    box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
    alpha = np.clip((noise[box[0] : box[1], box[2] : box[3]] - thr) / np.float32(0.04), 0.0, 1.0)
    src = img[box[0] : box[1], box[2] : box[3]]
    if texture is not None:
        tex = _fit_texture(texture, h, w, c, rng)[box[0] : box[1], box[2] : box[3]]
    elif rng.random() < 0.6:  # the image itself, moved, mirrored or turned: the same material, out of place
        source = img.transpose(1, 0, 2) if h == w and rng.random() < 0.5 else img  # turns oriented textures
        ys = np.arange(box[0], box[1]) + int(rng.integers(0, h))
        xs = np.arange(box[2], box[3]) + int(rng.integers(0, w))
        ys = h - 1 - ys % h if rng.random() < 0.5 else ys % h
        xs = w - 1 - xs % w if rng.random() < 0.5 else xs % w
        tex = source[np.ix_(ys, xs)]
    else:  # structured noise between two random colours
        hh, ww = alpha.shape
        f = (fractal_noise((hh, ww), (rng.uniform(1, 8), rng.uniform(1, 8)), rng)[..., None] + 1) / 2
        c0, c1 = rng.uniform(0, 1, c).astype(np.float32), rng.uniform(0, 1, c).astype(np.float32)
        tex = c0 + f * (c1 - c0)
    tex = _colour_shift(tex, rng)
    # A moved copy of a homogeneous texture is invisible however different its pixels are; what the eye
    # (and a detector) sees is a change of local mean, so make sure the source is offset by enough.
    inside = alpha > 0.5
    if inside.any():
        offset = (tex[inside] - src[inside]).mean(axis=0)
        need = 0.1 + 0.5 * float(src[inside].std())
        if float(np.abs(offset).max()) < need:
            sign = _polarity(rng, 0.5, float(src[inside].mean()), need)
            tex = np.clip(tex + np.float32(sign * need) - offset.mean(), 0.0, 1.0)
    opacity = np.float32(np.clip(s * rng.uniform(0.6, 1.2), 0.05, 1.0))
    return box, (alpha * opacity)[..., None] * (tex - src), alpha


# The built-in kinds, in this order (random_defect draws from it: the order is part of the data).
for _kind, _fn, _min in (
    ("perlin", _perlin, 8),
    ("scratch", _scratch, 10),
    ("crack", _crack, 12),
    ("spot", _spot, 5),
    ("hole", _hole, 12),
    ("stain", _stain, 40),
):
    DEFECT_GENERATORS.add(_kind, _fn, min_pixels=_min)
DEFECT_KINDS: tuple[str, ...] = tuple(DEFECT_GENERATORS.names())


# ------------------------------------------------------------------------------------------ public


def _apply(img: np.ndarray, patch: Patch) -> tuple[np.ndarray, np.ndarray, int]:
    """Add the patch; the mask is where pixels really moved, and only masked pixels are written."""
    (y0, y1, x0, x1), delta, alpha = patch
    src = img[y0:y1, x0:x1]
    new = np.clip(src + delta.astype(np.float32, copy=False), 0.0, 1.0)
    # Faint tails of the shape are cut off rather than labelled: they are not a visible part of it.
    diff = np.abs(new - src)
    moved = np.maximum.reduce([diff[..., i] for i in range(diff.shape[2])])  # faster than .max(axis=2)
    changed = (moved > _MIN_CHANGE) & (alpha >= _ALPHA_CUT)
    n = int(changed.sum())
    mask_c = changed
    core = alpha >= 0.3
    if n and (core & ~changed).any():
        # Fill pinholes in the defect's solid core (e.g. where a texture matched the image), if few.
        filled = changed | (ndi.binary_fill_holes(changed) & core)
        extra = int(filled.sum()) - n
        if 0 < extra <= 0.05 * (n + extra):
            mask_c = filled
    out = img.copy()
    out[y0:y1, x0:x1][mask_c] = new[mask_c]
    mask = np.zeros(img.shape[:2], dtype=bool)
    mask[y0:y1, x0:x1] = mask_c
    return out, mask, n


def synthesize_defect(
    image: np.ndarray,
    kind: str,
    rng: np.random.Generator,
    *,
    texture: np.ndarray | None = None,
    strength: float | None = None,
) -> Defect:
    """Paint one defect of ``kind`` onto a copy of ``image`` (float32 H×W×C in [0, 1], C = 1 or 3).

    ``texture`` is the anomaly source for ``perlin`` defects (any size, e.g. a DTD image; the image
    itself is used when None) and is ignored by the other kinds. ``strength`` scales the contrast
    (≈0.2 subtle, 1 clear; None draws it). The same seed gives the same bytes, and the same seed at
    another strength gives the same shape with another contrast (up to re-draws of invisible ones).
    """
    if kind not in DEFECT_GENERATORS:
        raise ApirError(f"unknown defect kind {kind!r}; expected one of {', '.join(DEFECT_GENERATORS)}")
    img = _check_image(image)
    s = _resolve_strength(rng, strength)
    lum = img[..., 0] if img.shape[2] == 1 else img @ _LUMA
    min_pixels = max(
        DEFECT_GENERATORS.meta(kind)["min_pixels"],
        int(0.001 * img.shape[0] * img.shape[1]) if kind == "perlin" else 0,
    )
    best: tuple[np.ndarray, np.ndarray, int] | None = None
    for _ in range(_MAX_ATTEMPTS):  # re-draw defects that clip away (e.g. a dark crack on black)
        patch = DEFECT_GENERATORS.get(kind)(img, lum, rng, s, texture)
        if patch is None:
            continue
        out, mask, n = _apply(img, patch)
        if n >= min_pixels:
            return Defect(out, mask, kind)
        if n and (best is None or n > best[2]):
            best = (out, mask, n)
    if best is None:
        raise ApirError(
            f"could not paint a visible {kind} defect on this image (is it saturated everywhere?)"
        )
    return Defect(best[0], best[1], kind)


def random_defect(
    image: np.ndarray, rng: np.random.Generator, kinds: Sequence[str] = DEFECT_KINDS, **kw: object
) -> Defect:
    """A defect of a kind drawn uniformly from ``kinds``; ``kw`` goes to :func:`synthesize_defect`."""
    kinds = tuple(kinds)
    if not kinds:
        raise ApirError("random_defect needs at least one defect kind")
    for k in kinds:
        if k not in DEFECT_GENERATORS:
            raise ApirError(f"unknown defect kind {k!r}; expected one of {', '.join(DEFECT_GENERATORS)}")
    return synthesize_defect(image, kinds[int(rng.integers(len(kinds)))], rng, **kw)  # type: ignore[arg-type]
