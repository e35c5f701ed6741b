"""The detection-map figure that ``apir evaluate --detector`` saves per image (drawing only).

Computed by :mod:`apir.evaluate.detection` (which fits the detector and scores the images) and shown
by the report's detection section; the drawing lives here with the report's other figures. The
figure is an array (written as a PNG by the caller), not a matplotlib plot: each panel must keep the
score map's pixels one to one.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["VARIANTS", "detection_figure"]

#: The three images the detector scores, in the figure's column order.
VARIANTS = ("clean", "degraded", "restored")


def _colour(score: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Inferno colours on a log scale from ``lo`` to ``hi``: degraded maps often score 10× higher than
    clean ones, and a linear scale would paint the clean map black."""
    floor = max(lo, 1e-6)
    top = max(hi, floor * (1 + 1e-6))
    t = (np.log(np.maximum(score, floor)) - np.log(floor)) / (np.log(top) - np.log(floor))
    u8 = np.clip(t * 255.0, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def _outline(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.uint8)
    return (m - cv2.erode(m, np.ones((3, 3), np.uint8))).astype(bool)


def detection_figure(
    images: dict[str, np.ndarray], maps: dict[str, np.ndarray], mask: np.ndarray, tau: float
) -> tuple[np.ndarray, float, float]:
    """2×4 panels. Top: clean, degraded, restored, mask. Bottom: their score maps on one (log) colour
    scale (mask outline green, frozen-threshold contour white), and the restored detections at τ (red)."""
    lo = float(min(m.min() for m in maps.values()))
    hi = float(max(m.max() for m in maps.values()))
    edge = _outline(mask)
    top = [np.clip(images[v], 0, 1) for v in VARIANTS]
    top.append(np.repeat(mask[..., None].astype(np.float32), 3, axis=2))
    bottom = []
    for v in VARIANTS:
        panel = _colour(maps[v], lo, hi).astype(np.float32) / 255.0
        if math.isfinite(tau):
            panel[_outline(maps[v] >= tau)] = 1.0
        panel[edge] = (0.0, 1.0, 0.0)
        bottom.append(panel)
    found = np.repeat((np.clip(images["restored"], 0, 1).mean(axis=2, keepdims=True) * 0.5), 3, axis=2)
    if math.isfinite(tau):
        found[maps["restored"] >= tau] = (1.0, 0.0, 0.0)
    found[edge] = (0.0, 1.0, 0.0)
    bottom.append(found)
    gap = 2

    def row(panels: list[np.ndarray]) -> np.ndarray:
        h = panels[0].shape[0]
        sep = np.full((h, gap, 3), 0.5, np.float32)
        parts: list[np.ndarray] = []
        for p in panels:
            parts += [p.astype(np.float32), sep]
        return np.concatenate(parts[:-1], axis=1)

    a, b = row(top), row(bottom)
    return np.concatenate([a, np.full((gap, a.shape[1], 3), 0.5, np.float32), b], axis=0), lo, hi
