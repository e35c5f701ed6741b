"""``apir evaluate --guard``: a detector-guided restorer per category, fitted on its train/good."""

from __future__ import annotations

import json

import pytest
import torch

from apir.cli import main

ARGS = ["--categories", "brick", "--max-per-category", "3", "--degradation", "noise25", "--tile", "0"]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _run(tiny_demo, out, *extra) -> dict:
    assert main(["evaluate", "--data", str(tiny_demo), "-o", str(out), *ARGS, *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_guard_is_fitted_per_category_on_train_good_and_recorded(tiny_demo, tmp_path, monkeypatch):
    import apir.evaluate.methods as methods_module  # where evaluate looks the guard builder up

    seen = []
    real = methods_module.guard_for_category

    def spy(category, pipeline, seed, restore_fn, **kw):
        seen.append((category.name, len(category.train), pipeline.name, seed))
        return real(category, pipeline, seed, restore_fn, **kw)

    monkeypatch.setattr(methods_module, "guard_for_category", spy)
    result = _run(tiny_demo, tmp_path / "guarded", "--guard", "--guard-floor", "0.2", "--engine", "torch")
    assert seen == [("brick", 6, "noise25", 0)]  # once, on the category's 6 train/good images
    assert result["model"]["guard_floor"] == 0.2 and "guard floor 0.2" in result["label"]


def test_a_guard_with_floor_1_changes_nothing(tiny_demo, tmp_path):
    plain = _run(tiny_demo, tmp_path / "plain", "--engine", "torch")
    noop = _run(tiny_demo, tmp_path / "noop", "--guard", "--guard-floor", "1", "--engine", "torch")
    # (the second pass gets the σ as a per-pixel map instead of a number: equal to float rounding)
    for a, b in zip(plain["images"], noop["images"], strict=True):
        assert a["key"] == b["key"]
        assert b["psnr"] == pytest.approx(a["psnr"], abs=1e-4)
        assert b["retention"] == pytest.approx(a["retention"], abs=1e-5)


def test_guard_with_a_baseline_is_a_one_line_error(tiny_demo, tmp_path, capsys):
    code = main(["evaluate", "--data", str(tiny_demo), "-o", str(tmp_path / "o"), "--method", "identity",
                 "--guard", *ARGS])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "--guard applies to noise-level-aware models" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
