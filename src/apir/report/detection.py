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
from apir.errors import ApirError
from apir.fsutil import is_relative_to
from apir.report.figures import INPUT_COLOR, Series, plot_category_bars
from apir.report.formatting import e, fmt, num, slug, swatch

__all__ = ["CLEAN_COLOR", "DetectionSet", "detection_section"]

#: The clean images' bars: black, so "the detector on perfect images" reads as the reference.
CLEAN_COLOR = "#222222"
AUROC_CHART = "figures/detection_pixel_auroc.png"


@dataclass
class DetectionSet:
    """What the section needs of one result set: its label, colour, folder and detection result."""

    label: str
    color: str
    path: Path
    detection: dict[str, Any] | None


def _value(block: dict[str, Any] | None, variant: str, key: str) -> float | None:
    if not isinstance(block, dict):
        return None
    sub = block.get(variant)
    return num(sub.get(key)) if isinstance(sub, dict) else None


def _table(sets: list[DetectionSet]) -> str:
    ref = sets[0].detection["overall"]
    head = (
        "<tr><th>images</th><th>pixel AUROC</th><th>image AUROC</th>"
        "<th title='restored pixel AUROC / clean pixel AUROC'>AUROC<br>preservation</th>"
        "<th title='share of the pixels of good test images above the threshold frozen on clean images'>"
        "pixel false alarms<br>@95% clean recall</th>"
        "<th title='share of defect pixels above the frozen threshold'>pixel recall</th>"
        "<th>image false alarms</th></tr>"
    )
    rows = [f"<table>{head}"]

    def row(
        label: str, color: str, block: dict[str, Any], variant: str, pres: float | None, cls: str
    ) -> None:
        cells = [
            fmt(_value(block, variant, "pixel_auroc"), 3),
            fmt(_value(block, variant, "image_auroc"), 3),
            fmt(pres, 3),
            fmt(_value(block, variant, "false_alarm_rate"), 3),
            fmt(_value(block, variant, "recall"), 3),
            fmt(_value(block, variant, "image_false_alarm_rate"), 3),
        ]
        tds = "".join(f"<td class='n'>{c}</td>" for c in cells)
        rows.append(f"<tr class='{cls}'><td>{swatch(color)}{e(label)}</td>{tds}</tr>")

    clean_auroc = _value(ref, "clean", "pixel_auroc")
    row("clean (detector's reference)", CLEAN_COLOR, ref, "clean", 1.0 if clean_auroc else None, "input")
    row("degraded input", INPUT_COLOR, ref, "degraded", num(ref.get("auroc_preservation_degraded")), "input")
    for s in sets:
        o = s.detection["overall"]
        row(f"{s.label}: restored", s.color, o, "restored", num(o.get("auroc_preservation")), "")
    rows.append("</table>")
    return "\n".join(rows)


def _chart(sets: list[DetectionSet], out: Path) -> None:
    ref = sets[0].detection["categories"]
    categories = sorted({c for s in sets for c in s.detection["categories"]})

    def values(block: dict[str, Any], variant: str) -> list[float | None]:
        return [_value(block.get(c), variant, "pixel_auroc") for c in categories]

    series = [
        Series("clean", CLEAN_COLOR, values(ref, "clean")),
        Series("degraded input", INPUT_COLOR, values(ref, "degraded"), True),
    ]
    series += [Series(s.label, s.color, values(s.detection["categories"], "restored")) for s in sets]
    plot_category_bars(
        categories,
        series,
        "pixel AUROC",
        "reference detector: pixel AUROC per category",
        out,
        reference=(0.5, "0.5 = chance"),
    )


def _figure_path(results_dir: Path, rel: Any) -> Path:
    """A map figure's file, which must lie inside its results folder (metrics.json can be edited)."""
    if not isinstance(rel, str) or not rel:
        raise ApirError("no figure path recorded")
    path = (results_dir / rel).resolve()
    if not is_relative_to(path, results_dir.resolve()):
        raise ApirError(f"{rel}: outside the results folder")
    return path


def _maps_of(detection: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{image key: map entry} over all categories; malformed entries are left out."""
    out: dict[str, dict[str, Any]] = {}
    for cat in detection["categories"].values():
        maps = cat.get("maps")
        for m in maps if isinstance(maps, list) else []:
            if isinstance(m, dict) and isinstance(m.get("key"), str):
                out[m["key"]] = m
    return out


def _maps(sets: list[DetectionSet], folder: Path, max_maps: int) -> str:
    """Figures of the images every set drew maps for, copied into the report, side by side per image."""
    by_set = [_maps_of(s.detection) for s in sets]
    common = [k for k in by_set[0] if all(k in b for b in by_set[1:])][:max_maps]
    if not common:
        return (
            "<p class='note'>No detection maps in common (run <code>apir evaluate --detector</code> "
            "with <code>--detector-maps</code> above 0 on the same data).</p>"
        )
    out = []
    for j, key in enumerate(common, 1):
        out.append(f"<h3>{e(key)}</h3><div class='figs'>")
        for i, (s, maps) in enumerate(zip(sets, by_set, strict=True), 1):
            # Numbered, since slugs of long keys can coincide.
            rel = f"detection/{i}-{slug(s.label)}/{j:03d}-{slug(key.replace('/', '_'))}.png"
            try:
                src = _figure_path(s.path, maps[key].get("path"))
                read_image(src)  # a corrupt or missing figure is reported, never copied
            except ApirError as err:
                out.append(f"<p class='warn'>{e(s.label)}: figure skipped ({e(str(err))})</p>")
                continue
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, folder / rel)
            out.append(
                f"<figure style='margin:0'><figcaption>{swatch(s.color)}{e(s.label)}</figcaption>"
                f"<img class='fig' src='{e(rel)}' alt='detection maps of {e(key)}: {e(s.label)}'></figure>"
            )
        out.append("</div>")
    return "\n".join(out)


def _usable(detection: Any) -> bool:
    """A detection result with the parts the section reads (anything else is treated as absent)."""
    return (
        isinstance(detection, dict)
        and isinstance(detection.get("overall"), dict)
        and isinstance(detection.get("categories"), dict)
        and all(isinstance(c, dict) for c in detection["categories"].values())
    )


def _detector_name(described: Any) -> str:
    if isinstance(described, dict):
        return str(described.get("name") or "see docs/anomaly-detection.md")
    return str(described or "see docs/anomaly-detection.md")


def detection_section(sets: list[DetectionSet], folder: Path, heading: str, max_maps: int = 3) -> str:
    """The section's HTML ('' when no set has a detection result); writes its chart and map copies."""
    with_det = [s for s in sets if _usable(s.detection)]
    if not with_det:
        return ""
    without = [s.label for s in sets if s not in with_det]
    d = with_det[0].detection
    _chart(with_det, folder / AUROC_CHART)
    parts = [
        f"<h2>{e(heading)}</h2>",
        "<p class='small'>The reference detector (no downloaded weights; "
        f"{e(_detector_name(d.get('detector')))}) is fitted per "
        "category on clean <code>train/good</code> and scores the clean, degraded and restored test "
        "images. Thresholds are fixed on the clean images at 95% recall and frozen. "
        "<b>AUROC preservation</b> = restored / clean pixel AUROC (1 = restoration lost nothing the "
        "detector uses); the degraded input's ratio is the baseline a restorer must beat. False alarms "
        "on restored good images should stay near the clean rate. Each set's numbers are over the "
        "images it was evaluated on (the clean and degraded rows: the first set's).</p>",
    ]
    if without:
        parts.append(
            f"<p class='note'>Evaluated without <code>--detector</code>: {e(', '.join(without))}.</p>"
        )
    parts += [
        _table(with_det),
        "<div class='figs'>",
        f"<img class='fig' src='{AUROC_CHART}' alt='pixel AUROC per category: clean, degraded, restored'>",
        "</div>",
        "<p class='small'>Detection maps, one figure per result set. Top row: clean, degraded, restored, "
        "mask. Bottom row: the three score maps on one log colour scale per figure (mask outline green, "
        "frozen-threshold contour white), then the restored image's detections at the threshold in red. "
        "A restorer that erases a defect leaves a dark map inside the green outline; one that leaves "
        "noise lights up the background.</p>",
        _maps(with_det, folder, max_maps),
    ]
    return "\n".join(parts)
