"""``keep_input``: the user's point on the defect-survival versus quality trade-off."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from apir.cli import main
from apir.data.imageio import read_image, write_image
from apir.errors import ApirError
from apir.evaluate.methods import resolve_method
from apir.models import create_model
from apir.restore.api import restore_array, restore_rgb


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("nafnet", width=8).eval()  # random weights: output far from the input


def test_keep_input_blends_output_and_input(model):
    x = np.random.default_rng(0).random((24, 20, 3), dtype=np.float32)
    full = restore_rgb(model, x, tile=0)  # unclipped
    assert np.abs(full - x).mean() > 0.01
    np.testing.assert_allclose(
        restore_rgb(model, x, tile=0, keep_input=0.5), full + 0.5 * (x - full), atol=1e-6
    )
    half = restore_array(x, model, tile=0, keep_input=0.5)
    np.testing.assert_allclose(half, np.clip(full + 0.5 * (x - full), 0, 1), atol=1e-6)
    np.testing.assert_allclose(restore_array(x, model, tile=0, keep_input=1.0), x, atol=1e-6)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.3", True])
def test_bad_keep_input_is_a_one_line_error(model, bad):
    with pytest.raises(ApirError, match="keep_input"):
        restore_array(np.zeros((8, 8, 3), np.float32), model, keep_input=bad)


def test_keep_input_reaches_files_and_is_refused_for_baselines(tmp_path, capsys):
    x = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    write_image(tmp_path / "in" / "a.png", x)
    assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--keep-input", "1"]) == 0
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "a.png").rgb, x.astype(np.float32) / 255)
    capsys.readouterr()
    assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "o2"), "--keep-input", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "keep_input" in err[0]
    with pytest.raises(ApirError, match="baselines"):
        resolve_method(None, "nlm", keep_input=0.2)
    method = resolve_method(None, None, keep_input=0.25)
    assert method.model_info["keep_input"] == 0.25 and "keep_input 0.25" in method.label
