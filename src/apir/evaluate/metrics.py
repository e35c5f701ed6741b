"""Image-quality metrics, overall and inside / outside the defect.

PSNR and SSIM come from torchmetrics (a maintained implementation used across the field), with the
conventions stated once here and in ``docs/evaluation.md``: images in [0, 1] (data_range 1), RGB,
SSIM with an 11×11 Gaussian window, σ = 1.5 (as in the original SSIM paper), averaged over the three
channels. PSNR restricted to a mask has no library implementation, so it is computed here from the
masked mean squared error with the same definition: 10·log10(1 / MSE).
"""

from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

# PSNR of a perfect reconstruction is infinite; cap it so means stay finite (identical to MSE 1e-10).
MAX_PSNR = 100.0


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of B×C×H×W tensors in [0, 1]."""
    value = peak_signal_noise_ratio(
        pred.float().clamp(0, 1), target.float(), data_range=1.0, reduction="none", dim=(1, 2, 3)
    )
    return value.clamp(max=MAX_PSNR)


def masked_psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR over the pixels where ``mask`` (B×1×H×W) is set; NaN for an empty mask."""
    err = (pred.float().clamp(0, 1) - target.float()) ** 2
    weight = mask.float().expand_as(err)
    count = weight.sum(dim=(1, 2, 3))
    mse = (err * weight).sum(dim=(1, 2, 3)) / count.clamp(min=1)
    value = (10 * torch.log10(1.0 / mse.clamp(min=1e-10))).clamp(max=MAX_PSNR)
    return torch.where(count > 0, value, torch.full_like(value, float("nan")))


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (Gaussian window 11, σ 1.5, channel mean) of B×C×H×W tensors in [0, 1]."""
    return structural_similarity_index_measure(
        pred.float().clamp(0, 1),
        target.float(),
        data_range=1.0,
        gaussian_kernel=True,
        sigma=1.5,
        kernel_size=11,
        reduction="none",
    )
