"""The downstream detection check: does an anomaly detector still find the defects after restoration?

PSNR inside a defect says how much of it survived; what an inspection line cares about is whether
the *detector* still flags it. This check measures exactly that, per category:

1. fit a detector (:class:`~apir.evaluate.detector.ReferenceDetector` unless another factory is
   given) on the category's **clean** ``train/good`` images, as a real line would be fitted on
   images from a good camera;
2. score every test image three ways with that one fitted detector: the **clean** image, its
   **degraded** version (blur/noise parameters fixed per image by ``(seed, key)``, exactly the bytes
   ``apir evaluate`` uses, via :class:`~apir.data.datasets.EvalImageDataset`), and the **restored**
   one (``restore_fn(degraded, sigma)``);
3. compare detection quality between the three.

Metrics (``docs/anomaly-detection.md`` gives the formulas):

* ``pixel_auroc``: ROC AUC of the score maps against the ground-truth masks over *all* pixels of
  *all* test images of the category pooled (good images contribute only normal pixels), computed by
  scikit-learn's ``roc_auc_score`` on float64 scores. Maps are never normalised per image (that
  would make pooled scores incomparable). Images larger than ``metric_size`` are compared at that
  size (area-averaged maps, masks set where at least half of a cell is defect), as anomalib does at
  its 256-px input size; the demo's 256-px images are compared at full resolution.
* ``image_auroc``: ROC AUC of the image scores, defective images positive.
* Frozen thresholds: on the **clean** images the pixel threshold τ is set where 95 % of the defect
  pixels score ≥ τ, and the image threshold where 95 % of the defective images do. They are then
  frozen: noise raises fine-scale energy everywhere and blur lowers it, so a threshold re-fitted on
  degraded data would hide exactly the shift a deployed detector suffers. At the frozen thresholds:
  ``false_alarm_rate`` = share of the pixels of *good* test images with score ≥ τ, ``recall`` =
  share of defect pixels with score ≥ τ; ``image_false_alarm_rate`` / ``image_recall`` the same for
  whole images.
* ``auroc_preservation`` = restored pixel AUROC / clean pixel AUROC (1 = restoration lost nothing
  the detector needs); ``auroc_preservation_degraded`` is the same ratio for the unrestored input,
  the baseline a restorer should beat; ``image_auroc_preservation`` the image-level ratio.

``overall`` is the plain mean over categories (undefined values skipped). Undefined metrics (no
defective or no good image in a category) are ``None`` in the returned dict, which is JSON-ready.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from apir.data.cases import iter_cases
from apir.data.datasets import load_sample
from apir.data.degradations import DegradationPipeline, get_degradation
from apir.data.imageio import write_image
from apir.data.mvtec import Category, Sample, load_dataset, round_robin_by_type
from apir.errors import ApirError
from apir.evaluate.detector import DETECTORS
from apir.evaluate.results import DETECTION_SCHEMA, Detection, json_safe
from apir.fsutil import claim_output_folder
from apir.report.detection_maps import VARIANTS, detection_figure
from apir.restore.functions import RestoredCase, RestoreFn, restore_cases

__all__ = ["SCHEMA", "VARIANTS", "DetectionRun", "Detector", "detection_check", "frozen_threshold"]

SCHEMA = DETECTION_SCHEMA
#: Recall at which the thresholds are fixed on clean images.
TARGET_RECALL = 0.95
MAPS_DIR = "detection"
#: "clean": fit on clean train/good, score clean / degraded / restored test images (frozen thresholds);
#: "both": also the users' protocol, a detector fitted on train/good degraded (and restored by the
#: same method) scoring the degraded (restored) test images.
FIT_PROTOCOLS = ("clean", "both")
_MARKER = ".apir-detection"


class Detector(Protocol):
    """What the check needs from a detector (``ReferenceDetector`` has it; anything else may too)."""

    def fit(self, images: list[np.ndarray]) -> Any: ...
    def score_map(self, image: np.ndarray) -> np.ndarray: ...
    def image_score(self, score_map: np.ndarray) -> float: ...


CONVENTIONS = {
    "pixel_auroc": (
        "sklearn roc_auc_score on float64 scores; all pixels of all test images of a category pooled; "
        "no per-image normalisation"
    ),
    "image_auroc": "sklearn roc_auc_score of image scores, defective images positive",
    "thresholds": (
        f"fixed on clean images at {TARGET_RECALL:.0%} recall (pixel: defect pixels; image: defective "
        "images), then frozen for degraded and restored"
    ),
    "false_alarm_rate": "share of pixels of good test images scoring >= the frozen pixel threshold",
    "image_false_alarm_rate": "share of good test images scoring >= the frozen image threshold",
    "auroc_preservation": "restored pixel_auroc / clean pixel_auroc",
    "overall": "mean over categories (undefined values skipped)",
}


# --------------------------------------------------------------------------------------------- metrics


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC, NaN when only one class is present (undefined, not 0.5)."""
    labels = np.asarray(labels, dtype=bool)
    if labels.size == 0 or labels.all() or not labels.any():
        return math.nan
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


def frozen_threshold(positive_scores: np.ndarray, recall: float = TARGET_RECALL) -> float:
    """The largest τ with ``mean(scores >= τ) >= recall`` (NaN without positives).

    It is a score of a positive itself (the ⌊(1 − recall)·n⌋-th smallest), so ties never push recall
    below the target.
    """
    s = np.sort(np.asarray(positive_scores, dtype=np.float64).ravel())
    if s.size == 0:
        return math.nan
    k = int(math.floor((1.0 - recall) * s.size + 1e-9))
    return float(s[min(k, s.size - 1)])


def _share_at_least(scores: np.ndarray, threshold: float) -> float:
    scores = np.asarray(scores)
    if scores.size == 0 or math.isnan(threshold):
        return math.nan
    return float(np.mean(scores >= threshold))


def _ratio(a: float, b: float) -> float:
    return a / b if math.isfinite(a) and math.isfinite(b) and b > 0 else math.nan


# --------------------------------------------------------------------------------------------- helpers


def _metric_size(shape: tuple[int, int], metric_size: int | None) -> tuple[int, int]:
    h, w = shape
    if metric_size is None or max(h, w) <= metric_size:
        return h, w
    f = metric_size / max(h, w)
    return max(1, round(h * f)), max(1, round(w * f))


def _shrink(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if arr.shape[:2] == size:
        return arr
    return cv2.resize(arr, (size[1], size[0]), interpolation=cv2.INTER_AREA)


#: Per-category values that are summed, not averaged, in ``overall``; thresholds are left out there
#: (scores of different categories' detectors are not comparable).
_SUMMED = ("n_train", "n_good", "n_defective", "fit_seconds", "score_seconds", "restore_seconds")
_NOT_OVERALL = ("pixel_threshold", "image_threshold", "maps", "images")


def _mean_tree(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """NaN-aware mean of every numeric leaf shared by ``items`` (nested dicts are followed)."""
    out: dict[str, Any] = {}
    for key, first in items[0].items():
        if key in _NOT_OVERALL:
            continue
        if isinstance(first, Mapping):
            subs = [it[key] for it in items if isinstance(it.get(key), Mapping)]
            out[key] = _mean_tree(subs)
        elif isinstance(first, int | float) and not isinstance(first, bool):
            vals = [float(it[key]) for it in items if isinstance(it.get(key), int | float)]
            finite = [v for v in vals if math.isfinite(v)]
            if key in _SUMMED:
                out[key] = type(first)(sum(finite))
            else:
                out[key] = float(np.mean(finite)) if finite else math.nan
    return out


def _prepare_maps_dir(out_dir: Path) -> Path:
    """``out_dir/detection``: created, or emptied if an earlier check made it; anything else refused."""
    return claim_output_folder(
        out_dir / MAPS_DIR, marker=_MARKER, stamp=SCHEMA, what="detection maps", clear=shutil.rmtree
    )


# ----------------------------------------------------------------------------------------------- check


def _variant_metrics(
    pix: dict[str, list[np.ndarray]],
    masks: list[np.ndarray],
    good: list[bool],
    img_scores: dict[str, list[float]],
    tau: float,
    tau_img: float,
) -> dict[str, dict[str, float]]:
    labels = np.concatenate([m.ravel() for m in masks]) if masks else np.zeros(0, bool)
    is_good = np.asarray(good, dtype=bool)
    good_pixels = (
        np.concatenate([np.ones(m.size, bool) * g for m, g in zip(masks, good, strict=True)])
        if masks
        else labels
    )
    out = {}
    for v in VARIANTS:
        scores = np.concatenate([s.ravel() for s in pix[v]]).astype(np.float64) if masks else np.zeros(0)
        image = np.asarray(img_scores[v], dtype=np.float64)
        out[v] = {
            "pixel_auroc": _auroc(labels, scores),
            "image_auroc": _auroc(~is_good, image),
            "false_alarm_rate": _share_at_least(scores[good_pixels], tau),
            "recall": _share_at_least(scores[labels], tau),
            "image_false_alarm_rate": _share_at_least(image[is_good], tau_img),
            "image_recall": _share_at_least(image[~is_good], tau_img),
        }
    return out


class DetectionRun:
    """The detection check, one category at a time.

    :func:`detection_check` drives it over a whole dataset (restoring each test image itself);
    ``apir evaluate --detector`` drives it category by category right after scoring that category,
    handing it the restorations its metrics used (each image restored once, memory bounded by one
    category). Arguments as in :func:`detection_check`.
    """

    def __init__(
        self,
        *,
        restore_fn: RestoreFn,
        pipeline: DegradationPipeline,
        seed: int = 0,
        max_per_category: int | None = None,
        save_maps: int = 2,
        out_dir: str | Path | None = None,
        crop: int | None = None,
        metric_size: int | None = 256,
        detector_factory: Callable[[], Detector] | None = None,
        fit: str = "clean",
    ) -> None:
        if fit not in FIT_PROTOCOLS:
            raise ApirError(f"detector fit must be one of {', '.join(FIT_PROTOCOLS)}, got {fit!r}")
        self.fit = fit
        if not callable(restore_fn):
            raise ApirError("restore_fn must be a callable (degraded, sigma) -> restored")
        if save_maps < 0:
            raise ApirError(f"save_maps must be >= 0, got {save_maps}")
        if max_per_category is not None and max_per_category < 1:
            raise ApirError(f"max_per_category must be >= 1, got {max_per_category}")
        if metric_size is not None and metric_size < 8:
            raise ApirError(f"metric_size must be >= 8 px (or None for full resolution), got {metric_size}")
        self.restore_fn = restore_fn
        self.pipeline = pipeline
        self.seed = seed
        self.max_per_category = max_per_category
        self.save_maps = save_maps
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.crop = crop
        self.metric_size = metric_size
        self.factory = detector_factory or DETECTORS.get("reference")
        self.maps_root = (
            _prepare_maps_dir(self.out_dir) if self.out_dir is not None and save_maps > 0 else None
        )
        self.results: dict[str, Any] = {}
        self.skipped: dict[str, str] = {}
        self.describe: Any = None

    def tests_for(self, cat: Category) -> list[Sample]:
        """The test images the check scores for ``cat`` ([] and a recorded reason if it is skipped)."""
        tests = list(cat.test)
        if self.max_per_category is not None:
            tests = round_robin_by_type(tests)[: self.max_per_category]
        if not cat.train:
            self.skipped[cat.name] = "no train/good images to fit the detector on"
            return []
        if not tests:
            self.skipped[cat.name] = "no test images"
            return []
        return tests

    def run_category(
        self,
        cat: Category,
        tests: Sequence[Sample],
        bar: Any = None,
        restored: Sequence[RestoredCase] | None = None,
        restore_fn: RestoreFn | None = None,
    ) -> None:
        """Fit a detector on ``cat``'s clean train/good, score ``tests`` three ways, store the metrics.

        ``restored``: the restorations of ``tests`` (in order) that ``apir evaluate`` already made
        for its metrics; without them, each test image is restored here. ``restore_fn``: this
        category's restorer where it differs from the run's (``--guard``).
        """
        restore_fn = restore_fn or self.restore_fn
        start = time.perf_counter()
        detector = self.factory()
        detector.fit([load_sample(s).image for s in cat.train])
        if self.describe is None:
            self.describe = detector.describe() if hasattr(detector, "describe") else type(detector).__name__
        fit_seconds = time.perf_counter() - start
        restores_here = restored is None
        if restored is None:
            restored = restore_cases(iter_cases(tests, self.pipeline, self.seed, self.crop), restore_fn)
        defective = [s for s in tests if not s.is_good]
        to_save = (
            {s.key for s in round_robin_by_type(defective)[: self.save_maps]} if self.maps_root else set()
        )
        pix: dict[str, list[np.ndarray]] = {v: [] for v in VARIANTS}
        img_scores: dict[str, list[float]] = {v: [] for v in VARIANTS}
        masks: list[np.ndarray] = []
        good: list[bool] = []
        rows = []
        figures: list[tuple[Sample, dict, dict, np.ndarray]] = []
        done_cases: list[RestoredCase] = []
        score_start = time.perf_counter()
        for done in restored:
            case, sample = done.case, done.case.sample
            done_cases.append(done)
            if bar is not None:
                bar.set_postfix_str(cat.name, refresh=False)
            mask = case.mask
            images = {"clean": case.clean, "degraded": case.degraded, "restored": done.restored}
            size = _metric_size(mask.shape, self.metric_size)
            row: dict[str, Any] = {"key": sample.key, "defect_type": sample.defect_type}
            for v in VARIANTS:
                m = np.asarray(detector.score_map(images[v]), dtype=np.float32)
                if m.shape != mask.shape:
                    raise ApirError(
                        f"{sample.key}: detector returned a {m.shape} map for a {mask.shape} image"
                    )
                row[v] = float(detector.image_score(m))
                img_scores[v].append(row[v])
                pix[v].append(_shrink(m, size))
            small_mask = mask if size == mask.shape else _shrink(mask.astype(np.float32), size) >= 0.5
            masks.append(small_mask)
            good.append(sample.is_good)
            rows.append(row)
            if sample.key in to_save:
                fig_images = {v: _shrink(images[v], size) for v in VARIANTS}
                figures.append((sample, fig_images, {v: pix[v][-1] for v in VARIANTS}, small_mask))
            if bar is not None:
                bar.update(1)
        restore_seconds = float(sum(d.seconds for d in done_cases))
        # Restoring inside the loop (no ``restored`` given) counts as restore time, not scoring time.
        score_seconds = time.perf_counter() - score_start - (restore_seconds if restores_here else 0.0)
        fit_on_restored = (
            self._users_protocol(cat, done_cases, masks, good, restore_fn) if self.fit == "both" else None
        )

        # Thresholds from the clean images only, then frozen for the other two.
        clean_defect = np.concatenate(
            [p.ravel()[m.ravel()] for p, m in zip(pix["clean"], masks, strict=True)]
        )
        tau = frozen_threshold(clean_defect)
        tau_img = frozen_threshold([s for s, g in zip(img_scores["clean"], good, strict=True) if not g])
        metrics = _variant_metrics(pix, masks, good, img_scores, tau, tau_img)
        entry: dict[str, Any] = {
            "n_train": len(cat.train),
            "n_good": int(sum(good)),
            "n_defective": int(len(good) - sum(good)),
            "pixel_threshold": tau,
            "image_threshold": tau_img,
            **metrics,
            "auroc_preservation": _ratio(metrics["restored"]["pixel_auroc"], metrics["clean"]["pixel_auroc"]),
            "auroc_preservation_degraded": _ratio(
                metrics["degraded"]["pixel_auroc"], metrics["clean"]["pixel_auroc"]
            ),
            "image_auroc_preservation": _ratio(
                metrics["restored"]["image_auroc"], metrics["clean"]["image_auroc"]
            ),
            **({"fit_on_restored": fit_on_restored} if fit_on_restored is not None else {}),
            "fit_seconds": fit_seconds,
            "score_seconds": score_seconds,
            "restore_seconds": restore_seconds,
        }
        saved = []
        for sample, fig_images, fig_maps, small_mask in figures:
            fig, lo, hi = detection_figure(fig_images, fig_maps, small_mask, tau)
            rel = f"{MAPS_DIR}/{cat.name}/{sample.defect_type}/{sample.image.stem}.png"
            write_image(self.out_dir / rel, fig)
            saved.append({"key": sample.key, "path": rel, "vmin": lo, "vmax": hi})
        entry["maps"] = saved
        entry["images"] = rows
        self.results[cat.name] = entry

    def _users_protocol(
        self,
        cat: Category,
        tests: Sequence[RestoredCase],
        masks: list[np.ndarray],
        good: list[bool],
        restore_fn: RestoreFn,
    ) -> dict[str, dict[str, float]]:
        """Pixel and image AUROC when the detector is fitted the way users run it after restore-dataset.

        Two detectors: one fitted on train/good degraded with each image's own fixed parameters and
        scoring the degraded test images, one fitted on those degraded images restored by the same
        method and scoring the restored test images (the restorations the check already has: nothing
        is restored twice). No threshold here: there is no clean reference to freeze it on.
        """
        train_cases = list(iter_cases(list(cat.train), self.pipeline, self.seed, self.crop))
        restored_train = [d.restored for d in restore_cases(train_cases, restore_fn)]
        out: dict[str, dict[str, float]] = {}
        for variant, train_images in (
            ("degraded", [c.degraded for c in train_cases]),
            ("restored", restored_train),
        ):
            detector = self.factory()
            detector.fit(train_images)
            pix, img = [], []
            for index, done in enumerate(tests):
                image = done.restored if variant == "restored" else done.case.degraded
                m = np.asarray(detector.score_map(image), dtype=np.float32)
                pix.append(_shrink(m, masks[index].shape))
                img.append(float(detector.image_score(m)))
            labels = np.concatenate([m.ravel() for m in masks])
            scores = np.concatenate([p.ravel() for p in pix]).astype(np.float64)
            out[variant] = {
                "pixel_auroc": _auroc(labels, scores),
                "image_auroc": _auroc(~np.asarray(good, bool), np.asarray(img, np.float64)),
            }
        return out

    def result(self) -> dict[str, Any]:
        """The JSON-ready result of every category run so far (see :func:`detection_check`)."""
        overall = _mean_tree(list(self.results.values())) if self.results else {}
        overall["n_categories"] = len(self.results)
        out = {
            "schema": SCHEMA,
            "detector": json_safe(self.describe),
            "degradation": self.pipeline.name,
            "seed": int(self.seed),
            "crop": self.crop,
            "max_per_category": self.max_per_category,
            "metric_size": self.metric_size,
            "target_recall": TARGET_RECALL,
            "conventions": dict(CONVENTIONS),
            "categories": self.results,
            "overall": overall,
            "skipped": self.skipped,
        }
        return Detection.model_validate(out).to_dict()


def detection_check(
    root: str | Path,
    *,
    restore_fn: RestoreFn,
    degradation: str | Path | DegradationPipeline = "blind",
    seed: int = 0,
    categories: Sequence[str] | None = None,
    max_per_category: int | None = None,
    save_maps: int = 2,
    out_dir: str | Path | None = None,
    crop: int | None = None,
    metric_size: int | None = 256,
    detector_factory: Callable[[], Detector] | None = None,
    fit: str = "clean",
    show_progress: bool = False,
) -> dict[str, Any]:
    """Fit a detector per category on clean ``train/good``; score clean, degraded and restored tests.

    ``restore_fn(degraded, sigma)`` is the same callable ``apir evaluate`` uses (float32 H×W×3 in
    [0, 1] and the true noise σ on the 0–255 scale → restored image of the same shape).
    ``degradation``, ``seed``, ``crop`` and ``max_per_category`` select exactly the images and
    degradations of an ``apir evaluate`` run with the same arguments. ``detector_factory`` builds one
    fresh detector per category (default :class:`ReferenceDetector`). With ``out_dir``, a figure of
    the score maps of ``save_maps`` defective images per category (round-robin over defect types) is
    written to ``out_dir/detection/<category>/<defect_type>/<stem>.png``.

    Returns ``{"schema", "detector", "degradation", "seed", ..., "categories": {name: metrics},
    "overall": means, "skipped": {name: reason}}`` with undefined values as None (see the module
    docstring for every metric). Categories without ``train/good`` images are skipped; if none is
    left, that is an ApirError.
    """
    pipeline = degradation if isinstance(degradation, DegradationPipeline) else get_degradation(degradation)
    cats = load_dataset(root, categories)
    run = DetectionRun(
        restore_fn=restore_fn,
        pipeline=pipeline,
        seed=seed,
        max_per_category=max_per_category,
        save_maps=save_maps,
        out_dir=out_dir,
        crop=crop,
        metric_size=metric_size,
        detector_factory=detector_factory,
        fit=fit,
    )
    plan = [(cat, tests) for cat in cats if (tests := run.tests_for(cat))]
    if not plan:
        raise ApirError(f"{root}: no category has both train/good and test images for the detection check")
    total = sum(len(t) for _, t in plan)
    with tqdm(total=total, desc="detection check", unit="img", disable=not show_progress) as bar:
        for cat, tests in plan:
            run.run_category(cat, tests, bar)
    return run.result()
