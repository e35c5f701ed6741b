"""``apir train`` under faults: cases 4, 5 and 9 (disk full) of issue 14, and the run-directory lock."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from safetensors import SafetensorError

from apir.cli import main
from apir.locking import LOCK_NAME, RunLock


def _config(tmp_path, base: dict, **changes) -> str:
    config = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    config["train"] = {**config["train"], "epochs": 1}
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        config[section][key] = value
    path = tmp_path / f"cfg{len(list(tmp_path.glob('cfg*')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _one_line(capsys, *words):
    err = capsys.readouterr().err
    (line,) = [x for x in re.split(r"[\r\n]", err) if x.startswith("apir: error")]
    assert "Traceback" not in err and all(w in line for w in words), err
    return line


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data__degradation": "no-such-preset"}, "no-such-preset"),
        ({"data__root": "/no/such/dataset"}, "does not exist"),
    ],
    ids=["unknown-degradation", "bad-data-path"],
)
def test_a_failed_start_does_not_block_the_rerun(
    tiny_demo, tiny_train_config, tmp_path, capsys, change, message
):
    run = tmp_path / "run"
    bad = _config(tmp_path, tiny_train_config, **change)
    argv = ["train", "--out", str(run), "--config", bad]
    if "data__root" not in change:
        argv += ["--data", str(tiny_demo)]
    assert main(argv) == 2
    _one_line(capsys, message)
    assert not run.exists() or [p.name for p in run.iterdir()] == []  # nothing written
    good = _config(tmp_path, tiny_train_config)
    # A run directory holding only the failed start's log is reused too (older apir left one).
    run.mkdir(exist_ok=True)
    (run / "train.log").write_text("2026-01-01 failed start\n")
    assert main(["train", "--out", str(run), "--resume"]) == 2
    assert "never finished an epoch" in _one_line(capsys, "nothing to resume")
    assert main(["train", "--data", str(tiny_demo), "--out", str(run), "--config", good]) == 0
    assert (run / "last.safetensors").is_file()
    assert (run / "train.log").read_text().startswith("2026-01-01 failed start")  # appended, not lost


def test_in_channels_1_is_a_one_line_config_error(tiny_demo, tiny_train_config, tmp_path, capsys):
    config = _config(tmp_path, tiny_train_config)
    data = yaml.safe_load(Path(config).read_text())
    data["model"]["kwargs"]["in_channels"] = 1
    with open(config, "w") as f:
        yaml.safe_dump(data, f)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_demo), "--out", str(run), "--config", config]) == 2
    _one_line(capsys, "model.kwargs.in_channels", "RGB")
    assert not run.exists()


def test_disk_full_while_saving_a_checkpoint(tiny_demo, tiny_train_config, tmp_path, capsys, monkeypatch):
    import apir.models.checkpoint as checkpoint

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(No space left on device (os error 28))")

    monkeypatch.setattr(checkpoint, "save_file", full)
    run = tmp_path / "run"
    argv = [
        "train",
        "--data",
        str(tiny_demo),
        "--out",
        str(run),
        "--config",
        _config(tmp_path, tiny_train_config),
    ]
    assert main(argv) == 2
    line = _one_line(capsys, "cannot write checkpoint", "No space left on device")
    assert "unchanged" in line
    assert not [p for p in run.iterdir() if ".tmp" in p.name]  # no half-written temporary left


def test_a_second_train_into_the_same_run_dir_is_refused(tiny_demo, tiny_train_config, tmp_path, capsys):
    run = tmp_path / "run"
    argv = [
        "train",
        "--data",
        str(tiny_demo),
        "--out",
        str(run),
        "--config",
        _config(tmp_path, tiny_train_config),
    ]
    with RunLock(run / LOCK_NAME, f"run directory {run}"):
        assert main(argv) == 2
    _one_line(capsys, "in use by another apir run", f"PID {os.getpid()}")
    assert [p.name for p in run.iterdir()] == []


def test_not_enough_space_for_checkpoints_is_refused_up_front(
    tiny_demo, tiny_train_config, tmp_path, monkeypatch, capsys
):
    import shutil

    import apir.fsutil as fsutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(fsutil.shutil, "disk_usage", lambda p: usage._replace(free=1000))
    run = tmp_path / "run"
    argv = [
        "train",
        "--data",
        str(tiny_demo),
        "--out",
        str(run),
        "--config",
        _config(tmp_path, tiny_train_config),
    ]
    assert main(argv) == 2
    _one_line(capsys, "not enough free space for the checkpoints")
    assert [p.name for p in run.iterdir()] == []


def _nan_checkpoint(tmp_path, config_path: str) -> Path:
    """A checkpoint of the tiny config's model whose weights are all NaN."""
    import torch
    from faultkit import save_model

    from apir.models import create_model

    model_cfg = yaml.safe_load(Path(config_path).read_text())["model"]
    model = create_model(model_cfg["name"], **model_cfg["kwargs"])
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    return save_model(tmp_path / "nan.safetensors", model)


def test_nan_init_weights_are_refused_before_the_run_directory_is_touched(
    tiny_demo, tiny_train_config, tmp_path, capsys
):
    bad = _nan_checkpoint(tmp_path, _config(tmp_path, tiny_train_config))
    config = _config(tmp_path, tiny_train_config, model__init=str(bad))
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_demo), "--out", str(run), "--config", config]) == 2
    _one_line(capsys, "nan.safetensors", "NaN or infinite")
    assert not run.exists()


def test_resuming_from_a_nan_checkpoint_is_one_line(tiny_demo, tiny_train_config, tmp_path, capsys):
    config = _config(tmp_path, tiny_train_config)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_demo), "--out", str(run), "--config", config]) == 0
    capsys.readouterr()
    from faultkit import rewrite_tensors

    def nan_weights(tensors):  # header and optimizer state kept; every float tensor becomes NaN
        for t in tensors.values():
            if t.is_floating_point():
                t.fill_(float("nan"))

    rewrite_tensors(run / "last.safetensors", run / "last.safetensors", nan_weights)
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2"]) == 2
    _one_line(capsys, "last.safetensors", "NaN or infinite")


def test_adapt_refuses_a_nan_base_model(tiny_demo, tiny_train_config, tmp_path, capsys):
    bad = _nan_checkpoint(tmp_path, _config(tmp_path, tiny_train_config))
    out = tmp_path / "adapted"
    argv = ["adapt", "--data", str(tiny_demo), "--category", "brick", "-o", str(out), "--model", str(bad)]
    assert main([*argv, "--minutes", "0.05"]) == 2
    _one_line(capsys, "nan.safetensors", "NaN or infinite")
    assert not out.exists()
