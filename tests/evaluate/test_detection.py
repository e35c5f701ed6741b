"""The detection check on the tiny demo dataset: identity and perfect restorers bracket the metrics."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

from apir.data.datasets import EvalImageDataset
from apir.data.degradations import get_degradation
from apir.data.imageio import read_image
from apir.data.mvtec import load_dataset
from apir.errors import ApirError
from apir.evaluate.detection import VARIANTS, detection_check, frozen_threshold

DEGRADATION = "noise25"


def _identity(image: np.ndarray, sigma: float) -> np.ndarray:
    return image


def _digest(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr, dtype=np.float32).tobytes()).hexdigest()


def _perfect_restorer(root, degradation: str = DEGRADATION, seed: int = 0):
    """A cheat that knows every clean image: looks the degraded input up by its exact bytes."""
    table = {}
    for cat in load_dataset(root):
        ds = EvalImageDataset(cat.test, get_degradation(degradation), seed=seed)
        for i in range(len(ds)):
            item = ds[i]
            degraded = item["degraded"].numpy().transpose(1, 2, 0)
            table[_digest(degraded)] = item["clean"].numpy().transpose(1, 2, 0).copy()

    def restore(image: np.ndarray, sigma: float) -> np.ndarray:
        return table[_digest(image)]

    return restore


@pytest.fixture(scope="module")
def identity_result(tiny_demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("detection")
    return detection_check(tiny_demo, restore_fn=_identity, degradation=DEGRADATION, out_dir=out), out


def test_identity_restorer_equals_degraded(identity_result):
    result, _ = identity_result
    assert set(result["categories"]) == {"brick", "coffee"}
    for entry in [*result["categories"].values(), result["overall"]]:
        assert entry["restored"] == entry["degraded"]
        assert entry["auroc_preservation"] == pytest.approx(entry["auroc_preservation_degraded"])
    for entry in result["categories"].values():
        ratio = entry["restored"]["pixel_auroc"] / entry["clean"]["pixel_auroc"]
        assert entry["auroc_preservation"] == pytest.approx(ratio)
        # The thresholds are set on clean images at 95 % recall.
        assert entry["clean"]["recall"] >= 0.95
        assert entry["clean"]["image_recall"] >= 0.95
        assert entry["n_good"] == 2 and entry["n_defective"] == 6 and entry["n_train"] == 6
        for v in VARIANTS:
            for key in ("pixel_auroc", "image_auroc", "false_alarm_rate", "image_false_alarm_rate"):
                assert 0.0 <= entry[v][key] <= 1.0


def test_overall_is_the_mean_over_categories(identity_result):
    result, _ = identity_result
    cats = list(result["categories"].values())
    for v in VARIANTS:
        expected = np.mean([c[v]["pixel_auroc"] for c in cats])
        assert result["overall"][v]["pixel_auroc"] == pytest.approx(expected)
    assert result["overall"]["auroc_preservation"] == pytest.approx(
        np.mean([c["auroc_preservation"] for c in cats])
    )
    assert result["overall"]["n_categories"] == 2
    assert result["overall"]["n_defective"] == 12
    assert "pixel_threshold" not in result["overall"]


def test_result_is_json_and_maps_are_written(identity_result):
    result, out = identity_result
    json.dumps(result, allow_nan=False)
    for name, entry in result["categories"].items():
        assert len(entry["maps"]) == 2
        types = {m["key"].split("/")[2] for m in entry["maps"]}
        assert len(types) == 2  # round-robin over defect types
        for m in entry["maps"]:
            assert m["path"].startswith(f"detection/{name}/")
            fig = read_image(out / m["path"])
            assert fig.info.channels == 3
            assert fig.rgb.shape[0] > 64 * 2 and fig.rgb.shape[1] > 64 * 4  # 2×4 panels
            assert m["vmax"] >= m["vmin"]


def test_perfect_restorer_preserves_everything(tiny_demo):
    result = detection_check(
        tiny_demo, restore_fn=_perfect_restorer(tiny_demo), degradation=DEGRADATION, save_maps=0
    )
    for entry in [*result["categories"].values(), result["overall"]]:
        assert entry["restored"] == entry["clean"]
        assert entry["auroc_preservation"] == pytest.approx(1.0)
        assert entry["image_auroc_preservation"] == pytest.approx(1.0)


def test_subset_and_errors(tiny_demo):
    result = detection_check(
        tiny_demo,
        restore_fn=_identity,
        degradation="none",
        categories=["coffee"],
        max_per_category=4,
        save_maps=0,
    )
    entry = result["categories"]["coffee"]
    assert entry["n_good"] + entry["n_defective"] == 4
    assert entry["n_good"] == 1  # round-robin: one of each of good + 3 defect types
    # No degradation and the identity: all three variants score the same.
    assert entry["clean"] == entry["degraded"] == entry["restored"]

    with pytest.raises(ApirError, match="shape"):
        detection_check(tiny_demo, restore_fn=lambda x, s: x[:10], degradation="none", save_maps=0)
    with pytest.raises(ApirError, match="callable"):
        detection_check(tiny_demo, restore_fn=None, save_maps=0)
    with pytest.raises(ApirError, match="unknown categor"):
        detection_check(tiny_demo, restore_fn=_identity, categories=["nope"], save_maps=0)


def test_frozen_threshold():
    scores = np.arange(100, dtype=float)
    tau = frozen_threshold(scores)
    assert np.mean(scores >= tau) >= 0.95 and tau == 5.0
    ties = np.array([1.0] * 10 + [2.0] * 90)
    assert np.mean(ties >= frozen_threshold(ties)) >= 0.95
    assert math.isnan(frozen_threshold(np.array([])))


def test_users_protocol_fits_on_degraded_and_restored_train_good(tiny_demo):
    """fit="both": with the identity as restorer, the restored-fit scores equal the degraded-fit ones."""
    result = detection_check(tiny_demo, restore_fn=_identity, degradation=DEGRADATION, fit="both")
    for entry in [*result["categories"].values(), result["overall"]]:
        users = entry["fit_on_restored"]
        assert users["restored"] == users["degraded"]
        assert 0.0 <= users["restored"]["pixel_auroc"] <= 1.0
    plain = detection_check(tiny_demo, restore_fn=_identity, degradation=DEGRADATION)
    assert "fit_on_restored" not in plain["overall"]
    with pytest.raises(ApirError, match="fit"):
        detection_check(tiny_demo, restore_fn=_identity, degradation=DEGRADATION, fit="dirty")
