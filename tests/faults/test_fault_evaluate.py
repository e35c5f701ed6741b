"""``apir evaluate`` and the CLI safety net: case 11, ``--overlap``, OS errors as one line."""

from __future__ import annotations

import errno
import os
import shutil

import pytest
from faultkit import identity_model, save_model

from apir.cli import main
from apir.errors import ApirError
from apir.evaluate.baselines import get_baseline
from apir.evaluate.runner import evaluate


def test_a_defective_image_without_a_mask_is_an_error(tiny_demo, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_demo / "brick", data / "brick")
    mask = sorted((data / "brick" / "ground_truth").rglob("*_mask.png"))[0]
    mask.unlink()
    out = tmp_path / "results"
    with pytest.raises(
        ApirError, match="defective image without a mask .1 in all; it would be scored as defect-free"
    ):
        evaluate(data, out, method="identity", restore_fn=get_baseline("identity"), show_progress=False)
    assert not out.exists()  # refused before any work
    assert main(["evaluate", "--data", str(data), "-o", str(out), "--method", "identity"]) == 2
    assert mask.stem.removesuffix("_mask") in capsys.readouterr().err


def test_evaluate_has_overlap(tiny_demo, tmp_path, capsys):
    ckpt = save_model(tmp_path / "m.safetensors", identity_model())
    base = ["evaluate", "--data", str(tiny_demo), "--model", str(ckpt), "--categories", "brick"]
    base += ["--max-per-category", "1", "--device", "cpu"]
    assert main([*base, "-o", str(tmp_path / "r1"), "--tile", "1"]) == 2
    assert "overlap (32) must be smaller than the tile size (1)" in capsys.readouterr().err
    assert main([*base, "-o", str(tmp_path / "r2"), "--tile", "32", "--overlap", "8"]) == 0


def test_an_unexpected_os_error_is_one_line(tmp_path, monkeypatch, capsys):
    import apir.cli as cli

    def boom(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "x\nfile"))

    monkeypatch.setattr(cli, "_cmd_models", boom)
    assert main(["models"]) == 2
    assert capsys.readouterr().err == f"apir: error: {tmp_path}/x\\nfile: No space left on device\n"
