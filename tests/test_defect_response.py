"""The paired defect-response term and the paired patches it trains on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from apir.data.datasets import TrainPatchDataset
from apir.data.degradations import get_degradation
from apir.data.mvtec import load_dataset
from apir.losses import defect_response_loss, dilate_mask


def _pair(defect=0.3):
    torch.manual_seed(0)
    y0 = torch.rand(2, 3, 32, 32)
    mask = torch.zeros(2, 1, 32, 32)
    mask[0, :, 10:14, 5:25] = 1  # a scratch on the first image only
    y = y0 + defect * mask
    noise = 0.1 * torch.randn(2, 3, 32, 32)  # the same noise on both members of the pair
    return y, y0, y + noise, y0 + noise, mask


def test_the_identity_satisfies_it_and_erasing_the_defect_does_not():
    y, y0, x, x0, mask = _pair()
    assert defect_response_loss(x, x0, y, y0, mask).item() == pytest.approx(0.0, abs=1e-12)
    erased = defect_response_loss(x0, x0, y, y0, mask)  # output ignores the defect
    assert erased.item() == pytest.approx(0.3**2 * 4 * 20 / ((4 + 4) * (20 + 4)), rel=1e-5)


def test_inverse_size_weighting_and_no_defect_batches():
    y, y0, x, x0, mask = _pair()
    big = mask.clone()
    big[1, :, :, :] = 1  # a defect covering all of image 2, response fully erased there too
    loss = defect_response_loss(x0, x0, y0 + 0.3 * big, y0, big, rim=0)
    assert loss.item() == pytest.approx(0.3**2)  # each image's own mean, then averaged: both 0.09
    empty = torch.zeros_like(mask)
    assert defect_response_loss(x, x0, y, y0, empty).item() == 0.0


def test_dilation_grows_the_mask_by_the_rim():
    m = torch.zeros(1, 1, 9, 9)
    m[0, 0, 4, 4] = 1
    assert dilate_mask(m, 2).sum().item() == 25
    assert torch.equal(dilate_mask(m, 0), m)


def test_paired_patches_share_blur_and_noise(tiny_demo):
    samples = [s for c in load_dataset(tiny_demo) for s in c.train]
    ds = TrainPatchDataset(samples, get_degradation("noise25"), patch_size=32, defect_prob=1.0, paired=True)
    for i in range(4):
        item = ds[i]
        diff = (item["degraded"] - item["degraded_original"]).abs().sum(0)
        outside = item["mask"][0] == 0
        assert item["has_defect"] == 1
        assert diff[outside].max() == 0  # identical noise where the patches agree
        assert diff[~outside].max() > 0
    assert "degraded_original" not in TrainPatchDataset(samples, get_degradation("noise25"), patch_size=32)[0]


def test_training_with_the_term_runs(tiny_demo, tiny_train_config, tmp_path):
    from apir.train.config import config_from_dict
    from apir.train.loop import train

    cfg = dict(tiny_train_config)
    cfg["loss"] = {"alpha": 0.3, "pair_weight": 0.2}
    cfg["train"] = {"epochs": 1, "seed": 0}
    cfg["data"] = {**cfg["data"], "root": str(tiny_demo)}
    result = train(config_from_dict(cfg), tmp_path / "run", show_progress=False)
    assert np.isfinite(result.last_metrics["psnr"])
