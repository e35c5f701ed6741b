"""The report's anomaly-detection section, from real ``evaluate(..., detector=True)`` runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from apir.data.imageio import read_image
from apir.evaluate.runner import evaluate
from apir.report.html import write_report


def _identity(image: np.ndarray, sigma: float) -> np.ndarray:
    return image


def _smear(image: np.ndarray, sigma: float) -> np.ndarray:
    """A restorer that blurs everything, small defects included."""
    return cv2.GaussianBlur(image, (0, 0), 3.0)


@pytest.fixture(scope="module")
def detection_runs(tiny_demo, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("detection_runs")
    runs = {}
    plan = (("identity", _identity, True), ("smear", _smear, True), ("plain", _identity, False))
    for name, fn, det in plan:
        runs[name] = root / name
        evaluate(
            tiny_demo,
            runs[name],
            method=name,
            restore_fn=fn,
            degradation="noise25",
            save_images=1,
            show_progress=False,
            detector=det,
            detector_maps=1,
        )
    return runs


@pytest.fixture(scope="module")
def page(detection_runs, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("detection_report") / "report"
    index = write_report([detection_runs[k] for k in ("identity", "smear", "plain")], out)
    return out, index.read_text(encoding="utf-8")


def test_section_table_shows_each_sets_detection_numbers(detection_runs, page):
    _, text = page
    assert "5. Anomaly detection after restoration" in text
    assert "6. Per image" in text
    section = text.split("5. Anomaly detection after restoration", 1)[1].split("6. Per image", 1)[0]
    for name in ("identity", "smear"):
        overall = json.loads((detection_runs[name] / "metrics.json").read_text())["detection"]["overall"]
        row = re.search(rf"{name}: restored</td>(.*?)</tr>", section)
        assert row, name
        cells = re.findall(r"<td class='n'>([^<]*)</td>", row.group(1))
        assert cells[0] == f"{overall['restored']['pixel_auroc']:.3f}"
        assert cells[2] == f"{overall['auroc_preservation']:.3f}"
        assert cells[3] == f"{overall['restored']['false_alarm_rate']:.3f}"
    # The set evaluated without --detector is named, not silently dropped.
    assert re.search(r"without <code>--detector</code>: plain", section)


def test_identity_row_equals_the_degraded_row_and_smearing_loses_auroc(detection_runs, page):
    _, text = page
    ident = json.loads((detection_runs["identity"] / "metrics.json").read_text())["detection"]["overall"]
    smear = json.loads((detection_runs["smear"] / "metrics.json").read_text())["detection"]["overall"]
    assert ident["restored"]["pixel_auroc"] == pytest.approx(ident["degraded"]["pixel_auroc"])
    # Clean and degraded are the same for every set (one detector, same degraded bytes).
    assert smear["clean"] == ident["clean"] and smear["degraded"] == ident["degraded"]
    assert smear["restored"]["pixel_auroc"] != ident["restored"]["pixel_auroc"]
    degraded_row = re.search(r"degraded input</td>(.*?)</tr>", text.split("Anomaly detection", 1)[1])
    cells = re.findall(r"<td class='n'>([^<]*)</td>", degraded_row.group(1))
    assert cells[0] == f"{ident['degraded']['pixel_auroc']:.3f}"


def test_chart_and_side_by_side_maps_are_in_the_report(detection_runs, page):
    out, text = page
    chart = out / "figures" / "detection_pixel_auroc.png"
    assert chart.is_file() and read_image(chart).rgb.shape[0] > 100
    srcs = re.findall(r"src='(detection/[^']+)'", text)
    assert srcs, "no detection map figures in the page"
    by_set = {}
    for src in srcs:
        assert (out / src).is_file(), src
        by_set.setdefault(src.split("/")[1], []).append(src)
    # The same images for both detection sets, side by side: one figure each per image.
    assert sorted(by_set) == ["1-identity", "2-smear"]
    assert len(by_set["1-identity"]) == len(by_set["2-smear"])
    maps = json.loads((detection_runs["smear"] / "metrics.json").read_text())["detection"]["categories"]
    first = next(m for c in maps.values() for m in c["maps"])
    copied = next(s for s in by_set["2-smear"] if first["key"].split("/")[-1] in s)
    assert (out / copied).read_bytes() == (detection_runs["smear"] / first["path"]).read_bytes()


def test_no_section_without_detection(detection_runs, tmp_path):
    text = write_report([detection_runs["plain"]], tmp_path / "r").read_text(encoding="utf-8")
    assert "Anomaly detection" not in text and "5. Per image" in text


def test_corrupt_map_figure_is_reported_not_copied(detection_runs, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(detection_runs["smear"], broken)
    maps = json.loads((broken / "metrics.json").read_text())["detection"]["categories"]
    victim = next(m for c in maps.values() for m in c["maps"])
    (broken / victim["path"]).write_bytes(b"not a png")
    text = write_report([detection_runs["identity"], broken], tmp_path / "r").read_text(encoding="utf-8")
    assert "figure skipped" in text


def test_long_keys_get_distinct_files_and_paths_must_stay_inside(tmp_path):
    from apir.data.imageio import write_image
    from apir.evaluate.results import Detection
    from apir.report.detection import DetectionSet, detection_section

    res = tmp_path / "res"
    keys = [f"splicing_connectors/test/structural_anomalies/{i:03d}" for i in range(2)]
    maps = []
    for i, key in enumerate(keys):
        write_image(res / "detection" / f"{i}.png", np.full((8, 8, 3), 40 * (i + 1), np.uint8))
        maps.append({"key": key, "path": f"detection/{i}.png"})
    write_image(tmp_path / "outside.png", np.zeros((8, 8, 3), np.uint8))
    maps.append({"key": "x/test/crack/000", "path": "../outside.png"})
    cat = {"clean": {"pixel_auroc": 0.9}, "degraded": {}, "restored": {}, "maps": maps}
    det = {"overall": {"clean": {"pixel_auroc": 0.9}}, "categories": {"splicing_connectors": cat}}
    det = Detection.model_validate(det)
    out = tmp_path / "report"
    (out / "figures").mkdir(parents=True)
    text = detection_section([DetectionSet("a", "#123456", res, det)], out, "5. x", max_maps=5)
    srcs = re.findall(r"src='(detection/[^']+)'", text)
    assert len(srcs) == 2 and len(set(srcs)) == 2
    assert [read_image(out / s).rgb[0, 0, 0] for s in srcs] == pytest.approx([40 / 255, 80 / 255])
    assert "outside the results folder" in text
    assert not any("outside" in p.name for p in out.rglob("*.png"))


def test_malformed_detection_block_is_a_one_line_error(detection_runs, tmp_path):
    import shutil

    from apir.errors import ApirError

    edited = tmp_path / "edited"
    shutil.copytree(detection_runs["smear"], edited)
    data = json.loads((edited / "metrics.json").read_text())
    first = next(iter(data["detection"]["categories"]))
    data["detection"]["categories"][first]["maps"].append({"key": 7})
    (edited / "metrics.json").write_text(json.dumps(data))
    with pytest.raises(ApirError) as exc:
        write_report([edited], tmp_path / "r")
    assert f"detection.categories.{first}.maps[1]" in str(exc.value) and "\n" not in str(exc.value)
