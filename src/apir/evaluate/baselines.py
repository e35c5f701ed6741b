"""Classical denoisers to compare learned restorers with, all called as ``fn(image, sigma)``.

``image`` is a float32 H×W×3 RGB array in [0, 1] (gray data arrives replicated, R = G = B) and
``sigma`` the noise standard deviation on the 0–255 scale: the *true* effective σ of the image's
degradation (:attr:`apir.data.degradations.DegradationParams.noise_sigma`), so every baseline gets
the best case of a σ-aware method. None of them deblurs; on blurred inputs they only denoise.

* ``identity``: the degraded input itself; the floor every restorer must beat (and, for defect
  retention, the ceiling a restorer can only approach).
* ``nlm``: OpenCV's fast non-local means on 8-bit RGB, ``h = 0.9·σ``, 5×5 patches, 21×21 search.
* ``cbm3d``: colour BM3D (``bm3d`` package) with the true σ; the classical state of the art and the
  anchor the learned models are measured against (field notes: CBSD68 σ25 30.71 dB).
* ``tv``: total-variation denoising (Chambolle), ``weight = 0.8·σ/255``, each channel separately.

The σ mappings of ``nlm`` and ``tv`` were chosen on the 11 demo categories (one 256² image each,
Gaussian noise σ 15 / 25 / 50): each is within ~0.3 dB of the best constant factor at every σ, see
``docs/evaluation.md``. σ = 0 returns the input unchanged: there is nothing to denoise, and NLM and
TV would still smooth. Gray images (R = G = B exactly) are denoised as one channel and replicated:
faster, keeps them gray, and CBM3D's colour transform divides by zero on them (NaN output).
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.restoration import denoise_tv_chambolle

from apir.errors import ApirError
from apir.registry import Registry
from apir.restore.functions import RestoreFn

#: NLM filter strength h (8-bit units) per unit of σ (0–255), and its patch / search window sizes.
NLM_H_PER_SIGMA = 0.9
NLM_TEMPLATE = 5
NLM_SEARCH = 21
#: TV weight per unit of σ/255 (images in [0, 1]).
TV_WEIGHT_PER_SIGMA = 0.8


def _check(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ApirError(f"baselines expect an H×W×3 RGB image, got shape {arr.shape}")
    return np.clip(arr.astype(np.float32, copy=False), 0.0, 1.0)


def _is_gray(arr: np.ndarray) -> bool:
    return bool(np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]))


def _finish(out: np.ndarray, gray: bool) -> np.ndarray:
    out = np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)
    if gray:
        out = np.repeat(out.reshape(out.shape[0], out.shape[1], 1), 3, axis=2)
    return np.ascontiguousarray(out)


#: Baselines by name, in the order reports list them; a new one is a function and this decorator.
BASELINES: Registry[RestoreFn] = Registry("baseline")


@BASELINES.register("identity")
def identity(image: np.ndarray, sigma: float) -> np.ndarray:
    """The degraded input, unchanged: what "no restoration" scores."""
    return np.asarray(image, dtype=np.float32).copy()


@BASELINES.register("nlm")
def nlm(image: np.ndarray, sigma: float) -> np.ndarray:
    """OpenCV fast non-local means with ``h = 0.9·σ`` on the 8-bit image (all channels jointly).
    ``cv2.fastNlMeansDenoising`` on the RGB array rather than ``fastNlMeansDenoisingColored``: the
    latter filters in CIELAB, whose lightness is a non-linear function of RGB, so the noise there
    depends on brightness and no single ``h`` tied to σ fits; on the demo images it scored 2–3 dB
    lower at every σ (the best h for each).
    """
    arr = _check(image)
    if sigma <= 0:
        return arr.copy()
    gray = _is_gray(arr)
    u8 = np.round((arr[..., :1] if gray else arr) * 255.0).astype(np.uint8)
    u8 = np.ascontiguousarray(u8[..., 0] if gray else u8)
    out = cv2.fastNlMeansDenoising(u8, None, float(NLM_H_PER_SIGMA * sigma), NLM_TEMPLATE, NLM_SEARCH)
    return _finish(out.astype(np.float32) / 255.0, gray)


@BASELINES.register("cbm3d")
def cbm3d(image: np.ndarray, sigma: float) -> np.ndarray:
    """Colour BM3D (``bm3d.bm3d_rgb``) with the true σ; gray images through ``bm3d.bm3d``.
    Slow: 6–9 s for a 256² RGB image on two CPU cores, ~3 s gray; time grows with the pixel count.
    """
    try:
        import bm3d as _bm3d  # optional dependency (extra "baselines")
    except ImportError:
        raise ApirError("the cbm3d baseline needs the bm3d package: pip install 'apir[baselines]'") from None
    arr = _check(image)
    if sigma <= 0:
        return arr.copy()
    if _is_gray(arr):
        return _finish(_bm3d.bm3d(arr[..., 0].astype(np.float64), sigma_psd=sigma / 255.0), True)
    return _finish(_bm3d.bm3d_rgb(arr.astype(np.float64), sigma_psd=sigma / 255.0), False)


@BASELINES.register("tv")
def tv(image: np.ndarray, sigma: float) -> np.ndarray:
    """Chambolle total-variation denoising with ``weight = 0.8·σ/255``, channels separately."""
    arr = _check(image)
    if sigma <= 0:
        return arr.copy()
    gray = _is_gray(arr)
    src = arr[..., :1] if gray else arr
    out = denoise_tv_chambolle(src, weight=TV_WEIGHT_PER_SIGMA * sigma / 255.0, channel_axis=-1)
    return _finish(out, gray)


def get_baseline(name: str) -> RestoreFn:
    """The baseline called ``name``; an ApirError naming the available ones otherwise."""
    return BASELINES.get(name)
