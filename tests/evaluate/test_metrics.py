"""Metrics against hand-computed values on tiny images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from apir.evaluate.metrics import (
    METRIC_NAMES,
    MIN_CONTRAST,
    contrast_ratio,
    image_metrics,
    masked_psnr,
    psnr,
    psnr_background,
    psnr_defect,
    retention,
    ring_mask,
    ssim,
)


def _t(arr: np.ndarray) -> torch.Tensor:
    """H×W×C numpy → 1×C×H×W tensor (H×W masks → 1×1×H×W)."""
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[..., None]
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())[None]


def _scene(size: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uniform grey original, a 4×4 bright-red defect in the middle: (original, clean, mask)."""
    original = np.full((size, size, 3), 0.4, np.float32)
    mask = np.zeros((size, size), bool)
    mask[6:10, 6:10] = True
    clean = original.copy()
    clean[mask] = [0.9, 0.2, 0.3]
    return original, clean, mask


def test_psnr_defect_and_background_match_hand_computed_mse():
    target = np.full((4, 4, 3), 0.5, np.float32)
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True
    pred = target + np.where(mask[..., None], 0.1, 0.05).astype(np.float32)
    assert psnr_defect(_t(pred), _t(target), _t(mask)).item() == pytest.approx(20.0, abs=1e-3)
    assert psnr_background(_t(pred), _t(target), _t(mask)).item() == pytest.approx(
        10 * math.log10(1 / 0.0025), abs=1e-3
    )
    overall_mse = (4 * 0.01 + 12 * 0.0025) / 16
    assert psnr(_t(pred), _t(target)).item() == pytest.approx(10 * math.log10(1 / overall_mse), abs=1e-3)


def test_psnr_defect_nan_for_empty_mask_and_background_nan_for_full_mask():
    img = np.full((4, 4, 3), 0.5, np.float32)
    noisy = img + 0.1
    empty, full = np.zeros((4, 4)), np.ones((4, 4))
    assert math.isnan(psnr_defect(_t(noisy), _t(img), _t(empty)).item())
    assert psnr_background(_t(noisy), _t(img), _t(empty)).item() == pytest.approx(20.0, abs=1e-3)
    assert math.isnan(psnr_background(_t(noisy), _t(img), _t(full)).item())
    assert psnr_defect(_t(noisy), _t(img), _t(full)).item() == pytest.approx(20.0, abs=1e-3)
    # Same numbers as the generic masked PSNR the trainer uses.
    assert masked_psnr(_t(noisy), _t(img), _t(full)).item() == pytest.approx(20.0, abs=1e-3)


def test_retention_identity_painted_out_and_half():
    original, clean, mask = _scene()
    o, c, m = _t(original), _t(clean), _t(mask)
    assert retention(c, c, o, m).item() == pytest.approx(1.0, abs=1e-6)
    assert retention(o, c, o, m).item() == pytest.approx(0.0, abs=1e-6)
    half = original + 0.5 * (clean - original)
    assert retention(_t(half), c, o, m).item() == pytest.approx(0.5, abs=1e-5)


def test_retention_ignores_noise_orthogonal_to_the_defect():
    original, clean, mask = _scene()
    # A ±0.05 checkerboard on the (uniform) defect signal projects to zero on it.
    checker = np.indices(mask.shape).sum(axis=0) % 2 * 2 - 1
    noisy = clean + 0.05 * checker[..., None].astype(np.float32)
    assert retention(_t(noisy), _t(clean), _t(original), _t(mask)).item() == pytest.approx(1.0, abs=1e-5)


def test_retention_nan_without_original_defect_or_signal():
    original, clean, mask = _scene()
    assert math.isnan(retention(_t(clean), _t(clean), None, _t(mask)).item())
    empty = np.zeros_like(mask)
    assert math.isnan(retention(_t(clean), _t(clean), _t(original), _t(empty)).item())
    # Mask set but clean == original: the defect signal is zero.
    assert math.isnan(retention(_t(original), _t(original), _t(original), _t(mask)).item())


def test_contrast_ratio_identity_painted_out_half():
    original, clean, mask = _scene()
    c, m = _t(clean), _t(mask)
    assert contrast_ratio(c, c, m).item() == pytest.approx(1.0, abs=1e-6)
    assert contrast_ratio(_t(original), c, m).item() == pytest.approx(0.0, abs=1e-6)
    half = original + 0.5 * (clean - original)
    assert contrast_ratio(_t(half), c, m).item() == pytest.approx(0.5, abs=1e-5)


def test_contrast_ratio_falls_when_the_defect_is_smeared_into_its_ring():
    import cv2

    original, clean, mask = _scene(32)
    big = np.zeros((32, 32), bool)
    big[12:20, 12:20] = True
    clean = original.copy()
    clean[big] = [0.9, 0.2, 0.3]
    blurred = cv2.GaussianBlur(clean, (0, 0), 2.0)
    value = contrast_ratio(_t(blurred), _t(clean), _t(big)).item()
    assert 0.2 < value < 0.9


def test_contrast_ratio_nan_cases():
    original, clean, mask = _scene()
    empty = np.zeros_like(mask)
    full = np.ones_like(mask)
    assert math.isnan(contrast_ratio(_t(clean), _t(clean), _t(empty)).item())
    assert math.isnan(contrast_ratio(_t(clean), _t(clean), _t(full)).item())  # no ring
    faint = original.copy()
    faint[mask] += 0.5 * MIN_CONTRAST
    assert math.isnan(contrast_ratio(_t(faint), _t(faint), _t(mask)).item())


def test_ring_mask_is_a_disk_dilation_minus_the_mask():
    point = np.zeros((7, 7), bool)
    point[3, 3] = True
    ring1 = ring_mask(point, 1)
    assert ring1.sum() == 4 and not ring1[3, 3] and ring1[2, 3] and not ring1[2, 2]
    _, _, mask = _scene()
    ring = ring_mask(mask, 5)
    assert not (ring & mask).any()
    ys, xs = np.nonzero(ring)
    assert ys.min() == 6 - 5 and ys.max() == 9 + 5
    with pytest.raises(ValueError):
        ring_mask(mask, 0)


def test_metrics_are_per_image_in_a_batch():
    original, clean, mask = _scene()
    restored = np.stack([clean, original])  # kept, painted out
    b = torch.from_numpy(restored.transpose(0, 3, 1, 2).copy())
    c = _t(clean).expand(2, -1, -1, -1)
    o = _t(original).expand(2, -1, -1, -1)
    m = _t(mask).expand(2, -1, -1, -1)
    assert retention(b, c, o, m).tolist() == pytest.approx([1.0, 0.0], abs=1e-6)
    assert contrast_ratio(b, c, m).tolist() == pytest.approx([1.0, 0.0], abs=1e-6)
    assert psnr_defect(b, c, m)[0].item() == 100.0  # capped, perfect
    assert psnr_background(b, c, m).tolist() == [100.0, 100.0]


def test_ssim_matches_the_matlab_convention():
    """torchmetrics with our settings ≈ scikit-image's MATLAB-compatible SSIM (field notes)."""
    rng = np.random.default_rng(0)
    a = rng.random((48, 48, 3)).astype(np.float32)
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    ref = structural_similarity(
        b, a, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1
    )
    assert ssim(_t(b), _t(a)).item() == pytest.approx(ref, abs=1e-3)


def test_image_metrics_identity_and_nan_for_good_images():
    original, clean, mask = _scene()
    values = image_metrics(clean, clean, mask, original)
    assert list(values) == list(METRIC_NAMES)
    assert values["psnr"] == 100.0 and values["ssim"] == pytest.approx(1.0)
    assert values["retention"] == pytest.approx(1.0) and values["contrast_ratio"] == pytest.approx(1.0)
    good = image_metrics(original + 0.01, original, np.zeros_like(mask))
    assert good["psnr"] == pytest.approx(40.0, abs=1e-3)
    assert math.isnan(good["psnr_defect"]) and math.isnan(good["retention"])
    assert math.isnan(good["contrast_ratio"])
    assert good["psnr_background"] == pytest.approx(40.0, abs=1e-3)
    assert math.isnan(image_metrics(clean, clean, mask)["retention"])  # no original given
    with pytest.raises(ValueError, match="differs"):
        image_metrics(clean[:8], clean, mask)
