"""The shared restore-function helpers: output checks and the memoizing wrapper."""

from __future__ import annotations

import numpy as np
import pytest

from apir.errors import ApirError
from apir.evaluate.runner import evaluate
from apir.restore.functions import MemoizedRestore, check_restored


class _Counting:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, image: np.ndarray, sigma: float) -> np.ndarray:
        self.calls += 1
        image *= 0.5  # modifies its input in place, as a careless restorer might
        return image + sigma / 255.0


def test_memoized_restore_returns_the_same_output_once_computed():
    fn = _Counting()
    memo = MemoizedRestore(fn)
    x = np.random.default_rng(0).random((8, 9, 3), dtype=np.float32)
    a = memo(x.copy(), 10.0)
    b = memo(x.copy(), 10.0)
    assert fn.calls == 1 and memo.hits == 1
    np.testing.assert_array_equal(a, b)
    b += 1  # a returned copy, not the cached array
    np.testing.assert_array_equal(memo(x.copy(), 10.0), a)
    memo(x.copy(), 11.0)  # another σ is another call
    memo(x[::-1].copy(), 10.0)  # other pixels too
    assert fn.calls == 3


def test_memoized_restore_stays_within_its_budget():
    fn = _Counting()
    x = np.zeros((4, 4, 3), np.float32)
    memo = MemoizedRestore(fn, max_bytes=x.nbytes)  # room for one output
    memo(x.copy(), 1.0)
    memo(x.copy() + 0.1, 1.0)  # not stored
    memo(x.copy() + 0.1, 1.0)
    memo(x.copy(), 1.0)  # stored: a hit
    assert fn.calls == 3 and memo.hits == 1


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
