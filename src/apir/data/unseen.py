"""The unseen benchmark set: an MVTec-layout dataset made from pictures held out of every training set.

A restorer trained on few pictures looks good on crops of those same pictures and loses on others
(field notes, "Generalisation"), so apir's headline figures come from pictures no apir model trained
on. :func:`apir.data.corpus.build_training_corpus` holds out whole pictures (whole texture families)
and hands them here. Each category groups a few held-out pictures of one package, as an inspection
part with its own good images:

* ``train/good``: two crops per picture (for a detector's fit or category adaptation, never for the
  default model's training);
* ``test/good``: one crop per picture;
* ``test/<kind>``: one crop per picture with a synthetic defect of ``kind`` (kinds in turn), its mask in
  ``ground_truth/`` and the defect-free crop in ``original/``.

Crops are taken at the pictures' own (already ×2 downscaled) resolution, never resized: resizing a
large photo to 256² would smooth it into an image unlike what a camera delivers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from apir.data.defects import DEFECT_KINDS, synthesize_defect
from apir.data.imageio import write_image, write_mask
from apir.data.mvtec import GOOD, mask_path_for, original_path_for

CROP = 256
PICTURES_PER_CATEGORY = 8
TRAIN_CROPS = 2


def _crop(image: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    return image[y : y + side, x : x + side]


def _as_float(u8: np.ndarray) -> np.ndarray:
    f = u8.astype(np.float32) / 255.0
    return f[..., None] if f.ndim == 2 else f


def _as_u8(f: np.ndarray) -> np.ndarray:
    u8 = np.round(np.clip(f, 0, 1) * 255).astype(np.uint8)
    return u8[..., 0] if u8.shape[2] == 1 else u8


def build_unseen_set(
    staging: Path, pictures: dict[str, list[tuple[str, np.ndarray]]], seed: int = 0
) -> dict[str, dict]:
    """Write categories for ``pictures`` (package → [(picture id, uint8 image)]) under ``staging``.

    Deterministic for a given seed. Returns, per category, the picture ids it was made from.
    """
    info: dict[str, dict] = {}
    kind_index = 0
    for package, items in sorted(pictures.items()):
        short = package.split("-")[0]
        for start in range(0, len(items), PICTURES_PER_CATEGORY):
            chunk = items[start : start + PICTURES_PER_CATEGORY]
            name = f"{short}_{start // PICTURES_PER_CATEGORY + 1:02d}"
            root = staging / name
            kinds: list[str] = []
            for j, (pid, image) in enumerate(chunk):
                rng = np.random.default_rng([seed, j, *pid.encode()])
                side = min(CROP, *image.shape[:2])
                for t in range(TRAIN_CROPS):
                    write_image(root / "train" / GOOD / f"{pid}_{t}.png", _crop(image, side, rng))
                write_image(root / "test" / GOOD / f"{pid}.png", _crop(image, side, rng))
                kind = DEFECT_KINDS[kind_index % len(DEFECT_KINDS)]
                kind_index += 1
                clean = _as_float(_crop(image, side, rng))
                defect = synthesize_defect(clean, kind, rng)
                write_image(root / "test" / kind / f"{pid}.png", _as_u8(defect.image))
                write_mask(mask_path_for(root, kind, pid), defect.mask)
                write_image(original_path_for(root, kind, pid), _as_u8(clean))
                kinds.append(kind)
            info[name] = {"package": package, "pictures": [pid for pid, _ in chunk], "defects": kinds}
    (staging / "unseen_info.json").write_text(json.dumps({"seed": seed, "categories": info}, indent=2))
    return info
