"""One registry mechanism: adding a plug-in is one function or class and one decorator."""

from __future__ import annotations

import numpy as np
import pytest

from apir.data.defects import DEFECT_GENERATORS, DEFECT_KINDS, synthesize_defect
from apir.data.degradations import OPS, DegradationPipeline
from apir.errors import ApirError
from apir.evaluate.baselines import BASELINES, get_baseline
from apir.evaluate.detector import DETECTORS, ReferenceDetector
from apir.registry import Registry


def test_register_get_and_one_line_errors():
    reg: Registry[int] = Registry("widget")
    reg.add("a", 1)

    @reg.register("f", colour="red")
    def f():
        return 2

    assert reg.get("f") is f and reg.meta("f") == {"colour": "red"} and reg.names() == ["a", "f"]
    with pytest.raises(ApirError, match=r"unknown widget 'b' \(available: a, f\)"):
        reg.get("b")
    with pytest.raises(ValueError, match="already registered"):
        reg.add("a", 3)


def test_a_new_baseline_is_one_decorated_function(monkeypatch):
    monkeypatch.setattr(BASELINES, "_entries", dict(BASELINES._entries))
    monkeypatch.setattr(BASELINES, "_meta", dict(BASELINES._meta))

    @BASELINES.register("half")
    def half(image, sigma):
        return image * 0.5

    img = np.ones((4, 4, 3), np.float32)
    assert get_baseline("half")(img, 10.0).max() == 0.5
    from apir.cli import baseline_names

    assert "half" in baseline_names()


def test_a_new_defect_kind_is_one_decorated_generator(monkeypatch):
    monkeypatch.setattr(DEFECT_GENERATORS, "_entries", dict(DEFECT_GENERATORS._entries))
    monkeypatch.setattr(DEFECT_GENERATORS, "_meta", dict(DEFECT_GENERATORS._meta))

    @DEFECT_GENERATORS.register("dot", min_pixels=1)
    def dot(img, lum, rng, s, tex):
        delta = np.zeros((3, 3, img.shape[2]), np.float32)
        delta[1, 1] = -0.5
        return (10, 13, 10, 13), delta, np.pad(np.ones((1, 1)), 1)

    image = np.full((32, 32, 3), 0.8, np.float32)
    out = synthesize_defect(image, "dot", np.random.default_rng(0))
    assert out.mask.sum() == 1 and out.mask[11, 11]
    # A plug-in is available by name but does not join the built-in kinds training draws from.
    assert "dot" in DEFECT_GENERATORS and "dot" not in DEFECT_KINDS


def test_ops_and_detectors_come_from_registries():
    assert "gaussian_noise_ramp" in OPS and DETECTORS.get("reference") is ReferenceDetector
    with pytest.raises(ApirError, match="gaussian_noise_ramp"):
        DegradationPipeline([{"op": "nope"}])


def test_a_new_metric_reaches_the_results_csv_and_report(monkeypatch, tiny_demo, tmp_path):
    import csv
    import json

    from apir.cli import main
    from apir.evaluate.metrics import METRICS, register_metric
    from apir.evaluate.results import load_results

    monkeypatch.setattr(METRICS, "_entries", dict(METRICS._entries))
    monkeypatch.setattr(METRICS, "_meta", dict(METRICS._meta))

    @register_metric("mean_level", header=("mean", "level"), tooltip="mean of the restored image", digits=4)
    def mean_level(x):
        return x.restored.mean().reshape(1)

    out = tmp_path / "res"
    argv = ["evaluate", "--data", str(tiny_demo), "-o", str(out), "--method", "identity"]
    assert main([*argv, "--categories", "brick", "--max-per-category", "2"]) == 0
    data = json.loads((out / "metrics.json").read_text())
    assert data["metric_names"][-1] == "mean_level"
    assert all(0 < row["mean_level"] < 1 and "input_mean_level" in row for row in data["images"])
    assert load_results(out).overall.metric("mean_level") == pytest.approx(data["overall"]["mean_level"])
    with open(out / "metrics.csv", newline="") as f:
        assert "mean_level" in next(csv.reader(f))
    assert main(["report", str(out), "-o", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert "mean of the restored image" in page and f"{data['overall']['mean_level']:.4f}" in page


def test_a_new_degradation_op_is_one_decorated_class_usable_from_yaml(monkeypatch, tmp_path):
    from typing import Any, Literal

    from apir.data import degradations
    from apir.data.degradations import Op, get_degradation, register_op

    monkeypatch.setattr(OPS, "_entries", dict(OPS._entries))
    monkeypatch.setattr(OPS, "_meta", dict(OPS._meta))
    try:

        @register_op
        class Darken(Op):
            op: Literal["darken"]
            by: float = 0.1

            def sample(self, rng: np.random.Generator) -> dict[str, Any]:
                return {"by": self.by}

            @staticmethod
            def run(image: np.ndarray, values: dict[str, Any]) -> np.ndarray:
                return image - np.float32(values["by"])

        yaml_file = tmp_path / "mine.yaml"
        yaml_file.write_text("ops:\n  - choice:\n      - {op: darken, by: 0.25}\n")
        pipe = get_degradation(yaml_file)
        image = np.full((4, 4, 3), 0.5, np.float32)
        np.testing.assert_allclose(pipe.apply(image, pipe.sample(np.random.default_rng(0))), 0.25)
        with pytest.raises(ApirError, match="darken"):  # listed among the known ops
            DegradationPipeline([{"op": "darkn"}])
    finally:
        monkeypatch.undo()
        degradations._rebuild_schema()
    with pytest.raises(ApirError, match="unknown op"):  # gone again with the registry restored
        DegradationPipeline([{"op": "darken"}])
