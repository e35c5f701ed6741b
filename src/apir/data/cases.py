"""Evaluation cases: every test (or train) image as all consumers of an evaluation see it.

Why one type: the metrics, the figures kept for the report and the downstream detection check all
need the same image, mask and original, degraded with the same fixed parameters. Each used to
rebuild that chain itself (tensor → numpy, fixed parameters, restore, output check), and the
detection check restored every image a second time. Now the data layer yields each case once
(:func:`iter_cases`), :func:`apir.restore.functions.restore_cases` restores each exactly once, and
the consumers share the result.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from apir.data.datasets import EvalImageDataset, to_hwc
from apir.data.degradations import DegradationParams, DegradationPipeline, fixed_params
from apir.data.mvtec import Sample

__all__ = ["EvalCase", "iter_cases"]


@dataclass(frozen=True)
class EvalCase:
    """One image, degraded with parameters fixed by ``(seed, sample.key)``: float32 H×W×3 in [0, 1]
    (``clean``, ``degraded``, ``original`` or None), a boolean H×W defect ``mask``, and the
    parameters the degradation applied (``params``; ``sigma`` is its effective noise σ, 0–255)."""

    sample: Sample
    clean: np.ndarray
    degraded: np.ndarray
    original: np.ndarray | None
    mask: np.ndarray
    params: DegradationParams

    @property
    def key(self) -> str:
        return self.sample.key

    @property
    def sigma(self) -> float:
        return float(self.params.noise_sigma)


def iter_cases(
    samples: Sequence[Sample], pipeline: DegradationPipeline, seed: int = 0, crop: int | None = None
) -> Iterator[EvalCase]:
    """The cases of ``samples`` in order, read one at a time (memory: one image)."""
    if not samples:
        return
    dataset = EvalImageDataset(list(samples), pipeline, seed=seed, crop=crop)
    for index, sample in enumerate(samples):
        item = dataset[index]
        degraded, clean, original = (to_hwc(item[k]) for k in ("degraded", "clean", "original"))
        yield EvalCase(
            sample=sample,
            clean=clean,
            degraded=degraded,
            original=original if sample.original is not None else None,
            mask=item["mask"][0].numpy() > 0.5,
            # The same parameters EvalImageDataset applied (they depend only on seed and key).
            params=fixed_params(pipeline, sample.key, seed),
        )
