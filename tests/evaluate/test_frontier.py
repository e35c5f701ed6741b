"""The survival frontier's dominance computation, on hand-made curves."""

from __future__ import annotations

import pytest

from apir.evaluate.frontier import dominance, interpolate, milestone

BASE = [
    {"knob": 0.5, "psnr": 26.0, "psnr_defect": 25.0, "retention": 0.90},
    {"knob": 1.0, "psnr": 28.0, "psnr_defect": 24.0, "retention": 0.85},
    {"knob": 1.5, "psnr": 30.0, "psnr_defect": 23.0, "retention": 0.80},
]


def shifted(defect, retention, psnrs=(27.0, 29.0)):
    return [
        {
            "knob": i,
            "psnr": p,
            "psnr_defect": interpolate(BASE, p, "psnr_defect") + defect,
            "retention": interpolate(BASE, p, "retention") + retention,
        }  # fmt: skip
        for i, p in enumerate(psnrs)
    ]


def test_interpolation_is_linear_and_none_outside():
    assert interpolate(BASE, 27.0, "psnr_defect") == pytest.approx(24.5)
    assert interpolate(BASE, 29.0, "retention") == pytest.approx(0.825)
    assert interpolate(BASE, 25.9, "psnr_defect") is None
    assert interpolate(BASE, 30.1, "retention") is None


def test_a_curve_above_on_both_axes_dominates_with_its_margins():
    v = dominance(shifted(0.5, 0.02), BASE)
    assert v["dominates"] and v["somewhere"] and v["points_compared"] == 2
    assert v["mean_defect_margin"] == pytest.approx(0.5)
    assert v["mean_retention_margin"] == pytest.approx(0.02)


def test_higher_defect_psnr_but_lower_retention_does_not_dominate():
    v = dominance(shifted(0.5, -0.01), BASE)
    assert not v["dominates"] and not v["somewhere"]


def test_one_point_above_is_somewhere_not_dominance():
    curve = shifted(0.5, 0.02)
    curve[1]["psnr_defect"] -= 1.0
    v = dominance(curve, BASE)
    assert v["somewhere"] and not v["dominates"]


def test_points_outside_the_baseline_range_are_not_compared():
    outside = [{"knob": 1, "psnr": 31.0, "psnr_defect": 30.0, "retention": 0.99}]
    v = dominance(outside, BASE)
    assert v["points_compared"] == 0 and not v["dominates"]


def test_the_baseline_does_not_dominate_itself():
    assert not dominance(BASE, BASE)["somewhere"]


def test_milestone_at_the_reference_psnr():
    ref = BASE[1]
    good = shifted(1.2, 0.06, psnrs=(27.0, 29.0))
    m = milestone(good, ref)
    assert m["defect_gain"] == pytest.approx(1.2) and m["retention"] == pytest.approx(0.91)
    assert m["passed"]
    assert not milestone(shifted(0.5, 0.1), ref)["passed"]
    assert milestone(shifted(1.0, 0.1, psnrs=(29.0, 29.5)), ref) is None


def test_a_curve_that_turns_back_is_compared_with_its_better_branch():
    # CBM3D's σ scale: overall PSNR rises, then falls as the knob grows; at PSNR 27 the under-smoothing
    # branch (knob 0.5 -> 1.0) keeps more of the defect than the over-smoothing one (1.0 -> 1.5).
    turning = [
        {"knob": 0.5, "psnr": 26.0, "psnr_defect": 26.0, "retention": 0.95},
        {"knob": 1.0, "psnr": 28.0, "psnr_defect": 25.0, "retention": 0.85},
        {"knob": 1.5, "psnr": 26.0, "psnr_defect": 22.0, "retention": 0.70},
    ]
    assert interpolate(turning, 27.0, "psnr_defect") == pytest.approx(25.5)  # not 23.5, not a splice
    assert interpolate(turning, 27.0, "retention") == pytest.approx(0.90)
    # above the lower branch only
    between = [{"knob": 1.0, "psnr": 27.0, "psnr_defect": 24.0, "retention": 0.80}]
    v = dominance(between, turning)
    assert v["points_compared"] == 1 and not v["somewhere"]
    assert v["mean_defect_margin"] == pytest.approx(-1.5)
