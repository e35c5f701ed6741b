"""The reference paper's "UNet" (Section II), layer for layer.

Despite the name it has no skip connections: it is a small convolutional auto-encoder that halves
the resolution once (max-pool) and restores it with a transposed convolution. The paper reports it
below its 29 dB benchmark; it is kept as the baseline the paper compares against, so it is reproduced
exactly: no residual connection, no output sigmoid, PyTorch default initialisation.
"""

from __future__ import annotations

from torch import Tensor, nn

from apir.models.common import RestorationModel, check_int, crop_to, pad_to_multiple
from apir.models.registry import register_model


@register_model("unet")
class UNet(RestorationModel):
    """Conv(C→128, 3) → ReLU → Conv(128→256, 3) → ReLU → MaxPool(2) → ConvT(256→128, 2, s2) → ReLU
    → Conv(128→C, 1).

    The single 2× pooling needs even H and W; other sizes are padded by border replication and the
    output cropped back, so any image size works.
    """

    size_multiple = 2

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.in_channels = check_int("unet", "in_channels", in_channels, 1)
        self.config = {"in_channels": in_channels}
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 128, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2),
            nn.ConvTranspose2d(256, 128, kernel_size=2, stride=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, in_channels, kernel_size=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2], x.shape[-1]
        return crop_to(self.body(pad_to_multiple(x, self.size_multiple)), h, w)
