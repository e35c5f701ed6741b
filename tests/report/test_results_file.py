"""Results files as the report reads them: today's files load, hand-edited ones give one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apir.cli import main
from apir.errors import ApirError
from apir.evaluate.results import Results, load_results


def _edit(folder, change) -> None:
    data = json.loads((folder / "metrics.json").read_text())
    change(data)
    (folder / "metrics.json").write_text(json.dumps(data))


def test_a_file_without_newer_optional_fields_loads(make_results):
    # The fixture writes what apir wrote before results were typed: no crop, ring, n_defective,
    # defect_pixels or degradation_params.
    folder = make_results("old", "old set")
    results = load_results(folder)
    assert isinstance(results, Results) and results.crop is None and results.overall.n_defective is None
    assert results.images[0].key == "bottle/test/good/000" and results.images[0].psnr_defect is None
    assert results.to_dict() == json.loads((folder / "metrics.json").read_text())  # nothing added


def test_a_string_metric_is_a_one_line_error_naming_file_and_field(make_results, tmp_path, capsys):
    folder = make_results("edited", "edited")

    def stringify(data):
        data["images"][3]["psnr"] = "31.2 dB"

    _edit(folder, stringify)
    with pytest.raises(ApirError) as exc:
        load_results(folder)
    msg = str(exc.value)
    assert "\n" not in msg and str(folder / "metrics.json") in msg
    assert "images[3].psnr" in msg and "31.2 dB" in msg
    # and from the command line: exit code 2, one line on stderr, no traceback, no report
    assert main(["report", str(folder), "-o", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "images[3].psnr" in err and "Traceback" not in err
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["overall"].update(psnr=True), "overall.psnr"),
        (lambda d: d["categories"]["pill"].update(ssim=[0.9]), "categories.pill.ssim"),
        (lambda d: d["images"][0].update(height="tall"), "images[0].height"),
        (lambda d: d.update(images={"a": 1}), "images"),
    ],
)
def test_other_malformed_values_name_their_field(make_results, change, field):
    folder = make_results("bad", "bad")
    _edit(folder, change)
    with pytest.raises(ApirError, match="invalid evaluation results") as exc:
        load_results(folder)
    assert f"({field}:" in str(exc.value) and "\n" not in str(exc.value)


def test_nan_and_infinity_in_an_edited_file_read_as_undefined(make_results):
    folder = make_results("nan", "nan")
    text = (folder / "metrics.json").read_text()
    data = json.loads(text)
    data["overall"]["psnr"] = float("nan")
    data["overall"]["ssim"] = float("inf")
    (folder / "metrics.json").write_text(json.dumps(data))  # Python writes NaN / Infinity
    results = load_results(folder)
    assert results.overall.psnr is None and results.overall.ssim is None
    json.dumps(results.to_dict(), allow_nan=False)  # and it is valid JSON again


def test_a_results_folder_written_by_the_release_still_loads_and_reports(tmp_path):
    release = Path(__file__).parent / "data" / "release_bc09193"
    raw = json.loads((release / "metrics.json").read_text())
    results = load_results(release)
    assert isinstance(results, Results) and results.schema_ == raw["schema"]
    assert results.overall.psnr == pytest.approx(raw["overall"]["psnr"])
    assert results.detection is not None
    assert results.detection.overall.restored.pixel_auroc == pytest.approx(
        raw["detection"]["overall"]["restored"]["pixel_auroc"]
    )
    assert main(["report", str(release), "-o", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert f"{raw['overall']['psnr']:.2f}" in page


def test_the_release_default_checkpoint_still_loads_and_restores():
    import numpy as np

    from apir.restore.api import restore_array

    release = Path(__file__).parents[2] / "benchmarks" / "reference" / "default_v1_blind.safetensors"
    image = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    out = restore_array(image, release, device="cpu")
    assert out.shape == image.shape and out.dtype == np.uint8
