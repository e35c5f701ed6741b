"""Detector-guided restoration: restore less where a detector fitted on good images sees an anomaly.

A denoiser cannot tell a faint scratch from noise; the user's good images of the same part can. So
``apir restore --guard GOOD_DIR`` (and ``restore_array(..., guard=guard)``) runs twice:

1. restore at full strength (the σ map estimated as usual);
2. score that restoration with an anomaly detector fitted on the good images, restored the same way
   (so the restorer's own smoothing is normal to it), and turn the map into a per-pixel strength;
3. restore the input again with the σ map multiplied by that strength.

The mapping has one knob, ``floor``, the strength at a sure anomaly::

    z(x)        = clip((score(x) − lo) / (hi − lo), 0, 1)   lo, hi = 95th and 99.9th percentiles of
    strength(x) = 1 − (1 − floor) · z(x)                     held-out good pixels' scores; then
                                                             Gaussian-smoothed (σ = 4 px), ≥ floor

so the 95 % of pixels scoring like normal ones keep strength 1 (full denoising) and those scoring above
all but 0.1 % of normal pixels get ``floor``. The percentiles come from good images the detector was
*not* fitted on (it is fitted on every other good image and calibrated on the rest), because in-sample
scores are too low. (A first mapping, from the 99th percentile to twice it, left the strength at 1 on
faint defects of the unseen set: after restoration they score about like the top 1 % of normal pixels.)

Needs a noise-level-aware model (the strength acts through its σ map). The detector is passed in
(:class:`apir.evaluate.detector.ReferenceDetector` by default in :meth:`DetectorGuard.from_good_images`)
so this module depends on nothing downstream of restoration at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from apir.data.cases import iter_cases
from apir.data.imageio import list_images, read_image
from apir.errors import ApirError
from apir.evaluate.detector import ReferenceDetector
from apir.restore.api import restore_rgb
from apir.restore.functions import restore_cases

DEFAULT_FLOOR = 0.3
SMOOTH_PX = 4.0
LOW_QUANTILE, HIGH_QUANTILE = 0.95, 0.999


class AnomalyScorer(Protocol):
    def fit(self, images: Sequence[np.ndarray]) -> Any: ...

    def score_map(self, image: np.ndarray) -> np.ndarray: ...


def check_floor(floor: object) -> float:
    ok = isinstance(floor, int | float | np.floating) and not isinstance(floor, bool)
    if not ok or not 0.0 <= float(floor) <= 1.0:
        raise ApirError(f"guard floor must be a number from 0 to 1 (1 = no guard), got {floor!r}")
    return float(floor)


class DetectorGuard:
    """A fitted detector and its threshold: maps a restored image to a per-pixel strength."""

    def __init__(
        self, detector: AnomalyScorer, low: float, high: float, floor: float = DEFAULT_FLOOR
    ) -> None:
        if not (np.isfinite(low) and np.isfinite(high) and high > low):
            raise ApirError(f"guard: need finite score levels low < high, got {low!r} and {high!r}")
        self.detector = detector
        self.low, self.high = float(low), float(high)
        self.floor = check_floor(floor)

    @classmethod
    def from_good_images(
        cls,
        images: Sequence[np.ndarray],
        *,
        restore: Callable[[np.ndarray], np.ndarray] | None = None,
        floor: float = DEFAULT_FLOOR,
        detector_factory: Callable[[], AnomalyScorer] | None = None,
    ) -> DetectorGuard:
        """Fit on every other good image, calibrate the threshold on the rest.
        ``restore``, if given, is applied to each good image first: pass the same restoration the
        guarded images get, so the detector sees restored normal appearance as normal.
        """
        if len(images) < 2:
            raise ApirError(
                f"guard: need at least 2 good images (1 to fit, 1 to calibrate), got {len(images)}"
            )
        if detector_factory is None:
            detector_factory = ReferenceDetector
        prepared = [np.clip(restore(im), 0, 1) if restore is not None else im for im in images]
        fit_set, calibration = prepared[0::2], prepared[1::2]
        detector = detector_factory()
        detector.fit(fit_set)
        scores = np.concatenate(
            [np.asarray(detector.score_map(im), np.float64).ravel() for im in calibration]
        )
        low, high = np.quantile(scores, [LOW_QUANTILE, HIGH_QUANTILE])
        return cls(detector, float(low), float(max(high, low + 1e-6)), floor)

    def strength_map(self, restored: np.ndarray) -> np.ndarray:
        """H×W float32 strength in [floor, 1] for a (first-pass) restored float H×W×3 image."""
        score = np.asarray(self.detector.score_map(np.clip(restored, 0, 1)), dtype=np.float32)
        z = np.clip((score - self.low) / (self.high - self.low), 0.0, 1.0)
        strength = 1.0 - (1.0 - self.floor) * z
        strength = cv2.GaussianBlur(strength.astype(np.float32), (0, 0), SMOOTH_PX)
        return np.clip(strength, self.floor, 1.0).astype(np.float32)


def guard_from_folder(
    folder: Any,
    model: Any,
    *,
    floor: float = DEFAULT_FLOOR,
    tile: int = 512,
    overlap: int = 32,
    noise_level: float | None = None,
    strength: float = 1.0,
) -> DetectorGuard:
    """A guard from a folder of good images of the same part, each restored as the inputs will be."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ApirError(f"{folder}: --guard needs a folder of good images")
    files = list_images(folder, recursive=True)
    if len(files) < 2:
        raise ApirError(f"{folder}: --guard needs at least 2 good images, found {len(files)}")
    images = [read_image(f).rgb for f in files]

    def restore(rgb: np.ndarray) -> np.ndarray:
        return restore_rgb(model, rgb, tile=tile, overlap=overlap, noise_level=noise_level, strength=strength)

    return DetectorGuard.from_good_images(images, restore=restore, floor=floor)


def guard_for_category(
    category: Any, pipeline: Any, seed: int, restore_fn: Any, *, floor: float = DEFAULT_FLOOR
) -> DetectorGuard:
    """A guard for evaluating one category (``apir evaluate --guard``): fitted on its ``train/good``,
    each image degraded as the evaluation degrades (the same fixed parameters per image) and
    restored by ``restore_fn(image, sigma)`` unguarded, so the detector learns restored normal
    appearance."""
    cases = iter_cases(list(category.train), pipeline, seed)
    restored = [done.restored for done in restore_cases(cases, restore_fn)]
    if len(restored) < 2:
        raise ApirError(f"{category.name}: --guard needs at least 2 train/good images, found {len(restored)}")
    return DetectorGuard.from_good_images(restored, floor=floor)
