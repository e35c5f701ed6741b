"""Tests for apir.data.degradations: determinism, paired noise, kernels, presets and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from apir.data.degradations import (
    DegradationParams,
    DegradationPipeline,
    apply_params,
    disk_kernel,
    fixed_params,
    gaussian_kernel,
    get_degradation,
    load_presets,
    motion_kernel,
    preset_names,
)
from apir.errors import ApirError

SHIPPED = [
    "none", "noise15", "noise25", "noise50", "blur1_noise15", "motion9_noise10", "motion7_noise10",
    "poisson", "blind", "paper", "blind_level",
]  # fmt: skip


def rand_image(h: int = 48, w: int = 40, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, c), dtype=np.float32)


def grey(h: int = 48, w: int = 40, c: int = 3, level: float = 0.5) -> np.ndarray:
    return np.full((h, w, c), level, np.float32)


def with_defect(image: np.ndarray) -> np.ndarray:
    """The same image with a small synthetic scratch, kept within [0.3, 0.7] so noise never clips."""
    out = image.copy()
    out[20:23, 10:30] = 0.35
    return out


def pipeline(*ops: dict) -> DegradationPipeline:
    return DegradationPipeline(list(ops))


# ---------------------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", SHIPPED)
def test_same_seed_gives_same_bytes(name: str) -> None:
    pipe, image = get_degradation(name), rand_image()
    a, pa = pipe(image, np.random.default_rng(7))
    b, pb = pipe(image, np.random.default_rng(7))
    assert pa == pb
    assert a.tobytes() == b.tobytes()


def test_different_seeds_differ() -> None:
    pipe, image = get_degradation("paper"), rand_image()
    a, pa = pipe(image, np.random.default_rng(1))
    b, pb = pipe(image, np.random.default_rng(2))
    assert pa != pb
    assert np.abs(a - b).mean() > 0.01


def test_fixed_params_depend_only_on_seed_and_key() -> None:
    pipe = get_degradation("blind")
    assert fixed_params(pipe, "bottle/test/crack/003") == fixed_params(pipe, "bottle/test/crack/003")
    assert fixed_params(pipe, 3) == fixed_params(pipe, "3")  # keys go through str()
    assert fixed_params(pipe, "a") != fixed_params(pipe, "b")
    assert fixed_params(pipe, "a", seed=0) != fixed_params(pipe, "a", seed=1)


def test_fixed_params_are_stable_across_runs() -> None:
    # A golden value: if this changes, every recorded evaluation set is degraded differently.
    params = fixed_params(get_degradation("noise15"), "bottle/test/crack/003")
    assert params.to_dict()["ops"] == [{"op": "gaussian_noise", "sigma": 15.0, "seed": 5343997263154034}]


# ---------------------------------------------------------------------------------------------- pairs


def test_pair_gets_identical_gaussian_noise() -> None:
    clean = grey()
    defect = with_defect(clean)
    pipe = get_degradation("noise25")
    params = fixed_params(pipe, "pair")
    noise_clean = pipe.apply(clean, params) - clean
    noise_defect = pipe.apply(defect, params) - defect
    np.testing.assert_allclose(noise_clean, noise_defect, atol=1e-6)
    assert noise_clean.std() > 0.05  # there is noise to compare


@pytest.mark.parametrize("name", ["poisson", "blur1_noise15", "motion9_noise10"])
def test_pair_differs_only_near_the_defect(name: str) -> None:
    clean = rand_image() * 0.4 + 0.3
    defect = with_defect(clean)
    params = fixed_params(get_degradation(name), "pair")
    a, b = apply_params(clean, params), apply_params(defect, params)
    far = np.ones(a.shape[:2], bool)
    far[20 - 6 : 23 + 6, 10 - 6 : 30 + 6] = False  # the defect plus the largest blur radius
    assert np.array_equal(a[far], b[far])
    assert not np.array_equal(a[~far], b[~far])


def test_poisson_noise_is_signal_dependent_with_shared_realisation() -> None:
    pipe = get_degradation("poisson")
    params = fixed_params(pipe, "x")
    dark, bright = grey(level=0.2), grey(level=0.6)
    out_dark, out_bright = apply_params(dark, params), apply_params(bright, params)
    peak, read = 60.0, 4.0 / 255
    ratio = np.sqrt((0.6 / peak + read**2) / (0.2 / peak + read**2))
    unclipped = (out_dark > 0) & (out_bright < 1)
    assert unclipped.mean() > 0.99
    # The same z, scaled by the signal-dependent std.
    np.testing.assert_allclose(
        (out_bright - bright)[unclipped], (out_dark - dark)[unclipped] * ratio, atol=1e-5
    )


# ---------------------------------------------------------------------------------------------- noise level


@pytest.mark.parametrize("sigma", [5, 15, 25])
def test_gaussian_noise_std_matches_sigma(sigma: float) -> None:
    image = grey(256, 256, 3)
    out, params = pipeline({"op": "gaussian_noise", "sigma": sigma})(image, 0)
    assert abs((out - image).std() / (sigma / 255) - 1) < 0.05
    assert abs((out - image).mean()) < 0.002
    assert params.noise_sigma == pytest.approx(sigma)


def test_poisson_noise_std_matches_noise_sigma_at_mid_grey() -> None:
    image = grey(256, 256, 3)
    out, params = get_degradation("poisson")(image, 0)
    expected = np.sqrt(0.5 / 60 + (4 / 255) ** 2)
    assert params.noise_sigma == pytest.approx(255 * expected)
    assert abs((out - image).std() / expected - 1) < 0.05


def test_noise_sigma_adds_in_quadrature_and_ignores_blur() -> None:
    pipe = pipeline(
        {"op": "gaussian_blur", "sigma": 2},
        {"op": "gaussian_noise", "sigma": 3},
        {"op": "gaussian_noise", "sigma": 4},
    )
    assert pipe.sample(np.random.default_rng(0)).noise_sigma == pytest.approx(5.0)
    assert get_degradation("none").sample(np.random.default_rng(0)).noise_sigma == 0.0


# ---------------------------------------------------------------------------------------------- kernels


@pytest.mark.parametrize(
    "kernel",
    [gaussian_kernel(0.3), gaussian_kernel(3.0), disk_kernel(0.7), disk_kernel(4.0), motion_kernel(15, 33.0)],
)
def test_kernels_are_normalised_float32_and_centred(kernel: np.ndarray) -> None:
    assert kernel.dtype == np.float32 and kernel.ndim == 2
    assert kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1
    assert kernel.sum() == pytest.approx(1.0, abs=1e-6)
    assert (kernel >= 0).all()
    np.testing.assert_allclose(kernel, kernel[::-1, ::-1], atol=1e-6)  # point-symmetric: no shift


def test_zero_size_kernels_are_identity() -> None:
    for kernel in (gaussian_kernel(0), disk_kernel(0), motion_kernel(1, 45)):
        assert kernel.shape == (1, 1) and kernel[0, 0] == 1


def test_gaussian_kernel_support_and_shape() -> None:
    k = gaussian_kernel(1.0)
    assert k.shape == (7, 7)  # 2 * ceil(3 sigma) + 1
    assert k.argmax() == k.size // 2
    np.testing.assert_allclose(k, k.T, atol=1e-7)


def test_disk_kernel_support_and_anti_aliasing() -> None:
    k = disk_kernel(2.0)
    assert k.shape == (5, 5)
    assert k[0, 0] == 0 and k[2, 2] == k.max()
    assert 0 < k[2, 0] < k[2, 2]  # edge pixel half covered: anti-aliased, not binary
    # The blur grows smoothly with a fractional radius.
    spread = [(disk_kernel(r) * _radius_sq(disk_kernel(r))).sum() for r in (1.0, 1.25, 1.5, 1.75, 2.0)]
    assert np.all(np.diff(spread) > 0)


def _radius_sq(k: np.ndarray) -> np.ndarray:
    c = k.shape[0] // 2
    y, x = np.mgrid[-c : c + 1, -c : c + 1]
    return x**2 + y**2


def test_motion_kernel_horizontal_and_vertical() -> None:
    h = motion_kernel(7, 0)
    assert h.shape == (7, 7)
    assert np.count_nonzero(h[3]) == 7 and np.count_nonzero(np.delete(h, 3, axis=0)) == 0
    np.testing.assert_allclose(h[3], 1 / 7, atol=1e-6)
    v = motion_kernel(7, 90)
    assert np.count_nonzero(v[:, 3]) == 7 and np.count_nonzero(np.delete(v, 3, axis=1)) == 0


@pytest.mark.parametrize("angle", [30.0, 45.0, 120.0, 160.0])
def test_motion_kernel_direction(angle: float) -> None:
    k = motion_kernel(15, angle).astype(np.float64)
    c = k.shape[0] // 2
    y, x = np.mgrid[-c : c + 1, -c : c + 1]
    y = -y  # rows grow downwards; angles are counter-clockwise as displayed
    cov = np.array([[(k * x * x).sum(), (k * x * y).sum()], [(k * x * y).sum(), (k * y * y).sum()]])
    vals, vecs = np.linalg.eigh(cov)
    axis = np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1])) % 180
    assert min(abs(axis - angle), 180 - abs(axis - angle)) < 3
    assert vals[1] > 20 * vals[0]  # a line, not a blob
    assert np.count_nonzero(k) > 15  # anti-aliased: weight spread over neighbouring pixels


def test_motion_kernel_rejects_even_length() -> None:
    with pytest.raises(ApirError, match="odd"):
        motion_kernel(8, 0)


# ---------------------------------------------------------------------------------------------- blur


BLURS = [
    {"op": "gaussian_blur", "sigma": 1.5},
    {"op": "defocus_blur", "radius": 2.5},
    {"op": "motion_blur", "length": 9, "angle": 30},
]


@pytest.mark.parametrize("op", BLURS)
def test_blur_reduces_high_frequencies(op: dict) -> None:
    image = rand_image()
    out = apply_params(image, pipeline(op).sample(np.random.default_rng(0)))

    def laplacian_energy(a: np.ndarray) -> float:
        return float((np.diff(a, 2, axis=0) ** 2).mean() + (np.diff(a, 2, axis=1) ** 2).mean())

    assert laplacian_energy(out) < 0.2 * laplacian_energy(image)
    assert out.mean() == pytest.approx(image.mean(), abs=0.01)


@pytest.mark.parametrize("op", BLURS)
def test_blur_keeps_flat_images_flat_up_to_the_border(op: dict) -> None:
    image = grey(level=0.8)
    out = apply_params(image, pipeline(op).sample(np.random.default_rng(0)))
    np.testing.assert_allclose(out, image, atol=1e-5)  # reflect border: no dark frame


def test_motion_blur_acts_along_its_direction_only() -> None:
    stripes = np.repeat(rand_image(48, 1, 3), 40, axis=1)  # rows are constant
    horizontal = pipeline({"op": "motion_blur", "length": 9, "angle": 0})(stripes, 0)[0]
    vertical = pipeline({"op": "motion_blur", "length": 9, "angle": 90})(stripes, 0)[0]
    np.testing.assert_allclose(horizontal, stripes, atol=1e-6)
    assert np.abs(vertical - stripes).mean() > 0.05


def test_zero_strength_ops_leave_the_image_unchanged() -> None:
    image = rand_image()
    assert get_degradation("none")(image, 0)[0].tobytes() == image.tobytes()
    pipe = pipeline(
        {"op": "gaussian_blur", "sigma": 0},
        {"op": "defocus_blur", "radius": 0},
        {"op": "motion_blur", "length": 1},
        {"op": "gaussian_noise", "sigma": 0},
        {"op": "identity"},
    )
    assert pipe(image, 0)[0].tobytes() == image.tobytes()


# ---------------------------------------------------------------------------------------------- jpeg


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_jpeg_changes_image_but_keeps_shape(channels: int) -> None:
    image = rand_image(c=channels)
    low = pipeline({"op": "jpeg", "quality": 30})(image, 0)[0]
    high = pipeline({"op": "jpeg", "quality": 98})(image, 0)[0]
    assert low.shape == image.shape and low.dtype == np.float32
    assert np.abs(low - image).mean() > 0.01
    assert np.abs(high - image).mean() < np.abs(low - image).mean()


def test_jpeg_keeps_colours_in_rgb_order() -> None:
    red = np.zeros((32, 32, 3), np.float32)
    red[..., 0] = 1.0
    out = pipeline({"op": "jpeg", "quality": 90})(red, 0)[0]
    assert out[..., 0].mean() > 0.9 and out[..., 2].mean() < 0.1


# ---------------------------------------------------------------------------------------------- presets


def test_shipped_presets_are_exactly_the_documented_ones() -> None:
    assert preset_names() == SHIPPED
    assert all(p.description for p in load_presets().values())


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("channels", [1, 3])
def test_every_preset_runs_and_preserves_shape_dtype_range(name: str, channels: int) -> None:
    pipe, image = get_degradation(name), rand_image(c=channels)
    for seed in range(4):
        out, params = pipe(image, seed)
        assert out.shape == image.shape and out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 1
        assert params.preset == name
    assert pipe(image.astype(np.float64), 0)[0].dtype == np.float64


def test_blind_preset_samples_every_branch() -> None:
    pipe, rng = get_degradation("blind"), np.random.default_rng(0)
    samples = [pipe.sample(rng) for _ in range(400)]
    kinds = [{op.op for op in s.ops} for s in samples]
    seen = set().union(*kinds)
    blurs, noises = {"gaussian_blur", "defocus_blur", "motion_blur"}, {"gaussian_noise", "poisson_gaussian"}
    assert seen == blurs | noises | {"jpeg"}
    assert 0.12 < np.mean(["jpeg" in k for k in kinds]) < 0.28  # p = 0.2
    assert sum(not k & blurs for k in kinds) > 50  # the "identity" branch
    assert all(len(k & noises) == 1 for k in kinds)
    lengths = {op.values["length"] for s in samples for op in s.ops if op.op == "motion_blur"}
    assert lengths == {3, 5, 7, 9, 11}


def test_probability_and_weights() -> None:
    never = pipeline({"op": "gaussian_noise", "sigma": 10, "p": 0})
    assert never.sample(np.random.default_rng(0)).ops == ()
    second = pipeline({"choice": [{"op": "jpeg", "quality": 50}, {"op": "identity"}], "weights": [0, 1]})
    assert all(second.sample(np.random.default_rng(s)).ops == () for s in range(20))


# ---------------------------------------------------------------------------------------------- params


def test_params_round_trip_through_json() -> None:
    pipe, image = get_degradation("blind"), rand_image()
    for seed in range(10):
        params = pipe.sample(np.random.default_rng(seed))
        back = DegradationParams.from_dict(json.loads(json.dumps(params.to_dict())))
        assert back == params
        assert apply_params(image, back).tobytes() == apply_params(image, params).tobytes()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"ops": [{"op": "blurr", "sigma": 1}]}, "unknown op 'blurr'"),
        ({"ops": [{"op": "gaussian_noise", "sigma": 10}]}, "expected"),  # no seed
        ({"ops": [{"op": "gaussian_noise", "sigma": 99, "seed": 1}]}, "within"),
        ({"ops": [{"op": "gaussian_noise", "sigma": 9, "seed": -1}]}, "seed"),
    ],
)
def test_bad_params_raise(data: dict, message: str) -> None:
    with pytest.raises(ApirError, match=message):
        DegradationParams.from_dict(data)


def test_apply_rejects_non_float_or_non_hwc_images() -> None:
    params = get_degradation("noise15").sample(np.random.default_rng(0))
    with pytest.raises(ApirError, match="H×W×C"):
        apply_params(np.zeros((8, 8, 3), np.uint8), params)
    with pytest.raises(ApirError, match="H×W×C"):
        apply_params(np.zeros((8, 8), np.float32), params)


# ---------------------------------------------------------------------------------------------- errors


def test_unknown_preset_lists_available_names() -> None:
    with pytest.raises(ApirError, match="did you mean 'noise15'.*available: none, noise15") as info:
        get_degradation("noise16")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        ([{"op": "gaussian_blur", "sigmaa": 1}], r"ops\.0: unknown key 'sigmaa' \(allowed: op, p, sigma\)"),
        ([{"op": "gaussian_blur", "sigma": 3.5}], r"ops\.0\.sigma: .*within \[0, 3\], got 3.5"),
        ([{"op": "gaussian_noise", "sigma": [30, 10]}], r"sigma: .*got \[30, 10\]"),
        ([{"op": "motion_blur", "length": 8}], "odd"),
        ([{"op": "motion_blur", "length": 17}], r"within \[1, 15\]"),
        ([{"op": "jpeg", "quality": 50, "p": 1.5}], r"ops\.0\.p: .*got 1.5"),
        ([{"op": "gausian_blur", "sigma": 1}], "unknown op 'gausian_blur'; did you mean 'gaussian_blur'"),
        ([{"choice": [{"op": "defocus_blur", "radius": 9}]}], r"ops\.0\.choice\.0\.radius: .*\[0, 4\]"),
        ([{"choice": [{"op": "identity"}], "weights": [1, 1]}], "2 weights for 1 choices"),
        ([{"op": "gaussian_noise"}], "missing required key 'sigma'"),
        ([{"sigma": 1}], "needs 'op: <name>'"),
    ],
)
def test_invalid_configs_raise_one_line_errors(ops: list, message: str) -> None:
    with pytest.raises(ApirError, match=message) as info:
        DegradationPipeline(ops)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------- user files


def test_user_yaml_with_a_single_pipeline(tmp_path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("description: mine\nops:\n  - {op: gaussian_noise, sigma: [5, 10]}\n")
    pipe = get_degradation(str(path))
    assert pipe.name == "mine" and pipe.description == "mine"
    assert 5 <= pipe.sample(np.random.default_rng(0)).noise_sigma <= 10


def test_user_yaml_with_several_presets_needs_a_name(tmp_path) -> None:
    path = tmp_path / "set.yaml"
    path.write_text("a: {ops: [{op: gaussian_noise, sigma: 5}]}\nb: {ops: [{op: gaussian_blur, sigma: 1}]}\n")
    with pytest.raises(ApirError, match=r"several presets \(a, b\).*#<name>"):
        get_degradation(str(path))
    assert get_degradation(f"{path}#b").sample(np.random.default_rng(0)).ops[0].op == "gaussian_blur"
    assert set(load_presets(path)) == {"a", "b"}
    with pytest.raises(ApirError, match="no preset 'c'"):
        get_degradation(f"{path}#c")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: {ops: [}\n", "invalid YAML .* line 1"),
        ("- 1\n- 2\n", "expected a pipeline"),
        ("a: {opps: []}\n", "unknown key 'opps' \\(allowed: description, ops\\)"),
        ("ops: [{op: jpeg, quality: 0}]\n", r"'bad': ops\.0\.quality"),
    ],
)
def test_bad_user_yaml_raises(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ApirError, match=message):
        load_presets(path)


def test_missing_user_file_raises() -> None:
    with pytest.raises(ApirError, match="not found"):
        get_degradation("no/such/file.yaml")


@pytest.mark.parametrize("radius", [1e-4, 1e-2, 0.02, 0.05])
def test_tiny_defocus_radius_is_finite(radius):
    """Sampled radii near 0 once gave an all-zero kernel and NaN images (found training on a GPU)."""
    k = disk_kernel(radius)
    assert np.isfinite(k).all() and abs(float(k.sum()) - 1.0) < 1e-6
    image = np.full((16, 16, 3), 0.5, np.float32)
    out = DegradationPipeline([{"op": "defocus_blur", "radius": radius}]).apply(
        image,
        DegradationPipeline([{"op": "defocus_blur", "radius": radius}]).sample(np.random.default_rng(0)),
    )
    assert np.isfinite(out).all()
