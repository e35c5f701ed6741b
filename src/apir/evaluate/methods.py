"""What ``apir evaluate`` restores with: a trained model (tiled inference) or a classical baseline.

Both become the same ``restore_fn(degraded, sigma) -> restored`` that the runner times and scores, so
a learned model and CBM3D are measured by identical code on identical inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from apir.errors import ApirError
from apir.evaluate.baselines import get_baseline
from apir.restore.api import check_keep_input, restore_rgb
from apir.restore.engine import check_engine, with_engine
from apir.restore.functions import RestoreFn
from apir.restore.guard import check_floor, guard_for_category
from apir.restore.loading import resolve_model
from apir.restore.noise_level import check_noise_level, check_strength
from apir.restore.tiling import check_tiling


@dataclass
class Method:
    method: str  # "model" or a baseline name
    label: str
    restore_fn: RestoreFn
    model_info: dict[str, Any] | None = None
    #: ``(category, pipeline, seed) -> restore_fn`` where the restorer depends on the category
    #: (``--guard`` fits a detector on each category's train/good); None: ``restore_fn`` everywhere.
    for_category: Callable[[Any, Any, int], RestoreFn] | None = None


def model_method(
    spec: str | Path | None,
    *,
    device: str = "auto",
    tile: int = 512,
    overlap: int = 32,
    label: str | None = None,
    keep_input: float = 0.0,
    noise_level: float | str | None = None,
    strength: float = 1.0,
    engine: str = "auto",
    guard_floor: float | None = None,
) -> Method:
    """A checkpoint / run directory / shipped model as a restore function.
    ``keep_input`` adds back that share of (input − output), the trade-off knob of
    :func:`apir.restore.api.restore_rgb`. For noise-level-aware models ``noise_level`` is None
    (estimated from each image: blind), a σ (0-255), or ``"true"``: the degradation's own σ, as CBM3D
    gets it; ``strength`` multiplies it. Blind models ignore σ. ``guard_floor`` (``--guard``) makes
    the restorer per category: a detector-guided restoration (:mod:`apir.restore.guard`) whose
    detector is fitted on that category's ``train/good``. All are recorded in ``model_info``.
    """
    keep_input = check_keep_input(keep_input)
    check_tiling(tile, overlap)  # before loading: a bad --tile/--overlap fails at once
    strength = check_strength(strength)
    true_sigma = noise_level == "true"
    fixed = None if true_sigma else check_noise_level(noise_level)
    check_engine(engine)
    if guard_floor is not None:
        guard_floor = check_floor(guard_floor)
    model, header = resolve_model(spec, device)
    model = with_engine(model, engine)
    if (noise_level is not None or strength != 1.0) and not getattr(model, "level_input", False):
        raise ApirError("--noise-level and --strength need a noise-level-aware model")
    if guard_floor is not None and not getattr(model, "level_input", False):
        raise ApirError("--guard needs a noise-level-aware model (such as the shipped default)")

    def restorer(guard: Any = None) -> RestoreFn:
        def restore(image: np.ndarray, sigma: float) -> np.ndarray:
            level = min(float(sigma), 255.0) if true_sigma else fixed
            out = restore_rgb(
                model,
                image,
                tile=tile,
                overlap=overlap,
                keep_input=keep_input,
                noise_level=level,
                strength=strength,
                guard=guard,
            )
            return np.clip(out, 0.0, 1.0)

        return restore

    restore = restorer()
    for_category = None
    if guard_floor is not None:

        def for_category(category: Any, pipeline: Any, seed: int) -> RestoreFn:
            # Fitted on the category's train/good degraded like the test images and restored
            # unguarded: the appearance the guard's detector then sees in a first pass.
            return restorer(guard_for_category(category, pipeline, seed, restore, floor=guard_floor))

    name = header.get("model", {}).get("name", "model")
    default_label = f"{name} ({spec})" if spec is not None else f"{name} (apir default)"
    if keep_input:
        default_label += f", keep_input {keep_input:g}"
    if noise_level is not None:
        default_label += f", σ {noise_level}"
    if strength != 1.0:
        default_label += f", strength {strength:g}"
    if guard_floor is not None:
        default_label += f", guard floor {guard_floor:g}"
    info = {
        "spec": str(spec) if spec is not None else "default",
        "source": str(header.get("source")),
        "model": header.get("model"),
        "epoch": header.get("epoch"),
        "keep_input": keep_input,
        "noise_level": noise_level,
        "strength": strength,
        "engine": "onnx" if model.__class__.__name__ == "OnnxModule" else "torch",
        "guard_floor": guard_floor,
    }
    return Method("model", label or default_label, restore, info, for_category)


def resolve_method(model: str | Path | None, baseline: str | None, **kw: Any) -> Method:
    """``--model`` or ``--method``; exactly one (no ``--model`` and no ``--method`` = the default model)."""
    if model is not None and baseline is not None:
        raise ApirError("give either --model or --method, not both")
    if baseline is not None:
        if kw.get("keep_input"):
            raise ApirError("--keep-input applies to models, not to the classical baselines")
        if kw.get("noise_level") is not None or kw.get("strength", 1.0) != 1.0:
            raise ApirError("--noise-level and --strength apply to models, not to the classical baselines")
        if kw.get("guard_floor") is not None:
            raise ApirError("--guard applies to noise-level-aware models, not to the classical baselines")
        kw = {k: v for k, v in kw.items() if k not in ("noise_level", "strength", "engine", "guard_floor")}
        return Method(baseline, kw.get("label") or baseline, get_baseline(baseline))
    return model_method(model, **kw)


def method_restore_fn(model: str | Path | None, baseline: str | None, **kw: Any) -> RestoreFn:
    """:func:`resolve_method`'s restore function alone: a picklable recipe (with ``functools.partial``)
    that each Ray actor runs once, so the model is loaded where it runs instead of being shipped."""
    return resolve_method(model, baseline, **kw).restore_fn
