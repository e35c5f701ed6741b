"""Running a model over an image tensor, whole or in tiles: device, precision and eval mode.

Why apart from :mod:`apir.restore.tiling`: the tile plan and blending window are geometry, testable
without a model; this module owns what touches the model (its device, the shared precision policy of
:mod:`apir.precision`, eval mode) and feeds tiles through it ``batch`` at a time, so device memory is
bounded by ``batch`` tiles whatever the image size.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from apir.errors import ApirError
from apir.precision import autocast
from apir.restore.tiling import TileBlender, check_tiling

__all__ = ["restore_tensor"]


def _model_device(model: nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


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
    result is blended on the CPU (see :mod:`apir.restore.tiling`), so device memory is bounded by
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
    blender = TileBlender(x, tile, overlap, multiple)
    for group in _batches(blender.starts, batch):
        tiles = torch.cat([blender.tile(y, x0) for y, x0 in group])
        result = model(tiles.to(device)).float().cpu()
        for k, (y, x0) in enumerate(group):
            blender.add(y, x0, result[k : k + 1])
        if progress is not None:
            progress(len(group))
    return blender.result()
