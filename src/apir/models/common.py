"""Pieces shared by the architectures: the base class, padding to a size multiple, attention pooling.

Every apir model takes a B×C×H×W image in [0, 1] of *any* size and returns the restored image of the
same size. Networks that downsample need H and W to be multiples of ``2**levels``; rather than making
every caller (trainer, tiler, CLI) know that, each model pads internally and crops back, and exposes
``size_multiple`` so a tiler can choose tile sizes that need no padding at all.

Channel attention (RCAN's CA, NAFNet's SCA) averages each feature map over the *whole* image. That
makes a tile's output depend on everything else in the tile, so tiled and whole-image inference
disagree, and large test images see statistics unlike the training patches. :class:`AttentionPool`
can therefore switch to a *local* average over a window about the size of a training patch
(NAFNet's "Test-time Local Converter", TLC; Chu et al., ECCV 2022).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from apir.errors import ApirError

#: TLC's choice: at test time, pool over windows 1.5× the training patch (per level).
DEFAULT_POOL_FACTOR = 1.5


def check_int(owner: str, name: str, value: Any, minimum: int) -> int:
    """An int ≥ ``minimum`` (bools refused) or a one-line ApirError; configs come from YAML typos."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ApirError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_int_list(owner: str, name: str, value: Any, minimum: int) -> list[int]:
    """A list of ints ≥ ``minimum`` (stored as a list so the config survives a JSON round-trip)."""
    if not isinstance(value, list | tuple):
        raise ApirError(f"{owner}: {name} must be a list of integers, got {value!r}")
    return [check_int(owner, f"{name}[{i}]", v, minimum) for i, v in enumerate(value)]


def check_attention_pool(owner: str, attention_pool: Any, pool_factor: Any) -> tuple[str | int, float]:
    """Validate the ``attention_pool`` / ``pool_factor`` pair shared by the attention models."""
    is_int = isinstance(attention_pool, int) and not isinstance(attention_pool, bool)
    local_ok = is_int and attention_pool >= 1
    if attention_pool != "global" and not local_ok:
        raise ApirError(
            f"{owner}: attention_pool must be 'global' or the training patch size (an integer >= 1), "
            f"got {attention_pool!r}"
        )
    if isinstance(pool_factor, bool) or not isinstance(pool_factor, int | float) or not pool_factor > 0:
        raise ApirError(f"{owner}: pool_factor must be a number > 0, got {pool_factor!r}")
    return attention_pool, float(pool_factor)


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad H and W at the bottom/right up to a multiple of ``multiple`` by replicating the border.

    Replicate rather than reflect: reflection needs the pad to be smaller than the image, which fails
    for tiny inputs, and choosing between the two would be a shape-dependent branch that dynamic-shape
    ONNX export cannot follow. Zero padding (NAFNet's choice) would put a dark frame next to the border
    pixels. The pad amounts are computed from the shape only, so exporters can trace them.
    """
    h, w = x.shape[-2], x.shape[-1]
    # Written as round-up-then-subtract (not ``-h % multiple``) so that symbolic-shape exporters
    # (torch.export) can see that the padded size is a multiple and prove the downsampling shapes.
    pad_h = (h + multiple - 1) // multiple * multiple - h
    pad_w = (w + multiple - 1) // multiple * multiple - w
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


def crop_to(y: Tensor, h: int, w: int) -> Tensor:
    """Undo :func:`pad_to_multiple`: keep the top-left ``h``×``w`` of ``y``.

    Written as a negative pad rather than ``y[..., :h, :w]``: the output size is then plainly
    ``h``×``w`` to symbolic-shape exporters, whereas slicing makes torch.export demand a proof that
    ``h`` fits, which it cannot find for a rounded-up size (dynamic-H×W export fails).
    """
    return F.pad(y, (0, w - y.shape[-1], 0, h - y.shape[-2]))


def _box_mean_1d(x: Tensor, k: int, dim: int) -> Tensor:
    """Mean over a length-``k`` window along ``dim``, windows shifted to stay inside the tensor.

    Position ``i`` averages ``[s, s + k)`` with ``s = clamp(i - (k - 1) // 2, 0, n - k)``, which is
    what TLC computes (a 'valid' average pool, then replicate padding). If ``k >= n`` every window is
    the whole axis, so the result is the global mean *without* a shape-dependent branch. Cumulative
    sums keep the cost O(n) for any ``k``; only tensor ops, so it traces for dynamic-shape export.
    """
    n = x.shape[dim]
    csum = torch.cumsum(x, dim=dim)
    zero = torch.zeros_like(csum.narrow(dim, 0, 1))
    csum = torch.cat([zero, csum], dim=dim)  # csum[j] = sum of the first j entries
    idx = torch.arange(n, device=x.device)
    start = (idx - (k - 1) // 2).clamp(min=0)
    end = (start + k).clamp(max=n)
    start = (end - k).clamp(min=0)
    total = csum.index_select(dim, end) - csum.index_select(dim, start)
    shape = [1] * x.dim()
    shape[dim] = n
    count = (end - start).to(x.dtype).reshape(shape)
    return total / count


def local_avg_pool(x: Tensor, kernel: int) -> Tensor:
    """Per-pixel mean of a B×C×H×W tensor over a ``kernel``×``kernel`` window kept inside the image.

    Equals the global mean (broadcast to H×W) when ``kernel >= max(H, W)``. Computed in (at least)
    float32 after removing the global mean, so cumulative sums over thousands of pixels lose no
    precision (and bf16 autocast cannot wreck them).
    """
    xf = x.to(torch.promote_types(x.dtype, torch.float32))
    mean = xf.mean(dim=(-2, -1), keepdim=True)
    centred = xf - mean
    local = _box_mean_1d(_box_mean_1d(centred, kernel, dim=-2), kernel, dim=-1)
    return (local + mean).to(x.dtype)


class AttentionPool(nn.Module):
    """Average pooling for channel attention: global (``kernel=None``) or local over a window.

    Global output is B×C×1×1 (broadcast by the caller's multiply); local output is B×C×H×W. Holds no
    parameters, so switching modes never changes a checkpoint.
    """

    def __init__(self, kernel: int | None = None) -> None:
        super().__init__()
        self.kernel = kernel

    def forward(self, x: Tensor) -> Tensor:
        if self.kernel is None:
            return x.mean(dim=(-2, -1), keepdim=True)
        return local_avg_pool(x, self.kernel)

    def extra_repr(self) -> str:
        return "global" if self.kernel is None else f"local kernel={self.kernel}"


def level_kernel(train_size: int, level: int, factor: float) -> int:
    """Window for features at ``level`` (downsampled by ``2**level``): factor × patch, scaled down."""
    return max(1, round(factor * train_size / 2**level))


class RestorationModel(nn.Module):
    """Base class: the attributes every apir model exposes to the trainer, tiler and checkpoints.

    ``config`` holds the *resolved* constructor arguments (defaults included), so a checkpoint
    rebuilds the same network even if a default changes later. ``registry_name`` is set by the
    registry; :func:`apir.models.model_config` combines the two.
    """

    size_multiple: int = 1
    in_channels: int = 3
    registry_name: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.config: dict[str, Any] = {}

    def set_local_pool(self, train_size: int | None, factor: float | None = None) -> None:
        """Switch channel-attention pooling to local windows (``train_size``) or back to global (None).

        Models without global pooling ignore it, so tilers can call it on any model.
        """
        del train_size, factor
