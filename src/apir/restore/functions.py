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

    Why: ``apir evaluate --detector`` restores every test image once for the metrics and again inside
    the detection check (which works per category and must not depend on the evaluator's order);
    for CBM3D, seconds per image, that doubled the run. Outputs are kept up to ``max_bytes`` (1 GiB by
    default: about 1 300 RGB images of 256², or 80 of 1024², as float32); past that, calls simply go
    through, so memory stays bounded on large datasets. Returns copies, so callers may modify them.
    """

    def __init__(self, fn: RestoreFn, max_bytes: int = 1 << 30) -> None:
        self.fn = fn
        self.max_bytes = max_bytes
        self.hits = 0
        self.calls = 0
        self._stored = 0
        self._cache: dict[tuple[str, tuple[int, ...], str, float], np.ndarray] = {}

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
