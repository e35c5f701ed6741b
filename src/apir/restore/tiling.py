"""Tile geometry and blending: how images of any size are cut into tiles and put back together.

The model runs in :mod:`apir.restore.inference`; this module only plans tiles and blends outputs.

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
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from apir.errors import ApirError

__all__ = ["EDGE_WEIGHT", "TileBlender", "check_tiling", "plan_tiles", "tile_size"]

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


class TileBlender:
    """Cut one padded 1×C×H×W image into the planned tiles and blend their outputs back.

    ``tiles()`` yields ``(y, x, tile)`` in plan order; ``add(y, x, output)`` accumulates a tile's output
    with its window; ``result()`` is the blended 1×C×H×W float32 image at the input's size. What runs
    on the tiles (a model, on which device, in which precision) is the caller's: see
    :func:`apir.restore.inference.restore_tensor`.
    """

    def __init__(self, x: Tensor, tile: int, overlap: int, multiple: int) -> None:
        _, _, self.h, self.w = x.shape
        xp = x.float()
        ph, pw = -(-self.h // multiple) * multiple, -(-self.w // multiple) * multiple
        if (ph, pw) != (self.h, self.w):
            xp = F.pad(xp, (0, pw - self.w, 0, ph - self.h), mode="replicate")  # as the models do
        self.padded = xp
        self.th, self.tw, self.starts = plan_tiles(ph, pw, tile, overlap, multiple)
        self.win_y = _axis_windows(sorted({y for y, _ in self.starts}), self.th)
        self.win_x = _axis_windows(sorted({x0 for _, x0 in self.starts}), self.tw)
        self.out: Tensor | None = None
        self.weight = torch.zeros(1, 1, ph, pw, dtype=torch.float32)

    def tile(self, y: int, x0: int) -> Tensor:
        return self.padded[..., y : y + self.th, x0 : x0 + self.tw]

    def add(self, y: int, x0: int, output: Tensor) -> None:
        if self.out is None:
            self.out = torch.zeros(1, output.shape[1], *self.weight.shape[2:], dtype=torch.float32)
        win = self.win_y[y][:, None] * self.win_x[x0][None, :]
        self.out[..., y : y + self.th, x0 : x0 + self.tw] += output * win
        self.weight[..., y : y + self.th, x0 : x0 + self.tw] += win

    def result(self) -> Tensor:
        if self.out is None:
            raise ApirError("no tile output was added")
        return (self.out / self.weight)[..., : self.h, : self.w].contiguous()
