"""The one shape every restorer takes, so models and classical baselines are driven by the same code.

A restore function maps a degraded float32 H×W×3 image in [0, 1] and the true noise σ of its
degradation (0–255 scale; blind models ignore it) to the restored image. Evaluation, the detection
check and ``restore-dataset`` all call it and check its output with :func:`check_restored`.
"""

from __future__ import annotations

import hashlib
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


class MemoizedRestore:
    """A restore function that remembers its outputs, keyed by the input's bytes and σ.

    Why: ``apir evaluate --detector`` needs every test image restored for the metrics and again
    inside the detection check; for CBM3D, seconds per image, that doubled the run. The evaluator
    runs the check per category right after scoring it and then calls :meth:`clear`, so the memo
    holds one category's outputs. ``max_bytes`` (1 GiB by default: about 1 300 RGB images of 256², or
    80 of 1024², as float32) bounds it anyway: past it, calls simply go through (restored twice).
    Returns copies, so callers may modify them.
    """

    def __init__(self, fn: RestoreFn, max_bytes: int = 1 << 30) -> None:
        self.fn = fn
        self.max_bytes = max_bytes
        self.hits = 0
        self.calls = 0
        self._stored = 0
        self._cache: dict[tuple[str, tuple[int, ...], str, float], np.ndarray] = {}

    def clear(self) -> None:
        """Forget every stored output (the counters stay)."""
        self._cache.clear()
        self._stored = 0

    def __call__(self, image: np.ndarray, sigma: float) -> np.ndarray:
        image = np.ascontiguousarray(image)
        # The key is taken before calling fn, which may modify its input in place.
        key = (
            hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest(),
            image.shape,
            image.dtype.str,
            float(sigma),
        )
        self.calls += 1
        hit = self._cache.get(key)
        if hit is not None:
            self.hits += 1
            return hit.copy()
        out = self.fn(image, sigma)
        arr = np.asarray(out)
        if self._stored + arr.nbytes <= self.max_bytes:
            self._cache[key] = arr.copy()
            self._stored += arr.nbytes
        return out
