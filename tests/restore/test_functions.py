"""The shared restore-function helpers: output checks, and each evaluation case restored once."""

from __future__ import annotations

import numpy as np
import pytest

from apir.errors import ApirError
from apir.evaluate.runner import evaluate
from apir.restore.functions import check_restored, restore_cases


class _Counting:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, image: np.ndarray, sigma: float) -> np.ndarray:
        self.calls += 1
        image *= 0.5  # modifies its input in place, as a careless restorer might
        return image + sigma / 255.0


def test_restore_cases_restores_each_case_once_and_leaves_the_case_intact(tiny_demo):
    from apir.data.cases import iter_cases
    from apir.data.degradations import get_degradation
    from apir.data.mvtec import load_dataset

    samples = list(load_dataset(tiny_demo, ["brick"])[0].test)
    cases = list(iter_cases(samples, get_degradation("noise25"), seed=0))
    before = [c.degraded.copy() for c in cases]
    fn = _Counting()
    done = list(restore_cases(cases, fn))
    assert fn.calls == len(cases) == len(done) == len(samples)
    for d, degraded in zip(done, before, strict=True):
        np.testing.assert_array_equal(d.case.degraded, degraded)  # fn got a copy, modified in place
        np.testing.assert_allclose(d.restored, np.clip(degraded * 0.5 + d.case.sigma / 255.0, 0, 1))
        assert d.case.sigma > 0 and d.seconds >= 0


def test_evaluate_with_detector_restores_each_image_once(tiny_demo, tmp_path):
    calls: list[float] = []

    def restore(image: np.ndarray, sigma: float) -> np.ndarray:
        calls.append(sigma)
        return image

    def run(fit: str) -> dict:
        calls.clear()
        return evaluate(
            tiny_demo,
            tmp_path / fit,
            method="identity",
            restore_fn=restore,
            degradation="noise25",
            show_progress=False,
            save_images=0,
            detector=True,
            detector_maps=0,
            detector_fit=fit,
        )

    result = run("both")  # the default
    # Each test image once; with the users' protocol each train/good image once more.
    n_train = sum(c["n_train"] for c in result["detection"]["categories"].values())
    assert len(calls) == result["overall"]["n_images"] + n_train
    assert result["detection"]["overall"]["restored"] == result["detection"]["overall"]["degraded"]
    run("clean")
    assert len(calls) == result["overall"]["n_images"]


def test_check_restored_rejects_wrong_shapes_and_nan():
    with pytest.raises(ApirError, match="shape"):
        check_restored(np.zeros((2, 2, 3)), (2, 3, 3), "k")
    with pytest.raises(ApirError, match="NaN"):
        check_restored(np.full((2, 2, 3), np.nan), (2, 2, 3), "k")
    assert check_restored(np.full((1, 1, 3), 2.0), (1, 1, 3), "k").max() == 1.0
