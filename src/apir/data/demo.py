"""The embedded demo dataset: an MVTec-AD-layout dataset built offline from images shipped in scikit-image.

MVTec AD cannot be downloaded here (and its licence forbids redistribution), yet every part of apir
(training, evaluation, reports, the detector check) should run end to end on a fresh machine. The
photographs and textures that ship inside scikit-image are real, CC0 / public-domain images; apir
turns each into a category:

* several *good* images per category, made by cropping, flipping and slightly re-lighting the source
  (textures are cropped anywhere; objects stay roughly centred and aligned, as in MVTec);
* defective test images made with apir's own defect synthesis, with binary masks in
  ``ground_truth/`` and the defect-free original in ``original/`` (an apir extension to the layout,
  needed to measure how much of a defect survives restoration).

Gray sources stay gray (1-channel PNGs, like MVTec's grid/screw/zipper); colour sources are RGB.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from skimage import data as skdata
from tqdm import tqdm

from apir.data.defects import synthesize_defect
from apir.data.imageio import write_image, write_mask
from apir.data.mvtec import GOOD, is_category_dir, mask_path_for, original_path_for
from apir.errors import ApirError
from apir.fsutil import prepare_staging, publish_staging


@dataclass(frozen=True)
class DemoSource:
    """One demo category: which scikit-image picture, whether it is a texture, which defects."""

    loader: Callable[[], np.ndarray]
    texture: bool
    defects: tuple[str, ...]
    licence: str


# Licences as stated in scikit-image's own docstrings for these files (skimage/data/_fetchers.py).
DEMO_SOURCES: dict[str, DemoSource] = {
    "brick": DemoSource(skdata.brick, True, ("crack", "hole", "spot"), "CC0 (CC0Textures Bricks25)"),
    "grass": DemoSource(skdata.grass, True, ("scratch", "stain", "perlin"), "CC0 (CC0Textures Grass001)"),
    "gravel": DemoSource(skdata.gravel, True, ("crack", "spot", "perlin"), "CC0 (CC0Textures Gravel04)"),
    "tissue": DemoSource(
        skdata.immunohistochemistry, True, ("stain", "spot", "perlin"), "no known copyright restrictions"
    ),
    "coins": DemoSource(skdata.coins, False, ("scratch", "hole", "spot"), "no known copyright restrictions"),
    "coffee": DemoSource(skdata.coffee, False, ("stain", "scratch", "perlin"), "CC0 (Rachel Michetti)"),
    "camera": DemoSource(skdata.camera, False, ("scratch", "crack", "spot"), "CC0 (Lav Varshney)"),
    "retina": DemoSource(skdata.retina, False, ("spot", "stain", "perlin"), "CC0 (Häggström, 2014)"),
    "cell": DemoSource(skdata.cell, False, ("hole", "spot", "perlin"), "CC0"),
    "rocket": DemoSource(skdata.rocket, False, ("scratch", "crack", "stain"), "public domain (SpaceX)"),
    "astronaut": DemoSource(skdata.astronaut, False, ("scratch", "stain", "spot"), "public domain (NASA)"),
}


@dataclass(frozen=True)
class DemoCounts:
    """How many images each category gets; small so the whole build stays well under a minute."""

    train_good: int = 20
    test_good: int = 6
    per_defect: int = 4


def _load_source(src: DemoSource) -> np.ndarray:
    """Source as float32 H×W×C in [0,1], C = 1 (gray) or 3 (RGB; alpha dropped)."""
    img = np.asarray(src.loader())
    img = img[..., :3] if img.ndim == 3 else img[..., None]
    return img.astype(np.float32) / 255.0


def _variant(source: np.ndarray, size: int, texture: bool, rng: np.random.Generator) -> np.ndarray:
    """One 'good' image: a random crop (texture) or a jittered centred crop (object), re-lit slightly."""
    h, w = source.shape[:2]
    side = min(h, w)
    if texture:
        crop = int(side * rng.uniform(0.5, 0.8))
        y = int(rng.integers(0, h - crop + 1))
        x = int(rng.integers(0, w - crop + 1))
    else:
        crop = int(side * rng.uniform(0.88, 0.97))
        jitter = side - crop
        y = (h - crop) // 2 + int(rng.integers(-jitter // 2, jitter // 2 + 1))
        x = (w - crop) // 2 + int(rng.integers(-jitter // 2, jitter // 2 + 1))
        y = int(np.clip(y, 0, h - crop))
        x = int(np.clip(x, 0, w - crop))
    patch = source[y : y + crop, x : x + crop]
    out = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    if out.ndim == 2:
        out = out[..., None]
    if texture:
        if rng.random() < 0.5:
            out = out[:, ::-1]
        if rng.random() < 0.5:
            out = out[::-1]
    gain, bias = rng.uniform(0.93, 1.07), rng.uniform(-0.03, 0.03)
    return np.clip(out * gain + bias, 0.0, 1.0).astype(np.float32)


def _to_file(img: np.ndarray) -> np.ndarray:
    """float [0,1] H×W×C → uint8, 2-D for gray so it is saved as a 1-channel PNG."""
    u8 = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    return u8[..., 0] if u8.shape[2] == 1 else u8


def build_demo_dataset(
    out: str | Path,
    size: int = 256,
    seed: int = 0,
    categories: list[str] | None = None,
    counts: DemoCounts = DemoCounts(),
    force: bool = False,
    show_progress: bool = True,
) -> Path:
    """Write the demo dataset to ``out`` and return it. Deterministic for a given seed and size.

    ``out`` must not exist, or be an earlier demo dataset and ``force`` set: apir never deletes a
    folder it did not create.
    """
    out = Path(out)
    names = categories or list(DEMO_SOURCES)
    unknown = [n for n in names if n not in DEMO_SOURCES]
    if unknown:
        raise ApirError(
            f"unknown demo categor{'y' if len(unknown) == 1 else 'ies'}: {', '.join(unknown)} "
            f"(available: {', '.join(DEMO_SOURCES)})"
        )
    if not 32 <= size <= 2048:
        raise ApirError(f"--size must be between 32 and 2048, got {size}")
    staging = prepare_staging(out, marker="demo_info.json", force=force, what="apir demo dataset")
    start = time.perf_counter()
    info: dict = {"generator": "apir data demo", "size": size, "seed": seed, "categories": {}}
    for index, name in enumerate(tqdm(names, desc="demo dataset", unit="cat", disable=not show_progress)):
        src = DEMO_SOURCES[name]
        rng = np.random.default_rng([seed, index, size])
        info["categories"][name] = _build_category(staging / name, src, size, counts, rng)
        info["categories"][name]["licence"] = src.licence
    info["seconds"] = round(time.perf_counter() - start, 2)
    (staging / "demo_info.json").write_text(json.dumps(info, indent=2))
    publish_staging(staging, out, marker="demo_info.json")
    return out


def _build_category(root: Path, src: DemoSource, size: int, counts: DemoCounts, rng) -> dict:
    source = _load_source(src)
    for i in range(counts.train_good):
        write_image(
            root / "train" / GOOD / f"{i:03d}.png", _to_file(_variant(source, size, src.texture, rng))
        )
    for i in range(counts.test_good):
        write_image(root / "test" / GOOD / f"{i:03d}.png", _to_file(_variant(source, size, src.texture, rng)))
    for kind in src.defects:
        for i in range(counts.per_defect):
            stem = f"{i:03d}"
            clean = _variant(source, size, src.texture, rng)
            # Quantise first so the saved original and the saved defective image differ only in the mask.
            clean = _to_file(clean).astype(np.float32) / 255.0
            if clean.ndim == 2:
                clean = clean[..., None]
            defect = synthesize_defect(clean, kind, rng)
            write_image(root / "test" / kind / f"{stem}.png", _to_file(defect.image))
            write_mask(mask_path_for(root, kind, stem), defect.mask)
            write_image(original_path_for(root, kind, stem), _to_file(clean))
    return {
        "texture": src.texture,
        "channels": int(source.shape[2]),
        "defect_types": list(src.defects),
        "train_good": counts.train_good,
        "test_good": counts.test_good,
        "per_defect": counts.per_defect,
    }


def is_demo_dataset(root: Path) -> bool:
    return (root / "demo_info.json").is_file() and any(is_category_dir(p) for p in root.iterdir())
