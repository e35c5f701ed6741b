"""NAFNet-style restorer: the efficient default (after Chen et al., "Simple Baselines for Image
Restoration", ECCV 2022; megvii-research/NAFNet). Written from the paper's description.

Why this and not the paper's RCAN as the default: at width 16 with one block per level it has 1.14M
parameters but ~1.3 GMACs at 256² against RCAN's ~50, because all but the first level run at reduced
resolution; on a 2-core CPU that is the difference between ~16k and ~600 training steps per hour.

Structure: a 4-level U-Net with additive skips and a global residual (output = input + ending conv).
Each NAFBlock is two residual branches, both scaled by learnable per-channel factors initialised to
zero, so a fresh network is "input + a small linear-ish correction" and training starts stable:

1. LayerNorm2d → 1×1 conv (c→2c) → 3×3 depthwise conv → SimpleGate (halves multiplied: 2c→c)
   → simplified channel attention (pool → 1×1 conv → multiply) → 1×1 conv, times ``beta``;
2. LayerNorm2d → 1×1 conv (c→2c) → SimpleGate → 1×1 conv, times ``gamma``.

There are no ReLUs or sigmoids: SimpleGate's product is the non-linearity.

Export notes: LayerNorm2d is plain tensor ops (NAFNet's custom autograd Function breaks ONNX export),
and the pooling used for attention is switchable between global and local windows (TLC) for tiled or
large-image inference; see :meth:`NAFNet.set_local_pool`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from apir.errors import ApirError
from apir.models.common import (
    DEFAULT_POOL_FACTOR,
    AttentionPool,
    RestorationModel,
    check_attention_pool,
    check_int,
    check_int_list,
    crop_to,
    level_kernel,
    pad_to_multiple,
)
from apir.models.registry import register_model


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a B×C×H×W tensor, with per-channel affine parameters.

    Plain tensor ops (no custom autograd Function), so it exports to ONNX and autograd derives the
    backward pass. Statistics are computed in float32 even under bf16/fp16 autocast, where a variance
    over few channels in half precision is noticeably wrong.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        xf = x.to(torch.promote_types(x.dtype, torch.float32))
        mu = xf.mean(dim=1, keepdim=True)
        var = (xf - mu).pow(2).mean(dim=1, keepdim=True)
        y = (xf - mu) * torch.rsqrt(var + self.eps)
        y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y.to(x.dtype)


class SimpleGate(nn.Module):
    """Split the channels in two halves and multiply them: a gating non-linearity with no weights."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class SimplifiedChannelAttention(nn.Module):
    """x · conv1×1(pool(x)): channel attention without SE's bottleneck, ReLU and sigmoid.

    ``pool`` is global by default; :meth:`NAFNet.set_local_pool` switches it to local windows.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pool = AttentionPool()
        self.conv = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conv(self.pool(x))


class NAFBlock(nn.Module):
    """Nonlinear-activation-free block (see the module docstring); identity at initialisation."""

    def __init__(self, channels: int, dw_expand: int = 2, ffn_expand: int = 2) -> None:
        super().__init__()
        c, dw, ffn = channels, channels * dw_expand, channels * ffn_expand
        self.norm1 = LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, dw, kernel_size=1)
        self.conv2 = nn.Conv2d(dw, dw, kernel_size=3, padding=1, groups=dw)
        self.gate = SimpleGate()
        self.sca = SimplifiedChannelAttention(dw // 2)
        self.conv3 = nn.Conv2d(dw // 2, c, kernel_size=1)
        self.norm2 = LayerNorm2d(c)
        self.conv4 = nn.Conv2d(c, ffn, kernel_size=1)
        self.conv5 = nn.Conv2d(ffn // 2, c, kernel_size=1)
        # Zero-initialised branch scales: the block starts as the identity, so a deep stack trains
        # stably without warm-up and the global residual starts close to "output = input".
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.conv1(self.norm1(x)))
        y = self.conv3(self.sca(self.gate(y)))
        x = x + y * self.beta
        z = self.conv5(self.gate(self.conv4(self.norm2(x))))
        return x + z * self.gamma


def _stage(channels: int, n_blocks: int) -> nn.Sequential:
    return nn.Sequential(*[NAFBlock(channels) for _ in range(n_blocks)])


@register_model("nafnet_fast", width=32, unshuffle=2)
@register_model("nafnet_deep", enc_blocks=[1, 1, 2, 4], middle_blocks=2)
@register_model("nafnet_w32", width=32)
@register_model("nafnet_w16")
@register_model("nafnet")
class NAFNet(RestorationModel):
    """U-shaped NAFNet: intro 3×3 → [blocks, 2×2 stride-2 conv (channels ×2)] per level → middle
    blocks → [1×1 conv + PixelShuffle(2) (channels ÷2), add skip, blocks] per level → ending 3×3;
    output = input + ending.

    H and W must be multiples of ``size_multiple = 2**len(enc_blocks)`` inside the network; other
    sizes are padded by border replication and cropped back.

    ``attention_pool``: "global" (NAFNet as trained) or the training patch size, which makes every
    attention pool average over ``pool_factor × patch`` windows scaled to its level (TLC). Registered
    variants: ``nafnet``/``nafnet_w16`` (width 16, 1.14M parameters), ``nafnet_w32`` (4.5M),
    ``nafnet_deep`` (width 16, enc [1, 1, 2, 4], middle 2; 1.99M).
    """

    size_multiple = 16

    def __init__(
        self,
        in_channels: int = 3,
        width: int = 16,
        enc_blocks: list[int] | tuple[int, ...] = (1, 1, 1, 1),
        middle_blocks: int = 1,
        dec_blocks: list[int] | tuple[int, ...] = (1, 1, 1, 1),
        attention_pool: str | int = "global",
        pool_factor: float = DEFAULT_POOL_FACTOR,
        unshuffle: int = 1,
        level_input: bool = False,
    ) -> None:
        super().__init__()
        check_int("nafnet", "in_channels", in_channels, 1)
        if not isinstance(level_input, bool):
            raise ApirError(f"nafnet: level_input must be true or false, got {level_input!r}")
        check_int("nafnet", "unshuffle", unshuffle, 1)
        check_int("nafnet", "width", width, 1)
        enc = check_int_list("nafnet", "enc_blocks", enc_blocks, 0)
        dec = check_int_list("nafnet", "dec_blocks", dec_blocks, 0)
        check_int("nafnet", "middle_blocks", middle_blocks, 0)
        if len(enc) != len(dec):
            raise ApirError(
                "nafnet: enc_blocks and dec_blocks need one entry per level each, "
                f"got {len(enc)} and {len(dec)}"
            )
        attention_pool, pool_factor = check_attention_pool("nafnet", attention_pool, pool_factor)
        self.in_channels = in_channels
        self.level_input = level_input
        self.size_multiple = unshuffle * 2 ** len(enc)
        self.config = {
            "in_channels": in_channels,
            "width": width,
            "enc_blocks": enc,
            "middle_blocks": middle_blocks,
            "dec_blocks": dec,
            "attention_pool": attention_pool,
            "pool_factor": pool_factor,
            "unshuffle": unshuffle,
            "level_input": level_input,
        }

        # FFDNet-style: with unshuffle u > 1 the network runs on u×u pixel-unshuffled sub-images (u² times
        # fewer positions, u² times more input channels), trading some quality for CPU speed.
        self.unshuffle = nn.PixelUnshuffle(unshuffle) if unshuffle > 1 else nn.Identity()
        self.reshuffle = nn.PixelShuffle(unshuffle) if unshuffle > 1 else nn.Identity()
        sub_channels = in_channels * unshuffle * unshuffle
        # FFDNet/DRUNet-style: with ``level_input`` one more input channel carries the per-pixel noise
        # σ (0-1 scale), so the caller sets the denoising strength, globally or locally.
        in_sub = (in_channels + int(level_input)) * unshuffle * unshuffle
        self.intro = nn.Conv2d(in_sub, width, kernel_size=3, padding=1)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        chan = width
        for n in enc:
            self.encoders.append(_stage(chan, n))
            self.downs.append(nn.Conv2d(chan, 2 * chan, kernel_size=2, stride=2))
            chan *= 2
        self.middle = _stage(chan, middle_blocks)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for n in dec:
            up = nn.Sequential(nn.Conv2d(chan, 2 * chan, kernel_size=1, bias=False), nn.PixelShuffle(2))
            self.ups.append(up)
            chan //= 2
            self.decoders.append(_stage(chan, n))
        self.ending = nn.Conv2d(width, sub_channels, kernel_size=3, padding=1)
        if attention_pool != "global":
            self.set_local_pool(attention_pool, pool_factor)

    @property
    def _unshuffle(self) -> int:
        return int(self.config["unshuffle"])

    def _stages_by_level(self) -> list[tuple[int, nn.Sequential]]:
        """Every stage of blocks with its level (0 = full resolution, len(enc) = the middle)."""
        depth = len(self.encoders)
        stages = [(level, stage) for level, stage in enumerate(self.encoders)]
        stages.append((depth, self.middle))
        stages += [(depth - 1 - i, stage) for i, stage in enumerate(self.decoders)]
        return stages

    def set_local_pool(self, train_size: int | None, factor: float | None = None) -> None:
        """Make attention pool over local windows (TLC) sized for ``train_size`` patches, or globally.

        (With ``unshuffle`` u, level 0 already runs at 1/u resolution; windows are sized accordingly.)

        At level ``l`` (features downsampled by ``2**l``) the window is ``factor × train_size / 2**l``
        pixels, i.e. the region a ``factor × train_size`` patch covers at full resolution, so every
        level sees statistics like those it was trained on. Windows stay inside the image (border
        pixels use the adjacent full window), and a window at least as large as the feature map is the
        global mean, so on a ``train_size`` image local and global pooling give the same output. Use
        it for tiled or large-image inference: tiles then agree with whole-image inference except
        within about a window of the tile borders (overlap tiles accordingly). Weights are unchanged.
        """
        factor = self.config["pool_factor"] if factor is None else factor
        requested = "global" if train_size is None else train_size
        attention_pool, factor = check_attention_pool("nafnet", requested, factor)
        for level, stage in self._stages_by_level():
            kernel = (
                None if train_size is None else level_kernel(train_size // self._unshuffle, level, factor)
            )
            for block in stage:
                block.sca.pool.kernel = kernel
        self.config["attention_pool"] = attention_pool
        self.config["pool_factor"] = factor

    def forward(self, x: Tensor) -> Tensor:
        """``x``: B×C×H×W image, or with ``level_input`` B×(C+1)×H×W: the image and its σ map last."""
        h, w = x.shape[-2], x.shape[-1]
        inp = pad_to_multiple(x, self.size_multiple)
        feat = self.intro(self.unshuffle(inp))
        skips = []
        for encoder, down in zip(self.encoders, self.downs, strict=True):
            feat = encoder(feat)
            skips.append(feat)
            feat = down(feat)
        feat = self.middle(feat)
        for decoder, up, skip in zip(self.decoders, self.ups, skips[::-1], strict=True):
            feat = decoder(up(feat) + skip)
        out = self.reshuffle(self.ending(feat)) + inp[:, : self.in_channels]
        return crop_to(out, h, w)
