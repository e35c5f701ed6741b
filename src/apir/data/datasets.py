"""PyTorch datasets that turn MVTec-layout samples into (degraded, clean, mask) training pairs.

Why on the fly: users often have only good images, and a fixed set of degraded copies would let a
network memorise one noise realisation. Every patch therefore gets a fresh synthetic defect (with
probability ``defect_prob``) and a fresh degradation drawn from the preset's ranges. Randomness is
derived from ``(seed, epoch, index)``, never from global state, so a run is reproducible whatever the
number of DataLoader workers or distributed ranks.

Defects are small, so uniformly sampled patches rarely contain one; ``defect_ratio`` of the patches
taken from images that have a real mask are centred on a random defect pixel instead.

Each item is a dict of float32 tensors: ``degraded``, ``clean`` and ``original`` (C×P×P, the last being
the defect-free image where known, else equal to ``clean``), ``mask`` (1×P×P, 1 inside the defect),
``level`` (1×P×P, the per-pixel σ of the added noise on the 0-1 scale, the input of noise-level-aware
models) and ``has_defect`` (scalar).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from apir.data.defects import DEFECT_KINDS, random_defect
from apir.data.degradations import DegradationPipeline, apply_params_with_level, fixed_params
from apir.data.imageio import read_image, read_mask
from apir.data.mvtec import Sample
from apir.data.seeding import stable_seed
from apir.errors import ApirError


@dataclass
class LoadedSample:
    """Image, mask and defect-free original of one sample in the model's layout (float32 H×W×C)."""

    image: np.ndarray
    mask: np.ndarray  # bool H×W
    original: np.ndarray
    gray: bool  # the file had one colour channel: synthesise defects in gray, then replicate


class SampleCache:
    """Bounded in-memory cache of decoded samples (per worker process), keyed by image path.

    Decoding a PNG costs more than cutting a patch from it, and each image is visited many times per
    epoch; the byte budget keeps full-resolution MVTec (thousands of 1024² images) from filling memory.
    """

    def __init__(self, max_bytes: int = 2 << 30) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, LoadedSample] = OrderedDict()
        self._bytes = 0

    def get(self, sample: Sample) -> LoadedSample:
        key = str(sample.image)
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        loaded = load_sample(sample)
        size = loaded.image.nbytes + loaded.original.nbytes + loaded.mask.nbytes
        if size <= self.max_bytes:
            self._items[key] = loaded
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.image.nbytes + old.original.nbytes + old.mask.nbytes
        return loaded


def load_sample(sample: Sample) -> LoadedSample:
    """Decode a sample's image, mask (all zero for good images) and original (the image if absent)."""
    loaded = read_image(sample.image)
    image = loaded.rgb
    shape = image.shape[:2]
    mask = read_mask(sample.mask, shape) if sample.mask is not None else np.zeros(shape, bool)
    original = read_image(sample.original).rgb if sample.original is not None else image
    if original.shape != image.shape:
        raise ApirError(f"{sample.original}: original size differs from {sample.image}")
    return LoadedSample(image=image, mask=mask, original=original, gray=loaded.info.channels in (1, 2))


def _reflect_pad_to(arr: np.ndarray, size: int) -> np.ndarray:
    h, w = arr.shape[:2]
    ph, pw = max(0, size - h), max(0, size - w)
    if ph == 0 and pw == 0:
        return arr
    pad = [(ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)] + [(0, 0)] * (arr.ndim - 2)
    mode = "reflect" if min(h, w) > 1 else "edge"
    return np.pad(arr, pad, mode=mode)


def _add_defect(
    clean: np.ndarray, gray: bool, rng: np.random.Generator, kinds: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Synthesise a defect; on gray images in one channel, so a stain never adds colour to gray data."""
    src = clean[..., :1] if gray else clean
    defect = random_defect(src, rng, kinds=kinds)
    image = np.repeat(defect.image, clean.shape[2], axis=2) if gray else defect.image
    return image.astype(np.float32), defect.mask


def _degrade(clean: np.ndarray, params, gray: bool) -> tuple[np.ndarray, np.ndarray]:
    """Degrade and return the noise-level map too; a gray image in one channel, so its noise stays
    gray as a monochrome sensor's is."""
    if not gray:
        return apply_params_with_level(clean, params)
    degraded, level = apply_params_with_level(clean[..., :1], params)
    return np.repeat(degraded, clean.shape[2], axis=2), level


def to_hwc(tensor: torch.Tensor) -> np.ndarray:
    """A C×H×W item tensor back to a contiguous H×W×C numpy image (the inverse of the packing)."""
    return np.ascontiguousarray(tensor.numpy().transpose(1, 2, 0))


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def _pack(degraded, clean, original, mask, level) -> dict[str, torch.Tensor]:
    return {
        "degraded": _to_tensor(degraded.astype(np.float32)),
        "level": torch.from_numpy(np.ascontiguousarray(level, dtype=np.float32))[None],
        "clean": _to_tensor(clean),
        "original": _to_tensor(original),
        "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None],
        "has_defect": torch.tensor(float(mask.any())),
    }


class TrainPatchDataset(Dataset):
    """Random training patches with on-the-fly synthetic defects and degradations.

    ``length`` patches make one epoch (default: 8 per image); item ``i`` of epoch ``e`` is always the
    same patch for a given seed. Call :meth:`set_epoch` each epoch (the trainer does). With
    ``paired`` each item also holds ``degraded_original``: the defect-free patch under the very same
    blur and noise (for :func:`apir.losses.defect_response_loss`).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        degradation: DegradationPipeline,
        patch_size: int = 96,
        length: int | None = None,
        defect_prob: float = 0.7,
        defect_ratio: float = 0.5,
        defect_kinds: Sequence[str] = DEFECT_KINDS,
        augment: bool = True,
        seed: int = 0,
        cache_bytes: int = 2 << 30,
        paired: bool = False,
    ) -> None:
        if not samples:
            raise ApirError("no training images (is train/good empty?)")
        self.paired = paired
        if not 0.0 <= defect_prob <= 1.0 or not 0.0 <= defect_ratio <= 1.0:
            raise ApirError("defect_prob and defect_ratio must be in [0, 1]")
        self.samples = list(samples)
        self.degradation = degradation
        self.patch_size = patch_size
        self.length = length or 8 * len(self.samples)
        self.defect_prob = defect_prob
        self.defect_ratio = defect_ratio
        self.defect_kinds = tuple(defect_kinds)
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.cache = SampleCache(cache_bytes)

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _crop_origin(self, mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
        h, w = mask.shape
        p = self.patch_size
        if mask.any() and rng.random() < self.defect_ratio:
            ys, xs = np.nonzero(mask)
            k = int(rng.integers(len(ys)))
            y = int(np.clip(ys[k] - p // 2, 0, h - p))
            x = int(np.clip(xs[k] - p // 2, 0, w - p))
            return y, x
        return int(rng.integers(0, h - p + 1)), int(rng.integers(0, w - p + 1))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        sample = self.samples[index % len(self.samples)]
        loaded = self.cache.get(sample)
        p = self.patch_size
        image = _reflect_pad_to(loaded.image, p)
        mask = _reflect_pad_to(loaded.mask, p)
        original = _reflect_pad_to(loaded.original, p)
        y, x = self._crop_origin(mask, rng)
        clean = image[y : y + p, x : x + p]
        mask = mask[y : y + p, x : x + p]
        original = original[y : y + p, x : x + p]
        if not mask.any() and rng.random() < self.defect_prob:
            original = clean
            clean, mask = _add_defect(clean, loaded.gray, rng, self.defect_kinds)
        if self.augment:
            k, flip = int(rng.integers(4)), bool(rng.integers(2))
            clean, mask, original = (_augment(a, k, flip) for a in (clean, mask, original))
        params = self.degradation.sample(rng)
        degraded, level = _degrade(clean, params, loaded.gray)
        item = _pack(degraded, clean, original, mask, level)
        if self.paired:
            # Same blur and noise on the defect-free patch: the pair for the defect-response term.
            item["degraded_original"] = _to_tensor(_degrade(original, params, loaded.gray)[0])
        return item


def _augment(arr: np.ndarray, k: int, flip: bool) -> np.ndarray:
    arr = np.rot90(arr, k, axes=(0, 1))
    return arr[:, ::-1] if flip else arr


class EvalImageDataset(Dataset):
    """Whole images with a degradation fixed per image, for validation and evaluation.

    The degradation of an image depends only on ``(seed, sample.key)``: the same image gets the same
    bytes in every run, on every machine. Good images get a fixed synthetic defect when
    ``synthetic_defects`` is set, so validation can measure PSNR inside defects from good data alone.
    ``crop`` takes a centred square crop (faster validation on large images).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        degradation: DegradationPipeline,
        seed: int = 0,
        synthetic_defects: bool = False,
        defect_kinds: Sequence[str] = DEFECT_KINDS,
        crop: int | None = None,
    ) -> None:
        if not samples:
            raise ApirError("no evaluation images")
        self.samples = list(samples)
        self.degradation = degradation
        self.seed = seed
        self.synthetic_defects = synthetic_defects
        self.defect_kinds = tuple(defect_kinds)
        self.crop = crop

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.samples[index]
        loaded = load_sample(sample)
        clean, mask, original = loaded.image, loaded.mask, loaded.original
        if self.crop:
            clean, mask, original = (_center_crop(a, self.crop) for a in (clean, mask, original))
        if self.synthetic_defects and not mask.any():
            rng = np.random.default_rng(stable_seed("defect", self.seed, sample.key))
            original = clean
            clean, mask = _add_defect(clean, loaded.gray, rng, self.defect_kinds)
        params = fixed_params(self.degradation, sample.key, self.seed)
        degraded, level = _degrade(clean, params, loaded.gray)
        item = _pack(degraded, clean, original, mask, level)
        item["index"] = torch.tensor(index)
        return item


def _center_crop(arr: np.ndarray, size: int) -> np.ndarray:
    h, w = arr.shape[:2]
    if h <= size and w <= size:
        return arr
    y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return arr[y : y + size, x : x + size]
