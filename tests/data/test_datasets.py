from __future__ import annotations

import numpy as np
import pytest
import torch

from apir.data.datasets import EvalImageDataset, TrainPatchDataset
from apir.data.degradations import get_degradation
from apir.data.mvtec import load_dataset
from apir.errors import ApirError


@pytest.fixture()
def samples(tiny_demo):
    cats = load_dataset(tiny_demo)
    return [s for c in cats for s in c.train], [s for c in cats for s in c.test if not s.is_good]


def _share_with_defect(ds: TrainPatchDataset, n: int = 120) -> float:
    return float(np.mean([ds[i]["mask"].sum().item() > 0 for i in range(n)]))


def test_patch_sampler_oversamples_defects(samples):
    _, defective = samples
    deg = get_degradation("none")
    kw = dict(patch_size=16, length=120, defect_prob=0.0, augment=False, seed=0)
    never = _share_with_defect(TrainPatchDataset(defective, deg, defect_ratio=0.0, **kw))
    half = _share_with_defect(TrainPatchDataset(defective, deg, defect_ratio=0.5, **kw))
    always = _share_with_defect(TrainPatchDataset(defective, deg, defect_ratio=1.0, **kw))
    assert always == 1.0
    assert never < 0.6
    # Half the patches are centred on a defect; the uniform half hits one at the `never` rate.
    expected = 0.5 + 0.5 * never
    assert abs(half - expected) < 0.15, (never, half)


def test_synthetic_defects_and_items(samples):
    good, _ = samples
    ds = TrainPatchDataset(
        good, get_degradation("noise25"), patch_size=24, length=40, defect_prob=1.0, seed=5
    )
    item = ds[3]
    assert item["degraded"].shape == item["clean"].shape == item["original"].shape == (3, 24, 24)
    assert item["mask"].shape == (1, 24, 24) and item["mask"].dtype == torch.float32
    assert _share_with_defect(ds, 40) == 1.0
    # The defect lives in clean, not in original, and only inside the mask.
    diff = (item["clean"] - item["original"]).abs().amax(0)
    assert diff[item["mask"][0] == 0].max() == 0 and diff[item["mask"][0] > 0].max() > 0
    # Reproducible per (seed, epoch, index); a new epoch gives new patches.
    again = TrainPatchDataset(
        good, get_degradation("noise25"), patch_size=24, length=40, defect_prob=1.0, seed=5
    )
    assert torch.equal(again[3]["degraded"], item["degraded"])
    again.set_epoch(1)
    assert not torch.equal(again[3]["degraded"], item["degraded"])
    no_defects = TrainPatchDataset(good, get_degradation("none"), patch_size=24, length=40, defect_prob=0.0)
    assert _share_with_defect(no_defects, 40) == 0.0
    with pytest.raises(ApirError):
        TrainPatchDataset([], get_degradation("none"))


def test_gray_images_get_gray_defects(samples):
    good, _ = samples
    gray = [s for s in good if s.category == "brick"]
    ds = TrainPatchDataset(gray, get_degradation("blind"), patch_size=32, length=30, defect_prob=1.0, seed=1)
    for i in range(30):
        item = ds[i]
        for key in ("clean", "degraded"):  # defects and sensor noise on gray data stay gray
            assert torch.equal(item[key][0], item[key][1]) and torch.equal(item[key][0], item[key][2])
    colour = EvalImageDataset([s for s in good if s.category == "coffee"][:1], get_degradation("noise25"))
    assert not torch.equal(colour[0]["degraded"][0], colour[0]["degraded"][1])


def test_eval_degradation_is_fixed_per_image(samples):
    good, defective = samples
    deg = get_degradation("blind")
    a = EvalImageDataset(good[:3], deg, seed=0, synthetic_defects=True)
    b = EvalImageDataset(list(reversed(good[:3])), deg, seed=0, synthetic_defects=True)
    assert torch.equal(a[0]["degraded"], b[2]["degraded"])
    assert a[0]["mask"].sum() > 0
    c = EvalImageDataset(good[:3], deg, seed=1, synthetic_defects=True)
    assert not torch.equal(a[0]["degraded"], c[0]["degraded"])
    real = EvalImageDataset(defective[:2], deg, crop=32)
    assert real[0]["clean"].shape == (3, 32, 32)
