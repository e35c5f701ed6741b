"""Restoring files and folders (formats, modes, depths, bad files, output rules) and model resolution."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from restore_models import identity_model
from torch import nn

from apir.data.imageio import read_info, read_raw, write_image
from apir.errors import ApirError
from apir.models import create_model
from apir.models.checkpoint import save_checkpoint
from apir.restore import loading
from apir.restore.files import plan_outputs, restore_paths
from apir.restore.loading import resolve_model


def random_model() -> nn.Module:
    torch.manual_seed(1)
    return create_model("rcan", n_feats=8, n_blocks=1, reduction=4).eval()


def test_a_fresh_nafnet_is_not_the_identity_but_the_zeroed_one_is():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert (create_model("nafnet", width=8).eval()(x) - x).abs().max() > 0.05
        assert torch.equal(identity_model()(x), x)


def _rng_image(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)


def _run(inputs, out, model=None, **kwargs):
    kwargs.setdefault("tile", 32)
    kwargs.setdefault("overlap", 8)
    kwargs.setdefault("show_progress", False)
    return restore_paths(
        [Path(p) for p in inputs], Path(out), identity_model() if model is None else model, **kwargs
    )


def _hidden_files(root: Path) -> list[str]:
    return [name for _, _, files in os.walk(root) for name in files if name.startswith(".")]


# ------------------------------------------------------------------ formats, modes and depths


@pytest.mark.parametrize(
    ("name", "shape", "dtype"),
    [
        ("gray16.png", (41, 37), np.uint16),
        ("rgb16.tif", (41, 37, 3), np.uint16),
        ("rgb16.png", (29, 50, 3), np.uint16),
        ("gray8.png", (41, 37), np.uint8),
        ("rgb8.bmp", (20, 21, 3), np.uint8),
    ],
)
def test_identity_round_trip_keeps_size_mode_depth_and_samples(tmp_path, name, shape, dtype):
    src = tmp_path / "in" / name
    image = _rng_image(shape, dtype)
    write_image(src, image)
    summary = _run([src], tmp_path / "out")
    assert summary.ok and summary.written == [tmp_path / "out" / name]
    out, info = read_raw(tmp_path / "out" / name)
    assert out.dtype == dtype and out.shape == shape  # 16-bit stays 16-bit, gray stays 1 channel
    assert np.array_equal(out, image)  # identity model: exact, 16-bit included
    assert info.format == read_info(src).format


def test_rgba_alpha_is_passed_through_bit_exactly_while_colour_is_restored(tmp_path):
    rgba = _rng_image((33, 30, 4), np.uint16, seed=2)
    write_image(tmp_path / "in" / "a.png", rgba)
    gray_alpha = _rng_image((33, 30, 2), np.uint8, seed=3)
    write_image(tmp_path / "in" / "b.png", gray_alpha)
    summary = _run([tmp_path / "in"], tmp_path / "out", model=random_model())
    assert summary.ok and len(summary.written) == 2
    out_a, _ = read_raw(tmp_path / "out" / "a.png")
    out_b, _ = read_raw(tmp_path / "out" / "b.png")
    assert out_a.shape == rgba.shape and out_a.dtype == np.uint16
    assert np.array_equal(out_a[..., 3], rgba[..., 3])
    assert not np.array_equal(out_a[..., :3], rgba[..., :3])  # the model did act
    assert out_b.shape == gray_alpha.shape and np.array_equal(out_b[..., 1], gray_alpha[..., 1])


def test_jpeg_stays_jpeg_and_close_to_the_input(tmp_path):
    rng = np.random.default_rng(0)
    smooth = np.clip(np.linspace(0, 255, 48)[None, :, None] + rng.normal(0, 2, (40, 48, 3)), 0, 255)
    write_image(tmp_path / "photo.jpg", smooth.astype(np.uint8))
    before, _ = read_raw(tmp_path / "photo.jpg")
    _run([tmp_path / "photo.jpg"], tmp_path / "out")
    after, info = read_raw(tmp_path / "out" / "photo.jpg")
    assert info.format == "jpeg" and after.shape == before.shape
    assert np.abs(after.astype(int) - before.astype(int)).mean() < 3  # only JPEG re-encoding loss


# -------------------------------------------------------------------- folders and bad files


def test_folders_are_searched_recursively_and_keep_relative_paths(tmp_path):
    src = tmp_path / "in"
    for rel in ("c.png", "a/b/x.png", "a/y.tif", ".hidden/z.png", "a/.dot.png"):
        write_image(src / rel, _rng_image((16, 16, 3), np.uint8))
    (src / "notes.txt").write_text("not an image")
    single = tmp_path / "elsewhere" / "single.png"
    write_image(single, _rng_image((16, 16), np.uint8))
    summary = _run([src, single], tmp_path / "out")
    got = sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()
    )
    assert got == ["a/b/x.png", "a/y.tif", "c.png", "manifest.json", "single.png"]
    assert summary.ok and len(summary.written) == 4
    assert summary.describe() == f"restored 4 images to {tmp_path / 'out'}"


def test_corrupt_files_are_skipped_counted_and_named_while_the_others_are_written(tmp_path, capsys):
    src = tmp_path / "in"
    for name in ("a.png", "c.png"):
        write_image(src / name, _rng_image((20, 20, 3), np.uint8))
    (src / "b.png").write_text("I am a text file with a .png name")
    good = (src / "a.png").read_bytes()
    (src / "d.png").write_bytes(good[: len(good) // 2])  # truncated
    write_image(src / "e.png", _rng_image((20, 20, 4), np.uint8))
    os.replace(src / "e.png", src / "e.jpg")  # readable (content decides), but JPEG cannot hold alpha
    summary = _run([src], tmp_path / "out")
    assert sorted(p.name for p in summary.written) == ["a.png", "c.png"]
    assert sorted(p.name for p, _ in summary.skipped) == ["b.png", "d.png", "e.jpg"]
    assert not summary.ok and "3 skipped" in summary.describe()
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning: skipped")]
    assert len(warnings) == 3
    for name in ("b.png", "d.png", "e.jpg"):
        assert any(name in line for line in warnings)
    assert not (tmp_path / "out" / "b.png").exists() and not (tmp_path / "out" / "d.png").exists()
    assert not (tmp_path / "out" / "e.jpg").exists()  # JPEG cannot hold the alpha: nothing half-written
    assert _hidden_files(tmp_path / "out") == []  # no temporary files left behind


def test_explicit_non_image_file_is_skipped(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    summary = _run([tmp_path / "readme.txt"], tmp_path / "out")
    assert summary.written == [] and len(summary.skipped) == 1 and "readme.txt" in summary.skipped[0][1]


def test_empty_folder_missing_input_and_no_inputs_are_errors(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "x.txt").write_text("x")
    for inputs, match in (
        ([tmp_path / "empty"], "no images found in"),
        ([tmp_path / "missing.png"], "input not found"),
        ([], "no inputs"),
    ):
        with pytest.raises(ApirError, match=match) as err:
            _run(inputs, tmp_path / "out")
        assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_two_inputs_mapping_to_one_output_are_refused(tmp_path):
    for folder in ("a", "b"):
        write_image(tmp_path / folder / "x.png", _rng_image((8, 8), np.uint8))
    with pytest.raises(ApirError, match="would both be written to"):
        plan_outputs([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    # The same file named twice (alone and inside its folder) is restored once.
    pairs = plan_outputs([tmp_path / "a", tmp_path / "a" / "x.png"], tmp_path / "out")
    assert pairs == [(tmp_path / "a" / "x.png", tmp_path / "out" / "x.png")]


# ------------------------------------------------------------------------------ output rules


def test_out_dir_inside_or_equal_to_an_input_folder_is_refused_without_overwrite(tmp_path):
    src = tmp_path / "in"
    write_image(src / "x.png", _rng_image((16, 16, 3), np.uint8))
    for out in (src / "restored", src):
        with pytest.raises(ApirError, match="--overwrite") as err:
            _run([src], out)
        assert "\n" not in str(err.value)
    assert sorted(p.name for p in src.iterdir()) == ["x.png"]


def test_overwrite_allows_out_dir_inside_the_input_but_only_creates_files_there(tmp_path):
    src = tmp_path / "in"
    write_image(src / "x.png", _rng_image((16, 16, 3), np.uint8))
    write_image(src / "sub" / "y.png", _rng_image((16, 16, 3), np.uint8))
    out = src / "restored"
    first = _run([src], out, overwrite=True)
    assert first.ok and sorted(p.relative_to(out).as_posix() for p in first.written) == ["sub/y.png", "x.png"]
    # A second run neither restores restored/ (no restored/restored/...) nor replaces its files, which
    # now lie inside the input folder: it skips both images.
    before = {p: p.read_bytes() for p in out.rglob("*.png")}
    second = _run([src], out, overwrite=True)
    assert second.written == [] and len(second.skipped) == 2 and not (out / "restored").exists()
    assert all("already exists inside an input folder" in reason for _, reason in second.skipped)
    assert {p: p.read_bytes() for p in out.rglob("*.png")} == before


def test_overwrite_never_writes_onto_an_input_image(tmp_path):
    src = tmp_path / "in"
    write_image(src / "x.png", _rng_image((16, 16, 3), np.uint8))
    write_image(src / "sub" / "x.png", _rng_image((16, 16, 3), np.uint8, seed=1))
    before = {p: p.read_bytes() for p in src.rglob("*.png")}
    # OUT_DIR = in/sub: in/x.png would replace in/sub/x.png, a user's file inside the input folder
    # (not restored itself, as it lies in OUT_DIR). Nothing may be written.
    summary = _run([src], src / "sub", overwrite=True)
    assert summary.written == [] and len(summary.skipped) == 1
    # OUT_DIR = the folder of an input file: the output is the input itself.
    summary = _run([src / "x.png"], src, overwrite=True)
    assert summary.written == [] and "never overwritten" in summary.skipped[0][1]
    # The same through a symlinked output folder.
    (tmp_path / "link").symlink_to(src, target_is_directory=True)
    summary = _run([src / "x.png"], tmp_path / "link", overwrite=True)
    assert summary.written == [] and "never overwritten" in summary.skipped[0][1]
    assert {p: p.read_bytes() for p in src.rglob("*.png")} == before


def test_existing_outputs_need_overwrite(tmp_path):
    write_image(tmp_path / "in" / "x.png", _rng_image((16, 16, 3), np.uint8))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x.png").write_bytes(b"old")
    with pytest.raises(ApirError, match="already exists; pass --overwrite"):
        _run([tmp_path / "in"], tmp_path / "out")
    assert (tmp_path / "out" / "x.png").read_bytes() == b"old"
    assert _run([tmp_path / "in"], tmp_path / "out", overwrite=True).ok
    assert read_raw(tmp_path / "out" / "x.png")[0].shape == (16, 16, 3)


def test_bad_tiling_arguments_fail_before_anything_is_written(tmp_path):
    write_image(tmp_path / "in" / "x.png", _rng_image((16, 16, 3), np.uint8))
    with pytest.raises(ApirError, match="overlap"):
        _run([tmp_path / "in"], tmp_path / "out", tile=16, overlap=16)
    assert not (tmp_path / "out").exists()


def test_float_tiff_stays_float(tmp_path):
    image = np.random.default_rng(0).random((20, 24, 3)).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", image, photometric="rgb")
    _run([tmp_path / "f.tif"], tmp_path / "out")
    out, _ = read_raw(tmp_path / "out" / "f.tif")
    assert out.dtype == np.float32 and np.allclose(out, image, atol=1e-6)


# --------------------------------------------------------------------------- resolve_model


def _one_line_error(fn, *args, match: str) -> str:
    with pytest.raises(ApirError, match=match) as err:
        fn(*args)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_resolve_model_from_checkpoint_file_and_run_dir(tmp_path):
    model = random_model()
    (tmp_path / "run").mkdir()
    save_checkpoint(tmp_path / "run" / "best.safetensors", model, {"epoch": 3})
    for spec in (tmp_path / "run", tmp_path / "run" / "best.safetensors", str(tmp_path / "run")):
        loaded, header = resolve_model(spec, "cpu")
        assert not loaded.training and header["epoch"] == 3
        assert header["source"] == str(tmp_path / "run" / "best.safetensors")
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value)


def test_restore_paths_loads_a_model_spec(tmp_path):
    save_checkpoint(tmp_path / "m.safetensors", identity_model())
    image = _rng_image((18, 18, 3), np.uint8)
    write_image(tmp_path / "in" / "x.png", image)
    summary = restore_paths(
        [tmp_path / "in"],
        tmp_path / "out",
        str(tmp_path / "m.safetensors"),
        tile=0,
        device="cpu",
        show_progress=False,
    )
    assert summary.ok and np.array_equal(read_raw(tmp_path / "out" / "x.png")[0], image)


def test_resolve_model_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(loading, "WEIGHTS_DIR", tmp_path / "weights")
    (tmp_path / "run").mkdir()
    (tmp_path / "old.pth").write_bytes(b"\x80\x02pickle")
    (tmp_path / "fake.safetensors").write_text("not a checkpoint")
    _one_line_error(resolve_model, tmp_path / "nope.safetensors", "cpu", match="checkpoint not found")
    _one_line_error(resolve_model, "runs/missing", "cpu", match="checkpoint not found")
    _one_line_error(resolve_model, tmp_path / "run", "cpu", match="no best.safetensors or last.safetensors")
    _one_line_error(resolve_model, tmp_path / "old.pth", "cpu", match="pickle checkpoints are not loaded")
    _one_line_error(resolve_model, tmp_path / "fake.safetensors", "cpu", match="not a valid safetensors")
    msg = _one_line_error(resolve_model, "rcan", "cpu", match="no pretrained weights ship for 'rcan' yet")
    assert "--model" in msg and "apir train" in msg
    _one_line_error(resolve_model, None, "cpu", match="no default model ships yet; pass --model")
    _one_line_error(resolve_model, "resnet", "cpu", match="neither a checkpoint file.*nafnet")


def test_shipped_weights_load_by_name():
    """--model survival: the shipped default fine-tuned with the paired defect-response term; its
    own weights (not the default's) and the record of how it was made."""
    assert loading.shipped_names() == ["default", "survival"]
    survival, header = resolve_model("survival", "cpu")
    default, _ = resolve_model(None, "cpu")
    assert header["source"].endswith("survival.safetensors") and header["config"]["loss"]["pair_weight"] > 0
    assert type(survival) is type(default) and survival.level_input
    a, b = survival.state_dict(), default.state_dict()
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)


def test_resolve_model_refuses_a_checkpoint_of_another_architecture(tmp_path):
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in random_model().state_dict().items()}
    save_file(
        tensors, str(tmp_path / "b.safetensors"), metadata={"apir": json.dumps({"model": {"name": "unet"}})}
    )
    _one_line_error(resolve_model, tmp_path / "b.safetensors", "cpu", match="does not fit this model")


def test_shipped_weights_by_name_and_default(tmp_path, monkeypatch):
    monkeypatch.setattr(loading, "WEIGHTS_DIR", tmp_path)
    save_checkpoint(tmp_path / "rcan.safetensors", random_model())
    save_checkpoint(tmp_path / "default.safetensors", identity_model())
    by_name, header = resolve_model("rcan", "cpu")
    assert type(by_name).__name__ == "RCAN" and header["source"] == str(tmp_path / "rcan.safetensors")
    default, _ = resolve_model(None, "cpu")
    assert type(default).__name__ == "NAFNet" and not default.training
    # An existing path wins over a registry name.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nafnet").mkdir()
    _one_line_error(resolve_model, "nafnet", "cpu", match="no best.safetensors")


def test_the_real_weights_dir_is_package_data():
    assert Path(loading.__file__).resolve().parent.parent / "weights" == loading.WEIGHTS_DIR
    assert loading.shipped_weights().name == "default.safetensors"
