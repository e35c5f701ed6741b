"""ONNX export: dynamic batch/height/width, parity with PyTorch, metadata, errors."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch
from torch import nn

from apir.errors import ApirError
from apir.models import create_model
from apir.restore.export import DEFAULT_PARITY_SIZES, check_onnx_parity, export_onnx

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _model(name: str, **kwargs) -> nn.Module:
    """A small model with random weights; NAFNet's zero-initialised branch scales drawn at random so
    LayerNorm2d and the channel attention are part of what is compared."""
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    with torch.no_grad():
        for key, p in model.named_parameters():
            if key.endswith(("beta", "gamma")):
                p.normal_(0, 0.5)
    return model.eval()


CASES = {
    "nafnet": {"width": 8},
    "nafnet-local-pool": {"width": 8, "attention_pool": 16},
    "rcan": {"n_feats": 16, "n_blocks": 2, "reduction": 4},
    "unet": {},
}


@pytest.mark.parametrize("case", list(CASES))
def test_dynamic_size_export_matches_pytorch(tmp_path, case):
    model = _model(case.split("-")[0], **CASES[case])
    path = export_onnx(model, tmp_path / "m.onnx", example_size=64)
    assert path == tmp_path / "m.onnx" and path.is_file()
    # Two sizes unlike the 64×64 example (odd, not multiples of 16), and a batch of two.
    assert all(s[2:] != (64, 64) for s in DEFAULT_PARITY_SIZES)
    assert check_onnx_parity(model, path) <= 1e-4
    assert check_onnx_parity(model, path, [(2, 3, 33, 17)]) <= 1e-4
    assert [f for f in os.listdir(tmp_path) if f.startswith(".")] == []  # atomic write, no temp left


def test_graph_has_dynamic_axes_and_apir_metadata(tmp_path):
    model = _model("rcan", n_feats=8, n_blocks=1, reduction=4)
    graph = onnx.load(str(export_onnx(model, tmp_path / "m.onnx")))
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]
    meta = {p.key: p.value for p in graph.metadata_props}
    assert json.loads(meta["apir_model"])["name"] == "rcan" and meta["size_multiple"] == "1"
    assert model.training is False


def test_parity_check_detects_a_different_model(tmp_path):
    a = _model("rcan", n_feats=8, n_blocks=1, reduction=4)
    path = export_onnx(a, tmp_path / "a.onnx")
    torch.manual_seed(5)
    b = create_model("rcan", n_feats=8, n_blocks=1, reduction=4).eval()
    assert check_onnx_parity(b, path) > 1e-2


def test_export_errors_are_one_line(tmp_path, monkeypatch):
    model = _model("unet")
    for kwargs, match in (
        ({"path": tmp_path / "m.txt"}, "should end in .onnx"),
        ({"path": tmp_path / "m.onnx", "example_size": 0}, "example_size"),
    ):
        with pytest.raises(ApirError, match=match):
            export_onnx(model, **kwargs)
    with pytest.raises(ApirError, match="ONNX file not found"):
        check_onnx_parity(model, tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_text("junk")
    with pytest.raises(ApirError, match="onnxruntime cannot load it") as err:
        check_onnx_parity(model, tmp_path / "junk.onnx")
    assert "\n" not in str(err.value)
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the optional dependency were missing
    with pytest.raises(ApirError, match=r"pip install apir\[export\]") as err:
        export_onnx(model, tmp_path / "m.onnx")
    assert "\n" not in str(err.value) and not (tmp_path / "m.onnx").exists()
