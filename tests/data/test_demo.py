from __future__ import annotations

import json

import numpy as np
import pytest

from apir.data.demo import DEMO_SOURCES, DemoCounts, build_demo_dataset
from apir.data.imageio import read_image, read_info, read_mask
from apir.data.mvtec import load_dataset
from apir.errors import ApirError


def test_demo_layout_masks_and_originals(tiny_demo):
    info = json.loads((tiny_demo / "demo_info.json").read_text())
    assert set(info["categories"]) == {"brick", "coffee"}
    cats = load_dataset(tiny_demo)
    # brick is a gray texture (stays 1-channel on disk), coffee an RGB object.
    assert read_info(cats[0].train[0].image).channels == 1
    assert read_info(cats[1].train[0].image).channels == 3
    for cat in cats:
        for s in cat.test:
            if s.is_good:
                continue
            image, original = read_image(s.image).rgb, read_image(s.original).rgb
            mask = read_mask(s.mask, image.shape[:2])
            changed = np.any(image != original, axis=2)
            assert mask.any()
            assert not changed[~mask].any(), f"{s.key}: pixels changed outside the mask"
            assert changed[mask].mean() > 0.8, f"{s.key}: mask larger than the change"


def test_demo_is_deterministic_and_has_enough_categories(tmp_path):
    assert len(DEMO_SOURCES) >= 8
    textures = sum(src.texture for src in DEMO_SOURCES.values())
    assert 0 < textures < len(DEMO_SOURCES)
    counts = DemoCounts(2, 1, 1)
    a = build_demo_dataset(
        tmp_path / "a", size=48, seed=3, categories=["cell"], counts=counts, show_progress=False
    )
    b = build_demo_dataset(
        tmp_path / "b", size=48, seed=3, categories=["cell"], counts=counts, show_progress=False
    )
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()


def test_demo_refuses_to_clobber(tmp_path, tiny_demo):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "precious.txt").write_text("keep")
    with pytest.raises(ApirError, match="not an apir demo dataset"):
        build_demo_dataset(other, size=48, categories=["cell"], force=True, show_progress=False)
    assert (other / "precious.txt").read_text() == "keep"
    with pytest.raises(ApirError, match="--force"):
        build_demo_dataset(tiny_demo, size=48, categories=["cell"], show_progress=False)
    with pytest.raises(ApirError, match="unknown demo category"):
        build_demo_dataset(tmp_path / "x", categories=["nope"], show_progress=False)
