"""The reference paper's RCAN-like denoiser (Section III-A), layer for layer.

Compared with the original RCAN (Zhang et al., ECCV 2018) the paper drops the residual groups, the
long head→tail skip and the upsampler, uses 7×7 head/tail convolutions and dilation 2 inside each
block, and adds the input image to the output so the network learns the *correction* (noise and blur
residual) rather than the whole image. Defaults are the paper's: 64 features, 10 blocks, reduction 16.
All 20 dilated 3×3 convolutions run at full resolution, which is why it costs ~38× NAFNet-w16's compute
for a similar parameter count (0.76M).

Channel attention averages over the whole image; see :meth:`RCAN.set_local_pool` for tiled inference.
"""

from __future__ import annotations

from torch import Tensor, nn

from apir.errors import ApirError
from apir.models.common import (
    DEFAULT_POOL_FACTOR,
    AttentionPool,
    RestorationModel,
    check_attention_pool,
    check_int,
    level_kernel,
)
from apir.models.registry import register_model


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: per-channel weights in (0, 1) from the pooled features.

    ``body`` is exactly the paper's AdaptiveAvgPool2d(1) → 1×1 conv (C→C/r) → ReLU → 1×1 conv (C/r→C) →
    Sigmoid; the weights multiply the input features.
    """

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = channels // reduction
        self.body = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, kernel_size=1),
            nn.Sigmoid(),
        )

    def set_pool(self, kernel: int | None) -> None:
        """Global pooling (the paper's AdaptiveAvgPool2d) or a local window of ``kernel`` pixels."""
        self.body[0] = nn.AdaptiveAvgPool2d(1) if kernel is None else AttentionPool(kernel)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.body(x)


class RCAB(nn.Module):
    """Residual channel attention block: x + CA(conv(relu(conv(x)))), both convs 3×3 with dilation 2.

    Dilation 2 with padding 2 keeps the size and widens each conv's view to 5×5 at 3×3's cost.
    """

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, padding=2, dilation=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, kernel_size=3, padding=2, dilation=2),
            ChannelAttention(channels, reduction),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


@register_model("rcan")
class RCAN(RestorationModel):
    """head (C→n_feats, 7×7) → n_blocks × RCAB → tail (n_feats→C, 7×7); output = input + tail(...).

    No downsampling, so any H×W works without padding (``size_multiple`` 1).
    """

    size_multiple = 1

    def __init__(
        self,
        in_channels: int = 3,
        n_feats: int = 64,
        n_blocks: int = 10,
        reduction: int = 16,
        attention_pool: str | int = "global",
        pool_factor: float = DEFAULT_POOL_FACTOR,
    ) -> None:
        """``attention_pool``: "global" (the paper) or the training patch size for local pooling."""
        super().__init__()
        check_int("rcan", "in_channels", in_channels, 1)
        check_int("rcan", "n_feats", n_feats, 1)
        check_int("rcan", "n_blocks", n_blocks, 0)
        check_int("rcan", "reduction", reduction, 1)
        if n_feats // reduction < 1:
            raise ApirError(f"rcan: reduction {reduction} leaves no channels of n_feats {n_feats}")
        attention_pool, pool_factor = check_attention_pool("rcan", attention_pool, pool_factor)
        self.in_channels = in_channels
        self.config = {
            "in_channels": in_channels,
            "n_feats": n_feats,
            "n_blocks": n_blocks,
            "reduction": reduction,
            "attention_pool": attention_pool,
            "pool_factor": pool_factor,
        }
        self.head = nn.Conv2d(in_channels, n_feats, kernel_size=7, padding=3)
        self.blocks = nn.Sequential(*[RCAB(n_feats, reduction) for _ in range(n_blocks)])
        self.tail = nn.Conv2d(n_feats, in_channels, kernel_size=7, padding=3)
        if attention_pool != "global":
            self.set_local_pool(attention_pool, pool_factor)

    def set_local_pool(self, train_size: int | None, factor: float | None = None) -> None:
        """Pool channel attention over ``factor × train_size`` windows (TLC), or globally if None.

        With global pooling a tile's output depends on the whole tile, so tiles disagree with the
        whole image; local windows about the training-patch size make both agree away from borders
        and match the statistics the network was trained on. On an image no larger than the window
        the result equals global pooling. Weights are unaffected.
        """
        factor = self.config["pool_factor"] if factor is None else factor
        requested = "global" if train_size is None else train_size
        attention_pool, factor = check_attention_pool("rcan", requested, factor)
        kernel = None if train_size is None else level_kernel(train_size, 0, factor)
        for module in self.modules():
            if isinstance(module, ChannelAttention):
                module.set_pool(kernel)
        self.config["attention_pool"] = attention_pool
        self.config["pool_factor"] = factor

    def forward(self, x: Tensor) -> Tensor:
        return x + self.tail(self.blocks(self.head(x)))
