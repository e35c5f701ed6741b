"""The worked examples in CONTRIBUTING.md run as written (each in a fresh namespace)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from apir.data import degradations
from apir.data.defects import DEFECT_GENERATORS
from apir.evaluate.baselines import BASELINES
from apir.evaluate.detector import DETECTORS
from apir.evaluate.metrics import METRICS
from apir.models.registry import _REGISTRY as MODELS

TEXT = (Path(__file__).resolve().parents[1] / "CONTRIBUTING.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, re.S)


@pytest.fixture(autouse=True)
def _registries_restored(monkeypatch):
    for reg in (DEFECT_GENERATORS, BASELINES, DETECTORS, MODELS, METRICS, degradations.OPS):
        monkeypatch.setattr(reg, "_entries", dict(reg._entries))
        monkeypatch.setattr(reg, "_meta", dict(reg._meta))
    yield
    monkeypatch.undo()
    degradations._rebuild_schema()  # the YAML schema without the example's op again


def test_there_are_examples_for_each_kind():
    kinds = re.findall(r"^## Add an? (.+)$", TEXT, re.M)
    assert set(kinds) == {"model", "defect kind", "baseline", "detector", "metric", "degradation op"}
    assert len(BLOCKS) == len(kinds)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(index):
    # dont_inherit: run as a user's own file would, without this module's `from __future__` flags
    code = compile(BLOCKS[index], f"CONTRIBUTING.md block {index + 1}", "exec", dont_inherit=True)
    exec(code, {"__name__": "example"})
