"""The survival frontier: compare restorers as curves over their knob, at equal overall quality.

Why: keeping more of a defect is easy by denoising less; a method is only better when, at the same
overall PSNR, it keeps more of the defect. A restorer with a knob (``--strength``, ``--keep-input``,
``--guard-floor``, CBM3D's σ scale) is a curve of (overall PSNR, defect PSNR, retention) points;
:func:`dominance` compares a method's points with a baseline curve at equal overall PSNR
(:func:`interpolate`), and :func:`milestone` reads a curve at a reference point's PSNR. Used by
``benchmarks/frontier.py`` and by ``apir report`` when results of several knob values are given.

A point is a dict with ``psnr``, ``psnr_defect``, ``retention`` and its ``knob`` value.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

__all__ = ["MILESTONE_DEFECT_GAIN", "MILESTONE_RETENTION", "dominance", "interpolate", "milestone"]

#: The survival issue's milestone at the default's operating point: defect PSNR gain and retention.
MILESTONE_DEFECT_GAIN = 1.0
MILESTONE_RETENTION = 0.90


def interpolate(curve: list[dict[str, Any]], psnr: float, key: str) -> float | None:
    """The best ``key`` that ``curve`` reaches at overall PSNR ``psnr``; None outside its PSNR range.

    The curve is the path of its knob (points in knob order, linear between neighbours). A knob that
    first raises and then lowers overall PSNR (CBM3D's σ scale, ``--strength``) passes the same
    PSNR twice, once under-smoothing and once over-smoothing; the value is the better of the
    branches there (the curve's upper envelope), so a method must beat the baseline's best setting
    to dominate it. Sorting the points by PSNR instead would splice the two branches together.
    """
    pts = [
        (p["psnr"], p[key])
        for p in sorted(curve, key=lambda q: q.get("knob", 0.0))
        if p.get("psnr") is not None and p.get(key) is not None
    ]
    values = [y for x, y in pts if x == psnr]
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        if min(x0, x1) < psnr < max(x0, x1):
            values.append(y0 + (y1 - y0) * (psnr - x0) / (x1 - x0))
    return float(max(values)) if values else None


def dominance(method: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> dict[str, Any]:
    """How ``method``'s points compare with ``baseline``'s curve at equal overall PSNR.

    For every method point whose PSNR lies within the baseline curve's range: the defect-PSNR and
    retention margins over the interpolated baseline. ``dominates``: there is such a point and at every
    one both margins are positive; ``somewhere``: at least one point has both positive.
    """
    margins = []
    for p in method:
        d = interpolate(baseline, p["psnr"], "psnr_defect")
        r = interpolate(baseline, p["psnr"], "retention")
        if d is None or r is None or p.get("psnr_defect") is None or p.get("retention") is None:
            continue
        margins.append({"knob": p.get("knob"), "psnr": p["psnr"], "defect": p["psnr_defect"] - d,
                        "retention": p["retention"] - r})  # fmt: skip
    both = [m["defect"] > 0 and m["retention"] > 0 for m in margins]
    return {
        "points_compared": len(margins),
        "dominates": bool(margins) and all(both),
        "somewhere": any(both),
        "mean_defect_margin": float(np.mean([m["defect"] for m in margins])) if margins else None,
        "mean_retention_margin": float(np.mean([m["retention"] for m in margins])) if margins else None,
        "margins": margins,
    }


def milestone(curve: list[dict[str, Any]], reference: dict[str, Any]) -> dict[str, Any] | None:
    """``curve`` at the reference point's overall PSNR: defect gain and retention against the targets."""
    d = interpolate(curve, reference["psnr"], "psnr_defect")
    r = interpolate(curve, reference["psnr"], "retention")
    if d is None or r is None:
        return None
    gain = d - reference["psnr_defect"]
    return {
        "psnr": reference["psnr"],
        "defect_gain": gain,
        "retention": r,
        "passed": gain >= MILESTONE_DEFECT_GAIN and r >= MILESTONE_RETENTION,
    }
