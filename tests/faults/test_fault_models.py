"""Cases 1-3 of issue 14: NaN weights, NaN in export parity, edited checkpoint headers."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from faultkit import blur_model, rewrite_header, rewrite_tensors, save_model, write_images

from apir.cli import main
from apir.errors import ApirError, NonFiniteOutput
from apir.restore.api import restore_array
from apir.restore.loading import resolve_model


def _first_float(tensors):
    return next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)


def _nan_all(t):
    for v in t.values():
        if v.is_floating_point():
            v.fill_(float("nan"))


def _nan_one(t):
    t[_first_float(t)].view(-1)[0] = float("nan")


def _times_1e38(t):
    for v in t.values():
        if v.is_floating_point():
            v.mul_(1e38)


@pytest.mark.parametrize("edit", [_nan_all, _nan_one], ids=["all-nan", "one-nan"])
def test_nan_weights_are_refused_by_restore(tmp_path, checkpoint, capsys, edit):
    bad = rewrite_tensors(checkpoint, tmp_path / "nan.safetensors", edit)
    (img,) = write_images(tmp_path / "in", n=1)
    assert main(["restore", str(img), "-o", str(tmp_path / "o"), "--model", str(bad), "--tile", "0"]) == 2
    err = capsys.readouterr().err
    assert "NaN or infinite" in err and "nan.safetensors" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o" / img.name).exists()


def test_overflowing_weights_stop_restore_with_one_line(tmp_path, capsys):
    """Finite weights ×1e38: the output overflows to inf/NaN; that is an error, not a black image."""
    good = save_model(tmp_path / "m.safetensors", blur_model())
    bad = rewrite_tensors(good, tmp_path / "big.safetensors", _times_1e38)
    images = write_images(tmp_path / "in", n=2)
    code = main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "--model", str(bad)])
    captured = capsys.readouterr()
    assert code == 2
    assert "NaN or infinite" in captured.err and images[0].name in captured.err
    assert not any((tmp_path / "o" / p.name).exists() for p in images)
    assert "restored" not in captured.out
    with pytest.raises(NonFiniteOutput):
        restore_array(np.zeros((16, 16, 3), np.uint8), bad, device="cpu")


def test_overflowing_weights_are_an_error_in_evaluate(tiny_demo, tmp_path, capsys):
    good = save_model(tmp_path / "m.safetensors", blur_model())
    bad = rewrite_tensors(good, tmp_path / "big.safetensors", _times_1e38)
    argv = ["evaluate", "--data", str(tiny_demo), "-o", str(tmp_path / "r"), "--model", str(bad)]
    assert main([*argv, "--max-per-category", "1", "--categories", "brick"]) == 2
    assert "NaN or infinite" in capsys.readouterr().err


@pytest.mark.parametrize("edit", [_nan_all, _times_1e38], ids=["nan-weights", "overflowing-output"])
def test_restore_dataset_stops_on_nan_with_one_line_and_no_output(tiny_demo, tmp_path, capsys, edit):
    good = save_model(tmp_path / "m.safetensors", blur_model())
    bad = rewrite_tensors(good, tmp_path / "bad.safetensors", edit)
    out = tmp_path / "restored"
    argv = ["restore-dataset", str(tiny_demo), "-o", str(out), "--model", str(bad)]
    assert main([*argv, "--degradation", "noise25"]) == 2
    err = capsys.readouterr().err
    (line,) = [x for x in re.split(r"[\r\n]", err) if x.startswith("apir: error")]  # the bar aside
    assert "NaN or infinite" in line and "Traceback" not in err
    assert not out.exists()


def test_export_parity_sees_nan(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from apir.restore.export import check_onnx_parity, export_onnx

    class Nan(torch.nn.Module):
        def forward(self, x):
            return x * float("nan")

    class Same(torch.nn.Module):
        def forward(self, x):
            return x * 1.0

    path = export_onnx(Nan(), tmp_path / "nan.onnx")
    with pytest.raises(ApirError, match="PyTorch model's output holds NaN"):
        check_onnx_parity(Nan(), path)
    with pytest.raises(ApirError, match="ONNX graph's output holds NaN"):
        check_onnx_parity(Same(), path)  # PyTorch finite, ONNX all NaN: max(worst, nan) used to hide it
    ok = export_onnx(Same(), tmp_path / "same.onnx")
    assert check_onnx_parity(Same(), ok) < 1e-6


def _drop_name(h):
    del h["model"]["name"]


def _set(key, value):
    def edit(h):
        h["model"][key] = value

    return edit


HEADERS = {
    "model-is-a-number": (lambda h: {**h, "model": 5}, "model must be a mapping"),
    "no-name": (_drop_name, "model.name must be a model name"),
    "unknown-name": (_set("name", "nosuchnet"), "unknown model 'nosuchnet'"),
    "huge-width": (_set("width", 1048576), "parameters"),
    "width-is-text": (_set("width", "wide"), "width must be an integer"),
    "nested-object": (_set("width", {"a": 1}), "invalid checkpoint header"),
    "unknown-argument": (_set("colour", 3), "no argument"),
    "other-width": (_set("width", 16), "does not fit this model"),
}


@pytest.mark.parametrize("case", sorted(HEADERS))
def test_edited_headers_are_one_line_errors(tmp_path, checkpoint, capsys, monkeypatch, case):
    edit, message = HEADERS[case]
    bad = rewrite_header(checkpoint, tmp_path / "edited.safetensors", edit)
    # Nothing may be allocated from an unchecked header: a model built off the meta device fails here.
    import apir.models as models

    original = models.create_model

    def guarded(name, **kw):
        if torch.get_default_device().type != "meta":
            raise AssertionError("a model was built from an unchecked header")
        return original(name, **kw)

    monkeypatch.setattr(models, "create_model", guarded)
    with pytest.raises(ApirError, match=message):
        resolve_model(bad, "cpu")
    monkeypatch.setattr(models, "create_model", original)
    (img,) = write_images(tmp_path / "in", n=1)
    assert main(["restore", str(img), "-o", str(tmp_path / "o"), "--model", str(bad)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "edited.safetensors" in err and "Traceback" not in err


def test_export_to_a_read_only_folder_is_one_line(tmp_path, checkpoint, monkeypatch, capsys):
    """As root, chmod cannot make a folder read-only; the file creation is made to fail (EROFS)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import errno
    import os

    import apir.fsutil as fsutil

    target = tmp_path / "ro"
    target.mkdir()
    real = fsutil._create_temp

    def create_temp(path):
        if fsutil.is_relative_to(path, target):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real(path)

    monkeypatch.setattr(fsutil, "_create_temp", create_temp)
    assert main(["export", "--model", str(checkpoint), "-o", str(target / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write the ONNX file (Read-only file system)" in err
    assert list(target.iterdir()) == []
