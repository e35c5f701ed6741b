"""End-to-end training through the CLI on the tiny demo dataset (seconds on a CPU)."""

from __future__ import annotations

import csv

import pytest
import torch
import yaml

from apir.cli import main
from apir.models.checkpoint import load_model, read_checkpoint


@pytest.fixture()
def tiny_config(tmp_path, tiny_train_config):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_train_config))
    return path


def _rows(run):
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_train_improves_psnr_and_writes_a_complete_run(tiny_demo, tiny_config, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(
        ["train", "--data", str(tiny_demo), "--out", str(run), "--config", str(tiny_config), "--epochs", "6"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    for name in ("config.yaml", "train.log", "log.csv", "curves.png", "best.safetensors", "last.safetensors"):
        assert (run / name).is_file(), name
    rows = _rows(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    last = rows[-1]
    assert float(last["val_psnr"]) > float(last["input_psnr"]) + 1.0, last
    assert "validation PSNR: degraded input" in out
    model, header = load_model(run)
    assert header["model"]["name"] == "rcan" and header["model"]["n_feats"] == 16
    assert isinstance(model, torch.nn.Module)
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["kwargs"]["n_blocks"] == 2


def test_resume_continues_and_matches_an_uninterrupted_run(tiny_demo, tiny_config, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(["train", "--data", str(tiny_demo), "--out", str(full), "--config", str(tiny_config)]) == 0
    assert (
        main(
            [
                "train",
                "--data",
                str(tiny_demo),
                "--out",
                str(part),
                "--config",
                str(tiny_config),
                "--epochs",
                "2",
            ]
        )
        == 0
    )
    assert main(["train", "--out", str(part), "--resume", "--epochs", "3"]) == 0
    assert [int(r["epoch"]) for r in _rows(part)] == [1, 2, 3]
    a, _ = read_checkpoint(full / "last.safetensors")
    b, _ = read_checkpoint(part / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


def test_resume_records_command_line_overrides_in_the_run(tiny_demo, tiny_config, tmp_path):
    run = tmp_path / "run"
    argv = ["train", "--data", str(tiny_demo), "--out", str(run), "--config", str(tiny_config)]
    assert main([*argv, "--epochs", "1"]) == 0
    before = (run / "config.yaml").read_text()
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--num-workers", "0"]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 2 and saved["data"]["num_workers"] == 0
    log = (run / "train.log").read_text()
    assert "config changed on resume at epoch 2" in log
    assert (run / "config.before-epoch-2.yaml").read_text() == before
    assert [int(r["epoch"]) for r in _rows(run)] == [1, 2]


def test_bad_inputs_are_one_line_errors(tiny_demo, tiny_config, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("mine")
    base = ["train", "--data", str(tiny_demo), "--config", str(tiny_config)]
    cases = [
        (base + ["--out", str(run)], "not empty"),
        (base + ["--out", str(tmp_path / "r2"), "--model", "nosuchnet"], "nosuchnet"),
        (["train", "--out", str(tmp_path / "r3"), "--resume"], "nothing to resume"),
        (["train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r4")], "does not exist"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert (run / "keep.txt").read_text() == "mine"


def test_corrupt_checkpoint_on_resume(tiny_demo, tiny_config, tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(tiny_demo),
                "--out",
                str(run),
                "--config",
                str(tiny_config),
                "--epochs",
                "1",
            ]
        )
        == 0
    )
    (run / "last.safetensors").write_bytes(b"not a checkpoint")
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2"]) == 2
    assert "not a valid safetensors checkpoint" in capsys.readouterr().err


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_demo, tiny_config, tmp_path, capsys, monkeypatch):
    import apir.train.loop as loop

    real = loop.AnomalyWeightedLoss
    calls = {"n": 0}

    class NanAfterFirstEpoch(real):
        def forward(self, pred, target, mask):
            calls["n"] += 1
            loss = super().forward(pred, target, mask)
            # 8 steps per epoch (8 training images x 4 patches / batch 4): NaN from epoch 2 on.
            return loss * float("nan") if calls["n"] > 8 else loss

    monkeypatch.setattr(loop, "AnomalyWeightedLoss", NanAfterFirstEpoch)
    run = tmp_path / "run"
    code = main(["train", "--data", str(tiny_demo), "--out", str(run), "--config", str(tiny_config)])
    err = capsys.readouterr().err
    assert code == 2 and "loss became nan at epoch 2" in err, err
    tensors, header = read_checkpoint(run / "last.safetensors")
    assert header["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in tensors.values())
