"""The numpy API: restore one image array, or an RGB float image, with a model — the one place the
input/output conventions, the σ map, the guard and ``--keep-input`` are applied.

:mod:`apir.restore.tiling` holds tile geometry and blending only; everything that turns an image of
any mode and dtype into the model's input and back lives here, so files (:mod:`apir.restore.files`),
datasets, evaluation and ``apir.restore_array`` share it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from apir.device import select_device
from apir.errors import ApirError, NonFiniteOutput
from apir.restore.engine import check_engine, with_engine
from apir.restore.inference import restore_tensor
from apir.restore.loading import resolve_model
from apir.restore.noise_level import check_noise_level, check_strength, estimate_noise_sigma, level_map
from apir.restore.tiling import check_tiling

__all__ = ["check_keep_input", "restore_array", "restore_rgb"]


def check_keep_input(keep_input: float) -> float:
    """``keep_input`` must be a number in [0, 1] (one-line ApirError otherwise)."""
    ok = isinstance(keep_input, int | float | np.floating) and not isinstance(keep_input, bool)
    if not ok or not 0.0 <= float(keep_input) <= 1.0:
        raise ApirError(
            f"keep_input must be a number from 0 (full restoration) to 1 (the input), got {keep_input!r}"
        )
    return float(keep_input)


def _as_float_rgb(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Validate ``image``; return float32 H×W×3 in [0, 1], the alpha plane (or None) and the layout."""
    if not isinstance(image, np.ndarray):
        raise ApirError(f"expected a numpy image array, got {type(image).__name__}")
    a = image
    if a.ndim == 2:
        layout = "gray"
    elif a.ndim == 3 and a.shape[2] in (1, 3, 4):
        layout = {1: "gray1", 3: "rgb", 4: "rgba"}[a.shape[2]]
    else:
        raise ApirError(f"expected an H×W, H×W×1, H×W×3 or H×W×4 image, got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ApirError(f"cannot restore an empty image (shape {a.shape})")
    if a.dtype == np.uint8:
        scale = 255.0
    elif a.dtype == np.uint16:
        scale = 65535.0
    elif a.dtype in (np.float32, np.float64):
        scale = 1.0
        if not np.isfinite(a).all():
            raise ApirError("image contains NaN or infinite values")
    else:
        raise ApirError(f"unsupported image dtype {a.dtype.name}; use uint8, uint16, float32 or float64")
    alpha = a[..., 3].copy() if layout == "rgba" else None
    colour = a[..., :3] if layout == "rgba" else a
    if colour.ndim == 2:
        colour = colour[..., None]
    rgb = colour.astype(np.float32) / np.float32(scale)
    if scale == 1.0:
        rgb = np.clip(rgb, 0.0, 1.0)
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    return np.ascontiguousarray(rgb), alpha, layout


def _from_float_rgb(rgb: np.ndarray, alpha: np.ndarray | None, layout: str, dtype: np.dtype) -> np.ndarray:
    colour = rgb.mean(axis=2, dtype=np.float64) if layout in ("gray", "gray1") else rgb
    if dtype.kind == "u":
        top = np.iinfo(dtype).max
        colour = np.rint(np.clip(colour, 0.0, 1.0) * top).astype(dtype)
    else:
        colour = np.clip(colour, 0.0, 1.0).astype(dtype)
    if layout == "gray1":
        colour = colour[..., None]
    elif layout == "rgba":
        colour = np.concatenate([colour, alpha[..., None]], axis=2)
    return colour


def restore_rgb(
    model: nn.Module,
    rgb: np.ndarray,
    *,
    tile: int = 512,
    overlap: int = 32,
    batch: int = 1,
    amp: bool | torch.dtype | None = None,
    progress: Any = None,
    keep_input: float = 0.0,
    noise_level: float | np.ndarray | None = None,
    strength: float = 1.0,
    guard: Any = None,
) -> np.ndarray:
    """Float32 H×W×3 RGB in [0, 1] → the model's float32 H×W×3 output (not clipped).

    The common core of :func:`restore_array` and the file restorer. A model built for one channel
    (``in_channels=1``) gets gray input (the channel mean, exact for gray files) and its output is
    replicated; a colour image is refused for it, since restoring the mean would lose the colour.

    ``keep_input`` k in [0, 1] returns ``out + k·(input − out)``: the user's point on the
    defect-survival versus quality trade-off (0 = full restoration, 1 = the input unchanged). Adding
    back part of the input keeps more of every faint defect at the cost of leaving some noise
    (``benchmarks/results/quality_demo.md`` measures the curve); it is applied here, once, so files,
    arrays and evaluation all get the same blend.

    A noise-level-aware model (``model.level_input``) also gets a σ map as its last input channel:
    ``noise_level`` (σ on the 0-255 scale, or an H×W map of them; None = estimated from the image,
    :mod:`apir.restore.noise_level`) times ``strength`` (< 1 keeps more of the input, > 1 smooths
    more). Other models refuse both, rather than silently ignoring them.

    ``guard`` (a :class:`apir.restore.guard.DetectorGuard`) restores twice: once at full strength, then
    again with the σ map lowered where the guard's detector finds the first result anomalous.
    """
    k = check_keep_input(keep_input)
    strength = check_strength(strength)
    noise_level = check_noise_level(noise_level)
    level_aware = bool(getattr(model, "level_input", False))
    if guard is not None:
        if not level_aware:
            raise ApirError("--guard needs a noise-level-aware model (such as the shipped default)")
        run = {"tile": tile, "overlap": overlap, "batch": batch, "amp": amp}
        sigma = estimate_noise_sigma(rgb) if noise_level is None else noise_level
        first = restore_rgb(model, rgb, **run, noise_level=sigma, strength=strength)
        guarded = np.asarray(sigma, np.float32) * guard.strength_map(first)
        return restore_rgb(
            model, rgb, **run, progress=progress, keep_input=k, noise_level=guarded, strength=strength
        )
    if not level_aware and (noise_level is not None or strength != 1.0):
        raise ApirError(
            "this model takes no noise level: --noise-level and --strength need a "
            "noise-level-aware model (such as the shipped default)"
        )
    in_channels = int(getattr(model, "in_channels", 3))
    x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)
    if in_channels == 1:
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise ApirError("this model restores gray images only, and the image is in colour")
        x = x[:, :1]
    elif in_channels != 3:
        raise ApirError(f"the model takes {in_channels}-channel input; apir restores gray and RGB images")
    if level_aware:
        level = torch.from_numpy(level_map(rgb, noise_level, strength))[None, None]
        x = torch.cat([x, level], dim=1)
    y = restore_tensor(model, x, tile=tile, overlap=overlap, batch=batch, amp=amp, progress=progress)
    if y.shape[1] == 1:
        y = y.expand(-1, 3, -1, -1)
    elif y.shape[1] != 3:
        raise ApirError(f"the model returned {y.shape[1]} channels; expected 3 (RGB) or 1 (gray)")
    out = np.ascontiguousarray(y[0].permute(1, 2, 0).numpy(), dtype=np.float32)
    if not np.isfinite(out).all():
        raise NonFiniteOutput("the model returned NaN or infinite values; its weights are broken")
    if k:
        out += np.float32(k) * (np.asarray(rgb, dtype=np.float32) - out)
    return out


def restore_array(
    image: np.ndarray,
    model: nn.Module | str | Path | None = None,
    *,
    tile: int = 512,
    overlap: int = 32,
    device: str | torch.device = "auto",
    batch: int = 1,
    keep_input: float = 0.0,
    noise_level: float | np.ndarray | None = None,
    strength: float = 1.0,
    engine: str = "torch",
    guard: Any = None,
) -> np.ndarray:
    """Restore one image array; the result has the input's shape and dtype.

    Accepts H×W (gray), H×W×1, H×W×3 and H×W×4 (RGBA: the alpha channel is returned untouched),
    as uint8, uint16 or float32/float64 in [0, 1] (floats are clipped to [0, 1]). Gray images are
    restored as replicated RGB (the networks are RGB) and the channel mean is returned; integer
    outputs are rounded and clipped. On CUDA, uint8 images run under bf16 autocast, others in float32.

    ``model`` is an ``nn.Module`` (used on its own device; with an explicit ``device`` it is moved
    there, in place, as ``Module.to`` does) or anything :func:`apir.restore.resolve_model` accepts:
    a checkpoint file, a training run directory, a registry name for shipped weights, or None for
    the shipped default. Tiling parameters as in :func:`restore_tensor`; ``keep_input`` as in
    :func:`restore_rgb` (0 = full restoration); ``noise_level`` (σ on the 0-255 scale, an H×W map of
    them, or None to estimate it) and ``strength`` (multiplies the level; 1 = as given) for
    noise-level-aware models such as the shipped default. ``engine``: "torch", "onnx" (ONNX Runtime on
    the CPU) or "auto" (ONNX Runtime where installed and the model is on the CPU);
    :mod:`apir.restore.engine`. ``guard``: a :class:`apir.restore.guard.DetectorGuard` fitted on
    good images of the same part; see :func:`restore_rgb`.
    """
    check_tiling(tile, overlap, batch)
    check_keep_input(keep_input)
    check_strength(strength)
    check_noise_level(noise_level)
    check_engine(engine)
    rgb, alpha, layout = _as_float_rgb(image)
    if isinstance(model, nn.Module):
        if not (isinstance(device, str) and device == "auto"):
            model = model.to(select_device(device))
        if engine == "onnx":  # "auto" leaves a module the caller built as it is
            model = with_engine(model, engine)
    else:
        model, _ = resolve_model(model, select_device(device))
        model = with_engine(model, engine)
    # bf16 autocast (CUDA only) is accurate to about 1/256 of the correction: enough for 8-bit samples,
    # not for 16-bit or float ones, which run in float32.
    amp = None if image.dtype == np.uint8 else False
    out = restore_rgb(
        model,
        rgb,
        tile=tile,
        overlap=overlap,
        batch=batch,
        amp=amp,
        keep_input=keep_input,
        noise_level=noise_level,
        strength=strength,
        guard=guard,
    )
    return _from_float_rgb(out, alpha, layout, image.dtype)
