"""The one shape every restorer takes, so models and classical baselines are driven by the same code.

A restore function maps a degraded float32 H×W×3 image in [0, 1] and the true noise σ of its
degradation (0–255 scale; blind models ignore it) to the restored image. Evaluation, the detection
check and ``restore-dataset`` all call it and check its output with :func:`check_restored`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from apir.errors import ApirError

RestoreFn = Callable[[np.ndarray, float], np.ndarray]


def check_restored(out: Any, shape: tuple[int, ...], key: str) -> np.ndarray:
    """The restored image as float32 in [0, 1]; a wrong shape or NaN output is the caller's bug."""
    arr = np.asarray(out)
    if arr.shape != shape:
        raise ApirError(f"{key}: restore_fn returned an array of shape {arr.shape}, expected {shape}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise ApirError(f"{key}: restore_fn returned NaN or infinite values")
    return np.clip(arr, 0.0, 1.0)
