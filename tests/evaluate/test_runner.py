"""The evaluation runner on the tiny demo dataset: schema, images, determinism, output-folder rules."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from apir.data.imageio import read_image, read_info
from apir.errors import ApirError
from apir.evaluate.baselines import get_baseline
from apir.evaluate.metrics import METRIC_NAMES
from apir.evaluate.results import SCHEMA, Results
from apir.evaluate.runner import evaluate, load_results

N_PER_CATEGORY = 8  # tiny_demo: 2 good + 3 defect types × 2 per category
SUMMARY_KEYS = {*METRIC_NAMES, *(f"input_{m}" for m in METRIC_NAMES), "n_images", "seconds"}
SUMMARY_KEYS |= {"megapixels_per_second"}
IMAGE_KEYS = {"key", "category", "defect_type", "height", "width", "seconds", "noise_sigma", "image_dir"}
IMAGE_KEYS |= {*METRIC_NAMES, *(f"input_{m}" for m in METRIC_NAMES)}


def _run(root, out, method="identity", **kw):
    kw.setdefault("degradation", "noise25")
    return evaluate(root, out, method=method, restore_fn=get_baseline(method), show_progress=False, **kw)


@pytest.fixture(scope="module")
def identity_run(tiny_demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "identity"
    return out, _run(tiny_demo, out, save_images=2)


def test_schema_and_identity_equals_input(identity_run):
    out, results = identity_run
    loaded = load_results(out)
    assert isinstance(loaded, Results)
    data = loaded.to_dict()
    assert data == json.loads(json.dumps(results)) == json.loads((out / "metrics.json").read_text())
    assert data["schema"] == SCHEMA and data["method"] == "identity" and data["label"] == "identity"
    assert data["model"] is None and data["split"] == "test" and data["degradation"] == "noise25"
    assert data["metric_names"] == list(METRIC_NAMES)
    assert data["conventions"]["ssim"].startswith("torchmetrics, Gaussian 11x11 sigma 1.5")
    assert set(data["overall"]) >= SUMMARY_KEYS
    assert list(data["categories"]) == ["brick", "coffee"]
    assert all(set(v) >= SUMMARY_KEYS for v in data["categories"].values())
    assert data["overall"]["n_images"] == 2 * N_PER_CATEGORY == len(data["images"])
    for row in data["images"]:
        assert set(row) >= IMAGE_KEYS
        assert row["noise_sigma"] == 25.0 and (row["height"], row["width"]) == (64, 64)
        for m in METRIC_NAMES:
            assert row[m] == row[f"input_{m}"]  # identity: restored is the input
    assert data["overall"]["psnr"] == data["overall"]["input_psnr"]
    assert 19.0 < data["overall"]["psnr"] < 22.0  # σ 25 → about 20.2 dB


def test_nan_becomes_null_and_defect_metrics_are_set_for_defects(identity_run):
    out, _ = identity_run
    text = (out / "metrics.json").read_text()
    assert "NaN" not in text
    data = json.loads(text)
    good = [r for r in data["images"] if r["defect_type"] == "good"]
    bad = [r for r in data["images"] if r["defect_type"] != "good"]
    assert len(good) == 4 and len(bad) == 12
    for r in good:
        assert r["psnr_defect"] is None and r["retention"] is None and r["contrast_ratio"] is None
        assert r["psnr_background"] is not None
    for r in bad:
        assert r["psnr_defect"] is not None and r["contrast_ratio"] is not None
        assert 0.8 < r["retention"] < 1.2  # noise barely moves the projection: the input keeps the defect


def test_saved_images_and_csv(identity_run):
    out, data = identity_run
    saved = [r for r in data["images"] if r["image_dir"]]
    # Per category: the first good image plus 2 defective ones, from different defect types.
    for cat in ("brick", "coffee"):
        rows = [r for r in saved if r["category"] == cat]
        assert sorted(r["defect_type"] == "good" for r in rows) == [False, False, True]
        assert len({r["defect_type"] for r in rows}) == 3
    for r in saved:
        folder = out / r["image_dir"]
        names = {"clean", "degraded", "restored", "mask"} | (
            {"original"} if r["defect_type"] != "good" else set()
        )
        assert {p.stem for p in folder.iterdir()} == names
        for name in names - {"mask"}:
            info = read_info(folder / f"{name}.png")
            assert (info.height, info.width, info.channels, info.dtype) == (64, 64, 3, "uint8")
        mask = read_image(folder / "mask.png").rgb[..., 0]
        assert set(np.unique(mask)) <= {0.0, 1.0}
        assert int(mask.sum()) == r["defect_pixels"]
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["key"] for r in rows] == [r["key"] for r in data["images"]]
    assert rows[0]["psnr"] and float(rows[0]["psnr"]) == pytest.approx(data["images"][0]["psnr"])
    assert any(r["retention"] == "" for r in rows)  # NaN → empty cell


def test_denoising_gains_and_determinism(tiny_demo, tmp_path):
    first = _run(tiny_demo, tmp_path / "a", method="tv", save_images=0)
    second = _run(tiny_demo, tmp_path / "b", method="tv", save_images=0)
    assert first["overall"]["psnr"] > first["overall"]["input_psnr"] + 3
    assert not (tmp_path / "a" / "images").exists()

    def strip(d):
        d = json.loads(json.dumps(d))
        for s in [d["overall"], *d["categories"].values(), *d["images"]]:
            s.pop("seconds")
            s.pop("megapixels_per_second", None)
        d.pop("created")
        return d

    assert strip(first) == strip(second)


def test_cbm3d_improves_over_input(tiny_demo, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_demo / "brick", root / "brick")  # gray: the quicker CBM3D path
    for path in (root / "brick" / "test").rglob("*.png"):
        if path.stem != "000" or path.parent.name not in ("good", "crack"):
            path.unlink()
    results = _run(root, tmp_path / "out", method="cbm3d", save_images=1)
    assert results["overall"]["n_images"] == 2
    assert results["overall"]["psnr"] > results["overall"]["input_psnr"] + 3
    assert results["overall"]["psnr_defect"] > results["overall"]["input_psnr_defect"]


def test_restore_fn_gets_the_true_sigma_and_options_are_recorded(tiny_demo, tmp_path):
    seen = []

    def spy(image, sigma):
        seen.append((image.shape, image.dtype, sigma))
        return image

    data = evaluate(
        tiny_demo,
        tmp_path / "out",
        method="model",
        restore_fn=spy,
        degradation="blind",
        seed=3,
        categories=["coffee"],
        crop=32,
        save_images=0,
        label="spy (test)",
        model_info={"name": "spy", "checkpoint": tmp_path / "best.safetensors"},
        show_progress=False,
    )
    assert len(seen) == N_PER_CATEGORY
    assert all(shape == (32, 32, 3) and dtype == np.float32 for shape, dtype, _ in seen)
    assert [s for *_, s in seen] == [r["noise_sigma"] for r in data["images"]]
    assert len({s for *_, s in seen}) > 1  # blind: a different σ per image
    assert data["label"] == "spy (test)"
    assert data["model"] == {"name": "spy", "checkpoint": str(tmp_path / "best.safetensors")}  # JSON-safe
    assert data["seed"] == 3 and data["degradation"] == "blind" and list(data["categories"]) == ["coffee"]


def test_no_degradation_identity_is_perfect(tiny_demo, tmp_path):
    data = _run(tiny_demo, tmp_path / "out", degradation="none", categories=["coffee"], save_images=0)
    defective = [r for r in data["images"] if r["defect_type"] != "good"]
    assert all(r["psnr"] == 100.0 and r["noise_sigma"] == 0.0 for r in data["images"])
    assert all(r["retention"] == pytest.approx(1.0) for r in defective)
    assert all(r["contrast_ratio"] == pytest.approx(1.0) for r in defective)


@pytest.mark.parametrize(
    ("result", "match"),
    [
        (lambda x, s: x[:-1], "shape"),
        (lambda x, s: np.full_like(x, np.nan), "NaN"),
    ],
    ids=["shape", "nan"],
)
def test_bad_restore_output_is_a_user_error(tiny_demo, tmp_path, result, match):
    with pytest.raises(ApirError, match=match):
        evaluate(tiny_demo, tmp_path / "o", method="model", restore_fn=result, show_progress=False)


def test_output_folder_rules(tiny_demo, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ApirError, match="not empty"):
        _run(tiny_demo, foreign, categories=["coffee"])
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ApirError, match="not a folder"):
        _run(tiny_demo, a_file, categories=["coffee"])

    # An earlier results folder is replaced, including images the new run does not save.
    out = tmp_path / "results"
    _run(tiny_demo, out, categories=["coffee"], save_images=4)
    (out / "report.html").write_text("kept")
    _run(tiny_demo, out, categories=["brick"], save_images=0)
    assert not (out / "images").exists()
    assert (out / "report.html").read_text() == "kept"
    assert list(load_results(out).categories) == ["brick"]

    # An interrupted run (marker, no metrics.json) is still ours: load refuses, a rerun may overwrite.
    (out / "metrics.json").unlink()
    with pytest.raises(ApirError, match="no metrics.json"):
        load_results(out)
    _run(tiny_demo, out, categories=["brick"], save_images=0)
    assert load_results(out).overall.n_images == N_PER_CATEGORY


def test_load_results_errors(tmp_path):
    with pytest.raises(ApirError, match="no metrics.json"):
        load_results(tmp_path)
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(ApirError, match="cannot read evaluation results"):
        load_results(tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps({"schema": "other/1"}))
    with pytest.raises(ApirError, match="not apir evaluation results"):
        load_results(tmp_path / "metrics.json")
    (tmp_path / "metrics.json").write_text(json.dumps({"schema": SCHEMA, "label": "x"}))
    with pytest.raises(ApirError, match="missing method"):
        load_results(tmp_path)


def test_bad_arguments(tiny_demo, tmp_path):
    with pytest.raises(ApirError, match="split"):
        _run(tiny_demo, tmp_path / "o", split="val")
    with pytest.raises(ApirError, match="unknown category"):
        _run(tiny_demo, tmp_path / "o", categories=["nope"])
    assert not (tmp_path / "o").exists()  # nothing written before the arguments are checked
