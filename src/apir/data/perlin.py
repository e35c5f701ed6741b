"""Vectorised 2-D Perlin (gradient) noise for defect synthesis.

Perlin noise is the standard source of anomaly shapes in DRAEM-style training because it makes
irregular, blob-like regions at a controllable scale. It is hand-rolled here (rather than taken from
a package such as ``noise`` or ``perlin-numpy``) because those either loop per pixel in Python/C
without a seedable ``np.random.Generator``, or cannot sample at rotated or arbitrary coordinates,
which the defect generator needs to rotate shapes without border artefacts.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from apir.errors import ApirError

# Unit-gradient 2-D Perlin noise is bounded by sqrt(2)/2; scaling by sqrt(2) maps it into [-1, 1].
_NORM = np.float32(math.sqrt(2.0))


def _fade(t: np.ndarray) -> np.ndarray:
    """Perlin's quintic fade 6t^5 - 15t^4 + 10t^3: C2-continuous, so the noise has no visible grid."""
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def gradient_lattice(ny: int, nx: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random unit gradients on an (ny+1)×(nx+1) lattice, as separate x and y components."""
    angles = rng.uniform(0.0, 2.0 * np.pi, size=(ny + 1, nx + 1))
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def noise_at(u: np.ndarray, v: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Perlin noise at lattice coordinates ``u`` (x) and ``v`` (y), in [-1, 1].

    Coordinates may be any float arrays of one shape (e.g. rotated pixel grids); they must lie within
    the lattice, i.e. ``0 <= u <= gx.shape[1] - 1`` and ``0 <= v <= gx.shape[0] - 1``.
    """
    ny, nx = gx.shape[0] - 1, gx.shape[1] - 1
    u = np.asarray(u, dtype=np.float32)
    v = np.asarray(v, dtype=np.float32)
    # Cell corners stay float32 so the arithmetic below is not promoted to float64 by integer indices.
    fi = np.clip(np.floor(u), 0, nx - 1)
    fj = np.clip(np.floor(v), 0, ny - 1)
    fx = u - fi
    fy = v - fj
    i, j = fi.astype(np.intp), fj.astype(np.intp)
    # Gather the four corner gradients through flat indices: one fancy index per component and corner.
    flat = j * (nx + 1) + i
    gxf, gyf = gx.ravel(), gy.ravel()
    c00, c10, c01, c11 = flat, flat + 1, flat + nx + 1, flat + nx + 2
    fx1, fy1 = fx - 1.0, fy - 1.0
    n00 = gxf[c00] * fx + gyf[c00] * fy
    n10 = gxf[c10] * fx1 + gyf[c10] * fy
    n01 = gxf[c01] * fx + gyf[c01] * fy1
    n11 = gxf[c11] * fx1 + gyf[c11] * fy1
    sx, sy = _fade(fx), _fade(fy)
    top = n00 + sx * (n10 - n00)
    bottom = n01 + sx * (n11 - n01)
    out = (top + sy * (bottom - top)) * _NORM
    return np.clip(out, -1.0, 1.0, out=out).astype(np.float32, copy=False)


def _check_shape_scale(shape: tuple[int, int], scale: tuple[float, float]) -> tuple[int, int, float, float]:
    try:
        h, w = (int(s) for s in shape)
        sy, sx = (float(s) for s in scale)
    except (TypeError, ValueError) as err:
        raise ApirError(
            f"perlin noise needs shape=(H, W) and scale=(sy, sx), got {shape!r}, {scale!r}"
        ) from err
    if h < 1 or w < 1 or not (sy > 0 and sx > 0 and math.isfinite(sy) and math.isfinite(sx)):
        raise ApirError(
            f"perlin noise needs a positive shape and scale, got shape={shape!r}, scale={scale!r}"
        )
    return h, w, sy, sx


def perlin_noise(
    shape: tuple[int, int], scale: tuple[float, float], rng: np.random.Generator, *, angle: float = 0.0
) -> np.ndarray:
    """2-D Perlin noise of ``shape`` (H, W) in [-1, 1], float32.

    ``scale`` = (sy, sx) is the number of lattice cells along each axis, i.e. roughly how many blobs
    fit across the image (DRAEM's ``res``); it need not divide the shape. ``angle`` (radians) rotates
    the lattice about the image centre, which rotates the blob shapes without padding artefacts.
    """
    h, w, sy, sx = _check_shape_scale(shape, scale)
    # Pixel centres relative to the image centre, rotated, then converted to lattice units.
    ys = (np.arange(h, dtype=np.float32) + 0.5 - h / 2.0)[:, None]
    xs = (np.arange(w, dtype=np.float32) + 0.5 - w / 2.0)[None, :]
    if angle:
        c, s = np.float32(math.cos(angle)), np.float32(math.sin(angle))
        xr, yr = c * xs - s * ys, s * xs + c * ys
    else:
        xr, yr = np.broadcast_to(xs, (h, w)), np.broadcast_to(ys, (h, w))
    u = xr * np.float32(sx / w)
    v = yr * np.float32(sy / h)
    u = u - u.min()
    v = v - v.min()
    nx = max(1, math.ceil(float(u.max()) + 1e-6))
    ny = max(1, math.ceil(float(v.max()) + 1e-6))
    gx, gy = gradient_lattice(ny, nx, rng)
    return noise_at(u, v, gx, gy)


def perlin_noise_fast(
    shape: tuple[int, int], scale: tuple[float, float], rng: np.random.Generator, *, angle: float = 0.0
) -> np.ndarray:
    """:func:`perlin_noise`, computed on a coarser grid (>= 8 px per cell) and upsampled bilinearly.

    Coarse Perlin noise is so smooth that evaluating it at every pixel wastes time (most of the cost
    of a 512² defect); the interpolation error is far below anything a threshold or blend can show.
    """
    h, w, sy, sx = _check_shape_scale(shape, scale)
    f = int(np.clip(min(h / sy, w / sx) // 8, 1, 32))
    if f == 1:
        return perlin_noise((h, w), (sy, sx), rng, angle=angle)
    small = perlin_noise((-(-h // f), -(-w // f)), (sy, sx), rng, angle=angle)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def fractal_noise(
    shape: tuple[int, int],
    scale: tuple[float, float],
    rng: np.random.Generator,
    *,
    octaves: int = 3,
    persistence: float = 0.5,
) -> np.ndarray:
    """Sum of Perlin octaves (each twice as fine, ``persistence`` times as strong), in [-1, 1].

    Single-octave Perlin looks too smooth for stains and textures; a few octaves add the ragged
    detail that real surface contamination has.
    """
    h, w, sy, sx = _check_shape_scale(shape, scale)
    total = np.zeros((h, w), dtype=np.float32)
    amp, norm = 1.0, 0.0
    for k in range(max(1, int(octaves))):
        f = 2.0**k
        total += np.float32(amp) * perlin_noise_fast((h, w), (sy * f, sx * f), rng)
        norm += amp
        amp *= persistence
    total /= np.float32(norm)
    return total
