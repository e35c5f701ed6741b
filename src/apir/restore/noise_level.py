"""The noise level a noise-level-aware model is told: given by the user, or estimated from the image.

A model that takes a σ map (FFDNet/DRUNet style, ``level_input`` in :mod:`apir.models.nafnet`) is blind
only if something supplies the map. The estimator is Donoho's: the median absolute value of the finest
diagonal (Haar) wavelet coefficients over 0.6745, averaged over channels, as in scikit-image's
``estimate_sigma``, with one change that makes it hand-rolled: 2×2 blocks whose mean lies within 2σ of
0 or 1 are left out (iterated from a first estimate). Noise is clipped where the image saturates, so
those blocks read too little noise: ``estimate_sigma``, which cannot leave them out, under-read σ 25 /
40 / 50 as 22.2 / 33.2 / 39.9 on the astronaut crop of ``tests/restore/test_noise_level.py``; this
estimator reads 26.3 / 41.1 / 52.0 (fine texture reads as a little noise: σ 0 gives 1-6). On the
unseen set's 166 test images (``benchmarks/results/noise_estimator_unseen.md``) its mean absolute
error is lower than ``estimate_sigma``'s under σ 25, σ 50 and both blur + noise presets (σ 50: 2.8
against 7.2, which under-reads by 7), higher at σ 15 (2.4 against 1.7: texture adds to a low σ). No
training, milliseconds per megapixel; ``benchmarks/quality.py`` reports the estimated-σ and true-σ rows
side by side.

``strength`` multiplies the level: below 1 the model believes the image cleaner than it is and keeps
more of the input (faint defects too); above 1 it smooths more.
"""

from __future__ import annotations

import numpy as np

from apir.errors import ApirError

_MAD_TO_SIGMA = 1 / 0.6744897501960817  # σ of a normal = MAD / Φ⁻¹(3/4)
_CLIP = 1.0 / 510  # within half an 8-bit step of 0 or 1 counts as clipped
MAX_LEVEL = 255.0  # σ on the 0-255 scale; the models were trained up to 50


def estimate_noise_sigma(rgb: np.ndarray) -> float:
    """Estimated Gaussian noise σ (0-255 scale) of a float H×W×3 image in [0, 1]."""
    gray = bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]))
    planes = [rgb[..., 0]] if gray else [rgb[..., c] for c in range(rgb.shape[2])]
    h, w = (rgb.shape[0] // 2) * 2, (rgb.shape[1] // 2) * 2
    if h == 0 or w == 0:
        return 0.0
    sigmas = []
    for plane in planes:
        p = plane[:h, :w].astype(np.float64)
        a, b, c, d = p[0::2, 0::2], p[0::2, 1::2], p[1::2, 0::2], p[1::2, 1::2]
        hh = np.abs(a - b - c + d) / 2.0  # finest diagonal Haar band: keeps the σ of iid noise
        mean = (a + b + c + d) / 4.0
        sigma = float(np.median(hh)) * _MAD_TO_SIGMA
        for _ in range(3):  # leave out blocks within 2σ of 0 or 1, where clipping ate noise
            margin = max(2.0 * sigma, _CLIP)
            keep = (mean > margin) & (mean < 1.0 - margin)
            if keep.sum() < max(64, hh.size // 20):
                break
            sigma = float(np.median(hh[keep])) * _MAD_TO_SIGMA
        sigmas.append(sigma)
    return float(np.mean(sigmas) * 255.0)


def check_strength(strength: object) -> float:
    """``strength`` must be a finite number ≥ 0 (one-line ApirError otherwise)."""
    ok = isinstance(strength, int | float | np.floating) and not isinstance(strength, bool)
    if not ok or not np.isfinite(float(strength)) or float(strength) < 0:
        raise ApirError(f"strength must be a number >= 0 (1 = as estimated), got {strength!r}")
    return float(strength)


def check_noise_level(noise_level: object) -> float | np.ndarray | None:
    """None (estimate), a σ in [0, 255], or an H×W (or H×W×1) map of σ values in [0, 255]."""
    if noise_level is None:
        return None
    if isinstance(noise_level, np.ndarray) and noise_level.ndim in (2, 3):
        arr = noise_level[..., 0] if noise_level.ndim == 3 else noise_level
        if noise_level.ndim == 3 and noise_level.shape[2] != 1:
            raise ApirError(f"a noise-level map must be H×W or H×W×1, got shape {noise_level.shape}")
        arr = np.asarray(arr, dtype=np.float32)
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > MAX_LEVEL:
            raise ApirError("a noise-level map must hold finite σ values from 0 to 255")
        return arr
    ok = isinstance(noise_level, int | float | np.floating) and not isinstance(noise_level, bool)
    if not ok or not np.isfinite(float(noise_level)) or not 0 <= float(noise_level) <= MAX_LEVEL:
        raise ApirError(f"noise level must be a σ from 0 to 255 (8-bit scale), got {noise_level!r}")
    return float(noise_level)


def level_map(rgb: np.ndarray, noise_level: float | np.ndarray | None, strength: float) -> np.ndarray:
    """The H×W float32 σ map (0-1 scale) a level-aware model gets for ``rgb``."""
    h, w = rgb.shape[:2]
    level = estimate_noise_sigma(rgb) if noise_level is None else noise_level
    if isinstance(level, np.ndarray):
        if level.shape != (h, w):
            raise ApirError(f"noise-level map is {level.shape[1]}×{level.shape[0]}, the image {w}×{h}")
        return np.ascontiguousarray(level * np.float32(strength / 255.0), dtype=np.float32)
    return np.full((h, w), np.float32(level * strength / 255.0), dtype=np.float32)
