"""Restored (or degraded) copies of an MVTec-layout dataset, for any anomaly detector.

apir's own detection check (:mod:`apir.evaluate.detection`) uses a reference detector that needs no
download; users with a PatchCore/PaDiM/EfficientAD pipeline (anomalib) want *their* detector's answer.
The simplest interface to every such tool is a dataset on disk, so :func:`restore_dataset` writes one:

* the same folders and file names as the input (``<category>/train/good``, ``test/<type>``,
  ``ground_truth/<type>``, apir's ``original/<type>``, and any other files);
* every image of ``train/good`` and ``test/*`` degraded with parameters fixed per image by
  ``(seed, key)`` — the very bytes ``apir evaluate`` and the detection check use
  (:class:`~apir.data.datasets.EvalImageDataset`) — then restored by ``restore_fn(degraded, sigma)``,
  and written in the input's own format, mode and bit depth (gray stays 1-channel, 16-bit stays
  16-bit, alpha is copied unchanged; a JPEG is re-encoded as JPEG, quality 95);
* masks (``ground_truth/``), originals (``original/``) and every other non-hidden file copied byte
  for byte (:func:`shutil.copy2`), so scores are compared against untouched ground truth.
  ``originals=False`` leaves out apir's ``original/`` folders: anomalib's ``MVTecAD`` datamodule
  globs every image under a category and takes any folder other than ``good`` for a defect type
  that needs a mask, so it refuses a category that has them (``docs/anomaly-detection.md``).

``restore_fn=None`` writes the *degraded* dataset: the baseline a detector sees without restoration.
Training images are degraded too, as a camera would deliver them; train on the clean ``train/good``
of the original dataset instead if your question is "fitted on clean, tested on restored" (that is
what the detection check does).

Safety: ``out_root`` may not be ``root``, lie inside it, or contain it; a non-empty ``out_root`` is
refused unless ``overwrite`` is set *and* it is an earlier output of this function (it carries a
hidden marker file), so no folder apir did not create is ever deleted. The copy is built in a hidden
staging folder next to ``out_root`` and renamed into place at the end: an interrupted run leaves no
half dataset behind.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import apir
from apir.data.datasets import EvalImageDataset
from apir.data.degradations import DegradationPipeline, fixed_params, get_degradation
from apir.data.imageio import read_image, write_image
from apir.data.mvtec import is_category_dir, load_dataset
from apir.errors import ApirError
from apir.fsutil import is_relative_to
from apir.restore.functions import RestoreFn, check_restored

__all__ = ["MARKER_FILE", "degrade_dataset", "restore_dataset"]


#: Hidden file in every dataset this module writes (apir's scans skip dot-files): what it was made
#: from and how; its presence is what lets ``overwrite`` replace the folder.
MARKER_FILE = ".apir-restored-dataset.json"


def _check_out_root(root: Path, out_root: Path, overwrite: bool) -> None:
    if is_relative_to(out_root, root):
        where = "the dataset folder" if out_root.resolve() == root.resolve() else "inside the dataset folder"
        raise ApirError(f"{out_root}: output folder is {where} {root}; choose a folder outside it")
    if is_relative_to(root, out_root):
        raise ApirError(f"{out_root}: output folder contains the dataset {root}; choose another folder")
    if out_root.exists() and not out_root.is_dir():
        raise ApirError(f"{out_root}: exists and is not a folder; choose another output folder")
    if out_root.is_dir() and any(out_root.iterdir()):
        if not overwrite:
            raise ApirError(f"{out_root}: folder is not empty; choose another folder (or pass --overwrite)")
        if not (out_root / MARKER_FILE).is_file():
            raise ApirError(
                f"{out_root}: folder is not empty and is not a dataset written by apir restore-dataset; "
                "apir only replaces its own outputs, so choose another folder"
            )


def _other_files(src: Path) -> list[Path]:
    """Every non-hidden file under ``src`` (hidden folders skipped, symlinked folders not followed)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")]
    return found


def restore_dataset(
    root: str | Path,
    out_root: str | Path,
    *,
    restore_fn: RestoreFn | None,
    degradation: str | Path | DegradationPipeline = "blind",
    seed: int = 0,
    categories: Sequence[str] | None = None,
    show_progress: bool = True,
    overwrite: bool = False,
    label: str | None = None,
    originals: bool = True,
) -> Path:
    """Write a degraded-then-restored copy of the MVTec-layout dataset ``root`` to ``out_root``.

    ``root`` is a dataset root (its selected ``categories`` are copied, with the root's own files) or
    one category folder (then ``out_root`` becomes that category). ``restore_fn(degraded, sigma)``
    gets float32 H×W×3 in [0, 1] and the true noise σ (0–255); None writes the degraded images
    unrestored. ``label`` (e.g. the model's name) is recorded in the marker file. ``originals=False``
    skips the ``<category>/original/`` folders (needed for anomalib's MVTecAD loader). Returns
    ``out_root``.
    See the module docstring for what is copied, how, and which folders are refused.
    """
    root, out_root = Path(root), Path(out_root)
    if restore_fn is not None and not callable(restore_fn):
        raise ApirError("restore_fn must be a callable (degraded, sigma) -> restored, or None")
    cats = load_dataset(root, categories)  # checks that root exists and is MVTec-shaped
    _check_out_root(root, out_root, overwrite)
    pipeline = degradation if isinstance(degradation, DegradationPipeline) else get_degradation(degradation)
    single = is_category_dir(root)

    try:
        out_root.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ApirError(f"{out_root}: cannot create the output folder ({err.strerror or err})") from None
    staging = out_root.parent / f".{out_root.name}.building"
    if staging.exists():
        shutil.rmtree(staging)  # a crashed earlier run's leftovers (hidden name of our own making)
    total = sum(len(c.train) + len(c.test) for c in cats)
    done = 0
    try:
        staging.mkdir()
        if not single:
            for f in sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")):
                shutil.copy2(f, staging / f.name)
        with tqdm(total=total, desc="restore-dataset", unit="img", disable=not show_progress) as bar:
            for cat in cats:
                dst_root = staging if single else staging / cat.name
                samples = [*cat.train, *cat.test]
                dataset = EvalImageDataset(samples, pipeline, seed=seed)
                images = {s.image.resolve() for s in samples}
                for index, sample in enumerate(samples):
                    bar.set_postfix_str(cat.name, refresh=False)
                    loaded = read_image(sample.image)
                    item = dataset[index]
                    result = np.ascontiguousarray(item["degraded"].numpy().transpose(1, 2, 0))
                    if restore_fn is not None:
                        sigma = float(fixed_params(pipeline, sample.key, seed).noise_sigma)
                        result = check_restored(restore_fn(result.copy(), sigma), result.shape, sample.key)
                    dst = dst_root / sample.image.relative_to(cat.root)
                    write_image(dst, result, loaded.info, loaded.alpha)
                    done += 1
                    bar.update(1)
                skip = None if originals else cat.root / "original"
                for f in _other_files(cat.root):
                    if f.resolve() in images or (skip is not None and is_relative_to(f, skip)):
                        continue
                    dst = dst_root / f.relative_to(cat.root)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(f, dst)
        marker = {
            "generator": "apir restore-dataset",
            "source": str(root.resolve()),
            "categories": [c.name for c in cats],
            "restored": restore_fn is not None,
            "originals": originals,
            "label": label,
            "degradation": pipeline.name,
            "degradation_description": pipeline.description,
            "seed": int(seed),
            "images": done,
            "apir_version": apir.__version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (staging / MARKER_FILE).write_text(json.dumps(marker, indent=1), encoding="utf-8")
        _replace(out_root, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_root


def _replace(out_root: Path, staging: Path) -> None:
    """Move ``staging`` to ``out_root``; an earlier output (checked before) is removed only now."""
    old = None
    if out_root.exists():
        if any(out_root.iterdir()):
            old = out_root.parent / f".{out_root.name}.old"
            if old.exists():
                shutil.rmtree(old)
            out_root.rename(old)
        else:
            out_root.rmdir()
    staging.rename(out_root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def degrade_dataset(root: str | Path, out_root: str | Path, **kwargs: Any) -> Path:
    """The degraded dataset (no restoration): :func:`restore_dataset` with ``restore_fn=None``."""
    return restore_dataset(root, out_root, restore_fn=None, **kwargs)
