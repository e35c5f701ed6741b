"""The training corpus of apir's shipped default model, built offline from images inside installed packages.

A model that ships inside the package must be trainable again by anyone, offline, with one command.
Its training images therefore come from freely licensed pictures bundled in PyPI packages that apir
already depends on: the demo dataset's scikit-image sources plus a few more scikit-image pictures,
matplotlib's Grace Hopper portrait and scikit-learn's two sample photographs. Each source becomes one
MVTec-layout category with ``train/good`` crops only (256² tiles at full and half scale, so image
noise and JPEG artefacts of the originals are reduced and every source contributes in proportion to
its size); the trainer adds synthetic defects and degradations on the fly.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from skimage import data as skdata
from tqdm import tqdm

from apir.data.demo import DEMO_SOURCES
from apir.data.imageio import read_image, write_image
from apir.data.mvtec import GOOD
from apir.errors import ApirError


@dataclass(frozen=True)
class CorpusSource:
    loader: Callable[[], np.ndarray]
    licence: str


def _package_file(module: str, *parts: str) -> Callable[[], np.ndarray]:
    """Loader for an image file shipped inside an installed package (uint8 RGB or gray)."""

    def load() -> np.ndarray:
        import importlib

        root = Path(importlib.import_module(module).__file__).parent
        loaded = read_image(root.joinpath(*parts))
        rgb = np.round(loaded.rgb * 255).astype(np.uint8)
        return rgb[..., 0] if loaded.info.channels in (1, 2) else rgb

    return load


CORPUS_SOURCES: dict[str, CorpusSource] = {
    **{name: CorpusSource(src.loader, src.licence) for name, src in DEMO_SOURCES.items()},
    "chelsea": CorpusSource(skdata.chelsea, "CC0 (Stefan van der Walt), scikit-image"),
    "hubble": CorpusSource(skdata.hubble_deep_field, "public domain (NASA), scikit-image"),
    "hopper": CorpusSource(
        _package_file("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg"),
        "public domain (US Navy), matplotlib sample data",
    ),
    "china": CorpusSource(
        _package_file("sklearn.datasets", "images", "china.jpg"),
        "CC BY 2.0 (danielbuechele on Flickr), scikit-learn sample image",
    ),
    "flower": CorpusSource(
        _package_file("sklearn.datasets", "images", "flower.jpg"),
        "CC BY 2.0 (vultilion on Flickr), scikit-learn sample image",
    ),
}


def _tiles(image: np.ndarray, tile: int, stride: int, max_tiles: int) -> list[np.ndarray]:
    """Overlapping tiles, at most ``max_tiles`` evenly spread, so no single large source dominates."""
    h, w = image.shape[:2]
    if min(h, w) < tile:
        return []
    ys = sorted({*range(0, h - tile + 1, stride), h - tile})
    xs = sorted({*range(0, w - tile + 1, stride), w - tile})
    tiles = [image[y : y + tile, x : x + tile] for y in ys for x in xs]
    keep = np.linspace(0, len(tiles) - 1, min(max_tiles, len(tiles))).round().astype(int)
    return [tiles[i] for i in sorted(set(keep))]


def build_training_corpus(
    out: str | Path,
    tile: int = 256,
    scales: tuple[float, ...] = (1.0, 0.5),
    max_tiles: int = 12,
    sources: list[str] | None = None,
    force: bool = False,
    show_progress: bool = True,
) -> Path:
    """Write the corpus (one category per source, ``train/good`` tiles) and a ``corpus_info.json``."""
    out = Path(out)
    names = sources or list(CORPUS_SOURCES)
    unknown = sorted(set(names) - set(CORPUS_SOURCES))
    if unknown:
        raise ApirError(
            f"unknown corpus source(s) {', '.join(unknown)} (available: {', '.join(CORPUS_SOURCES)})"
        )
    if out.exists():
        if not (force and (out / "corpus_info.json").is_file()):
            raise ApirError(f"{out}: already exists (pass --force to rebuild a corpus folder)")
        shutil.rmtree(out)
    staging = out.with_name(f".{out.name}.building")
    shutil.rmtree(staging, ignore_errors=True)
    info: dict = {
        "generator": "apir data corpus",
        "tile": tile,
        "scales": list(scales),
        "max_tiles": max_tiles,
        "sources": {},
    }
    for name in tqdm(names, desc="corpus", unit="src", disable=not show_progress):
        image = np.asarray(CORPUS_SOURCES[name].loader())
        if image.ndim == 3:
            image = image[..., :3]
        count = 0
        for scale in scales:
            scaled = (
                image
                if scale == 1.0
                else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            )
            for crop in _tiles(scaled, tile, tile * 7 // 8, max_tiles):
                write_image(
                    staging / name / "train" / GOOD / f"s{int(scale * 100):03d}_{count:04d}.png", crop
                )
                count += 1
        info["sources"][name] = {
            "licence": CORPUS_SOURCES[name].licence,
            "shape": list(image.shape),
            "tiles": count,
        }
    (staging / "corpus_info.json").write_text(json.dumps(info, indent=2))
    staging.rename(out)
    return out
