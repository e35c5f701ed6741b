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
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from apir.errors import ApirError
from apir.precision import autocast

__all__ = ["EDGE_WEIGHT", "check_tiling", "plan_tiles", "restore_tensor", "tile_size"]

#: Blending weight of the outer quarter of a tile's overlap band: tiny, but never zero, so the
#: weight sum is positive everywhere even if a caller builds an unusual tile layout.
EDGE_WEIGHT = 1e-4


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ApirError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


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
        with torch.inference_mode(), autocast(amp, device):
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
