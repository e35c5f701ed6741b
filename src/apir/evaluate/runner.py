"""Evaluate a restorer on every test image of a dataset and write a results folder.

Each image is degraded exactly as in every other run (parameters fixed by the seed and the image's
key, see :func:`apir.data.degradations.fixed_params`): the data layer yields it as an
:class:`~apir.data.cases.EvalCase`, ``restore_fn(degraded, sigma)`` restores it once, timed, and
every consumer (the metrics, the figures kept for the report, the detection check) takes that
restoration. It is scored with every registered metric (:data:`apir.evaluate.metrics.METRICS`), both for the
restored image and for the degraded input, so a report can show what restoration gained and what
it cost inside the defects. The same fixed degradations make results of different methods (a
learned model, CBM3D, ...) comparable image by image.

Results folder (``docs/evaluation.md`` describes every field; reports read exactly this)::

    out_dir/metrics.json     :class:`apir.evaluate.results.Results` ("apir.evaluate/1"): settings,
                             overall / per-category means, per-image rows
    out_dir/metrics.csv      one row per image
    out_dir/images/<category>/<defect_type>/<stem>/{clean,degraded,restored,mask[,original]}.png

apir never writes into a folder it did not create: ``out_dir`` must be new, empty, or an earlier
results folder (whose metrics, CSV and images are then replaced; other files are left alone).
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from apir.data.cases import iter_cases
from apir.data.degradations import DegradationPipeline, get_degradation
from apir.data.imageio import write_image, write_mask
from apir.data.mvtec import Category, Sample, load_dataset, round_robin_by_type
from apir.errors import ApirError, safe_name
from apir.evaluate.detection import DetectionRun
from apir.evaluate.metrics import DEFAULT_RING, image_metrics, metric_names
from apir.evaluate.results import RESULTS_FILE, SCHEMA, Results, json_safe
from apir.evaluate.results import load_results as load_results  # the one reader, also importable here
from apir.fsutil import atomic_write_bytes, claim_output_folder, printable
from apir.restore.functions import RestoredCase, RestoreFn, restore_cases
from apir.version import __version__

CONVENTIONS = {
    "ssim": "torchmetrics, Gaussian 11x11 sigma 1.5, RGB channel mean, data_range 1",
    "range": "[0,1] RGB",
}
CSV_FILE = "metrics.csv"
IMAGES_DIR = "images"
# Written first into every results folder, so an interrupted run (no metrics.json yet) is still
# recognised as apir's own and may be overwritten by the next run.
MARKER_FILE = ".apir-evaluate"

# ------------------------------------------------------------------------------------------ output dir


def _is_results_dir(path: Path) -> bool:
    """A results folder written before the marker existed: its metrics.json says so."""
    try:
        data = json.loads((path / RESULTS_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and str(data.get("schema", "")).startswith("apir.evaluate/")


def _clear_results(out: Path) -> None:
    # The previous metrics first: a results folder must never pair old metrics with new images.
    for name in (RESULTS_FILE, CSV_FILE):
        (out / name).unlink(missing_ok=True)
    if (out / IMAGES_DIR).is_dir():
        shutil.rmtree(out / IMAGES_DIR)


def _prepare_out_dir(out_dir: str | Path) -> Path:
    """Create ``out_dir`` or clear an earlier run's files from it; refuse any other non-empty folder."""
    return claim_output_folder(
        out_dir,
        marker=MARKER_FILE,
        stamp=SCHEMA,
        what="apir evaluation results",
        clear=_clear_results,
        recognise=_is_results_dir,
    )


# ------------------------------------------------------------------------------------------ helpers


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """NaN-aware means of every metric (restored and input), counts and throughput."""
    out: dict[str, Any] = {}
    for prefix in ("", "input_"):
        for name in metric_names():
            out[prefix + name] = _mean([r[prefix + name] for r in rows])
    seconds = float(sum(r["seconds"] for r in rows))
    megapixels = sum(r["height"] * r["width"] for r in rows) / 1e6
    out["n_images"] = len(rows)
    out["n_defective"] = sum(1 for r in rows if r["defect_pixels"] > 0)
    out["seconds"] = seconds
    out["megapixels_per_second"] = megapixels / seconds if seconds > 0 else math.nan
    return out


def _save_case(out: Path, category: str, done: RestoredCase) -> str:
    """Write a case's clean / degraded / restored (/ original) PNGs and mask; return their folder."""
    case = done.case
    image_dir = f"{IMAGES_DIR}/{category}/{case.sample.defect_type}/{case.sample.image.stem}"
    images = {"clean": case.clean, "degraded": case.degraded, "restored": done.restored}
    images["original"] = case.original
    for name, arr in images.items():
        if arr is not None:
            write_image(out / image_dir / f"{name}.png", arr)  # float RGB → 8-bit RGB PNG
    write_mask(out / image_dir / "mask.png", case.mask)
    return image_dir


def _score(done: RestoredCase, category: str, ring: int) -> dict[str, Any]:
    """The per-image row: every metric of the restored image and of the degraded input."""
    case = done.case
    scores = image_metrics(done.restored, case.clean, case.mask, case.original, ring)
    input_scores = image_metrics(case.degraded, case.clean, case.mask, case.original, ring)
    h, w = case.clean.shape[:2]
    return {
        "key": case.key,
        "category": category,
        "defect_type": case.sample.defect_type,
        "height": int(h),
        "width": int(w),
        **scores,
        **{f"input_{k}": v for k, v in input_scores.items()},
        "seconds": done.seconds,
        "noise_sigma": case.sigma,
        "image_dir": None,
        "defect_pixels": int(case.mask.sum()),
        "has_original": case.original is not None,
        "degradation_params": case.params.to_dict(),
    }


def _images_to_save(samples: Sequence[Sample], n_defective: int) -> set[str]:
    """Keys whose images are kept: ``n_defective`` defective ones taken round-robin over defect types
    (so a report shows every kind of defect, not four cracks), plus the first good image."""
    if n_defective <= 0:
        return set()
    good = [s.key for s in samples if s.is_good][:1]
    defective = round_robin_by_type([s for s in samples if not s.is_good])[:n_defective]
    return {*good, *(s.key for s in defective)}


def csv_fields() -> list[str]:
    """The columns of metrics.csv: the image's identity, then every registered metric."""
    names = metric_names()
    return (
        ["key", "category", "defect_type", "height", "width", "noise_sigma", "seconds", "defect_pixels"]
        + ["has_original"]
        + list(names)
        + [f"input_{m}" for m in names]
        + ["image_dir"]
    )


def _csv_bytes(rows: Sequence[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    fields = csv_fields()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        cells = {}
        for k in fields:
            v = row.get(k)
            cells[k] = "" if v is None or (isinstance(v, float) and math.isnan(v)) else v
        writer.writerow(cells)
    return buf.getvalue().encode("utf-8")


# ------------------------------------------------------------------------------------------ evaluate


def evaluate(
    root: str | Path,
    out_dir: str | Path,
    *,
    method: str,
    restore_fn: RestoreFn,
    degradation: str | Path | DegradationPipeline = "blind",
    seed: int = 0,
    categories: Sequence[str] | None = None,
    split: str = "test",
    crop: int | None = None,
    save_images: int = 4,
    label: str | None = None,
    show_progress: bool = True,
    model_info: Mapping[str, Any] | None = None,
    ring: int = DEFAULT_RING,
    max_per_category: int | None = None,
    detector: bool = False,
    detector_maps: int = 2,
    detector_fit: str = "both",
    follow_symlinks: bool = False,
    for_category: Callable[[Category, DegradationPipeline, int], RestoreFn] | None = None,
) -> dict[str, Any]:
    """Restore and score every ``split`` image (good and defective) of ``root``; write ``out_dir``.

    ``restore_fn(degraded, sigma)`` gets a float32 H×W×3 image in [0, 1] and the true effective noise
    σ (0–255 scale) of its degradation, and returns the restored image of the same shape. ``method``
    names what restored ("model", or a baseline name), ``label`` how reports display it (default:
    ``method``), ``model_info`` the model's config/checkpoint (recorded as is). ``crop`` takes a
    centred square crop of each image (quicker runs on large images). ``save_images`` PNG sets are
    kept per category for defective images, round-robin over defect types (plus the first good image);
    0 keeps none. ``ring`` is the width of the surroundings that contrast_ratio compares a defect with.
    ``max_per_category`` keeps that many images per category, taken round-robin over the defect types
    and ``good`` (for slow methods such as CBM3D); the subset depends only on the file names.

    ``detector`` adds the downstream anomaly-detection check (:func:`apir.evaluate.detection.detection_check`:
    a reference detector fitted on clean ``train/good`` scores the clean, degraded and restored test
    images) under the key ``detection``, with ``detector_maps`` detection-map figures per category;
    ``detector_fit="both"`` (default) adds the users' protocol, a detector fitted on degraded and on
    restored ``train/good`` (``fit_on_restored``), "clean" leaves it out.

    ``for_category(category, pipeline, seed)``, if given, makes the restore function of each category
    (used for everything in that category, the detection check included): ``--guard`` fits a
    detector on the category's ``train/good`` (:meth:`apir.evaluate.methods.Method.for_category`).

    A defective image without a mask is an error before any work: scored with an all-zero mask it
    would count as defect-free and skew every "in defect" number. ``follow_symlinks`` follows links
    out of ``root`` (skipped with a warning by default, see :mod:`apir.data.mvtec`).

    Returns the dict written to ``metrics.json`` (NaN as None); :func:`load_results` reads it back
    as :class:`~apir.evaluate.results.Results`.
    """
    if split not in ("test", "train"):
        raise ApirError(f"split must be 'test' or 'train', got {split!r}")
    if not isinstance(method, str) or not method:
        raise ApirError("method must be a non-empty name, e.g. 'model' or 'cbm3d'")
    if save_images < 0:
        raise ApirError(f"save_images must be >= 0, got {save_images}")
    if crop is not None and crop < 1:
        raise ApirError(f"crop must be a positive size in px, got {crop}")
    if ring < 1:
        raise ApirError(f"ring must be at least 1 px, got {ring}")
    # Made JSON-safe now (paths → str), not after hours of restoring.
    model = json_safe(dict(model_info)) if model_info is not None else None
    pipeline = degradation if isinstance(degradation, DegradationPipeline) else get_degradation(degradation)
    cats = load_dataset(root, categories, follow_symlinks)
    plan: list[tuple[str, list[Sample]]] = [
        (c.name, list(c.test if split == "test" else c.train)) for c in cats
    ]
    if max_per_category is not None:
        if max_per_category < 1:
            raise ApirError(f"max_per_category must be >= 1, got {max_per_category}")
        plan = [(name, round_robin_by_type(samples)[:max_per_category]) for name, samples in plan]
    plan = [(name, samples) for name, samples in plan if samples]
    total = sum(len(s) for _, s in plan)
    if total == 0:
        raise ApirError(f"{root}: no {split} images to evaluate")
    unlabelled = [s for _, samples in plan for s in samples if not s.is_good and s.mask is None]
    if unlabelled:
        raise ApirError(
            f"{printable(unlabelled[0].image)}: defective image without a mask ({len(unlabelled)} in all; "
            f"it would be scored as defect-free; add the masks, see `apir data check {printable(root)}`)"
        )
    out = _prepare_out_dir(out_dir)
    label = label or method
    detection = None
    if detector:
        # The detection check is a consumer of the same stream: it runs per category right after
        # the category is scored, on the restorations the metrics used (each image restored once;
        # memory: one category's restored test images).
        detection = DetectionRun(
            restore_fn=restore_fn,
            pipeline=pipeline,
            seed=seed,
            max_per_category=max_per_category,
            save_maps=detector_maps,
            out_dir=out,
            crop=crop,
            fit=detector_fit,
        )
    by_name = {c.name: c for c in cats}

    rows: list[dict[str, Any]] = []
    with tqdm(total=total, desc=f"evaluate {label}", unit="img", disable=not show_progress) as bar:
        for cat_name, samples in plan:
            bar.set_postfix_str(cat_name, refresh=False)
            to_save = _images_to_save(samples, save_images)
            tests = detection.tests_for(by_name[cat_name]) if detection is not None else []
            wanted = {s.key for s in tests} if split == "test" else set()
            kept: dict[str, RestoredCase] = {}
            fn = for_category(by_name[cat_name], pipeline, seed) if for_category else restore_fn
            for done in restore_cases(iter_cases(samples, pipeline, seed, crop), fn):
                rows.append(_score(done, cat_name, ring))
                if done.case.key in to_save:
                    rows[-1]["image_dir"] = _save_case(out, cat_name, done)
                if done.case.key in wanted:
                    kept[done.case.key] = done
                bar.update(1)
            if tests:
                bar.set_postfix_str(f"{cat_name}: detection check")
                # Restorations of this stream where it has them (the test split), else restored there.
                restored = [kept[s.key] for s in tests] if len(kept) == len(tests) else None
                detection.run_category(by_name[cat_name], tests, restored=restored, restore_fn=fn)

    fields: dict[str, Any] = {
        "schema": SCHEMA,
        "label": label,
        "method": method,
        "model": model,
        "dataset": str(Path(root).resolve()),
        "split": split,
        "degradation": pipeline.name,
        "degradation_description": pipeline.description,
        "seed": int(seed),
        "crop": crop,
        "ring": int(ring),
        "conventions": dict(CONVENTIONS),
        "metric_names": list(metric_names()),
        "overall": _summary(rows),
        "categories": {name: _summary([r for r in rows if r["category"] == name]) for name, _ in plan},
        "images": rows,
        "apir_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if detection is not None:
        if not detection.results:
            raise ApirError(
                f"{root}: no category has both train/good and test images for the detection check"
            )
        fields["detection"] = detection.result()
    results = Results.model_validate(fields)
    try:
        atomic_write_bytes(out / CSV_FILE, _csv_bytes(rows))
        # metrics.json last: its presence means the folder is complete.
        atomic_write_bytes(out / RESULTS_FILE, results.to_json().encode("utf-8"))
    except OSError as err:
        raise ApirError(f"{safe_name(out)}: cannot write results ({err.strerror or err})") from None
    return results.to_dict()
