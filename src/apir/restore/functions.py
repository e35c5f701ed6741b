"""The one shape every restorer takes, so models and classical baselines are driven by the same code.

A restore function maps a degraded float32 H×W×3 image in [0, 1] and the true noise σ of its
degradation (0–255 scale; blind models ignore it) to the restored image. Evaluation, the detection
check and ``restore-dataset`` all call it and check its output with :func:`check_restored`;
evaluation restores each :class:`~apir.data.cases.EvalCase` once (:func:`restore_cases`) and hands
the :class:`RestoredCase` to every consumer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from apir.data.cases import EvalCase
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


@dataclass(frozen=True)
class RestoredCase:
    """An evaluation case with its restoration (float32 H×W×3 in [0, 1]) and the seconds it took."""

    case: EvalCase
    restored: np.ndarray
    seconds: float


def restore_case(case: EvalCase, restore_fn: RestoreFn) -> RestoredCase:
    """Restore one case, timed, its output checked (the function gets a copy it may modify)."""
    start = time.perf_counter()
    out = restore_fn(case.degraded.copy(), case.sigma)
    seconds = time.perf_counter() - start
    return RestoredCase(case, check_restored(out, case.degraded.shape, case.key), seconds)


def restore_cases(cases: Iterable[EvalCase], restore_fn: RestoreFn) -> Iterator[RestoredCase]:
    """Each case restored exactly once, in order."""
    for case in cases:
        yield restore_case(case, restore_fn)
