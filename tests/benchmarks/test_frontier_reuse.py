"""benchmarks/frontier.py --reuse: curves of another run are taken only for the same images."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import frontier  # noqa: E402


def _point(knob: float, psnr: float) -> dict:
    return {"knob": knob, "psnr": psnr, "psnr_defect": psnr - 2, "retention": 0.8}


def _results(tmp_path: Path, strength_psnr: float, **settings) -> Path:
    data = {
        "settings": {"data": "/x/corpus_unseen", "max_per_category": 2, "categories": None, "seed": 0}
        | settings,
        "curves": {
            "noise25": {
                "strength": [_point(0.5, 27.0), _point(1.0, strength_psnr)],
                "cbm3d": [_point(1.0, 28.5)],
            }
        },
    }
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    return path


SETTINGS = {"data": Path("/y/corpus_unseen"), "max_per_category": 2, "categories": None, "seed": 0}


def test_reuse_adds_the_curves_this_run_did_not_measure(tmp_path):
    curves = {"noise25": {"strength": [_point(0.5, 27.0), _point(1.0, 28.0)]}}
    reused = frontier.reuse_curves(_results(tmp_path, 28.0), curves, dict(SETTINGS))
    assert reused == ["noise25/cbm3d"]
    assert curves["noise25"]["cbm3d"] == [_point(1.0, 28.5)]
    assert curves["noise25"]["strength"][1]["psnr"] == 28.0  # this run's own curve is kept


def test_reuse_refuses_other_images(tmp_path):
    curves = {"noise25": {"strength": [_point(0.5, 27.0), _point(1.0, 28.0)]}}
    with pytest.raises(SystemExit, match="not the same images"):  # the check curve disagrees
        frontier.reuse_curves(_results(tmp_path, 28.01), curves, dict(SETTINGS))
    with pytest.raises(SystemExit, match="seed differs"):
        frontier.reuse_curves(_results(tmp_path, 28.0, seed=1), curves, dict(SETTINGS))
    with pytest.raises(SystemExit, match="measured on"):
        frontier.reuse_curves(_results(tmp_path, 28.0, data="/x/other"), curves, dict(SETTINGS))
    assert "cbm3d" not in curves["noise25"]


def test_models_curves_are_named_after_their_model():
    assert frontier.knob_label("strength@finetune_w0.3") == "finetune_w0.3, --strength s"
    assert frontier.knob_values("strength@x") == frontier.KNOBS["strength"][1]
    assert frontier._name_and_model("a=runs/x") == ("a", "runs/x")
    with pytest.raises(SystemExit, match="NAME=MODEL"):
        frontier._name_and_model("runs/x")


def test_results_mixing_curves_with_and_without_detector_scores_are_written(tmp_path):
    """A reused curve measured without --detector has no AUROC; the plot and tables must cope."""
    with_auroc = [
        {**_point(k, p), "pixel_auroc": a, "pixel_auroc_degraded": 0.5, "pixel_auroc_clean": 0.9}
        for k, p, a in ((0.5, 27.0, 0.6), (1.0, 28.0, 0.62))
    ]
    data = {
        **frontier.provenance("cpu"),
        "settings": {"data": "/x/u", "max_per_category": 2, "seed": 0},
        "n_categories": 1,
        "curves": {"noise25": {"strength": with_auroc, "cbm3d": [_point(0.5, 26.0), _point(1.0, 28.5)]}},
    }
    assert frontier._score_and_write(data, tmp_path / "out") == 0
    markdown = (tmp_path / "out.md").read_text()
    assert "| CBM3D, true σ × s | 1 | 28.50 | 26.50 | 0.800 | – |" in markdown
    assert "clean test images 0.900, degraded input 0.500" in markdown
    assert (tmp_path / "out.png").stat().st_size > 0
    assert json.loads((tmp_path / "out.json").read_text())["dominance"]["noise25"]


def test_score_point_pools_every_category_as_evaluate_scores_it(tiny_demo, tmp_path):
    """The helper both frontier.py and capacity_unseen.py score with: each category evaluated with
    its own restorer, the per-image rows pooled (identity restorer: PSNR of the degraded input)."""
    from apir.data.mvtec import find_category_dirs
    from apir.evaluate.runner import evaluate

    cats = find_category_dirs(tiny_demo)
    seen = []

    def restore_for(cat):
        seen.append(cat.name)
        return lambda image, sigma: image

    point = frontier.score_point(cats, restore_for, "noise25", tmp_path / "p", seed=0, max_per_category=2)
    assert seen == [c.name for c in cats]
    rows = []
    for cat in cats:
        rows += evaluate(
            cat, tmp_path / "e" / cat.name, method="model", restore_fn=lambda image, sigma: image,
            degradation="noise25", seed=0, save_images=0, show_progress=False, max_per_category=2,
        )["images"]  # fmt: skip
    assert point == frontier.pooled(rows) and point["n_images"] == len(rows) > 0
    assert "pixel_auroc" not in point
