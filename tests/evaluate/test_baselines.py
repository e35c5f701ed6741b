"""Classical baselines: registry, σ = 0, gray handling, and that they actually denoise."""

from __future__ import annotations

import numpy as np
import pytest

from apir.data.datasets import load_sample
from apir.data.mvtec import load_dataset
from apir.errors import ApirError
from apir.evaluate.baselines import BASELINES, cbm3d, get_baseline, identity, nlm, tv


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.fixture(scope="module")
def images(tiny_demo):
    """(colour clean, gray clean) 64² images from the demo dataset."""
    cats = {c.name: c for c in load_dataset(tiny_demo)}
    colour = load_sample(next(s for s in cats["coffee"].test if s.is_good)).image
    gray = load_sample(next(s for s in cats["brick"].test if s.is_good)).image
    return colour, gray


def _noisy(clean: np.ndarray, sigma: float, gray: bool = False) -> np.ndarray:
    rng = np.random.default_rng(1)
    noise = rng.standard_normal(clean.shape[:2] + (1 if gray else 3,)).astype(np.float32)
    noise = np.broadcast_to(noise, clean.shape)
    return np.clip(clean + noise * np.float32(sigma / 255), 0, 1).astype(np.float32)


def test_registry_and_unknown_name():
    assert list(BASELINES) == ["identity", "nlm", "cbm3d", "tv"]
    assert get_baseline("tv") is tv
    with pytest.raises(ApirError, match=r"unknown baseline 'bm4d' \(available: identity, nlm, cbm3d, tv\)"):
        get_baseline("bm4d")


@pytest.mark.parametrize("name", ["identity", "nlm", "cbm3d", "tv"])
def test_sigma_zero_returns_the_input(name, images):
    colour, _ = images
    out = get_baseline(name)(colour, 0.0)
    assert out.dtype == np.float32 and out.shape == colour.shape
    np.testing.assert_array_equal(out, colour)
    assert out is not colour  # a copy: callers may modify it


@pytest.mark.parametrize("fn", [nlm, tv], ids=["nlm", "tv"])
@pytest.mark.parametrize("sigma", [15, 50])
def test_fast_denoisers_improve_psnr(fn, sigma, images):
    for clean, gray in zip(images, (False, True), strict=True):
        noisy = _noisy(clean, sigma, gray)
        out = fn(noisy, sigma)
        assert out.shape == clean.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert _psnr(out, clean) > _psnr(noisy, clean) + 2.0


def test_cbm3d_improves_psnr_colour_and_gray(images):
    colour, gray = images
    noisy = _noisy(colour, 25)
    out = cbm3d(noisy, 25)
    assert np.isfinite(out).all() and out.dtype == np.float32
    assert _psnr(out, colour) > _psnr(noisy, colour) + 3.0
    # bm3d_rgb returns NaN on R = G = B input (its colour transform divides by zero): gray path.
    noisy_gray = _noisy(gray, 25, gray=True)
    out_gray = cbm3d(noisy_gray, 25)
    assert np.isfinite(out_gray).all()
    assert _psnr(out_gray, gray) > _psnr(noisy_gray, gray) + 3.0


@pytest.mark.parametrize("fn", [nlm, tv], ids=["nlm", "tv"])
def test_gray_stays_gray(fn, images):
    _, gray = images
    out = fn(_noisy(gray, 25, gray=True), 25)
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_identity_and_bad_shape(images):
    colour, _ = images
    np.testing.assert_array_equal(identity(colour, 25), colour)
    with pytest.raises(ApirError, match="H×W×3"):
        tv(colour[..., 0], 25)
