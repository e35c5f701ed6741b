"""The report's survival-frontier section: result sets of one restorer at several knob values drawn
as curves of overall PSNR against defect PSNR and retention, with who dominates whom.

Why in the report: ``--keep-input`` or ``--strength`` alone only slide along the trade-off between
overall quality and defect survival; comparing single numbers rewards denoising less. With results of
several knob values (``apir evaluate --strength 0.5``, ``... 0.75``, ...), each restorer becomes a curve
and methods are compared at equal overall PSNR (:mod:`apir.evaluate.frontier`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window (as apir.report.curves)
import matplotlib.pyplot as plt  # noqa: E402

from apir.evaluate.frontier import dominance  # noqa: E402
from apir.report.formatting import fmt  # noqa: E402

#: The knobs of ``apir evaluate`` that make a curve, with the value meaning "knob not used".
KNOBS: dict[str, float] = {"strength": 1.0, "keep_input": 0.0, "guard_floor": 1.0}


@dataclass
class Curve:
    """Result sets of one restorer that differ only in ``knob`` (``knob`` None: a single set)."""

    label: str
    color: str
    knob: str | None
    points: list[dict[str, Any]] = field(default_factory=list)


def _knob_values(model: dict[str, Any]) -> dict[str, float]:
    return {k: float(model[k]) if model.get(k) is not None else unused for k, unused in KNOBS.items()}


def find_curves(entries: list[tuple[str, str, Any, Any]]) -> tuple[list[Curve], list[Curve]]:
    """``entries``: (label, colour, Results, overall Summary) per result set. Returns the curves (one per
    restorer and knob with at least two values; a set can lie on several) and the sets on no curve."""
    curves: list[Curve] = []
    on_curve: set[str] = set()
    for knob in KNOBS:
        groups: dict[tuple, list[tuple[float, str, str, Any]]] = defaultdict(list)
        for label, color, results, overall in entries:
            model = results.model or {}
            if results.method != "model":
                continue
            values = _knob_values(model)
            fixed = (
                model.get("spec"),
                str(model.get("noise_level")),
                *(v for k, v in values.items() if k != knob),
            )
            groups[fixed].append((values[knob], label, color, overall))
        for fixed, members in groups.items():
            if len({v for v, *_ in members}) < 2:
                continue
            members.sort(key=lambda m: m[0])
            curve = Curve(f"{fixed[0]} model over --{knob.replace('_', '-')}", members[0][2], knob)
            for value, label, _, overall in members:
                curve.points.append(_point(overall, value, label))
                on_curve.add(label)
            curves.append(curve)
    singles = [
        Curve(label, color, None, [_point(overall, None, label)])
        for label, color, _, overall in entries
        if label not in on_curve
    ]
    return curves, singles


def _point(overall: Any, knob: float | None, label: str) -> dict[str, Any]:
    return {
        "knob": knob if knob is not None else 0.0,
        "psnr": overall.metric("psnr"),
        "psnr_defect": overall.metric("psnr_defect"),
        "retention": overall.metric("retention"),
        "label": label,
    }


def frontier_context(entries: list[tuple[str, str, Any, Any]], figures: Path) -> dict[str, Any] | None:
    """The section's figure and dominance table; None when no restorer was run at two knob values."""
    curves, singles = find_curves(entries)
    if not curves:
        return None
    rows = []
    for method in curves + singles:
        for base in curves:
            if base is method:
                continue
            shared = {p["label"] for p in base.points}  # a set on both curves is no evidence either way
            v = dominance([p for p in method.points if p["label"] not in shared], base.points)
            if not v["points_compared"]:
                continue
            verdict = "dominates" if v["dominates"] else ("somewhere" if v["somewhere"] else "no")
            rows.append([method.label, base.label, v["points_compared"], verdict,
                         fmt(v["mean_defect_margin"], 2), fmt(v["mean_retention_margin"], 3)])  # fmt: skip
    plot = plot_frontier(curves, singles, figures / "frontier.png")
    return {"figure": f"{figures.name}/{plot.name}", "rows": rows, "curves": [c.label for c in curves]}


def plot_frontier(curves: list[Curve], singles: list[Curve], out: Path) -> Path:
    """Overall PSNR against defect PSNR and against retention; curves in knob order, sets as points."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, name in (
        (axes[0], "psnr_defect", "PSNR inside the defect (dB)"),
        (axes[1], "retention", "retention"),
    ):
        for c in curves + singles:
            pts = [p for p in c.points if p["psnr"] is not None and p[key] is not None]
            if not pts:
                continue
            style = "-o" if c.knob else "s"
            ax.plot([p["psnr"] for p in pts], [p[key] for p in pts], style, color=c.color, label=c.label)
            if c.knob:
                for p in pts:
                    ax.annotate(f"{p['knob']:g}", (p["psnr"], p[key]), fontsize=7, xytext=(3, 3),
                                textcoords="offset points")  # fmt: skip
        ax.set_xlabel("overall PSNR (dB)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
