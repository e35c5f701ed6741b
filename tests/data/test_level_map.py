"""The noise-level map that noise-level-aware models are trained and run with."""

from __future__ import annotations

import numpy as np
import pytest

from apir.data.degradations import DegradationPipeline, apply_params, apply_params_with_level


def _image(h=96, w=128, value=0.5):
    return np.full((h, w, 3), value, np.float32)


def test_level_map_degrades_exactly_like_apply_params():
    pipe = DegradationPipeline(
        [
            {"op": "gaussian_blur", "sigma": 1.0},
            {"op": "gaussian_noise", "sigma": 20},
            {"op": "jpeg", "quality": 90},
        ]
    )
    img = np.random.default_rng(0).random((64, 80, 3), dtype=np.float32)
    params = pipe.sample(np.random.default_rng(1))
    out, level = apply_params_with_level(img, params)
    np.testing.assert_array_equal(out, apply_params(img, params))
    assert level.shape == (64, 80)
    np.testing.assert_allclose(level, 20 / 255, rtol=1e-6)


def test_poisson_map_follows_the_signal_and_matches_the_noise_drawn():
    pipe = DegradationPipeline([{"op": "poisson_gaussian", "peak": 30, "read_sigma": 5}])
    img = np.concatenate([_image(value=0.1), _image(value=0.6)], axis=1)  # dark left, bright right
    params = pipe.sample(np.random.default_rng(0))
    out, level = apply_params_with_level(img, params)
    dark, bright = level[:, :128].mean(), level[:, 128:].mean()
    assert dark == pytest.approx(np.sqrt(0.1 / 30 + (5 / 255) ** 2), rel=1e-5)
    assert bright > 2 * dark
    assert (out - img)[:, 128:].std() == pytest.approx(bright, rel=0.05)


def test_ramp_noise_varies_across_the_image_as_its_map_says():
    pipe = DegradationPipeline([{"op": "gaussian_noise_ramp", "sigma": 5, "sigma_end": 45, "angle": 0}])
    img = _image(128, 256)
    params = pipe.sample(np.random.default_rng(0))
    out, level = apply_params_with_level(img, params)
    left, right = (out - img)[:, :32], (out - img)[:, -32:]
    assert level[:, 0].mean() == pytest.approx(5 / 255, rel=1e-4)
    assert level[:, -1].mean() == pytest.approx(45 / 255, rel=1e-4)
    assert left.std() == pytest.approx(level[:, :32].mean(), rel=0.1)
    assert right.std() == pytest.approx(level[:, -32:].mean(), rel=0.1)
    # the equivalent σ for σ-aware baselines is the mean of the two ends
    assert params.noise_sigma == pytest.approx(25.0)


def test_noise_free_pipeline_has_a_zero_map():
    pipe = DegradationPipeline([{"op": "motion_blur", "length": 7}])
    _, level = apply_params_with_level(_image(), pipe.sample(np.random.default_rng(0)))
    assert not level.any()
