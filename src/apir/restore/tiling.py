"""Tiled inference: restore images of any size with bounded device memory.

A 12-megapixel image through a full-resolution network needs tens of GB of activations, so large
images are cut into overlapping tiles that go through the model ``batch`` at a time; only those
tiles are ever on the device. The outputs are blended into a float32 output buffer on the CPU with
a smooth weight window, so tile seams do not show.

How tiles are placed (and why tiled output matches whole-image output):

* The image is first padded at the bottom/right to a multiple of ``model.size_multiple`` by border
  replication, exactly as every apir model pads internally. Tile sizes and tile starts are
  multiples of ``size_multiple`` too, so every tile sees the *same* downsampling grid as the whole
  image would (a U-Net run on a tile shifted by one pixel computes something else), and no tile
  needs internal padding.
* ``tile`` is an upper bound (rounded down to a multiple of ``size_multiple``, but at least
  ``overlap + size_multiple``, see :func:`tile_size`): each axis gets the fewest tiles of at most
  that length, and then the shortest length that still covers it with that many tiles (equal
  splits, so no tile computes mostly overlap), or the whole padded axis when the image is smaller;
  all tiles have the same size, so they can be batched. Starts are spaced so neighbours
  overlap by at least ``overlap`` pixels; the last tile is flush with the (padded) border.
* Each tile's output is weighted by a separable window and the weighted sum is divided by the summed
  weights. On every side that borders another tile, over the band where the two overlap, the weight
  is tiny (never zero) in the outer quarter, rises as a half-Hann ramp over the middle half and is 1
  beyond; sides on the image border keep weight 1. So each pixel comes from the tile in which it
  lies furthest from an edge, with a smooth hand-over in the middle of the overlap (no seams).

Measured on random-weight models (NAFNet branch scales drawn at random so attention acts): on a
97×131 image in 48-px tiles, with overlap 24 every registered model (tiny widths) is within one
8-bit step of whole-image inference (max float difference 1.1e-3 to 4.1e-3; the test suite checks
it); with overlap 16, nafnet_deep and the small RCAN miss by two steps. Default-size nafnet and rcan
on 256×320 in 128-px tiles with overlap 32: under 1e-3. What remains is the tile edge's zero padding
seen by convolutions reaching further than half the overlap (a 4-level NAFNet's bottom features in a
48-px tile are 3×3). Channel attention with *global* pooling (NAFNet's SCA, RCAN's CA) averages over
the tile instead of the image; that mattered far less than padding in these measurements.
:meth:`set_local_pool` (TLC) makes attention local, so tiles agree with the whole image away from
their borders; this module never changes the model's pooling mode, which is the caller's choice.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from apir.device import select_device
from apir.errors import ApirError, NonFiniteOutput
from apir.restore.engine import check_engine, with_engine
from apir.restore.noise_level import check_noise_level, check_strength, estimate_noise_sigma, level_map

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "EDGE_WEIGHT",
    "check_tiling",
    "plan_tiles",
    "restore_array",
    "restore_rgb",
    "restore_tensor",
    "select_device",
    "tile_size",
]

#: Blending weight of the outer quarter of a tile's overlap band: tiny, but never zero, so the
#: weight sum is positive everywhere even if a caller builds an unusual tile layout.
EDGE_WEIGHT = 1e-4


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ApirError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_keep_input(keep_input: float) -> float:
    """``keep_input`` must be a number in [0, 1] (one-line ApirError otherwise)."""
    ok = isinstance(keep_input, int | float | np.floating) and not isinstance(keep_input, bool)
    if not ok or not 0.0 <= float(keep_input) <= 1.0:
        raise ApirError(
            f"keep_input must be a number from 0 (full restoration) to 1 (the input), got {keep_input!r}"
        )
    return float(keep_input)


def check_tiling(tile: int, overlap: int, batch: int = 1) -> None:
    """Validate tiling arguments up front (one-line ApirError), before any file or model is touched."""
    tile = _check_int("tile", tile, 0)
    overlap = _check_int("overlap", overlap, 0)
    _check_int("batch", batch, 1)
    if tile and overlap >= tile:
        raise ApirError(f"overlap ({overlap}) must be smaller than the tile size ({tile})")


def _model_device(model: nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def _autocast(amp: bool | torch.dtype | None, device: torch.device) -> Any:
    """Mixed precision: None = bf16 on CUDA where supported (else off); False = off; True = on."""
    if amp is False or (amp is None and device.type != "cuda"):
        return nullcontext()
    if isinstance(amp, torch.dtype):
        dtype = amp
    elif device.type == "cuda":
        if amp is None and not torch.cuda.is_bf16_supported():
            return nullcontext()  # fp16 can overflow in untested models; only on request
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _axis_starts(size: int, tile: int, overlap: int, multiple: int) -> list[int]:
    """Tile starts along one axis: multiples of ``multiple``, overlap >= ``overlap``, last flush."""
    if size <= tile:
        return [0]
    stride = (tile - overlap) // multiple * multiple  # >= multiple, see tile_size
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)
    return starts


def tile_size(tile: int, overlap: int, multiple: int) -> int:
    """The tile edge actually used for a requested ``tile``: a multiple of ``multiple``.

    Rounded *down* (``tile`` is a memory budget), but at least ``overlap + multiple`` rounded up, so
    that aligned tiles can still step forward by a whole ``multiple`` while overlapping by
    ``overlap``. E.g. tile 48, overlap 16: 48 for a model with size_multiple 16, 64 for 32.
    """
    if overlap >= tile:
        raise ApirError(f"overlap ({overlap}) must be smaller than the tile size ({tile})")
    floor = tile // multiple * multiple
    least = -(-(overlap + multiple) // multiple) * multiple
    return max(floor, least)


def plan_tiles(
    height: int, width: int, tile: int, overlap: int, multiple: int = 1
) -> tuple[int, int, list[tuple[int, int]]]:
    """Tile height, tile width and the (top, left) starts covering a ``height``×``width`` image.

    ``height`` and ``width`` should already be padded to ``multiple`` (see the module docstring);
    ``tile=0`` means one tile covering everything. Starts are multiples of ``multiple`` (the last one
    too, given padded sizes), neighbours overlap by at least ``overlap``, the last tile is flush.
    """
    if tile == 0:
        return height, width, [(0, 0)]
    t = tile_size(tile, overlap, multiple)
    th, tops = _axis_plan(height, t, overlap, multiple)
    tw, lefts = _axis_plan(width, t, overlap, multiple)
    return th, tw, [(y, x) for y in tops for x in lefts]


def _axis_plan(size: int, t: int, overlap: int, multiple: int) -> tuple[int, list[int]]:
    """The shortest tile length (a multiple of ``multiple``, at most ``t``) that covers ``size`` with
    as few tiles as length ``t`` would, and its starts.

    Why: ``tile`` is a memory bound, not a preferred size. A 1024-px side with 512-px tiles needs
    3 tiles either way; at full length they would cover 1536 px (the model computes 2.25× the image's
    pixels in 2-D), split evenly they are 384 px long and cover 1152 (1.27×).
    """
    if size <= t:
        return size, [0]
    n = len(_axis_starts(size, t, overlap, multiple))
    length = -(-(size + (n - 1) * overlap) // n)
    length = min(t, max(-(-length // multiple) * multiple, tile_size(length, overlap, multiple)))
    # Rounding the stride down to the multiple can cost one more tile: lengthen until it does not.
    while length < t and len(_axis_starts(size, length, overlap, multiple)) > n:
        length += multiple
    return length, _axis_starts(size, length, overlap, multiple)


def _ramp(length: int, before: int, after: int) -> Tensor:
    """1-D blending window of a tile ``length`` pixels long that overlaps its neighbours by
    ``before`` pixels at its start and ``after`` pixels at its end (0: no neighbour, image border).

    Over an overlap band of ``n`` pixels the weight is :data:`EDGE_WEIGHT` for the outer quarter (the
    pixels whose convolutions saw the tile's zero padding: a random network is up to 0.3 off there),
    then rises as a half-Hann ramp over the middle half to 1. The neighbour's band is the mirror
    image, so the hand-over from one tile to the next happens around the middle of the overlap, where
    both tiles are furthest from their own edges, and it is smooth, so seams do not show. (A Hann ramp
    over the whole band gives the edge pixels enough weight to make the result 3-10x worse.) Bands
    are the *actual* overlaps, which exceed the requested one where the last tile is flush.
    """
    w = torch.ones(length, dtype=torch.float32)
    for n, at_start in ((before, True), (after, False)):
        n = min(n, length)
        if n <= 0:
            continue
        u = ((torch.arange(n, dtype=torch.float64) + 0.5) - n / 4) / (n / 2)
        ramp = torch.sin(0.5 * math.pi * u.clamp(0, 1)).pow(2).clamp(min=EDGE_WEIGHT).float()
        if at_start:
            w[:n] = torch.minimum(w[:n], ramp)
        else:
            w[length - n :] = torch.minimum(w[length - n :], ramp.flip(0))
    return w


def _axis_windows(starts: list[int], length: int) -> dict[int, Tensor]:
    """Blending window for every tile start along one axis, from the overlaps with its neighbours."""
    windows = {}
    for i, s in enumerate(starts):
        before = starts[i - 1] + length - s if i > 0 else 0
        after = s + length - starts[i + 1] if i + 1 < len(starts) else 0
        windows[s] = _ramp(length, before, after)
    return windows


def _batches(items: list[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def restore_tensor(
    model: nn.Module,
    x: Tensor,
    tile: int = 512,
    overlap: int = 32,
    batch: int = 1,
    amp: bool | torch.dtype | None = None,
    progress: Any = None,
) -> Tensor:
    """Run ``model`` over an N×C×H×W image tensor in overlapping tiles; return a CPU float32 tensor.

    ``tile=0`` runs each image whole. Tiles go to the model's device ``batch`` at a time and the
    result is blended on the CPU (see the module docstring), so device memory is bounded by
    ``batch`` tiles whatever the image size. ``amp``: None = bf16 autocast on CUDA where supported,
    off on CPU; True/False or a dtype to force it. ``progress``, if given, is called with the
    number of tiles just finished (e.g. a tqdm bar's ``update``). The model is run in eval mode and
    left in the mode it was in.
    """
    check_tiling(tile, overlap, batch)
    tile, overlap, batch = int(tile), int(overlap), int(batch)
    if not isinstance(x, Tensor) or x.ndim != 4:
        raise ApirError(f"expected an N×C×H×W tensor, got {getattr(x, 'shape', type(x).__name__)}")
    n, c, h, w = x.shape
    if h == 0 or w == 0:
        raise ApirError(f"cannot restore an empty image ({h}×{w})")
    device = _model_device(model)
    multiple = int(getattr(model, "size_multiple", 1) or 1)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), _autocast(amp, device):
            if tile == 0:
                outs = []
                for i in range(n):
                    y = model(x[i : i + 1].to(device=device, dtype=torch.float32))
                    outs.append(y.float().cpu())
                    if progress is not None:
                        progress(1)
                return torch.cat(outs)
            return torch.cat(
                [
                    _tiled_one(model, x[i : i + 1], tile, overlap, batch, multiple, device, progress)
                    for i in range(n)
                ]
            )
    finally:
        model.train(was_training)


def _tiled_one(
    model: nn.Module,
    x: Tensor,
    tile: int,
    overlap: int,
    batch: int,
    multiple: int,
    device: torch.device,
    progress: Any,
) -> Tensor:
    _, c, h, w = x.shape
    xp = x.float()
    ph, pw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    if (ph, pw) != (h, w):
        xp = F.pad(xp, (0, pw - w, 0, ph - h), mode="replicate")  # what the models do internally
    th, tw, starts = plan_tiles(ph, pw, tile, overlap, multiple)
    win_y = _axis_windows(sorted({y for y, _ in starts}), th)
    win_x = _axis_windows(sorted({x0 for _, x0 in starts}), tw)
    out: Tensor | None = None
    weight = torch.zeros(1, 1, ph, pw, dtype=torch.float32)
    for group in _batches(starts, batch):
        tiles = torch.cat([xp[..., y : y + th, x0 : x0 + tw] for y, x0 in group])
        result = model(tiles.to(device)).float().cpu()
        if out is None:
            out = torch.zeros(1, result.shape[1], ph, pw, dtype=torch.float32)
        for k, (y, x0) in enumerate(group):
            win = win_y[y][:, None] * win_x[x0][None, :]
            out[..., y : y + th, x0 : x0 + tw] += result[k : k + 1] * win
            weight[..., y : y + th, x0 : x0 + tw] += win
        if progress is not None:
            progress(len(group))
    assert out is not None
    out /= weight
    return out[..., :h, :w].contiguous()


# ------------------------------------------------------------------------------- numpy API


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
        from apir.restore.loading import resolve_model

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
