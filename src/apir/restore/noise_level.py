"""The noise level a noise-level-aware model is told: given by the user, or estimated from the image.

A model that takes a σ map (FFDNet/DRUNet style, ``level_input`` in :mod:`apir.models.nafnet`) is blind
only if something supplies the map. The estimator is scikit-image's wavelet estimate (Donoho's
median absolute deviation of the finest diagonal wavelet band, averaged over channels): no training,
a few milliseconds per megapixel, and accurate to about a dB-equivalent on natural images (it
over-reads fine texture as noise a little and under-reads σ ≳ 40, where clipping at 0 and 1 hides part
of the noise). ``benchmarks/quality.py`` reports the estimated-σ and true-σ rows side by side.

``strength`` multiplies the level: below 1 the model believes the image cleaner than it is and keeps
more of the input (faint defects too); above 1 it smooths more.
"""

from __future__ import annotations

import numpy as np
from skimage.restoration import estimate_sigma

from apir.errors import ApirError

MAX_LEVEL = 255.0  # σ on the 0-255 scale; the models were trained up to 50


def estimate_noise_sigma(rgb: np.ndarray) -> float:
    """Estimated Gaussian noise σ (0-255 scale) of a float H×W×3 image in [0, 1]."""
    gray = bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]))
    img = rgb[..., 0] if gray else rgb
    sigma = estimate_sigma(img, channel_axis=None if gray else -1, average_sigmas=True)
    return float(np.nan_to_num(sigma, nan=0.0) * 255.0)


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
