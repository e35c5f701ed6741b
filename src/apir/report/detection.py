"""The report's anomaly-detection section: does the reference detector still find the defects?

``apir evaluate --detector`` stores :func:`apir.evaluate.detection.detection_check`'s result under
``metrics.json["detection"]`` and draws score-map figures into ``<results>/detection/``. This section
turns those into what a reader needs to judge a restorer for inspection at a glance:

* a table of detection quality per result set, clean and degraded first (they are the same for every
  restorer evaluated on the same data: one detector, one set of degraded images), then each set's
  restored images, with ``auroc_preservation`` and the false alarms at the threshold frozen on clean
  images;
* a per-category pixel-AUROC chart (clean, degraded, then one bar per restorer);
* the detection-map figures of the same images side by side, one per result set (each figure shows
  clean / degraded / restored and their score maps on one colour scale).

Result sets evaluated without ``--detector`` are listed as such; the section is left out entirely when
no set has a detection result.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apir.data.imageio import read_image
from apir.errors import ApirError, safe_name
from apir.evaluate.results import Detection, DetectionCategory
from apir.fsutil import is_relative_to
from apir.report.figures import INPUT_COLOR, Series, plot_category_bars
from apir.report.formatting import fmt, render, slug

__all__ = ["CLEAN_COLOR", "DetectionSet", "detection_context", "detection_section"]

#: The clean images' bars: black, so "the detector on perfect images" reads as the reference.
CLEAN_COLOR = "#222222"
AUROC_CHART = "figures/detection_pixel_auroc.png"


@dataclass
class DetectionSet:
    """What the section needs of one result set: its label, colour, folder and detection result."""

    label: str
    color: str
    path: Path
    detection: Detection | None


def _row(label: str, color: str, block: DetectionCategory, variant: str, pres: float | None, is_input: bool):
    v = getattr(block, variant)
    values = (v.pixel_auroc, v.image_auroc, pres, v.false_alarm_rate, v.recall, v.image_false_alarm_rate)
    return {"label": label, "color": color, "is_input": is_input, "cells": [fmt(x, 3) for x in values]}


def _rows(sets: list[DetectionSet]) -> list[dict[str, Any]]:
    ref = sets[0].detection.overall
    clean = ref.clean.pixel_auroc
    rows = [
        _row("clean (detector's reference)", CLEAN_COLOR, ref, "clean", 1.0 if clean else None, True),
        _row("degraded input", INPUT_COLOR, ref, "degraded", ref.auroc_preservation_degraded, True),
    ]
    for s in sets:
        o = s.detection.overall
        rows.append(_row(f"{s.label}: restored", s.color, o, "restored", o.auroc_preservation, False))
    return rows


def _chart(sets: list[DetectionSet], out: Path) -> None:
    ref = sets[0].detection.categories
    categories = sorted({c for s in sets for c in s.detection.categories})

    def values(block: dict[str, DetectionCategory], variant: str) -> list[float | None]:
        return [getattr(block[c], variant).pixel_auroc if c in block else None for c in categories]

    series = [
        Series("clean", CLEAN_COLOR, values(ref, "clean")),
        Series("degraded input", INPUT_COLOR, values(ref, "degraded"), True),
    ]
    series += [Series(s.label, s.color, values(s.detection.categories, "restored")) for s in sets]
    plot_category_bars(
        categories,
        series,
        "pixel AUROC",
        "reference detector: pixel AUROC per category",
        out,
        reference=(0.5, "0.5 = chance"),
    )


def _figure_path(results_dir: Path, rel: str) -> Path:
    """A map figure's file, which must lie inside its results folder (metrics.json can be edited)."""
    path = (results_dir / rel).resolve()
    if not rel or not is_relative_to(path, results_dir.resolve()):
        raise ApirError(f"{safe_name(rel)}: outside the results folder")
    return path


def _maps(sets: list[DetectionSet], folder: Path, max_maps: int) -> list[dict[str, Any]]:
    """Figures of the images every set drew maps for, copied into the report, side by side per image."""
    by_set = [{m.key: m for c in s.detection.categories.values() for m in c.maps} for s in sets]
    common = [k for k in by_set[0] if all(k in b for b in by_set[1:])][:max_maps]
    images = []
    for j, key in enumerate(common, 1):
        figures = []
        for i, (s, maps) in enumerate(zip(sets, by_set, strict=True), 1):
            # Numbered, since slugs of long keys can coincide.
            rel = f"detection/{i}-{slug(s.label)}/{j:03d}-{slug(key.replace('/', '_'))}.png"
            try:
                src = _figure_path(s.path, maps[key].path)
                read_image(src)  # a corrupt or missing figure is reported, never copied
            except ApirError as err:
                figures.append({"label": s.label, "color": s.color, "src": None, "error": str(err)})
                continue
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, folder / rel)
            figures.append({"label": s.label, "color": s.color, "src": rel})
        images.append({"key": key, "figures": figures})
    return images


def _detector_name(described: Any) -> str:
    if isinstance(described, dict):
        return str(described.get("name") or "see docs/anomaly-detection.md")
    return str(described or "see docs/anomaly-detection.md")


def detection_context(
    sets: list[DetectionSet], folder: Path, heading: str, max_maps: int = 3
) -> dict[str, Any] | None:
    """What ``templates/detection.html.j2`` shows (None when no set has a detection result); writes the
    section's chart and map copies into ``folder``."""
    with_det = [s for s in sets if s.detection is not None]
    if not with_det:
        return None
    _chart(with_det, folder / AUROC_CHART)
    return {
        "heading": heading,
        "detector": _detector_name(with_det[0].detection.detector),
        "without": [s.label for s in sets if s.detection is None],
        "rows": _rows(with_det),
        "chart": AUROC_CHART,
        "maps": _maps(with_det, folder, max_maps),
    }


def detection_section(sets: list[DetectionSet], folder: Path, heading: str, max_maps: int = 3) -> str:
    """The section as HTML on its own ('' when no set has a detection result)."""
    context = detection_context(sets, folder, heading, max_maps)
    return render("detection.html.j2", detection=context) if context else ""
