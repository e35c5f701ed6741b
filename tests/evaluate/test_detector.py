"""The reference detector on synthetic cases whose answer is known."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from apir.errors import ApirError
from apir.evaluate.detector import DetectorConfig, ReferenceDetector

SIZE = 96


def _texture(seed: int, size: int = SIZE) -> np.ndarray:
    """Smooth random noise, mostly in brightness with a little colour (like most surfaces): a
    stationary texture with no two images alike."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((size, size, 1)) + 0.15 * rng.standard_normal((size, size, 3))
    smooth = cv2.GaussianBlur(noise.astype(np.float32), (0, 0), 2.0)
    smooth = smooth / smooth.std() * 0.08
    tint = np.array([0.5, 0.45, 0.4], np.float32)
    return np.clip(tint + smooth, 0, 1).astype(np.float32)


def _blob(size: int = SIZE, centre: tuple[int, int] = (60, 35), radius: int = 7) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


@pytest.fixture(scope="module")
def fitted() -> ReferenceDetector:
    return ReferenceDetector().fit([_texture(s) for s in range(6)])


def _auroc(mask: np.ndarray, score: np.ndarray) -> float:
    return float(roc_auc_score(mask.ravel(), score.ravel().astype(np.float64)))


@pytest.mark.parametrize("delta", [(0.2, 0.2, 0.2), (0.15, -0.1, -0.1)], ids=["bright", "colour"])
def test_planted_blob_is_found_and_painted_out_is_not(fitted, delta):
    clean = _texture(100)
    mask = _blob()
    defective = clean.copy()
    defective[mask] = np.clip(defective[mask] + np.float32(delta), 0, 1)
    found = _auroc(mask, fitted.score_map(defective))
    assert found > 0.95
    # The same image with the defect painted out: the region must not stand out any more.
    painted_out = _auroc(mask, fitted.score_map(clean))
    assert painted_out < 0.8
    assert found - painted_out > 0.2
    assert fitted.image_score(fitted.score_map(defective)) > fitted.image_score(fitted.score_map(clean))


def test_chroma_only_stain_is_found(fitted):
    """Stains are often chroma-only: same luminance, other hue; gray features would miss them."""
    clean = _texture(101)
    mask = _blob(centre=(30, 60), radius=8)
    lab = cv2.cvtColor(clean, cv2.COLOR_RGB2Lab)
    lab[..., 1][mask] += 12.0  # a* only: redder at equal lightness
    stained = np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0, 1)
    assert _auroc(mask, fitted.score_map(stained)) > 0.95


def test_deterministic_and_shapes():
    train = [_texture(s, 64) for s in range(4)]
    image = _texture(50, 64)[:, :48].copy()  # non-square
    a = ReferenceDetector(seed=3).fit(train).score_map(image)
    b = ReferenceDetector(seed=3).fit(train).score_map(image)
    assert a.shape == image.shape[:2] and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(a).all()


def test_large_images_use_the_fitted_working_scale():
    """Scores come at the input size; the shrink factor is fixed at fit time (crops keep the scale)."""
    det = ReferenceDetector(work_size=48).fit([_texture(s, 96) for s in range(3)])
    assert det.factor == pytest.approx(0.5)
    assert det.score_map(_texture(7, 96)).shape == (96, 96)
    assert det.score_map(_texture(8, 96)[:40, :72]).shape == (40, 72)


def test_gray_inputs():
    gray = [_texture(s, 48).mean(axis=2) for s in range(3)]  # H×W arrays
    det = ReferenceDetector().fit(gray)
    assert det.gray
    assert det.score_map(gray[0]).shape == (48, 48)
    assert det.score_map(np.repeat(gray[1][..., None], 3, axis=2)).shape == (48, 48)


def test_errors():
    with pytest.raises(ApirError, match="no training images"):
        ReferenceDetector().fit([])
    with pytest.raises(ApirError, match="fit"):
        ReferenceDetector().score_map(_texture(0, 32))
    with pytest.raises(ApirError, match="H×W×3"):
        ReferenceDetector().fit([np.zeros((8, 8, 5), np.float32)])
    with pytest.raises(ApirError, match="NaN"):
        ReferenceDetector().fit([np.full((8, 8, 3), np.nan, np.float32)])
    with pytest.raises(ApirError):
        DetectorConfig(scales=(1.0,), strides=(4, 4))
    with pytest.raises(ApirError, match="empty"):
        ReferenceDetector.image_score(np.zeros((0, 0)))


def test_single_training_image_and_describe():
    det = ReferenceDetector().fit([_texture(0, 48)])
    assert det.score_map(_texture(1, 48)).shape == (48, 48)
    info = det.describe()
    assert info["scales"] == [1.0, 2.0, 4.0, 8.0] and "name" in info
