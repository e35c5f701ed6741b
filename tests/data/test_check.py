from __future__ import annotations

import numpy as np

from apir.cli import main
from apir.data.check import check_dataset
from apir.data.imageio import write_image


def test_demo_dataset_has_no_problems(tiny_demo, capsys):
    reports = check_dataset(tiny_demo, show_progress=False)
    assert [r.problems for r in reports] == [[], []]
    assert reports[0].train_good == 6 and reports[0].test_defect == 6 and reports[0].masks == 6
    assert main(["data", "check", str(tiny_demo)]) == 0
    assert "no problems found" in capsys.readouterr().out


def test_check_names_every_planted_problem(tiny_demo_copy, capsys):
    root = tiny_demo_copy / "brick"
    (root / "ground_truth" / "crack" / "000_mask.png").unlink()  # missing mask
    write_image(root / "ground_truth" / "crack" / "007_mask.png", np.zeros((64, 64), np.uint8))  # extra
    write_image(root / "ground_truth" / "hole" / "000_mask.png", np.zeros((32, 64), np.uint8))  # size
    grey = np.zeros((64, 64), np.uint8)
    grey[:10, :10] = 100
    grey[10:20, :10] = 255
    write_image(root / "ground_truth" / "spot" / "001_mask.png", grey)  # not binary
    (root / "test" / "good" / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # unreadable
    (root / "train" / "good" / "notes.txt").write_text("hello")  # stray file

    code = main(["data", "check", str(tiny_demo_copy)])
    out = capsys.readouterr().out
    assert code == 1
    assert "6 problems found" in out
    problems = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    expected = {
        "test/crack/000.png": "missing mask",
        "ground_truth/crack/007_mask.png": "extra mask",
        "ground_truth/hole/000_mask.png": "mask size 64x32 differs from image size 64x64",
        "ground_truth/spot/001_mask.png": "not binary",
        "test/good/001.png": "unreadable image",
        "train/good/notes.txt": "not an image file",
    }
    for path, message in expected.items():
        assert any(path in line and message in line for line in problems), (path, problems)


def test_check_missing_root_is_one_line_error(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err and "Traceback" not in err
