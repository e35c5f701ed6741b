"""The shipped default model restores a real photograph better than its degraded input (no timing)."""

from __future__ import annotations

import numpy as np
from skimage import data as skdata

from apir.data.degradations import fixed_params, get_degradation
from apir.evaluate.metrics import image_metrics
from apir.restore.api import restore_rgb
from apir.restore.loading import resolve_model, shipped_weights


def _fixed_case(preset: str) -> tuple[np.ndarray, np.ndarray]:
    clean = skdata.astronaut()[96:224, 160:288].astype(np.float32) / 255.0
    pipeline = get_degradation(preset)
    return clean, pipeline.apply(clean, fixed_params(pipeline, "astronaut-crop", 0))


def test_default_weights_ship_inside_the_package():
    path = shipped_weights()
    assert path.is_file() and path.stat().st_size < 20 * 2**20


def test_default_model_gains_psnr_on_a_fixed_image():
    model, header = resolve_model(None, "cpu")
    assert header["model"]["name"] == "nafnet"
    mask = np.zeros((128, 128), bool)
    for preset, min_gain in (("noise25", 6.0), ("blur1_noise15", 3.0)):
        clean, degraded = _fixed_case(preset)
        restored = np.clip(restore_rgb(model, degraded, tile=0), 0, 1)
        gain = image_metrics(restored, clean, mask)["psnr"] - image_metrics(degraded, clean, mask)["psnr"]
        assert gain > min_gain, (preset, gain)
