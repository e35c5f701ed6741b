"""A contact sheet of clean / degraded / mask triplets: the first thing to look at in a new dataset.

It lets a person judge at a glance whether the degradation preset is realistic and whether the defects
(and their masks) are where they should be, before spending hours of training on them.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from apir.data.datasets import EvalImageDataset  # noqa: E402
from apir.data.degradations import DegradationPipeline  # noqa: E402
from apir.data.mvtec import Category  # noqa: E402
from apir.fsutil import atomic_path  # noqa: E402


def _overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with the defect mask tinted red and its outline drawn, so small defects stand out."""
    out = image.copy()
    red = np.array([1.0, 0.1, 0.1], np.float32)
    out[mask] = 0.45 * out[mask] + 0.55 * red
    return out


def write_contact_sheet(
    categories: list[Category],
    degradation: DegradationPipeline,
    out: str | Path,
    per_category: int = 1,
    seed: int = 0,
) -> Path:
    """One row per defective test image (``per_category`` per category): clean, degraded, mask overlay."""
    samples = []
    for cat in categories:
        defective = [s for s in cat.test if not s.is_good and s.mask is not None]
        samples.extend((defective or cat.test)[:per_category])
    ds = EvalImageDataset(samples, degradation, seed=seed)
    rows = len(ds)
    fig, axes = plt.subplots(rows, 3, figsize=(7.5, 2.5 * rows), squeeze=False)
    for r in range(rows):
        item = ds[r]
        clean, degraded = (item[k].numpy().transpose(1, 2, 0) for k in ("clean", "degraded"))
        mask = item["mask"][0].numpy() > 0.5
        panels = [
            (clean, "clean"),
            (np.clip(degraded, 0, 1), f"degraded ({degradation.name})"),
            (_overlay(clean, mask), "defect mask"),
        ]
        for c, (img, title) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(samples[r].key.replace("/test/", "\n"), fontsize=7)
            if r == 0:
                ax.set_title(title, fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return out
