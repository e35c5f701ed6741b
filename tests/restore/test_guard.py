"""Detector-guided restoration: the guard lowers the strength on a planted anomaly, not on good images."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data as skdata

from apir.errors import ApirError
from apir.restore.guard import DetectorGuard


def _texture_crops(n, size=96, seed=0):
    src = (skdata.gravel() / 255.0).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        y, x = rng.integers(0, src.shape[0] - size, 2)
        out.append(np.repeat(src[y : y + size, x : x + size, None], 3, axis=2))
    return out


@pytest.fixture(scope="module")
def guard():
    return DetectorGuard.from_good_images(_texture_crops(12), floor=0.3)


def test_strength_drops_on_a_planted_anomaly(guard):
    image = _texture_crops(1, seed=7)[0].copy()
    yy, xx = np.mgrid[:96, :96]
    spot = (yy - 48) ** 2 + (xx - 40) ** 2 < 8**2
    image[spot] = np.clip(image[spot] * 0.3, 0, 1)  # a dark stain
    strength = guard.strength_map(image)
    assert strength.shape == (96, 96) and strength.dtype == np.float32
    assert strength[spot].mean() < 0.75
    far = (yy - 48) ** 2 + (xx - 40) ** 2 > 24**2
    assert strength[far].mean() > 0.95
    assert strength.min() >= 0.3 - 1e-6


def test_good_images_keep_full_strength(guard):
    for good in _texture_crops(3, seed=11):
        strength = guard.strength_map(good)
        assert strength.mean() > 0.95 and (strength < 0.5).mean() < 0.02


def test_floor_one_means_no_guard_and_bad_floors_are_refused(guard):
    image = _texture_crops(1, seed=7)[0]
    off = DetectorGuard(guard.detector, guard.low, guard.high, floor=1.0)
    assert np.all(off.strength_map(image) == 1.0)
    for bad in (-0.1, 1.5, "x"):
        with pytest.raises(ApirError, match="floor"):
            DetectorGuard(guard.detector, guard.low, guard.high, floor=bad)
    with pytest.raises(ApirError, match="at least 2"):
        DetectorGuard.from_good_images(_texture_crops(1))
