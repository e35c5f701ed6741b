"""The whole user journey through the CLI, on the tiny demo dataset: train, restore, evaluate, report."""

from __future__ import annotations

import json

import numpy as np
import yaml

from apir.cli import main
from apir.data.imageio import read_image, read_info


def test_version_and_models(capsys):
    assert main(["models"]) == 0
    names = capsys.readouterr().out.split()
    assert {"unet", "rcan", "nafnet"} <= set(names)
    assert main(["models", "--weights"]) == 0
    assert capsys.readouterr().out.split() == ["default", "survival"]


def test_train_restore_evaluate_report(tiny_demo, tiny_train_config, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(dict(tiny_train_config, train={"epochs": 1, "seed": 0})))
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_demo), "--config", str(cfg), "--out", str(run)]) == 0

    # Restore a folder with the run directory: same relative paths, names, sizes and modes.
    out = tmp_path / "restored"
    assert main(["restore", str(tiny_demo / "brick" / "test"), "-o", str(out), "--model", str(run)]) == 0
    inputs = sorted(
        p.relative_to(tiny_demo / "brick" / "test") for p in (tiny_demo / "brick" / "test").rglob("*.png")
    )
    outputs = sorted(p.relative_to(out) for p in out.rglob("*.png"))
    assert inputs == outputs
    src, dst = tiny_demo / "brick" / "test" / inputs[0], out / inputs[0]
    assert read_info(dst).channels == read_info(src).channels == 1
    assert read_image(dst).rgb.shape == read_image(src).rgb.shape

    # Refuses to write inside its input, and says so in one line.
    capsys.readouterr()
    assert main(["restore", str(tiny_demo), "-o", str(tiny_demo / "out"), "--model", str(run)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tiny_demo / "out").exists()

    results = []
    for name, extra in (("model", ["--model", str(run)]), ("tv", ["--method", "tv"])):
        res = tmp_path / f"res_{name}"
        argv = [
            "evaluate",
            "--data",
            str(tiny_demo),
            "-o",
            str(res),
            "--degradation",
            "noise25",
            "--max-per-category",
            "3",
            *extra,
        ]
        assert main(argv) == 0
        metrics = json.loads((res / "metrics.json").read_text())
        assert metrics["overall"]["n_images"] == 6
        assert metrics["label"].startswith("rcan" if name == "model" else "tv")
        if name == "tv":  # one epoch of a tiny net proves nothing; TV must beat the noisy input
            assert metrics["overall"]["psnr"] > metrics["overall"]["input_psnr"]
        results.append(res)
    out_text = capsys.readouterr().out
    assert "in defect" in out_text and "PSNR" in out_text

    report = tmp_path / "report"
    assert main(["report", *map(str, results), "-o", str(report)]) == 0
    html = (report / "index.html").read_text()
    assert "tv" in html and "rcan" in html


def test_restore_without_model_uses_the_shipped_default(tmp_path, capsys):
    from apir.data.imageio import write_image

    rng = np.random.default_rng(0)
    noisy = np.clip(np.full((40, 48, 3), 0.5) + rng.normal(0, 0.1, (40, 48, 3)), 0, 1)
    write_image(tmp_path / "in" / "x.png", (noisy * 255).round().astype(np.uint8))
    assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "out")]) == 0
    restored = read_image(tmp_path / "out" / "x.png").rgb
    assert restored.std() < noisy.std() / 2  # a flat grey image: the noise is (mostly) gone


def test_detector_check_and_restored_dataset(tiny_demo, tmp_path, capsys):
    from apir.data.check import check_dataset

    res = tmp_path / "res"
    argv = [
        "evaluate",
        "--data",
        str(tiny_demo),
        "-o",
        str(res),
        "--method",
        "tv",
        "--degradation",
        "noise25",
        "--detector",
    ]
    assert main(argv) == 0
    assert "detector pixel AUROC: clean" in capsys.readouterr().out
    detection = json.loads((res / "metrics.json").read_text())["detection"]
    assert set(detection["categories"]) == {"brick", "coffee"}
    assert detection["overall"]["restored"]["pixel_auroc"] is not None

    out = tmp_path / "restored_ds"
    assert (
        main(
            ["restore-dataset", str(tiny_demo), "-o", str(out), "--method", "tv", "--degradation", "noise25"]
        )
        == 0
    )
    assert [r.problems for r in check_dataset(out, show_progress=False)] == [[], []]
    assert main(["restore-dataset", str(tiny_demo), "-o", str(tiny_demo / "x"), "--degrade-only"]) == 2
    argv = [
        "restore-dataset",
        str(tiny_demo),
        "-o",
        str(tmp_path / "d"),
        "--degrade-only",
        "--keep-input",
        "0.3",
    ]
    assert main(argv) == 2 and not (tmp_path / "d").exists()


def test_data_sheet_takes_the_shared_degradation_options(tiny_demo, tmp_path):
    out = tmp_path / "sheet.png"
    argv = ["data", "sheet", str(tiny_demo), "-o", str(out), "--degradation", "noise25"]
    assert main([*argv, "--categories", "brick", "--seed", "3"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
