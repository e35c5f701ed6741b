"""The disk faults of issue 14 (cases 9, 12) on a real tiny tmpfs: ENOSPC and EROFS, not simulated.

The in-process tests beside this file simulate the same errors everywhere; these check that the real
kernel errors, raised wherever the libraries (OpenCV, safetensors, onnx) happen to write, surface
as one line too.
"""

from __future__ import annotations

import re

import pytest
import yaml
from faultkit import identity_model, save_model, write_images

from apir.cli import main
from apir.errors import ApirError


def _error_line(capsys, *words) -> str:
    err = capsys.readouterr().err
    lines = [x for x in re.split(r"[\r\n]", err) if x.startswith("apir: error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


def test_restore_into_a_read_only_file_system(tiny_fs, tmp_path, capsys):
    ro = tiny_fs(256, read_only=True)
    write_images(tmp_path / "in", n=2)
    ckpt = save_model(tmp_path / "m.safetensors", identity_model())
    argv = ["restore", str(tmp_path / "in"), "-o", str(ro / "out"), "--model", str(ckpt), "--tile", "0"]
    assert main(argv) == 2
    _error_line(capsys, "not writable", "Read-only file system")


def test_restore_dataset_and_export_into_a_read_only_file_system(tiny_fs, tiny_demo, tmp_path, capsys):
    ro = tiny_fs(256, read_only=True)
    assert main(["restore-dataset", str(tiny_demo), "-o", str(ro / "out"), "--degrade-only"]) == 2
    _error_line(capsys, "Read-only file system")
    pytest.importorskip("onnx")
    ckpt = save_model(tmp_path / "m.safetensors", identity_model())
    assert main(["export", "--model", str(ckpt), "-o", str(ro / "m.onnx")]) == 2
    _error_line(capsys, "Read-only file system")


def test_restore_fills_the_disk(tiny_fs, tmp_path, capsys):
    """Room for the pre-flight estimate, then another program fills the disk mid-run."""
    fs = tiny_fs(512)
    write_images(tmp_path / "in", n=3, size=64)
    out = fs / "out"

    model = identity_model()
    real_forward = model.forward
    calls = {"n": 0}

    def forward(x):
        calls["n"] += 1
        if calls["n"] == 2:  # after the first image is written: fill what is left
            _fill(fs)
        return real_forward(x)

    model.forward = forward
    from apir.restore.files import restore_paths

    with pytest.raises(ApirError) as info:
        restore_paths([tmp_path / "in"], out, model, tile=0, show_progress=False)
    assert "No space left on device" in str(info.value) and "--resume" in str(info.value)
    assert (out / "img0.png").is_file()
    assert [p.name for p in out.iterdir() if ".tmp" in p.name] == []  # no partial temp files
    (fs / "filler").unlink()
    summary = restore_paths(
        [tmp_path / "in"], out, identity_model(), tile=0, show_progress=False, resume=True
    )
    assert len(summary.verified) == 1 and len(summary.written) == 2


def _fill(folder) -> None:
    """Write zeros into ``folder`` until its file system is full (as another program might)."""
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def test_train_on_a_small_disk(tiny_fs, tiny_demo, tiny_train_config, tmp_path, capsys, monkeypatch):
    config = {**tiny_train_config, "train": {**tiny_train_config["train"], "epochs": 1}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(config))
    small = tiny_fs(64)  # the checkpoints (about 340 KB) cannot fit: refused before training
    argv = ["train", "--data", str(tiny_demo), "--config", str(path), "--out"]
    assert main([*argv, str(small / "run")]) == 2
    _error_line(capsys, "not enough free space for the checkpoints")

    fs = tiny_fs(1024)  # room at the start; another program fills the disk during the epoch
    import apir.train.loop as loop

    real_validate = loop.validate

    def validate_then_fill(*args, **kwargs):
        result = real_validate(*args, **kwargs)
        _fill(fs)
        return result

    monkeypatch.setattr(loop, "validate", validate_then_fill)
    run = fs / "run"
    assert main([*argv, str(run)]) == 2
    _error_line(capsys, "cannot write checkpoint", "No space left on device")
    assert [p.name for p in run.iterdir() if ".tmp" in p.name] == []  # the failed write left nothing
