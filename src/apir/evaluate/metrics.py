"""Image-quality metrics, overall and inside / outside the defect, and how much of a defect survives.

PSNR and SSIM come from torchmetrics (a maintained implementation used across the field), with the
conventions stated once here and in ``docs/evaluation.md``: images in [0, 1] (data_range 1), RGB,
SSIM with an 11×11 Gaussian window, σ = 1.5 (as in the original SSIM paper), averaged over the three
channels. PSNR restricted to a mask has no library implementation, so it is computed here from the
masked mean squared error with the same definition: 10·log10(1 / MSE).

PSNR alone cannot tell whether a restorer kept a defect: a denoiser that smooths a faint stain away
loses little PSNR, because the stain covers few pixels. Hence the defect-specific metrics:

* :func:`psnr_defect` / :func:`psnr_background`: PSNR inside / outside the mask, reported together so
  that a small gap bought by denoising less everywhere is visible as such;
* :func:`retention`: the share of the defect's own signal (defective − defect-free image) that is
  still in the restored image; needs the defect-free original (the demo dataset has one);
* :func:`contrast_ratio`: defect-versus-surroundings colour contrast after restoration relative to
  the clean image's; needs only the mask, so it works on real MVTec data.

All functions take B×C×H×W tensors in [0, 1] (masks B×1×H×W, 1 = defect) and return one value
per image; ``pred`` is clamped to [0, 1] first, as a saved 8-bit image would be. A metric that is
undefined for an image (empty mask, no original, no contrast) is NaN, never a guessed number.
:func:`image_metrics` computes all of them for one H×W×C numpy image, as the evaluation runner does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from apir.registry import Registry

# PSNR of a perfect reconstruction is infinite; cap it so means stay finite (identical to MSE 1e-10).
MAX_PSNR = 100.0


#: Width in px of the ring around a defect that :func:`contrast_ratio` compares it with.
DEFAULT_RING = 5

#: Below one 8-bit grey level of defect-vs-ring contrast in the clean image, the defect is invisible in
#: the mean and a ratio would only measure leftover noise: :func:`contrast_ratio` is NaN there.
MIN_CONTRAST = 1.0 / 255.0

# Mean squared defect signal (per masked value) below which the defect counts as absent: retention NaN.
_MIN_SIGNAL = 1e-12


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


def _binary(mask: torch.Tensor) -> torch.Tensor:
    """B×1×H×W float mask of exact 0/1 (masks are 0/1; above 0.5 counts as defect)."""
    return (mask.float() > 0.5).float()


def psnr_defect(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """PSNR inside the defect (``mask`` set); NaN for an image without defect pixels.

    Defects cover a few percent of an image at most, so overall PSNR hides what happens to them.
    """
    return masked_psnr(pred, target, _binary(mask))


def psnr_background(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """PSNR outside the defect; NaN when the mask covers the whole image.

    Read with :func:`psnr_defect`: a smaller background−defect gap is only a gain if the background
    PSNR stayed where it was.
    """
    return masked_psnr(pred, target, 1.0 - _binary(mask))


def retention(
    pred: torch.Tensor, target: torch.Tensor, original: torch.Tensor | None, mask: torch.Tensor
) -> torch.Tensor:
    """Share of the defect signal that survives restoration, per image.

    With r the restored, c the clean (defective) and o the defect-free original image, the defect
    signal is d = c − o, and retention is the projection of r − o on d inside the mask, summed over
    channels: Σ (r − o)·d / Σ d². 1 means the defect is fully kept, 0 that it was painted out (r = o),
    0.5 that half its amplitude is left; values above 1 mean it was exaggerated. Projecting (rather
    than comparing magnitudes) keeps restoration noise, which is uncorrelated with d, from counting
    as defect. NaN when ``original`` is None (real MVTec data has none), the mask is empty, or the
    defect signal is zero.
    """
    b = pred.shape[0]
    if original is None:
        return torch.full((b,), float("nan"), device=pred.device)
    m = _binary(mask).double()
    o = original.double()
    d = (target.double() - o) * m
    r = (pred.double().clamp(0, 1) - o) * m
    num = (r * d).sum(dim=(1, 2, 3))
    den = (d * d).sum(dim=(1, 2, 3))
    count = m.sum(dim=(1, 2, 3)) * pred.shape[1]
    valid = (count > 0) & (den > _MIN_SIGNAL * count.clamp(min=1))
    value = num / den.clamp(min=1e-30)
    return torch.where(valid, value, torch.full_like(value, float("nan"))).float()


def ring_mask(mask: np.ndarray, width: int = DEFAULT_RING) -> np.ndarray:
    """The pixels within ``width`` px (Euclidean disk) of the H×W ``mask`` but not in it.

    This is the defect's immediate surroundings: what an inspector (or a detector) compares it with.
    """
    if width < 1:
        raise ValueError(f"ring width must be >= 1 px, got {width}")
    m = np.asarray(mask) != 0
    yy, xx = np.mgrid[-width : width + 1, -width : width + 1]
    disk = ((yy * yy + xx * xx) <= width * width).astype(np.uint8)
    dilated = cv2.dilate(m.astype(np.uint8), disk, borderType=cv2.BORDER_CONSTANT, borderValue=0) != 0
    return dilated & ~m


def _contrast(img: torch.Tensor, inside: torch.Tensor, ring: torch.Tensor) -> torch.Tensor:
    """‖mean colour inside − mean colour in the ring‖₂ for one C×H×W image (masks H×W bool)."""
    return torch.linalg.vector_norm(img[:, inside].double().mean(dim=1) - img[:, ring].double().mean(dim=1))


def contrast_ratio(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, ring: int = DEFAULT_RING
) -> torch.Tensor:
    """Defect-versus-surroundings contrast of the restored image over that of the clean image.

    contrast(x) = ‖mean_RGB(x inside the mask) − mean_RGB(x in the ring)‖₂, where the ring is the mask
    dilated by ``ring`` px minus the mask. 1 = the defect stands out from its surroundings as much as
    in the clean image; 0 = it blends in. Unlike :func:`retention` it needs no defect-free original.
    Being a difference of means, it is barely moved by zero-mean noise but falls when smoothing
    spreads the defect into its ring. NaN when the mask or the ring is empty, or when the clean
    contrast is below :data:`MIN_CONTRAST` (a ratio of near-zero numbers says nothing).
    """
    p = pred.float().clamp(0, 1)
    t = target.float()
    m = _binary(mask)
    out = []
    for i in range(p.shape[0]):
        inside_np = m[i, 0].cpu().numpy() > 0
        ring_np = ring_mask(inside_np, ring)
        if not inside_np.any() or not ring_np.any():
            out.append(math.nan)
            continue
        inside, around = torch.from_numpy(inside_np), torch.from_numpy(ring_np)
        ref = _contrast(t[i].cpu(), inside, around)
        if ref < MIN_CONTRAST:
            out.append(math.nan)
            continue
        out.append(float(_contrast(p[i].cpu(), inside, around) / ref))
    return torch.tensor(out, dtype=torch.float32, device=pred.device)


def _as_batch(image: np.ndarray) -> torch.Tensor:
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[..., None]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]


@dataclass(frozen=True)
class MetricInputs:
    """What a metric sees of one image, as 1×C×H×W tensors in [0, 1] (``mask`` 1×1×H×W, 1 = defect;
    ``original`` None where the dataset has no defect-free image) and the contrast ring width."""

    restored: torch.Tensor
    clean: torch.Tensor
    mask: torch.Tensor
    original: torch.Tensor | None
    ring: int = DEFAULT_RING


#: Every per-image metric: ``fn(MetricInputs) -> 1-element tensor`` (NaN = undefined), with how
#: reports show it (``header`` lines, ``tooltip``, ``digits``, ``best``: "max", "min" or "one" —
#: closest to 1 — and ``column``, its place in the report's tables). Registration order is the order
#: in results files; adding one is a function and :func:`register_metric`.
METRICS: Registry[Callable[[MetricInputs], torch.Tensor]] = Registry("metric")


def register_metric(
    name: str, *, header: tuple[str, ...], tooltip: str, digits: int = 3, best: str = "max", column: int = 100
) -> Callable[[Callable[[MetricInputs], torch.Tensor]], Callable[[MetricInputs], torch.Tensor]]:
    """Decorator: a per-image metric, computed by ``apir evaluate`` and shown by ``apir report``."""
    if best not in ("max", "min", "one"):
        raise ValueError(f"best must be 'max', 'min' or 'one', got {best!r}")
    return METRICS.register(name, header=header, tooltip=tooltip, digits=digits, best=best, column=column)


@register_metric("psnr", header=("PSNR", "(dB)"), tooltip="PSNR over the whole image, higher is better",
                 digits=2, column=0)  # fmt: skip
def _psnr(x: MetricInputs) -> torch.Tensor:
    return psnr(x.restored, x.clean)


@register_metric("ssim", header=("SSIM",), tooltip="structural similarity, higher is better", digits=4,
                 column=4)  # fmt: skip
def _ssim(x: MetricInputs) -> torch.Tensor:
    return ssim(x.restored, x.clean)


@register_metric("psnr_defect", header=("PSNR in defect", "(dB)"),
                 tooltip="PSNR over the defect mask only, higher is better", digits=2, column=1)  # fmt: skip
def _psnr_defect(x: MetricInputs) -> torch.Tensor:
    return psnr_defect(x.restored, x.clean, x.mask)


@register_metric("psnr_background", header=("PSNR background", "(dB)"),
                 tooltip="PSNR outside the defect mask, higher is better", digits=2, column=2)  # fmt: skip
def _psnr_background(x: MetricInputs) -> torch.Tensor:
    return psnr_background(x.restored, x.clean, x.mask)


@register_metric("retention", header=("retention",), best="one", column=5,
                 tooltip="share of the defect's signal that survives; 1 = all kept")  # fmt: skip
def _retention(x: MetricInputs) -> torch.Tensor:
    return retention(x.restored, x.clean, x.original, x.mask)


@register_metric("contrast_ratio", header=("contrast", "ratio"), best="one", column=6,
                 tooltip="defect contrast after / before; 1 = unchanged")  # fmt: skip
def _contrast_ratio(x: MetricInputs) -> torch.Tensor:
    return contrast_ratio(x.restored, x.clean, x.mask, x.ring)


#: The built-in metrics, in results-file order (plug-ins follow: :func:`metric_names`).
METRIC_NAMES: tuple[str, ...] = tuple(METRICS.names())


def metric_names() -> tuple[str, ...]:
    """Every registered metric, built-ins first, in results-file order."""
    return tuple(METRICS.names())


def image_metrics(
    restored: np.ndarray,
    clean: np.ndarray,
    mask: np.ndarray,
    original: np.ndarray | None = None,
    ring: int = DEFAULT_RING,
) -> dict[str, float]:
    """Every registered metric for one H×W×C image in [0, 1] (mask H×W); NaN = undefined.

    ``original`` is the defect-free image; leave it None when the dataset has none (then retention is
    NaN rather than computed against the defective image itself).
    """
    r, c = _as_batch(restored), _as_batch(clean)
    if r.shape != c.shape:
        raise ValueError(
            f"restored image shape {tuple(restored.shape)} differs from clean {tuple(clean.shape)}"
        )
    m = torch.from_numpy(np.ascontiguousarray(np.asarray(mask) != 0, dtype=np.float32))[None, None]
    o = _as_batch(original) if original is not None else None
    inputs = MetricInputs(r, c, m, o, ring)
    return {name: float(fn(inputs)[0]) for name, fn in METRICS.items()}
