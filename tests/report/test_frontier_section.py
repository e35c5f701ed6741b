"""The report's survival-frontier section: results of one model at several knob values become a curve."""

from __future__ import annotations

import json

import pytest
import torch

from apir.cli import main
from apir.evaluate.frontier import dominance
from apir.evaluate.results import load_results
from apir.report.frontier import find_curves

ARGS = ["--categories", "brick", "--max-per-category", "3", "--degradation", "noise25", "--engine", "torch"]


@pytest.fixture(scope="module")
def runs(tiny_demo, tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("frontier")
    folders = {}
    for name, extra in {
        "s0.5": ["--strength", "0.5"],
        "s1": [],
        "s1.5": ["--strength", "1.5"],
        "k0.3": ["--keep-input", "0.3"],
        "identity": ["--method", "identity"],
    }.items():
        argv = ["evaluate", "--data", str(tiny_demo), "-o", str(root / name), *ARGS, *extra]
        if name == "identity":
            argv.remove("--engine")
            argv.remove("torch")
        assert main(argv) == 0
        folders[name] = root / name
    torch.set_num_threads(before)
    return folders


def _entries(folders):
    out = []
    for name, folder in folders.items():
        results = load_results(folder)
        out.append((name, "#000000", results, results.overall))
    return out


def test_knob_values_of_one_model_form_curves_and_others_stay_points(runs):
    curves, singles = find_curves(_entries(runs))
    by_knob = {c.knob: c for c in curves}
    assert set(by_knob) == {"strength", "keep_input"}
    assert [p["label"] for p in by_knob["strength"].points] == ["s0.5", "s1", "s1.5"]  # knob order
    assert [p["label"] for p in by_knob["keep_input"].points] == ["s1", "k0.3"]  # shares strength 1
    assert [s.label for s in singles] == ["identity"]


def test_the_report_draws_the_frontier_and_its_dominance_table(runs, tmp_path):
    folders = [str(runs[k]) for k in ("s1", "s0.5", "s1.5", "k0.3", "identity")]
    assert main(["report", *folders, "-o", str(tmp_path / "rep")]) == 0
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "Survival frontier" in page and (tmp_path / "rep" / "figures" / "frontier.png").stat().st_size > 0
    curves, _ = find_curves(_entries(runs))
    strength = next(c for c in curves if c.knob == "strength")
    keep = next(c for c in curves if c.knob == "keep_input")
    # keep-input's own point (0.3), not the strength-1 set both curves share, against the strength curve
    own = [p for p in keep.points if p["label"] == "k0.3"]
    v = dominance(own, strength.points)
    if v["points_compared"]:  # the table holds the same verdict the frontier module computes
        assert f"{v['mean_defect_margin']:.2f}" in page


def test_no_frontier_section_without_a_knob_sweep(runs, tmp_path):
    assert main(["report", str(runs["s1"]), str(runs["identity"]), "-o", str(tmp_path / "rep")]) == 0
    assert "Survival frontier" not in (tmp_path / "rep" / "index.html").read_text()
    assert json.loads((runs["s1"] / "metrics.json").read_text())["model"]["strength"] == 1.0
