"""restore_dataset: a complete MVTec-layout copy that passes ``data check`` and keeps every file's mode."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from apir.data.check import check_dataset
from apir.data.datasets import EvalImageDataset
from apir.data.degradations import get_degradation
from apir.data.imageio import read_info, read_raw, to_file_layout, write_image, write_mask
from apir.data.mvtec import load_dataset
from apir.errors import ApirError
from apir.restore.dataset import MARKER_FILE, degrade_dataset, restore_dataset


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), 1.0)


def _files(root: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every non-hidden file (hidden ones are apir's own markers)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith("."):
                p = Path(dirpath) / name
                out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _problems(root: Path) -> list:
    return [p for r in check_dataset(root, show_progress=False) for p in r.problems]


@pytest.fixture(scope="module")
def restored(tiny_demo, tmp_path_factory):
    before = _files(tiny_demo)
    out = tmp_path_factory.mktemp("restored") / "out"
    result = restore_dataset(
        tiny_demo, out, restore_fn=_blur, degradation="noise25", show_progress=False, label="blur"
    )
    return before, result


def test_copy_passes_data_check_and_keeps_names(tiny_demo, restored):
    before, out = restored
    assert out.is_dir() and (out / MARKER_FILE).is_file()
    assert _problems(out) == []
    after = _files(out)
    assert set(after) == set(before) | {"manifest.json"}  # same folders, same file names, root files included
    assert _files(tiny_demo) == before  # the input is untouched
    assert not any(p.name.startswith(".out") for p in out.parent.iterdir())  # no staging left behind


def test_modes_masks_and_originals(tiny_demo, restored):
    before, out = restored
    after = _files(out)
    images = 0
    for rel, digest in before.items():
        parts = rel.split("/")
        if "ground_truth" in parts or "original" in parts or not rel.endswith(".png"):
            assert after[rel] == digest, rel  # byte for byte
            continue
        images += 1
        src, dst = read_info(tiny_demo / rel), read_info(out / rel)
        assert (dst.channels, dst.dtype, dst.shape) == (src.channels, src.dtype, src.shape), rel
        assert after[rel] != digest, rel  # degraded and restored: different pixels
    assert images == 2 * (6 + 2 + 3 * 2)
    assert read_info(out / "brick/train/good/000.png").channels == 1  # gray stays gray
    assert read_info(out / "coffee/train/good/000.png").channels == 3


def test_degrade_only_matches_evaluation_bytes(tiny_demo, tmp_path):
    out = degrade_dataset(tiny_demo, tmp_path / "deg", degradation="noise25", categories=["coffee"], seed=3)
    assert _problems(out) == []
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["coffee"]
    cat = load_dataset(tiny_demo, ["coffee"])[0]
    samples = [*cat.train, *cat.test]
    ds = EvalImageDataset(samples, get_degradation("noise25"), seed=3)
    for index in (0, len(cat.train), len(samples) - 1):  # a train, a test/good and a defective image
        sample = samples[index]
        expected = to_file_layout(ds[index]["degraded"].numpy().transpose(1, 2, 0), read_info(sample.image))
        written, _ = read_raw(out / sample.image.relative_to(tiny_demo))
        np.testing.assert_array_equal(written, expected)


def test_without_originals(tiny_demo, tmp_path):
    """For anomalib's MVTecAD loader, which takes any folder with images for a split."""
    out = degrade_dataset(
        tiny_demo, tmp_path / "deg", degradation="none", categories=["brick"], originals=False
    )
    assert not (out / "brick" / "original").exists()
    assert (out / "brick" / "ground_truth").is_dir()
    assert _problems(out) == []


def test_refusals(tiny_demo, tmp_path):
    kw = {"restore_fn": None, "degradation": "none", "show_progress": False}
    with pytest.raises(ApirError, match="is the dataset folder"):
        restore_dataset(tiny_demo, tiny_demo, **kw)
    with pytest.raises(ApirError, match="inside the dataset folder"):
        restore_dataset(tiny_demo, tiny_demo / "brick" / "restored", **kw)
    with pytest.raises(ApirError, match="contains the dataset"):
        restore_dataset(tiny_demo, tiny_demo.parent, **kw)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ApirError, match="not empty"):
        restore_dataset(tiny_demo, foreign, **kw)
    with pytest.raises(ApirError, match="not a dataset written by"):
        restore_dataset(tiny_demo, foreign, overwrite=True, **kw)
    assert (foreign / "notes.txt").read_text() == "mine"
    with pytest.raises(ApirError, match="not a folder"):
        restore_dataset(tiny_demo, foreign / "notes.txt", **kw)


def test_overwrite_replaces_an_earlier_output(tiny_demo, tmp_path):
    out = tmp_path / "out"
    kw = {"degradation": "none", "show_progress": False, "categories": ["brick"]}
    restore_dataset(tiny_demo, out, restore_fn=None, **kw)
    with pytest.raises(ApirError, match="overwrite"):
        restore_dataset(tiny_demo, out, restore_fn=None, **kw)
    restore_dataset(tiny_demo, out, restore_fn=lambda x, s: 1.0 - x, overwrite=True, **kw)
    clean, _ = read_raw(tiny_demo / "brick/test/good/000.png")
    inverted, _ = read_raw(out / "brick/test/good/000.png")
    np.testing.assert_array_equal(inverted, 255 - clean)
    assert _problems(out) == []


def test_bad_restorer_leaves_nothing(tiny_demo, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ApirError, match="shape"):
        restore_dataset(
            tiny_demo, out, restore_fn=lambda x, s: x[1:], degradation="none", show_progress=False
        )
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_single_category_with_16_bit_alpha_and_jpeg(tmp_path):
    """Formats other than the demo's 8-bit PNGs keep their mode, depth and format."""
    cat = tmp_path / "widget"
    rng = np.random.default_rng(0)
    write_image(cat / "train/good/a.png", rng.integers(0, 65536, (40, 48), dtype=np.uint16))
    rgba = rng.integers(0, 256, (40, 48, 4), dtype=np.uint8)
    write_image(cat / "train/good/b.png", rgba)
    write_image(cat / "test/good/c.jpg", rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    write_image(cat / "test/dent/d.tif", rng.random((40, 48, 3)).astype(np.float32))
    mask = np.zeros((40, 48), bool)
    mask[10:20, 10:20] = True
    write_mask(cat / "ground_truth/dent/d_mask.png", mask)
    (cat / "readme.txt").write_text("hello")
    before = _files(cat)

    out = restore_dataset(
        cat, tmp_path / "restored", restore_fn=_blur, degradation="noise15", show_progress=False
    )
    assert _problems(out) == []
    assert set(_files(out)) == set(before) | {"manifest.json"}
    assert _files(cat) == before
    for rel in before:
        if rel.endswith(("readme.txt", "_mask.png")):
            assert (out / rel).read_bytes() == (cat / rel).read_bytes()
            continue
        src, dst = read_info(cat / rel), read_info(out / rel)
        assert (dst.channels, dst.dtype, dst.format) == (src.channels, src.dtype, src.format), rel
    written, _ = read_raw(out / "train/good/b.png")
    np.testing.assert_array_equal(written[..., 3], rgba[..., 3])  # alpha copied unchanged
