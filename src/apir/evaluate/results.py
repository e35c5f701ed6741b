"""The results of one ``apir evaluate`` run, typed: what the runner writes and the report reads.

A results folder's ``metrics.json`` is one :class:`Results`: settings and provenance, per-image rows
(:class:`ImageRow`), per-category and overall means (:class:`Summary`) and, with ``--detector``, the
detection check (:class:`Detection`). The runner builds it and :meth:`Results.to_json` writes it;
:func:`load_results` is the one reader, so a file someone edited by hand (a metric turned into a
string, a missing field) is refused with one line naming the file and the field, instead of failing
later inside a table or a chart.

Undefined metrics (a defect PSNR of a good image, AUROC without defects) are ``None`` here and
``null`` in the file: JSON has no NaN, so NaN and infinity become None on the way in.

Versions: ``schema`` names the layout (:data:`SCHEMA`). Files written before this module existed
have the same layout and load unchanged; fields they may lack (``crop``, ``ring``, ``n_defective``,
...) have defaults. A future layout gets a new schema string and a reader in :data:`_READERS`
that migrates older files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from apir.errors import ApirError, safe_name

__all__ = [
    "DETECTION_SCHEMA",
    "RESULTS_FILE",
    "SCHEMA",
    "Detection",
    "DetectionCategory",
    "ImageRow",
    "Results",
    "Summary",
    "json_safe",
    "load_results",
]

SCHEMA = "apir.evaluate/1"
DETECTION_SCHEMA = "apir.detection/1"
RESULTS_FILE = "metrics.json"


def json_safe(value: Any) -> Any:
    """Free-form data (a model's config, a detector's settings) made JSON-ready: numpy scalars to
    Python, NaN and infinity to None, tuples to lists, anything else unknown to its ``str``."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _number(value: Any) -> Any:
    """A metric: a finite number, else None. Text, booleans and lists are errors, not zeros."""
    if value is None:
        return None
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"must be a number or null, not {value!r}")
    return float(value) if math.isfinite(value) else None


#: A metric value; None where undefined.
Metric = Annotated[float | None, BeforeValidator(_number)]


class _Model(BaseModel):
    # Unknown fields are kept (and written back), so a file from a newer apir survives a round trip.
    model_config = ConfigDict(extra="allow")


class Scores(_Model):
    """The built-in metrics (:data:`apir.evaluate.metrics.METRIC_NAMES`), restored and degraded input;
    a plug-in metric's values are kept as extra fields (``extra="allow"``) and read by :meth:`metric`."""

    psnr: Metric = None
    ssim: Metric = None
    psnr_defect: Metric = None
    psnr_background: Metric = None
    retention: Metric = None
    contrast_ratio: Metric = None
    input_psnr: Metric = None
    input_ssim: Metric = None
    input_psnr_defect: Metric = None
    input_psnr_background: Metric = None
    input_retention: Metric = None
    input_contrast_ratio: Metric = None

    def metric(self, name: str) -> float | None:
        """A metric by name (``"psnr"``, ``"input_psnr"``, ...); None if undefined or unknown."""
        value = getattr(self, name, None)
        return value if isinstance(value, float) else None


class _ImageKey(_Model):
    key: str
    category: str = "?"
    defect_type: str = "?"
    height: int = 0
    width: int = 0


class ImageRow(Scores, _ImageKey):
    """One evaluated image; ``image_dir`` is set when its pictures were saved.

    (Fields in file order: the key fields of ``_ImageKey``, the scores, then these.)
    """

    seconds: Metric = None
    noise_sigma: Metric = None
    image_dir: str | None = None
    defect_pixels: int | None = None
    has_original: bool | None = None
    degradation_params: dict[str, Any] | None = None


class Summary(Scores):
    """NaN-aware means over a set of images, with counts and throughput."""

    n_images: int = 0
    n_defective: int | None = None
    seconds: Metric = None
    megapixels_per_second: Metric = None


class VariantScores(_Model):
    """Detection quality on one variant (clean, degraded or restored images)."""

    pixel_auroc: Metric = None
    image_auroc: Metric = None
    false_alarm_rate: Metric = None
    recall: Metric = None
    image_false_alarm_rate: Metric = None
    image_recall: Metric = None


class DetectionMap(_Model):
    key: str
    path: str
    vmin: Metric = None
    vmax: Metric = None


class DetectionImage(_Model):
    key: str
    defect_type: str = "?"
    clean: Metric = None
    degraded: Metric = None
    restored: Metric = None


class DetectionCategory(_Model):
    """The detection check of one category (``overall`` has the same fields, averaged)."""

    n_train: int | None = None
    n_good: int | None = None
    n_defective: int | None = None
    pixel_threshold: Metric = None
    image_threshold: Metric = None
    clean: VariantScores = Field(default_factory=VariantScores)
    degraded: VariantScores = Field(default_factory=VariantScores)
    restored: VariantScores = Field(default_factory=VariantScores)
    auroc_preservation: Metric = None
    auroc_preservation_degraded: Metric = None
    image_auroc_preservation: Metric = None
    #: The users' protocol: the detector fitted on train/good degraded the same way and restored by
    #: the same method ("restored"), or degraded only ("degraded"), and tested on the same kind of
    #: images (:class:`apir.evaluate.detection.DetectionRun`, ``fit="both"``).
    fit_on_restored: dict[str, VariantScores] | None = None
    fit_seconds: Metric = None
    score_seconds: Metric = None
    restore_seconds: Metric = None
    maps: list[DetectionMap] = Field(default_factory=list)
    images: list[DetectionImage] = Field(default_factory=list)
    n_categories: int | None = None


class Detection(_Model):
    """The downstream detection check (:mod:`apir.evaluate.detection`), ``metrics.json["detection"]``."""

    schema_: str = Field(DETECTION_SCHEMA, alias="schema")
    detector: Any = None
    degradation: str | None = None
    seed: int | None = None
    crop: int | None = None
    max_per_category: int | None = None
    metric_size: int | None = None
    target_recall: Metric = None
    conventions: dict[str, str] = Field(default_factory=dict)
    categories: dict[str, DetectionCategory] = Field(default_factory=dict)
    overall: DetectionCategory = Field(default_factory=DetectionCategory)
    skipped: dict[str, str] = Field(default_factory=dict)

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict (None for undefined values), as stored in ``metrics.json``."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class Results(_Model):
    """One results folder's ``metrics.json`` (``docs/evaluation.md`` describes every field)."""

    schema_: str = Field(SCHEMA, alias="schema")
    label: str
    method: str
    model: dict[str, Any] | None
    dataset: str
    split: str
    degradation: str
    degradation_description: str | None = None
    seed: int
    crop: int | None = None
    ring: int | None = None
    conventions: dict[str, str]
    metric_names: list[str]
    overall: Summary
    categories: dict[str, Summary]
    images: list[ImageRow]
    apir_version: str
    created: str
    detection: Detection | None = None

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict written to ``metrics.json`` (fields never set are left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False, ensure_ascii=False)


#: schema string → the model that reads it (a migration from older layouts would go here).
_READERS: dict[str, type[Results]] = {SCHEMA: Results}


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out.replace(".schema_", ".schema") or "(top level)"


def _reason(err: ValidationError) -> str:
    """One line for a failed validation: every missing field at once, else the first bad one."""
    errors = err.errors(include_url=False)
    missing = [_where(e["loc"]) for e in errors if e["type"] == "missing"]
    if missing:
        return f"incomplete evaluation results (missing {', '.join(missing)})"
    first = errors[0]
    msg = first["msg"].removeprefix("Value error, ")
    more = f"; {len(errors) - 1} more problem(s)" if len(errors) > 1 else ""
    return f"invalid evaluation results ({_where(first['loc'])}: {msg}{more})"


def load_results(path: str | Path) -> Results:
    """Read a results folder's ``metrics.json`` (or that file itself) as :class:`Results`.

    Any problem (no file, not JSON, another schema, a missing field, a metric that is not a number)
    is an ApirError naming the file and the field, on one line.
    """
    p = Path(path)
    file = p / RESULTS_FILE if p.is_dir() else p
    if not file.is_file():
        raise ApirError(
            f"{safe_name(p)}: no {RESULTS_FILE} (not an apir evaluation results folder, or its run did not "
            "finish)"
        )
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        reason = getattr(err, "strerror", None) or str(err).splitlines()[0]
        raise ApirError(f"{safe_name(file)}: cannot read evaluation results ({reason})") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    reader = _READERS.get(schema) if isinstance(schema, str) else None
    if reader is None:
        got = schema if isinstance(data, dict) else type(data).__name__
        raise ApirError(
            f"{safe_name(file)}: not apir evaluation results (schema {got!r}, expected {SCHEMA!r})"
        )
    try:
        return reader.model_validate(data)
    except ValidationError as err:
        raise ApirError(f"{safe_name(file)}: {_reason(err)}") from None
