"""Seeded, composable image degradations: blur, sensor noise and JPEG.

apir measures whether restoration keeps defects, so it degrades *pairs* of images: an image with a
synthetic defect and the same image without it. Both must receive the same blur kernel and the same
noise realisation, otherwise the difference between the restored pair mixes the defect with noise.
That is why degrading is split in two steps:

* :meth:`DegradationPipeline.sample` draws concrete parameters (kernel sizes, angles, σ, an integer
  noise seed) from a random generator into a JSON-serialisable :class:`DegradationParams`;
* :func:`apply_params` applies them deterministically, so applying the same params to two images of
  the same shape gives identical blur and identical noise, and a recorded ``params.to_dict()`` can
  be replayed later byte for byte.

Validation and test images get :func:`fixed_params`, derived from a stable hash of the image key, so
every run, machine and DataLoader worker degrades an evaluation image the same way.

Pipelines come from YAML (see ``presets/degradations.yaml``)::

    blur1_noise15:
      description: Gaussian blur sigma=1 px, then Gaussian noise sigma=15 (0-255 scale).
      ops:
        - {op: gaussian_blur, sigma: 1.0}
        - {op: gaussian_noise, sigma: 15}
        - choice:                     # one of, uniformly unless `weights:` is given
            - {op: identity}
            - {op: jpeg, quality: [60, 95]}

Every numeric parameter is a number or a range ``[lo, hi]`` sampled uniformly; every op takes an
optional probability ``p`` (default 1). Images are float32 H×W×C arrays in [0, 1], any C ≥ 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from difflib import get_close_matches
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

import cv2
import numpy as np
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from apir.data.seeding import stable_rng
from apir.errors import ApirError
from apir.registry import Registry

PRESETS_FILE = Path(__file__).parent / "presets" / "degradations.yaml"

# Reflect without repeating the edge pixel (like numpy's "reflect"): no dark or smeared borders.
_BORDER = cv2.BORDER_REFLECT_101

MAX_BLUR_SIGMA = 3.0  # px
MAX_DEFOCUS_RADIUS = 4.0  # px
MAX_MOTION_LENGTH = 15  # px, odd
MAX_NOISE_SIGMA = 50.0  # 0-255 scale
MIN_PEAK, MAX_PEAK = 1.0, 1e5  # expected photon count at white (x = 1)
_SEED_LIMIT = 2**53  # noise seeds stay exact integers in JSON readers that use doubles


# --------------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------------


def _identity_kernel() -> np.ndarray:
    return np.ones((1, 1), np.float32)


def _normalised(kernel: np.ndarray) -> np.ndarray:
    kernel = np.asarray(kernel, np.float64)
    return (kernel / kernel.sum()).astype(np.float32)


def _gaussian_1d(sigma: float) -> np.ndarray:
    radius = max(1, math.ceil(3.0 * sigma))  # ±3σ holds 99.7 % of the mass
    return _normalised(cv2.getGaussianKernel(2 * radius + 1, sigma, cv2.CV_64F).ravel())


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 2-D Gaussian kernel of standard deviation ``sigma`` px, size 2·ceil(3σ)+1.

    ``sigma <= 0`` gives the 1×1 identity kernel, so a sampled σ of 0 means "no blur".
    """
    if sigma <= 0:
        return _identity_kernel()
    k = _gaussian_1d(sigma).astype(np.float64)
    return _normalised(np.outer(k, k))


def disk_kernel(radius: float, supersample: int = 16) -> np.ndarray:
    """Normalised anti-aliased uniform disk (defocus) kernel of ``radius`` px, size 2·ceil(r)+1.

    Hand-rolled because OpenCV, kornia and scikit-image only offer binary disks, whose area jumps
    as the radius grows; here each pixel is weighted by the fraction of it the disk covers
    (estimated on a ``supersample``² grid, like MATLAB's ``fspecial('disk')``), so the blur
    strength varies smoothly with a sampled, fractional radius. ``radius <= 0`` is the identity.
    """
    if radius <= 0:
        return _identity_kernel()
    half = math.ceil(radius)
    # Sub-pixel sample positions, relative to the kernel centre, for every pixel of the kernel.
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    coords = (np.arange(-half, half + 1)[:, None] + offsets[None, :]).ravel()
    inside = (coords[:, None] ** 2 + coords[None, :] ** 2) <= radius**2
    size = 2 * half + 1
    coverage = inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    if coverage.sum() == 0:  # a radius below the sub-pixel grid covers no sample: no visible blur
        return _identity_kernel()
    return _normalised(coverage)


def motion_kernel(length: int, angle: float) -> np.ndarray:
    """Normalised linear motion-blur kernel: a line ``length`` px long through the centre.

    ``angle`` is in degrees, counter-clockwise from the horizontal as the image is displayed
    (0 = horizontal, 90 = vertical, 45 = bottom-left to top-right). The line is rotated with
    bilinear interpolation (kornia) so diagonal kernels are anti-aliased. ``length`` must be odd
    so the kernel is centred (a centred kernel does not shift the image); 1 is the identity.
    """
    if int(length) != length or length < 1 or length % 2 == 0:
        raise ApirError(f"motion blur length must be an odd integer >= 1, got {length!r}")
    if length == 1:
        return _identity_kernel()
    # Imported here: kornia (and torch) are only needed for this kernel, and importing them costs
    # a second in processes that only read presets.
    from kornia.filters import get_motion_kernel2d

    kernel = get_motion_kernel2d(int(length), float(angle), 0.0, "bilinear")[0].numpy()
    # The rotation leaves float round-off (~1e-8) off the line; zero it so the support is exact.
    kernel[kernel < 1e-4 * kernel.max()] = 0
    return _normalised(kernel)


def _filter(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Filter every channel with ``kernel`` (reflect border); cv2 drops a single channel axis."""
    if kernel.shape == (1, 1):
        return image
    # cv2.filter2D correlates; all our kernels are point-symmetric, so this equals convolution.
    return cv2.filter2D(image, -1, kernel, borderType=_BORDER).reshape(image.shape)


# --------------------------------------------------------------------------------------------------
# Parameter specs (validated YAML)
# --------------------------------------------------------------------------------------------------


def _range(lo: float, hi: float, *, integer: bool = False, odd: bool = False) -> Any:
    """Type of a parameter given as a number or ``[lo, hi]`` within ``[lo, hi]`` bounds.

    Normalises to a ``(lo, hi)`` tuple (``lo == hi`` for fixed values) and gives one readable
    message for every way the value can be wrong, instead of pydantic's per-union-member errors.
    """
    what = "an odd integer" if odd else "an integer" if integer else "a number"

    def check(value: Any) -> tuple[float, float]:
        bad = f"must be {what} or [lo, hi] within [{lo:g}, {hi:g}], got {value!r}"
        items = list(value) if isinstance(value, list | tuple) else [value]
        if len(items) not in (1, 2) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in items
        ):
            raise ValueError(bad)
        a, b = items[0], items[-1]
        if not lo <= a <= b <= hi:
            raise ValueError(bad)
        if integer or odd:
            if any(float(v) != int(v) for v in (a, b)):
                raise ValueError(bad)
            a, b = int(a), int(b)
            if odd and a == b and a % 2 == 0:
                raise ValueError(f"{bad} (kernel lengths must be odd so the blur does not shift)")
        return (a, b)

    return Annotated[tuple[float, float], BeforeValidator(check)]


BlurSigma = _range(0.0, MAX_BLUR_SIGMA)
DefocusRadius = _range(0.0, MAX_DEFOCUS_RADIUS)
MotionLength = _range(1, MAX_MOTION_LENGTH, odd=True)
Angle = _range(0.0, 180.0)
NoiseSigma = _range(0.0, MAX_NOISE_SIGMA)
Peak = _range(MIN_PEAK, MAX_PEAK)
Quality = _range(1, 100, integer=True)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    return float(lo) if lo == hi else float(rng.uniform(lo, hi))


class _Strict(BaseModel):
    """A YAML mapping where every key must be known, so typos fail instead of being ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        # extra="forbid" alone says "Extra inputs are not permitted"; naming the allowed keys
        # turns a typo into a one-look fix.
        if isinstance(data, Mapping):
            unknown = sorted(map(str, set(data) - set(cls.model_fields)))
            if unknown:
                allowed = ", ".join(cls.model_fields)
                raise ValueError(f"unknown key {unknown[0]!r} (allowed: {allowed})")
        return data


class _Op(_Strict):
    """Common part of every op: its name and the probability ``p`` that it is applied at all."""

    noise: ClassVar[bool] = False  # noise ops get an integer seed in their sampled params
    op: str
    p: float = Field(1.0, ge=0.0, le=1.0)

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """Concrete values for one application, without ``op``/``p``."""
        return {}

    @staticmethod
    def run(image: np.ndarray, values: Mapping[str, Any]) -> np.ndarray:
        """Apply the op with concrete ``values`` to a float32 H×W×C image."""
        return image

    @staticmethod
    def noise_variance(values: Mapping[str, Any]) -> float:
        """Variance (0-255 scale) of the noise this op adds to a mid-grey pixel; 0 for non-noise."""
        return 0.0

    @staticmethod
    def noise_variance_map(image: np.ndarray, values: Mapping[str, Any]) -> np.ndarray | float:
        """Per-pixel variance (0-1 scale) of the noise this op adds to ``image`` (its input); 0 if none.

        What a noise-level-aware restorer is told (its level map is the square root of the sum over
        the pipeline's noise ops), so it must describe exactly the noise :meth:`run` draws.
        """
        return 0.0


#: The class a plug-in op subclasses (see CONTRIBUTING.md, "Add a degradation op").
Op = _Op

#: Op name -> op class; the name is the single value of the class's ``op`` Literal. The YAML schema's
#: unions (``LeafOp`` in a ``choice``, ``Step`` in a pipeline) are built from it.
OPS: Registry[type[_Op]] = Registry("degradation op")


def register_op(cls: type[_Op]) -> type[_Op]:
    """Decorator: a degradation op class joins :data:`OPS` and the YAML schema, named by its ``op``
    Literal. An op registered after this module is loaded rebuilds the schema (:func:`_rebuild_schema`)."""
    OPS.add(cls.model_fields["op"].annotation.__args__[0], cls)
    if "PipelineConfig" in globals():
        _rebuild_schema()
    return cls


@register_op
class Identity(_Op):
    """Does nothing; the "no blur" / "no noise" member of a ``choice``."""

    op: Literal["identity"]


@register_op
class GaussianBlur(_Op):
    """Isotropic Gaussian blur (out-of-focus optics, anti-aliasing filters)."""

    op: Literal["gaussian_blur"]
    sigma: BlurSigma

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        return {"sigma": _uniform(rng, self.sigma)}

    @staticmethod
    def run(image: np.ndarray, values: Mapping[str, Any]) -> np.ndarray:
        if values["sigma"] <= 0:
            return image
        k = _gaussian_1d(values["sigma"])  # separable: two 1-D passes instead of one 2-D one
        return cv2.sepFilter2D(image, -1, k, k, borderType=_BORDER).reshape(image.shape)


@register_op
class DefocusBlur(_Op):
    """Uniform-disk blur: the point spread function of a defocused lens."""

    op: Literal["defocus_blur"]
    radius: DefocusRadius

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        return {"radius": _uniform(rng, self.radius)}

    @staticmethod
    def run(image: np.ndarray, values: Mapping[str, Any]) -> np.ndarray:
        return _filter(image, disk_kernel(values["radius"]))


@register_op
class MotionBlur(_Op):
    """Linear motion blur (camera shake, objects on a conveyor); length is odd, in px."""

    op: Literal["motion_blur"]
    length: MotionLength
    angle: Angle = (0.0, 180.0)

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        lo, hi = self.length
        odd_lengths = np.arange(lo + (lo % 2 == 0), hi + 1, 2)
        length = int(odd_lengths[0] if len(odd_lengths) == 1 else rng.choice(odd_lengths))
        return {"length": length, "angle": _uniform(rng, self.angle)}

    @staticmethod
    def run(image: np.ndarray, values: Mapping[str, Any]) -> np.ndarray:
        return _filter(image, motion_kernel(values["length"], values["angle"]))


def _normal(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Standard normal noise for ``shape`` from ``seed``: the same for every image of that shape."""
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


@register_op
class GaussianNoise(_Op):
    """Additive white Gaussian noise; ``sigma`` on the 0-255 scale (applied as σ/255)."""

    op: Literal["gaussian_noise"]
    noise: ClassVar[bool] = True
    sigma: NoiseSigma

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        return {"sigma": _uniform(rng, self.sigma)}

    @staticmethod
    def run(image: np.ndarray, values: Mapping[str, Any]) -> np.ndarray:
        if values["sigma"] <= 0:
            return image
        return image + _normal(image.shape, values["seed"]) * np.float32(values["sigma"] / 255.0)

    @staticmethod
    def noise_variance(values: Mapping[str, Any]) -> float:
        return float(values["sigma"]) ** 2

    @staticmethod
    def noise_variance_map(image: np.ndarray, values: Mapping[str, Any]) -> np.ndarray | float:
        return (float(values["sigma"]) / 255.0) ** 2


@register_op
class GaussianNoiseRamp(_Op):
    """Gaussian noise whose σ changes linearly across the image, from ``sigma`` at one side to
    ``sigma_end`` at the other, along a random direction ``angle``.

    Why: a restorer that takes a noise-level map must learn to follow the map *locally*, so that a
    user (or the detector guard) can lower the strength where a defect is suspected; training on
    uniform levels alone would only teach it one number per image.
    """

    op: Literal["gaussian_noise_ramp"]
    noise: ClassVar[bool] = True
    sigma: NoiseSigma
    sigma_end: NoiseSigma
    angle: Angle = (0.0, 360.0)

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        return {
            "sigma": _uniform(rng, self.sigma),
            "sigma_end": _uniform(rng, self.sigma_end),
            "angle": _uniform(rng, self.angle),
        }

    @staticmethod
    def _sigma_map(shape: tuple[int, ...], values: Mapping[str, Any]) -> np.ndarray:
        h, w = shape[:2]
        a = math.radians(values["angle"])
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = xx * math.cos(a) + yy * math.sin(a)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
        s0, s1 = values["sigma"] / 255.0, values["sigma_end"] / 255.0
        return (s0 + (s1 - s0) * t).astype(np.float32)[..., None]

    @staticmethod
    def run(image: np.ndarray, values: Mapping[str, Any]) -> np.ndarray:
        sigma = GaussianNoiseRamp._sigma_map(image.shape, values)
        return image + _normal(image.shape, values["seed"]) * sigma

    @staticmethod
    def noise_variance(values: Mapping[str, Any]) -> float:
        return ((float(values["sigma"]) + float(values["sigma_end"])) / 2) ** 2

    @staticmethod
    def noise_variance_map(image: np.ndarray, values: Mapping[str, Any]) -> np.ndarray | float:
        return GaussianNoiseRamp._sigma_map(image.shape, values) ** 2


@register_op
class PoissonGaussian(_Op):
    """Signal-dependent sensor noise: photon shot noise plus Gaussian read noise.

    Model (the heteroscedastic Gaussian approximation of Foi et al., 2008)::

        y = x + sqrt(x / peak + (read_sigma / 255)²) · z,    z ~ N(0, 1) per pixel and channel

    ``peak`` is the expected photon count at white (x = 1): the exact model is
    ``Poisson(peak·x) / peak + N(0, read²)``, with variance ``x/peak + read²`` as above. We use
    the approximation rather than sampling Poisson counts because it draws exactly one normal per
    pixel whatever the signal: two images that differ only at a defect get the same ``z``
    everywhere, whereas numpy's Poisson sampler consumes a signal-dependent number of random
    numbers, so one changed pixel would reshuffle the noise of every pixel after it. The
    approximation is accurate from about ten photons up; in the darkest pixels it is symmetric and
    may dip below zero before clipping, which is fine for training restorers.
    """

    op: Literal["poisson_gaussian"]
    noise: ClassVar[bool] = True
    peak: Peak
    read_sigma: NoiseSigma = (0.0, 0.0)

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        return {"peak": _uniform(rng, self.peak), "read_sigma": _uniform(rng, self.read_sigma)}

    @staticmethod
    def run(image: np.ndarray, values: Mapping[str, Any]) -> np.ndarray:
        std = np.sqrt(PoissonGaussian.noise_variance_map(image, values))
        return image + _normal(image.shape, values["seed"]) * std

    @staticmethod
    def noise_variance_map(image: np.ndarray, values: Mapping[str, Any]) -> np.ndarray | float:
        read = values["read_sigma"] / 255.0
        return np.maximum(image, 0.0) / np.float32(values["peak"]) + np.float32(read * read)

    @staticmethod
    def noise_variance(values: Mapping[str, Any]) -> float:
        # At mid-grey (x = 0.5): an equivalent Gaussian σ for σ-aware denoisers such as CBM3D.
        return 255.0**2 * 0.5 / values["peak"] + float(values["read_sigma"]) ** 2


@register_op
class Jpeg(_Op):
    """JPEG compression artefacts (blocking, ringing, 4:2:0 chroma loss) at a given quality."""

    op: Literal["jpeg"]
    quality: Quality

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        lo, hi = self.quality
        return {"quality": int(lo if lo == hi else rng.integers(lo, hi + 1))}

    @staticmethod
    def run(image: np.ndarray, values: Mapping[str, Any]) -> np.ndarray:
        params = [cv2.IMWRITE_JPEG_QUALITY, int(values["quality"])]
        u8 = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
        channels = image.shape[2]
        # OpenCV's colour JPEG expects BGR, so flip RGB for the chroma to be right; other channel
        # counts have no JPEG colour model, so each channel is compressed as a grayscale image.
        planes = [u8[..., ::-1]] if channels == 3 else [u8[..., c] for c in range(channels)]
        decoded = []
        for plane in planes:
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(plane), params)
            if not ok:
                raise ApirError(f"JPEG encoding failed for an image of shape {image.shape}")
            decoded.append(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED))
        out = decoded[0][..., ::-1] if channels == 3 else np.stack(decoded, axis=-1)
        return out.astype(np.float32) / np.float32(255.0)


def _leaf_op() -> Any:
    """A single op of :data:`OPS`, told apart by its ``op`` field (a ``choice`` member)."""
    return Annotated[Union[tuple(OPS[name] for name in OPS)], Field(discriminator="op")]  # noqa: UP007


LeafOp = _leaf_op()


class Choice(_Strict):
    """Apply exactly one of several ops, picked at random (uniformly unless ``weights`` given)."""

    choice: list[LeafOp] = Field(min_length=1)
    weights: list[float] | None = None

    @field_validator("weights")
    @classmethod
    def _check_weights(cls, w: list[float] | None) -> list[float] | None:
        if w is not None and (any(x < 0 or not math.isfinite(x) for x in w) or sum(w) <= 0):
            raise ValueError("weights must be non-negative numbers with a positive sum")
        return w

    @model_validator(mode="after")
    def _weights_match(self) -> Choice:
        if self.weights is not None and len(self.weights) != len(self.choice):
            raise ValueError(f"{len(self.weights)} weights for {len(self.choice)} choices")
        return self

    def pick(self, rng: np.random.Generator) -> _Op:
        if len(self.choice) == 1:
            return self.choice[0]
        p = None if self.weights is None else np.asarray(self.weights) / sum(self.weights)
        return self.choice[int(rng.choice(len(self.choice), p=p))]


def _step_tag(value: Any) -> str | None:
    if isinstance(value, Mapping):
        return "choice" if "choice" in value else value.get("op")
    return "choice" if isinstance(value, Choice) else getattr(value, "op", None)


def _step() -> Any:
    """A pipeline step: an op of :data:`OPS` or a ``choice``, with a one-line error for unknown names."""
    return Annotated[
        Union[(*(Annotated[cls, Tag(name)] for name, cls in OPS.items()), Annotated[Choice, Tag("choice")])],  # noqa: UP007
        Discriminator(
            _step_tag,
            custom_error_type="unknown_op",
            custom_error_message=f"each step needs 'op: <name>' with a name among {', '.join(OPS)}, "
            "or 'choice: [...]'",
        ),
    ]


Step = _step()


class PipelineConfig(_Strict):
    """A degradation pipeline as written in YAML: ops applied in order."""

    description: str = ""
    ops: list[Step] = Field(default_factory=list)


def _rebuild_schema() -> None:
    """Give ``Choice`` and ``PipelineConfig`` unions that include every op registered so far.

    pydantic builds a model's validator when its class is created; a plug-in op registered later
    must be added to the two unions. Setting the fields' annotations and ``model_rebuild(force=True)``
    does that (pydantic 2; ``tests/test_plugin_registry.py`` pins it).
    """
    Choice.model_fields["choice"].annotation = list[_leaf_op()]
    Choice.model_rebuild(force=True)
    PipelineConfig.model_fields["ops"].annotation = list[_step()]
    PipelineConfig.model_rebuild(force=True)


def _one_line(err: ValidationError, where: str) -> str:
    """The first pydantic error as ``where: ops.1.sigma: message`` (+ how many more)."""
    errors = err.errors()
    first = errors[0]
    # Drop the union tags from the location: they repeat the op name the user wrote.
    parts: list[str] = []
    for p in first["loc"]:
        if isinstance(p, int) or p not in OPS and (not parts or parts[-1] != p):
            parts.append(str(p))
    loc = ".".join(parts)
    msg = first["msg"].removeprefix("Value error, ")
    value = first.get("input")
    if first["type"] in ("unknown_op", "union_tag_invalid") and isinstance(value, Mapping):
        name = value.get("op")
        close = get_close_matches(str(name), OPS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        msg = f"unknown op {name!r}; {hint}known ops: {', '.join(OPS)}" if name is not None else msg
    elif first["type"] == "missing" and parts:
        loc, msg = ".".join(parts[:-1]), f"missing required key {parts[-1]!r}"
    elif "got" not in msg and isinstance(value, int | float | str):
        msg = f"{msg}, got {value!r}"
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{where}: {loc + ': ' if loc else ''}{msg}{more}"


# --------------------------------------------------------------------------------------------------
# Concrete parameters
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppliedOp:
    """One op with the concrete values it was (or will be) applied with."""

    op: str
    values: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, **self.values}


@dataclass(frozen=True)
class DegradationParams:
    """Exactly what a pipeline applies to one image: ops in order, concrete values, noise seeds.

    Ops skipped by their probability ``p`` or by choosing ``identity`` are not listed. Round-trips
    through JSON with :meth:`to_dict` / :meth:`from_dict`, so evaluation can record and replay it.
    """

    ops: tuple[AppliedOp, ...] = ()
    preset: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "ops": [op.to_dict() for op in self.ops]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DegradationParams:
        """Rebuild (and validate) params written by :meth:`to_dict`."""
        if not isinstance(data, Mapping) or not isinstance(data.get("ops", []), list):
            raise ApirError("degradation params must be a mapping with a list 'ops'")
        ops = []
        for i, entry in enumerate(data.get("ops", [])):
            name = entry.get("op") if isinstance(entry, Mapping) else None
            if not isinstance(name, str) or name not in OPS:
                raise ApirError(f"degradation params: ops.{i}: unknown op {name!r} (known: {', '.join(OPS)})")
            cls_ = OPS[name]
            values = {k: v for k, v in entry.items() if k != "op"}
            expected = set(cls_.model_fields) - {"op", "p"} | ({"seed"} if cls_.noise else set())
            if set(values) != expected:
                raise ApirError(
                    f"degradation params: ops.{i} ({name}) has keys {sorted(values)}, "
                    f"expected {sorted(expected)}"
                )
            seed = values.pop("seed", 0)
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < _SEED_LIMIT:
                raise ApirError(f"degradation params: ops.{i} ({name}): seed must be an integer in [0, 2^53)")
            try:  # reuse the spec's range checks on the concrete values
                cls_.model_validate({"op": name, **values})
            except ValidationError as e:
                raise ApirError(_one_line(e, f"degradation params: ops.{i} ({name})")) from None
            ops.append(AppliedOp(name, {**values, **({"seed": seed} if cls_.noise else {})}))
        return cls(tuple(ops), data.get("preset"))

    @property
    def noise_sigma(self) -> float:
        """Effective Gaussian noise σ on the 0-255 scale, e.g. to run CBM3D with the true σ.

        Noise ops add in quadrature; Poisson-Gaussian noise counts with its σ at mid-grey
        (x = 0.5). Assumes noise comes after blur (as in every preset) and ignores JPEG.
        """
        return math.sqrt(sum(OPS[o.op].noise_variance(o.values) for o in self.ops))


def _check_float_image(image: Any) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or not np.issubdtype(image.dtype, np.floating):
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ApirError(f"degradations expect a float H×W×C image in [0, 1], got shape {shape} dtype {dtype}")


def apply_params(image: np.ndarray, params: DegradationParams) -> np.ndarray:
    """Apply concrete ``params`` to ``image``; deterministic, so pairs of images match exactly.

    Noise is drawn from each noise op's seed, so any two images of the same shape get the same
    realisation. The result is clipped to [0, 1] after every op (a sensor saturates before its
    JPEG encoder sees the pixels) and has the input's shape and floating dtype.
    """
    _check_float_image(image)
    out = np.ascontiguousarray(image, dtype=np.float32)
    for applied in params.ops:
        out = np.clip(OPS[applied.op].run(out, applied.values), 0.0, 1.0, dtype=np.float32)
    return out.astype(image.dtype, copy=False)


# --------------------------------------------------------------------------------------------------
# Pipelines
# --------------------------------------------------------------------------------------------------


def apply_params_with_level(image: np.ndarray, params: DegradationParams) -> tuple[np.ndarray, np.ndarray]:
    """:func:`apply_params`, plus the noise-level map: per-pixel σ (0-1 scale, H×W float32) of the
    noise the noise ops added (root of the summed variances, averaged over channels).

    Each noise op's variance is taken from the image it was applied to (after blur, before its own
    noise), so signal-dependent noise gets its true per-pixel level. JPEG's quantisation error is not
    counted: it is not noise a level map can describe.
    """
    _check_float_image(image)
    out = np.ascontiguousarray(image, dtype=np.float32)
    variance = np.zeros(out.shape[:2], dtype=np.float32)
    for applied in params.ops:
        op = OPS[applied.op]
        if op.noise:
            var = np.broadcast_to(
                np.asarray(op.noise_variance_map(out, applied.values), np.float32), out.shape
            )
            variance += var.mean(axis=2)
        out = np.clip(op.run(out, applied.values), 0.0, 1.0, dtype=np.float32)
    return out.astype(image.dtype, copy=False), np.sqrt(variance)


class DegradationPipeline:
    """A validated list of ops that samples concrete :class:`DegradationParams` and applies them."""

    def __init__(self, config: PipelineConfig | Mapping[str, Any] | Sequence[Any], name: str = "custom"):
        """Build from a :class:`PipelineConfig`, a ``{description, ops}`` mapping or a list of ops."""
        if isinstance(config, str):
            raise ApirError(f"DegradationPipeline needs ops; for a preset use get_degradation({config!r})")
        if not isinstance(config, PipelineConfig):
            raw = {"ops": list(config)} if isinstance(config, Sequence) else config
            try:
                config = PipelineConfig.model_validate(raw)
            except ValidationError as e:
                raise ApirError(_one_line(e, f"degradation {name!r}")) from None
        self.config = config
        self.name = name

    @property
    def description(self) -> str:
        return self.config.description

    def sample(self, rng: np.random.Generator) -> DegradationParams:
        """Draw concrete values (and an integer seed per noise op) for every op, in order."""
        ops = []
        for step in self.config.ops:
            op = step.pick(rng) if isinstance(step, Choice) else step
            if op.p < 1.0 and rng.random() >= op.p:
                continue
            values = op.sample(rng)
            if op.noise:
                values["seed"] = int(rng.integers(0, _SEED_LIMIT))
            if not isinstance(op, Identity):
                ops.append(AppliedOp(op.op, values))
        return DegradationParams(tuple(ops), self.name)

    def apply(self, image: np.ndarray, params: DegradationParams) -> np.ndarray:
        """Same as :func:`apply_params`: params alone decide the result."""
        return apply_params(image, params)

    def __call__(
        self, image: np.ndarray, rng: np.random.Generator | int
    ) -> tuple[np.ndarray, DegradationParams]:
        """Sample params and apply them; returns ``(degraded, params)``."""
        params = self.sample(rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng))
        return apply_params(image, params), params

    def __repr__(self) -> str:
        return f"DegradationPipeline({self.name!r}, ops={len(self.config.ops)})"


def fixed_params(pipeline: DegradationPipeline, key: str | int, seed: int = 0) -> DegradationParams:
    """Deterministic params for an evaluation image (e.g. ``Sample.key``): same key, same bytes."""
    return pipeline.sample(stable_rng(key, seed))


# --------------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------------


def _read_yaml(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise ApirError(f"degradation file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ApirError(f"cannot read degradation file {path}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ApirError(f"invalid YAML in {path}{where}: {problem}") from None


def _pipelines_from(data: Any, path: Path) -> dict[str, DegradationPipeline]:
    """A file holds either one pipeline (it has ``ops:``) or a mapping of name → pipeline."""
    if not isinstance(data, Mapping) or not data:
        raise ApirError(f"{path}: expected a pipeline ('ops: [...]') or a mapping of names to pipelines")
    if "ops" in data:
        return {path.stem: DegradationPipeline(data, name=path.stem)}
    presets = {}
    for name, spec in data.items():
        if not isinstance(name, str) or not isinstance(spec, Mapping):
            raise ApirError(f"{path}: preset {name!r} must be a name mapping to {{description, ops}}")
        presets[name] = DegradationPipeline(spec, name=name)
    return presets


@lru_cache(maxsize=1)
def _packaged_presets() -> dict[str, DegradationPipeline]:
    return _pipelines_from(_read_yaml(PRESETS_FILE), PRESETS_FILE)


def load_presets(path: str | Path | None = None) -> dict[str, DegradationPipeline]:
    """Pipelines in a YAML file by name (``None``: the presets shipped with apir)."""
    if path is None:
        return dict(_packaged_presets())
    path = Path(path)
    return _pipelines_from(_read_yaml(path), path)


def preset_names() -> list[str]:
    """Names of the shipped presets, in file order."""
    return list(_packaged_presets())


def get_degradation(name_or_path: str | Path) -> DegradationPipeline:
    """A shipped preset by name, or a pipeline from a user YAML file.

    A file may hold one pipeline, or several presets: then pick one with ``file.yaml#name``
    (a file with a single preset needs no name).
    """
    text = str(name_or_path)
    file, _, wanted = text.rpartition("#") if "#" in text else (text, "", "")
    looks_like_path = isinstance(name_or_path, Path) or file.endswith((".yaml", ".yml")) or "/" in file
    if looks_like_path or Path(file).is_file():
        presets = load_presets(file)
        if wanted:
            if wanted not in presets:
                raise ApirError(f"no preset {wanted!r} in {file}; it has: {', '.join(presets)}")
            return presets[wanted]
        if len(presets) > 1:
            raise ApirError(
                f"{file} holds several presets ({', '.join(presets)}); choose one with '{file}#<name>'"
            )
        return next(iter(presets.values()))
    presets = _packaged_presets()
    if text not in presets:
        close = get_close_matches(text, presets, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ApirError(
            f"unknown degradation preset {text!r}; {hint}available: {', '.join(presets)} "
            "(or give a path to a YAML file)"
        )
    return presets[text]
