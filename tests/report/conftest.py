"""Fixtures that fabricate ``apir evaluate`` results folders, so the report is tested without the evaluator.

The images are tiny (40×48) but real: a textured clean image with a dark defect, a noisy "degraded"
copy, and per-method "restored" images that denoise more or less and keep more or less of the defect,
with the metrics computed from them, so the charts and examples show the differences they should.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from apir.data.imageio import write_image, write_mask

H, W = 40, 48
CATEGORIES = {"bottle": ["crack", "contamination"], "carpet": ["hole"], "pill": ["scratch"]}


def _psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float | None:
    err = (a - b) ** 2
    if mask is not None:
        if not mask.any():
            return None
        err = err[mask]
    return float(10 * np.log10(1.0 / max(float(err.mean()), 1e-10)))


def _scene(rng: np.random.Generator, defect: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clean, original without defect, mask): a smooth colour gradient with fine texture and a dark blob."""
    yy, xx = np.mgrid[0:H, 0:W] / np.array([H, W])[:, None, None]
    base = np.stack([0.3 + 0.4 * xx, 0.5 + 0.2 * yy, 0.6 - 0.3 * xx * yy], axis=-1)
    original = np.clip(base + 0.03 * rng.standard_normal((H, W, 1)), 0, 1).astype(np.float32)
    mask = np.zeros((H, W), bool)
    if defect:
        cy, cx = rng.integers(10, H - 10), rng.integers(10, W - 10)
        mask[cy - 3 : cy + 3, cx - 5 : cx + 6] = True
        mask[cy - 1 : cy + 1, cx - 9 : cx + 10] = True
    clean = original.copy()
    clean[mask] = np.clip(clean[mask] - 0.35, 0, 1)
    return clean, original, mask


def fabricate_results(
    path: Path,
    label: str,
    *,
    method: str,
    denoise: float,
    keep: float,
    skip: tuple[str, ...] = (),
    degradation: str = "noise25",
    null_retention_category: str | None = "carpet",
    seed: int = 0,
) -> Path:
    """Write a results folder like ``apir evaluate`` does.

    ``denoise`` (0–1) is the share of the noise a method removes, ``keep`` (0–1) the share of the
    defect it keeps; keys listed in ``skip`` are left out (to test differing image sets).
    """
    rng = np.random.default_rng(seed)  # same seed in every set: identical clean / degraded images
    images = []
    for cat, types in CATEGORIES.items():
        for dtype in ["good", *types]:
            for i in range(1 if dtype == "good" else 2):
                stem = f"{i:03d}"
                key = f"{cat}/test/{dtype}/{stem}"
                clean, original, mask = _scene(rng, dtype != "good")
                noise = (0.1 if degradation == "noise25" else 0.05) * rng.standard_normal(clean.shape)
                degraded = np.clip(clean + noise, 0, 1).astype(np.float32)
                if key in skip:
                    continue
                defect = clean - original
                restored = np.clip(original + keep * defect + (1 - denoise) * noise, 0, 1).astype(np.float32)
                rel = f"images/{cat}/{dtype}/{stem}"
                d = path / rel
                write_image(d / "clean.png", (clean * 255).round().astype(np.uint8))
                write_image(d / "degraded.png", (degraded * 255).round().astype(np.uint8))
                write_image(d / "restored.png", (restored * 255).round().astype(np.uint8))
                write_mask(d / "mask.png", mask)
                has_defect = bool(mask.any())
                ret = None if (not has_defect or cat == null_retention_category) else keep
                entry = {
                    "key": key,
                    "category": cat,
                    "defect_type": dtype,
                    "height": H,
                    "width": W,
                    "seconds": 0.01 + 0.02 * denoise,
                    "noise_sigma": 25.0,
                    "image_dir": rel,
                }
                for prefix, img in (("", restored), ("input_", degraded)):
                    entry[f"{prefix}psnr"] = _psnr(img, clean)
                    entry[f"{prefix}ssim"] = float(np.clip(1 - 4 * np.mean((img - clean) ** 2) ** 0.5, 0, 1))
                    entry[f"{prefix}psnr_defect"] = _psnr(img, clean, mask) if has_defect else None
                    entry[f"{prefix}psnr_background"] = _psnr(img, clean, ~mask)
                    entry[f"{prefix}retention"] = ret if prefix == "" else (None if ret is None else 1.0)
                    entry[f"{prefix}contrast_ratio"] = (
                        None if not has_defect else (keep if prefix == "" else 1.0)
                    )
                images.append(entry)

    def agg(imgs: list[dict]) -> dict:
        out: dict = {}
        for m in ("psnr", "ssim", "psnr_defect", "psnr_background", "retention", "contrast_ratio"):
            for name in (m, f"input_{m}"):
                vals = [x[name] for x in imgs if x[name] is not None]
                out[name] = float(np.mean(vals)) if vals else None
        secs = sum(x["seconds"] for x in imgs)
        out.update(n_images=len(imgs), seconds=secs, megapixels_per_second=len(imgs) * H * W / secs / 1e6)
        return out

    metrics = {
        "schema": "apir.evaluate/1",
        "label": label,
        "method": method,
        "model": {"name": method.lower(), "params": 1140000} if method == "model" else None,
        "dataset": "demo",
        "split": "test",
        "degradation": degradation,
        "seed": 0,
        "conventions": {
            "ssim": "Gaussian window 11, sigma 1.5, RGB channel mean",
            "range": "[0, 1], data_range 1",
        },
        "metric_names": ["psnr", "ssim", "psnr_defect", "psnr_background", "retention", "contrast_ratio"],
        "overall": agg(images),
        "categories": {c: agg([x for x in images if x["category"] == c]) for c in CATEGORIES},
        "images": images,
        "apir_version": "0.1.0",
        "created": "2025-01-01T12:00:00+00:00",
    }
    (path / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return path


@pytest.fixture(scope="session")
def results_dirs(tmp_path_factory) -> list[Path]:
    """Three read-only result sets on the same images: a model (label with HTML in it), CBM3D and NLM."""
    root = tmp_path_factory.mktemp("results")
    return [
        fabricate_results(
            root / "model", "NAFNet <script>alert(1)</script>", method="model", denoise=0.85, keep=0.9
        ),
        fabricate_results(root / "cbm3d", "CBM3D", method="cbm3d", denoise=0.8, keep=0.7),
        fabricate_results(root / "nlm", "NLM", method="nlm", denoise=0.6, keep=0.5),
    ]


@pytest.fixture()
def make_results(tmp_path) -> Callable[..., Path]:
    """Fabricate a results folder under this test's tmp_path: ``make_results(name, label, **kwargs)``."""

    def make(name: str, label: str, **kwargs) -> Path:
        kwargs.setdefault("method", "nlm")
        kwargs.setdefault("denoise", 0.6)
        kwargs.setdefault("keep", 0.5)
        return fabricate_results(tmp_path / name, label, **kwargs)

    return make
