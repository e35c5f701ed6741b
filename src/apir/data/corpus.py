"""The training corpus of apir's shipped default model, and the unseen benchmark set held out of it.

A model that ships inside the package must be trainable again by anyone with one command. Its
training images are freely licensed pictures from two places:

* **bundled**: pictures inside PyPI packages apir already depends on (the demo dataset's scikit-image
  sources, a few more scikit-image pictures, matplotlib's Grace Hopper, scikit-learn's two photos).
  Each becomes one category of 256² tiles at full and half scale. Sixteen pictures are far too few
  to generalise (the field notes' "Generalisation"), so they are only a small part of the corpus;
* **debian**: about a thousand photographs and photographic material textures inside Debian packages
  (:mod:`apir.data.debian`), fetched into a cache by ``apt-get download`` + ``dpkg -x``, filtered
  image by image (:mod:`apir.data.picture_filter`), downscaled ×2 to suppress compression and
  sharpening artefacts, de-duplicated, and cut into tiles of at most 512² (so a large photo weighs in
  proportion to its area). Every picture's package, version, path and licence go to
  ``corpus_info.json``.

Whole pictures — whole texture families — are held out by a seeded hash, for photos and textures
separately, and become the unseen MVTec-layout benchmark set (:mod:`apir.data.unseen`); no tile of a
held-out picture is in the training folders. The trainer adds defects and degradations on the fly.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from skimage import data as skdata
from tqdm import tqdm

from apir.cache import cache_dir
from apir.data.debian import DEBIAN_SOURCES, RESERVED_PACKAGES, list_package_files, unpack_package
from apir.data.demo import DEMO_SOURCES
from apir.data.imageio import read_image, write_image
from apir.data.mvtec import GOOD
from apir.data.picture_filter import dhash, downscale, family, judge, near_duplicates
from apir.data.unseen import build_unseen_set
from apir.errors import ApirError
from apir.fsutil import prepare_staging, publish_staging


@dataclass(frozen=True)
class CorpusSource:
    loader: Callable[[], np.ndarray]
    licence: str


def _package_file(module: str, *parts: str) -> Callable[[], np.ndarray]:
    """Loader for an image file shipped inside an installed package (uint8 RGB or gray)."""

    def load() -> np.ndarray:
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


MAX_TILE = 512  # Debian pictures are cut into tiles of at most this side (equal splits per axis)
MIN_UNSEEN_PICTURES = 60


def default_cache() -> Path:
    """Where fetched Debian packages live (:func:`apir.cache.cache_dir`)."""
    return cache_dir("debian")


@dataclass
class Picture:
    """One usable Debian picture, downscaled, with everything ``corpus_info.json`` records about it."""

    id: str
    package: str
    version: str
    path: str
    licence: str
    kind: str
    family: str
    sha256: str
    quality: int | None
    source_shape: list[int]
    image: np.ndarray = field(repr=False)
    split: str = "train"
    duplicate_of: str | None = None


def _equal_tiles(image: np.ndarray, max_side: int) -> list[np.ndarray]:
    """Non-overlapping tiles of at most ``max_side``, the image split into equal parts per axis."""
    h, w = image.shape[:2]
    ny, nx = -(-h // max_side), -(-w // max_side)
    ys = np.linspace(0, h, ny + 1).round().astype(int)
    xs = np.linspace(0, w, nx + 1).round().astype(int)
    return [image[ys[i] : ys[i + 1], xs[j] : xs[j + 1]] for i in range(ny) for j in range(nx)]


def _collect_debian(
    packages: list[str], cache: Path, offline: bool, warn: Callable[[str], None], show_progress: bool
) -> tuple[list[Picture], dict[str, dict]]:
    pictures: list[Picture] = []
    summary: dict[str, dict] = {}
    for name in packages:
        try:
            root, version = unpack_package(name, cache, offline=offline)
        except ApirError as e:
            warn(f"warning: debian package {name} cannot be had ({e}); the corpus is built without it")
            summary[name] = {"error": str(e)}
            continue
        files = list_package_files(name, root, version)
        rejected: dict[str, int] = {}
        usable = 0
        for f in tqdm(files, desc=name, unit="file", disable=not show_progress, leave=False):
            data = f.read_bytes()
            verdict = judge(f.path, data)
            if not verdict.usable:
                reason = verdict.reason.split(" (")[0] if verdict.reason else "?"
                rejected[reason] = rejected.get(reason, 0) + 1
                continue
            usable += 1
            sha = hashlib.sha256(data).hexdigest()
            fam = family(f.path)
            pictures.append(
                Picture(
                    id=f"{fam[:24]}_{sha[:8]}".replace(" ", "_"),
                    package=name,
                    version=version,
                    path=f.path,
                    licence=f.licence,
                    kind=DEBIAN_SOURCES[name].kind,
                    family=fam if DEBIAN_SOURCES[name].kind == "texture" else f.path,
                    sha256=sha,
                    quality=verdict.quality,
                    source_shape=list(verdict.image.shape),
                    image=downscale(verdict.image),
                )
            )
        summary[name] = {"version": version, "candidates": len(files), "usable": usable, "rejected": rejected}
    return pictures, summary


def _hold_out(pictures: list[Picture], fraction: float, seed: int) -> None:
    """Mark whole families as ``unseen``, per kind, until each kind has ``fraction`` of its pictures."""
    for kind in sorted({p.kind for p in pictures}):
        members = [p for p in pictures if p.kind == kind and p.duplicate_of is None]
        families = sorted(
            {(p.package, p.family) for p in members},
            key=lambda pf: hashlib.sha256(f"{seed}/{pf[0]}/{pf[1]}".encode()).hexdigest(),
        )
        target = max(3, round(fraction * len(members))) if members else 0
        held = 0
        for package, fam in families:
            if held >= target:
                break
            for p in members:
                if (p.package, p.family) == (package, fam):
                    p.split = "unseen"
                    held += 1


def _write_bundled(staging: Path, names: list[str], tile: int, scales, max_tiles: int, show_progress) -> dict:
    sources = {}
    for name in tqdm(names, desc="bundled", unit="src", disable=not show_progress):
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
        sources[name] = {"licence": CORPUS_SOURCES[name].licence, "shape": list(image.shape), "tiles": count}
    return sources


def build_training_corpus(
    out: str | Path,
    tile: int = 256,
    scales: tuple[float, ...] = (1.0, 0.5),
    max_tiles: int = 12,
    sources: list[str] | None = None,
    force: bool = False,
    show_progress: bool = True,
    debian: list[str] | None = None,
    cache: str | Path | None = None,
    offline: bool = False,
    unseen: str | Path | None = None,
    holdout: float = 0.12,
    seed: int = 0,
    warn: Callable[[str], None] = print,
) -> Path:
    """Write the corpus (one category per source, ``train/good`` tiles), ``corpus_info.json``, and the
    unseen benchmark set built from held-out Debian pictures (default ``<out>_unseen``).

    ``debian``: package names (default all of :data:`DEBIAN_SOURCES`; ``[]`` for bundled pictures
    only). A package that cannot be fetched is reported by ``warn`` in one line and left out.
    """
    out = Path(out)
    names = list(CORPUS_SOURCES) if sources is None else sources
    unknown = sorted(set(names) - set(CORPUS_SOURCES))
    if unknown:
        raise ApirError(
            f"unknown corpus source(s) {', '.join(unknown)} (available: {', '.join(CORPUS_SOURCES)})"
        )
    packages = list(DEBIAN_SOURCES) if debian is None else debian
    reserved = sorted(set(packages) & RESERVED_PACKAGES)
    if reserved:
        raise ApirError(
            f"{', '.join(reserved)}: reserved for independent evaluation of apir, never trained on"
        )
    unknown = sorted(set(packages) - set(DEBIAN_SOURCES))
    if unknown:
        raise ApirError(f"unknown debian source(s) {', '.join(unknown)} (known: {', '.join(DEBIAN_SOURCES)})")
    if not 0.0 < holdout < 0.5:
        raise ApirError(f"holdout must be in (0, 0.5), got {holdout}")
    unseen_dir = Path(unseen) if unseen is not None else out.with_name(f"{out.name}_unseen")
    staging = prepare_staging(out, marker="corpus_info.json", force=force, what="apir training corpus")
    unseen_staging = (
        prepare_staging(unseen_dir, marker="unseen_info.json", force=force, what="apir unseen set")
        if packages
        else None
    )

    info: dict = {
        "generator": "apir data corpus",
        "schema": "apir.corpus/2",
        "seed": seed,
        "tile": tile,
        "scales": list(scales),
        "max_tiles": max_tiles,
        "sources": _write_bundled(staging, names, tile, scales, max_tiles, show_progress),
    }
    pictures, summary = _collect_debian(
        packages, Path(cache) if cache else default_cache(), offline, warn, show_progress
    )
    duplicates = near_duplicates([dhash(p.image) for p in pictures])
    for p, dup in zip(pictures, duplicates, strict=True):
        if dup is not None:
            p.duplicate_of = pictures[dup].id
            p.split = "duplicate"
    _hold_out(pictures, holdout, seed)
    for p in pictures:
        if p.split == "train":
            for k, part in enumerate(_equal_tiles(p.image, MAX_TILE)):
                write_image(staging / p.package / "train" / GOOD / f"{p.id}_t{k:02d}.png", part)
    held = [p for p in pictures if p.split == "unseen"]
    if unseen_staging is not None and not held:  # no Debian picture could be had: no unseen set
        shutil.rmtree(unseen_staging)
        unseen_staging = None
    if unseen_staging is not None:
        by_package: dict[str, list[tuple[str, np.ndarray]]] = {}
        for p in held:
            by_package.setdefault(p.package, []).append((p.id, p.image))
        build_unseen_set(unseen_staging, by_package, seed=seed)
        if len(held) < MIN_UNSEEN_PICTURES:
            want = MIN_UNSEEN_PICTURES
            warn(f"warning: only {len(held)} pictures held out for the unseen set (want >= {want})")
    info["debian"] = {
        "packages": summary,
        "holdout": holdout,
        "unseen_dir": str(unseen_dir) if unseen_staging is not None else None,
        "pictures": [
            {k: v for k, v in vars(p).items() if k != "image"} | {"shape": list(p.image.shape)}
            for p in pictures
        ],
    }
    (staging / "corpus_info.json").write_text(json.dumps(info, indent=2))
    if unseen_staging is not None:
        publish_staging(unseen_staging, unseen_dir, marker="unseen_info.json")
    publish_staging(staging, out, marker="corpus_info.json")
    return out
