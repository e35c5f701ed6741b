"""Noise-level-aware restoration: the estimator, the σ map input, --strength, and the engine switch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data as skdata

import apir
from apir.errors import ApirError
from apir.models import create_model
from apir.restore.api import restore_rgb
from apir.restore.engine import onnx_available, with_engine
from apir.restore.loading import resolve_model
from apir.restore.noise_level import estimate_noise_sigma, level_map


def _clean(size=192):
    return (skdata.astronaut()[100 : 100 + size, 150 : 150 + size] / 255.0).astype(np.float32)


def _noisy(sigma, size=192, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(_clean(size) + rng.standard_normal((size, size, 3)) * sigma / 255, 0, 1).astype(np.float32)


@pytest.mark.parametrize("sigma", [5, 15, 25, 40, 50])
def test_estimator_reads_known_sigma(sigma):
    est = estimate_noise_sigma(_noisy(sigma))
    assert abs(est - sigma) < 0.1 * sigma + 2.5


def test_estimator_on_gray_and_clean_images():
    gray = np.repeat(_noisy(20)[..., :1], 3, axis=2)
    assert abs(estimate_noise_sigma(gray) - 20) < 4
    assert estimate_noise_sigma(_clean()) < 4


def test_level_map_scalar_map_and_strength():
    rgb = _noisy(10)
    assert np.allclose(level_map(rgb, 25.0, 1.0), 25 / 255)
    assert np.allclose(level_map(rgb, 25.0, 0.5), 12.5 / 255)
    ramp = np.tile(np.linspace(0, 50, 192, dtype=np.float32), (192, 1))
    np.testing.assert_allclose(level_map(rgb, ramp, 2.0), ramp * 2 / 255, rtol=1e-6)
    with pytest.raises(ApirError, match="noise-level map is"):
        level_map(rgb, ramp[:10], 1.0)


def test_noise_level_and_strength_are_checked_up_front():
    img = _noisy(10, 64)
    for bad in ({"strength": -1}, {"strength": float("nan")}, {"noise_level": 300}, {"noise_level": "x"}):
        with pytest.raises(ApirError):
            apir.restore_array(img, create_model("nafnet", width=8, level_input=True), **bad)


def test_a_blind_model_refuses_a_noise_level():
    with pytest.raises(ApirError, match="takes no noise level"):
        apir.restore_array(_noisy(10, 64), create_model("nafnet", width=8), noise_level=10)


def test_the_level_channel_reaches_the_model():
    """A model that only returns its level channel shows the map restore_rgb built, tiles included."""

    class Echo(torch.nn.Module):
        level_input, in_channels, size_multiple = True, 3, 16

        def forward(self, x):
            return x[:, 3:4].expand(-1, 3, -1, -1)

    rgb = _noisy(10, 100)
    out = restore_rgb(Echo(), rgb, tile=48, overlap=16, noise_level=30.0, strength=0.5)
    np.testing.assert_allclose(out, 15 / 255, rtol=1e-5)


def _shipped_level_model():
    model, _ = resolve_model(None, "cpu")
    if not getattr(model, "level_input", False):
        pytest.fail("the shipped default must be noise-level-aware")
    return model


def test_shipped_default_is_level_aware_and_strength_is_monotone():
    """Higher strength, smoother output: the total variation falls and the output moves from the input."""
    model = _shipped_level_model()
    noisy = _noisy(25, 128)
    tv, dist = [], []
    for s in (0.25, 0.5, 1.0, 1.5):
        out = np.clip(restore_rgb(model, noisy, tile=0, noise_level=25.0, strength=s), 0, 1)
        tv.append(np.abs(np.diff(out, axis=0)).mean() + np.abs(np.diff(out, axis=1)).mean())
        dist.append(np.abs(out - noisy).mean())
    assert all(a > b for a, b in zip(tv, tv[1:], strict=False)), tv
    assert all(a < b for a, b in zip(dist, dist[1:], strict=False)), dist


def test_a_lower_map_keeps_more_of_the_input_locally():
    """The default follows its σ map pixel by pixel: where the map is low it changes the input less."""
    model = _shipped_level_model()
    noisy = _noisy(25, 128)
    level = np.full((128, 128), 25.0, np.float32)
    level[:, :64] = 5.0
    out = restore_rgb(model, noisy, tile=0, noise_level=level)
    change = np.abs(out - noisy).mean(axis=2)
    assert change[:, 8:56].mean() < 0.9 * change[:, 72:120].mean()


@pytest.mark.skipif(not onnx_available(), reason="onnxruntime is an optional extra (apir[export])")
def test_onnx_engine_matches_torch_within_1e_4(tmp_path, monkeypatch):
    monkeypatch.setenv("APIR_CACHE", str(tmp_path))
    model = _shipped_level_model()
    onnx = with_engine(model, "onnx")
    assert type(onnx).__name__ == "OnnxModule"
    noisy = _noisy(20, 100)
    for kw in ({"tile": 0}, {"tile": 64, "overlap": 16}):
        a = restore_rgb(model, noisy, noise_level=None, **kw)
        b = restore_rgb(onnx, noisy, noise_level=None, **kw)
        assert np.abs(a - b).max() < 1e-4
    assert list(tmp_path.glob("onnx/*.onnx"))  # cached: the next run skips the export
    assert with_engine(model, "torch") is model
