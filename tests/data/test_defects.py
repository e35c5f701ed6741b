"""Tests for synthetic defects: the mask contract, determinism, strength and the Perlin generator.

The mask contract is what training and the "how much of the defect survived" metrics rely on, so it
is checked for every kind, on colour and grey images, odd shapes, saturated images and all strengths.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from apir.data.defects import DEFECT_KINDS, Defect, perlin_noise, random_defect, synthesize_defect
from apir.errors import ApirError

SHAPES = [(64, 64, 3), (48, 80, 1), (64, 64, 1), (48, 80, 3)]
STRENGTHS = [None, None, 0.05, 0.3, 1.0, 3.0]


def smooth_image(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """A random smooth float32 image in [0, 1]: low-resolution noise upsampled, plus a little grain."""
    h, w, c = shape
    rng = np.random.default_rng(seed)
    low = rng.random((h // 8 + 2, w // 8 + 2, c)).astype(np.float32)
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, c)
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def check_contract(img: np.ndarray, defect: Defect, kind: str) -> None:
    assert isinstance(defect, Defect)
    assert defect.kind == kind
    out, mask = defect.image, defect.mask
    assert out.dtype == np.float32 and out.shape == img.shape
    assert mask.dtype == np.bool_ and mask.shape == img.shape[:2]
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    # Outside the mask: bit-identical (compare the bits, not float equality).
    same_bits = (out.view(np.uint32) == img.view(np.uint32)).all(axis=2)
    assert same_bits[~mask].all()
    # The mask is non-empty and is where the image changed.
    assert mask.any()
    changed = (np.abs(out.astype(np.float64) - img.astype(np.float64)) > 1 / 255).any(axis=2)
    assert changed[mask].mean() >= 0.9


def edge_energy(defect: Defect) -> float:
    """Mean |Laplacian| inside the mask (away from its border): high where the defect has texture."""
    core = cv2.erode(defect.mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    lap = np.abs(cv2.Laplacian(defect.image, cv2.CV_32F)).max(axis=-1)
    return float(lap[core].mean()) if core.any() else 0.0


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_mask_contract(kind: str, shape: tuple[int, int, int]) -> None:
    for seed in range(24):
        img = smooth_image(shape, seed)
        before = img.copy()
        strength = STRENGTHS[seed % len(STRENGTHS)]
        defect = synthesize_defect(img, kind, np.random.default_rng(seed), strength=strength)
        check_contract(img, defect, kind)
        assert np.array_equal(img, before), "input image was modified"


@pytest.mark.parametrize("value", [0.0, 1.0, 0.5])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_contract_on_flat_and_saturated_images(kind: str, channels: int, value: float) -> None:
    # A dark crack on black or a bright scratch on white must flip or re-draw, never come back empty.
    img = np.full((40, 56, channels), value, dtype=np.float32)
    for seed in range(6):
        check_contract(img, synthesize_defect(img, kind, np.random.default_rng(seed)), kind)


def test_float64_input_is_accepted() -> None:
    img = smooth_image((32, 32, 3), 0).astype(np.float64)
    defect = synthesize_defect(img, "spot", np.random.default_rng(0))
    check_contract(img.astype(np.float32), defect, "spot")


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_deterministic_and_seed_dependent(kind: str) -> None:
    img = smooth_image((48, 80, 3), 7)
    a = synthesize_defect(img, kind, np.random.default_rng(123))
    b = synthesize_defect(img, kind, np.random.default_rng(123))
    assert a.image.tobytes() == b.image.tobytes()
    assert a.mask.tobytes() == b.mask.tobytes()
    others = {synthesize_defect(img, kind, np.random.default_rng(s)).mask.tobytes() for s in range(5)}
    assert len(others) == 5


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_strength_is_monotonic(kind: str) -> None:
    img = smooth_image((64, 64, 3), 3)
    means = []
    for strength in (0.2, 0.5, 1.0):
        per_seed = []
        for seed in range(12):
            d = synthesize_defect(img, kind, np.random.default_rng(seed), strength=strength)
            per_seed.append(np.abs(d.image - img)[d.mask].mean())
        means.append(float(np.mean(per_seed)))
    assert means[0] < means[1] < means[2], means


def test_texture_is_used_by_perlin_and_ignored_by_others() -> None:
    img = np.full((64, 64, 3), 0.5, dtype=np.float32)
    yy, xx = np.mgrid[:96, :96]
    checker = np.where((yy // 6 + xx // 6) % 2 == 0, 0.15, 0.85).astype(np.float32)
    flat = np.full((96, 96), 0.85, dtype=np.float32)
    textured = 0
    for seed in range(10):
        with_tex = synthesize_defect(
            img, "perlin", np.random.default_rng(seed), texture=checker, strength=1.5
        )
        with_flat = synthesize_defect(img, "perlin", np.random.default_rng(seed), texture=flat, strength=1.5)
        without = synthesize_defect(img, "perlin", np.random.default_rng(seed), strength=1.5)
        check_contract(img, with_tex, "perlin")
        assert with_tex.image.tobytes() != without.image.tobytes()
        assert with_tex.image.tobytes() != with_flat.image.tobytes()
        # On a flat image a checkerboard source shows its edges inside the mask; a flat source does not.
        textured += edge_energy(with_tex) > 2 * edge_energy(with_flat) + 0.05
    assert textured >= 6
    # uint8 and grey textures work too, on a grey image.
    grey = smooth_image((48, 80, 1), 1)
    tex8 = (np.random.default_rng(0).random((30, 200, 3)) * 255).astype(np.uint8)
    check_contract(grey, synthesize_defect(grey, "perlin", np.random.default_rng(0), texture=tex8), "perlin")
    a = synthesize_defect(img, "scratch", np.random.default_rng(5), texture=checker)
    b = synthesize_defect(img, "scratch", np.random.default_rng(5))
    assert a.image.tobytes() == b.image.tobytes()


def test_random_defect_covers_all_kinds() -> None:
    img = smooth_image((48, 48, 3), 0)
    kinds = set()
    for seed in range(50):
        d = random_defect(img, np.random.default_rng(seed))
        check_contract(img, d, d.kind)
        kinds.add(d.kind)
    assert kinds == set(DEFECT_KINDS)
    only = {random_defect(img, np.random.default_rng(s), kinds=["crack", "hole"]).kind for s in range(10)}
    assert only == {"crack", "hole"}
    d = random_defect(img, np.random.default_rng(0), kinds=("stain",), strength=0.5)
    assert d.kind == "stain"


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((32, 32), np.float32),  # no channel axis
        np.zeros((32, 32, 4), np.float32),
        np.zeros((2, 32, 32, 3), np.float32),
        np.zeros((4, 32, 3), np.float32),  # too small
        np.zeros((32, 32, 3), np.uint8),
        np.full((32, 32, 3), 2.0, np.float32),  # not in [0, 1]
        np.full((32, 32, 3), np.nan, np.float32),
    ],
)
def test_bad_images_raise_apir_error(bad: np.ndarray) -> None:
    with pytest.raises(ApirError):
        synthesize_defect(bad, "spot", np.random.default_rng(0))


def test_bad_arguments_raise_apir_error() -> None:
    img = smooth_image((32, 32, 3), 0)
    rng = np.random.default_rng(0)
    with pytest.raises(ApirError, match="unknown defect kind"):
        synthesize_defect(img, "dent", rng)
    with pytest.raises(ApirError, match="unknown defect kind"):
        random_defect(img, rng, kinds=["spot", "dent"])
    with pytest.raises(ApirError):
        random_defect(img, rng, kinds=[])
    for strength in (0.0, -1.0, float("nan"), 100.0):
        with pytest.raises(ApirError):
            synthesize_defect(img, "spot", rng, strength=strength)
    with pytest.raises(ApirError):
        synthesize_defect(img, "perlin", rng, texture=np.zeros((8, 8, 4), np.float32))
    with pytest.raises(ApirError):
        perlin_noise((0, 10), (2, 2), rng)
    with pytest.raises(ApirError):
        perlin_noise((10, 10), (0, 2), rng)


def test_perlin_noise_shape_range_determinism() -> None:
    n = perlin_noise((48, 80), (3, 5), np.random.default_rng(0))
    assert n.shape == (48, 80) and n.dtype == np.float32
    assert n.min() >= -1.0 and n.max() <= 1.0
    assert n.std() > 0.1 and n.min() < -0.3 and n.max() > 0.3  # uses the range, not a constant
    again = perlin_noise((48, 80), (3, 5), np.random.default_rng(0))
    assert n.tobytes() == again.tobytes()
    assert n.tobytes() != perlin_noise((48, 80), (3, 5), np.random.default_rng(1)).tobytes()
    rotated = perlin_noise((48, 80), (3, 5), np.random.default_rng(0), angle=0.7)
    assert rotated.shape == (48, 80) and np.abs(rotated).max() <= 1.0


@pytest.mark.parametrize("scale", [(1, 1), (4, 4), (2, 8), (8, 8)])
def test_perlin_noise_is_smooth(scale: tuple[int, int]) -> None:
    white = np.random.default_rng(0).uniform(-1, 1, (64, 64))
    for seed in range(5):
        n = perlin_noise((64, 64), scale, np.random.default_rng(seed), angle=0.4 * seed)
        cell = 64 / max(scale)  # pixels per lattice cell along the finer axis
        step = max(np.abs(np.diff(n, axis=0)).max(), np.abs(np.diff(n, axis=1)).max())
        assert step <= 3.5 / cell  # bounded slope: a continuous field, no jumps at cell borders
        assert np.abs(np.diff(n, axis=1)).mean() < 0.2 * np.abs(np.diff(white, axis=1)).mean()
