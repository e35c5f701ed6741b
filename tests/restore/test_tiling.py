"""Tiled inference: tiles agree with whole-image inference, tile layout, memory bound, numpy API."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from restore_models import identity_model
from torch import nn

import apir
from apir.errors import ApirError
from apir.models import create_model, list_models
from apir.restore.api import restore_array
from apir.restore.inference import restore_tensor
from apir.restore.tiling import EDGE_WEIGHT, _axis_windows, plan_tiles, tile_size


def small_kwargs(name: str) -> dict:
    """Constructor arguments that make a registered model tiny (unknown models: their defaults)."""
    if name.startswith("nafnet"):
        return {"width": 8}
    if name == "rcan":
        return {"n_feats": 16, "n_blocks": 2, "reduction": 4}
    return {}


def random_model(name: str, seed: int = 1) -> nn.Module:
    """A tiny model with random weights and *non-zero* NAFNet branch scales.

    NAFNet's beta/gamma start at zero, which makes every block (and its channel attention) the
    identity; drawing them at random makes the blocks and their global pooling, which a tile cannot
    reproduce, actually act.
    """
    torch.manual_seed(seed)
    model = create_model(name, **small_kwargs(name))
    with torch.no_grad():
        for key, p in model.named_parameters():
            if key.endswith(("beta", "gamma")):
                p.normal_(0, 0.1)
    return model.eval()


def structured(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A 1×3×H×W image whose halves differ in brightness, so tile and image statistics differ."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, h, w, generator=g)
    x[..., :, : w // 2] *= 0.3
    return x


def q8(t: torch.Tensor) -> torch.Tensor:
    return (t.clamp(0, 1) * 255).round()


@pytest.mark.parametrize("name", list_models())
def test_tiled_matches_whole_image_within_one_8bit_step(name):
    """97×131 in 48-px tiles: every pixel within 1/255 of whole-image inference after quantisation.

    Overlap 24, not 16: these random networks react to the zero padding at a tile edge much further
    in than trained ones (a 4-level NAFNet's 48-px tile has 3×3 features at the bottom, and the small
    RCAN's receptive field reaches 14 px). With overlap 16 the hand-over happens 8 px from each
    tile's edge and nafnet_deep/rcan miss by 2 steps; with 24 (12 px) every model is within 1.
    """
    model = random_model(name)
    x = structured(97, 131)
    m = model.size_multiple
    padded = (-(-97 // m) * m, -(-131 // m) * m)
    assert len(plan_tiles(*padded, 48, 24, m)[2]) >= 4  # really tiled
    whole = restore_tensor(model, x, tile=0)
    tiled = restore_tensor(model, x, tile=48, overlap=24)
    assert tiled.shape == whole.shape == x.shape and tiled.dtype == torch.float32
    assert (q8(tiled) - q8(whole)).abs().max().item() <= 1
    assert (tiled - whole).abs().max().item() < 5e-3


@pytest.mark.parametrize("name", ["nafnet", "rcan"])
def test_unblended_tiles_would_fail_the_same_check(name):
    """The check above can fail: tiles without overlap leave visible seams (> 2/255)."""
    model = random_model(name)
    x = structured(97, 131)
    whole = restore_tensor(model, x, tile=0)
    seams = restore_tensor(model, x, tile=48, overlap=0)
    assert (q8(seams) - q8(whole)).abs().max().item() > 2


def test_tile_zero_and_single_tile_equal_the_plain_forward_pass():
    model = random_model("nafnet")
    x = structured(37, 53)
    with torch.no_grad():
        expected = model(x)
    assert torch.equal(restore_tensor(model, x, tile=0), expected)
    # A tile at least as large as the (padded) image is one tile: the same computation.
    assert torch.equal(restore_tensor(model, x, tile=64, overlap=8), expected)


def test_identity_model_is_reproduced_exactly_through_tiles():
    x = structured(70, 45)
    out = restore_tensor(identity_model(), x, tile=32, overlap=16)
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("tile", "overlap", "multiple", "expected"),
    [
        (512, 32, 16, 512),
        (48, 16, 16, 48),
        (50, 16, 16, 48),
        (48, 16, 32, 64),
        (40, 8, 1, 40),
        (48, 24, 32, 64),
    ],
)
def test_tile_size_is_a_multiple_that_leaves_room_for_the_overlap(tile, overlap, multiple, expected):
    assert tile_size(tile, overlap, multiple) == expected


def _full_length_count(size: int, t: int, overlap: int, multiple: int) -> int:
    """Tiles along an axis when every tile has the full length t (the plan before even splitting)."""
    if size <= t:
        return 1
    stride = (t - overlap) // multiple * multiple
    return len(range(0, size - t, stride)) + 1


def test_tiles_are_split_evenly_instead_of_full_length():
    # 1024 px with 512-px tiles: 3 tiles per side either way; even splits compute 1.27x the pixels
    # instead of 2.25x.
    th, tw, starts = plan_tiles(1024, 1024, 512, 32, 32)
    assert (th, tw) == (384, 384) and len(starts) == 9
    assert sorted({y for y, _ in starts}) == [0, 352, 640]
    # An image that fits one tile stays one tile; one just above gets two equal halves.
    assert plan_tiles(512, 512, 512, 32, 32)[:2] == (512, 512)
    th, _, starts = plan_tiles(544, 32, 512, 32, 32)
    assert th == 288 and sorted({y for y, _ in starts}) == [0, 256]


@pytest.mark.parametrize(("h", "w"), [(112, 144), (16, 16), (48, 48), (64, 400), (97, 131)])
@pytest.mark.parametrize(
    ("tile", "overlap", "multiple"), [(48, 16, 16), (48, 24, 1), (32, 8, 2), (40, 12, 32)]
)
def test_tile_plan_covers_the_image_aligned_and_overlapping(h, w, tile, overlap, multiple):
    h, w = -(-h // multiple) * multiple, -(-w // multiple) * multiple  # as the tiler pads
    th, tw, starts = plan_tiles(h, w, tile, overlap, multiple)
    t = tile_size(tile, overlap, multiple)
    assert th <= min(t, h) and tw <= min(t, w)  # tile is a memory bound
    assert th % multiple == 0 and tw % multiple == 0
    assert (th == h or th > overlap) and (tw == w or tw > overlap)
    # Never more tiles than full-length tiles would need.
    assert len({s[0] for s in starts}) <= _full_length_count(h, t, overlap, multiple)
    assert len({s[1] for s in starts}) <= _full_length_count(w, t, overlap, multiple)
    covered = np.zeros((h, w), dtype=int)
    for y, x in starts:
        assert y % multiple == 0 and x % multiple == 0  # same downsampling grid as the whole image
        assert 0 <= y <= h - th and 0 <= x <= w - tw
        covered[y : y + th, x : x + tw] += 1
    assert covered.min() >= 1
    for axis, size, length in ((0, h, th), (1, w, tw)):
        ss = sorted({s[axis] for s in starts})
        assert ss[0] == 0 and ss[-1] == size - length  # last tile flush with the border
        assert all(b - a <= length - overlap for a, b in zip(ss, ss[1:], strict=False))


def test_blending_windows_are_positive_and_hand_over_mid_overlap():
    starts = [0, 32, 64, 80]
    windows = _axis_windows(starts, 48)
    assert torch.equal(windows[0][:24], torch.ones(24))  # image border: full weight
    for w in windows.values():
        assert w.min() >= EDGE_WEIGHT and w.max() <= 1
    # Overlap of tiles 0 and 32 is [32, 48): tile 0 dominates before the middle, tile 32 after.
    a, b = windows[0][32:48], windows[32][0:16]
    assert (a[:4] == 1).all() and (b[:4] == EDGE_WEIGHT).all()
    assert (a[-4:] == EDGE_WEIGHT).all() and (b[-4:] == 1).all()
    torch.testing.assert_close(a, b.flip(0))


class _Recorder(nn.Module):
    """Identity that records the shapes it is called with and the devices of its inputs."""

    size_multiple = 16

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return x * self.scale


def test_only_batch_tiles_reach_the_model_at_once_and_batching_changes_nothing():
    x = structured(97, 131)
    rec = _Recorder()
    ticks = []
    one = restore_tensor(rec, x, tile=48, overlap=16, batch=1, progress=ticks.append)
    n_tiles = len(rec.shapes)
    assert n_tiles > 4 and set(rec.shapes) == {(1, 3, 48, 48)} and sum(ticks) == n_tiles
    rec.shapes.clear()
    three = restore_tensor(rec, x, tile=48, overlap=16, batch=3)
    assert max(s[0] for s in rec.shapes) == 3 and sum(s[0] for s in rec.shapes) == n_tiles
    torch.testing.assert_close(three, one, atol=0, rtol=0)
    torch.testing.assert_close(one, x, atol=1e-6, rtol=0)
    model = random_model("rcan")
    torch.testing.assert_close(
        restore_tensor(model, x, tile=48, overlap=16, batch=4), restore_tensor(model, x, tile=48, overlap=16)
    )


def test_model_mode_is_restored_and_bad_arguments_are_one_line_errors():
    model = random_model("unet").train()
    restore_tensor(model, structured(20, 20), tile=16, overlap=4)
    assert model.training
    for kwargs in ({"tile": -1}, {"tile": 16, "overlap": 16}, {"batch": 0}, {"overlap": 1.5}, {"tile": True}):
        with pytest.raises(ApirError) as err:
            restore_tensor(model, structured(20, 20), **kwargs)
        assert "\n" not in str(err.value)
    with pytest.raises(ApirError):
        restore_tensor(model, torch.rand(3, 20, 20))


def test_amp_on_cpu_runs_in_bfloat16_and_stays_close():
    model = random_model("rcan")
    x = structured(40, 40)
    full = restore_tensor(model, x, tile=0)
    half = restore_tensor(model, x, tile=0, amp=torch.bfloat16)
    assert half.dtype == torch.float32
    assert 0 < (half - full).abs().max().item() < 0.05


# ------------------------------------------------------------------------------ restore_array


def _image(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)
    return rng.random(shape).astype(dtype)


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((33, 47, 3), np.uint8),
        ((33, 47), np.uint8),
        ((33, 47, 1), np.uint16),
        ((33, 47, 3), np.uint16),
        ((33, 47, 3), np.float32),
        ((33, 47), np.float64),
        ((33, 47, 4), np.uint8),
        ((33, 47, 4), np.float32),
    ],
)
def test_restore_array_keeps_shape_dtype_and_values_of_an_identity_model(shape, dtype):
    image = _image(shape, dtype)
    out = restore_array(image, identity_model(), tile=32, overlap=8)
    assert out.shape == image.shape and out.dtype == image.dtype
    if np.dtype(dtype).kind == "u":
        assert np.array_equal(out, image)  # rounding back to the input's integers is exact
    else:
        np.testing.assert_allclose(out, image, atol=1e-6)


def test_restore_array_changes_colour_but_passes_alpha_through():
    image = _image((40, 36, 4), np.uint16, seed=3)
    out = restore_array(image, random_model("nafnet"), tile=0)
    assert np.array_equal(out[..., 3], image[..., 3])
    assert not np.array_equal(out[..., :3], image[..., :3])


def test_restore_array_gray_returns_the_mean_of_the_restored_rgb():
    gray = _image((30, 30), np.float32)
    model = random_model("rcan")
    x = torch.from_numpy(gray)[None, None].expand(1, 3, -1, -1)
    restored = restore_tensor(model, x, tile=0)[0].numpy()  # unclipped; channels differ
    assert np.abs(restored[0] - restored[1]).max() > 1e-3
    expected = np.clip(restored.mean(axis=0, dtype=np.float64), 0, 1)  # as to_file_layout does
    np.testing.assert_allclose(restore_array(gray, model, tile=0), expected, atol=1e-6)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((8, 8, 2), np.uint8),
        np.zeros((8, 8), np.int32),
        np.zeros((1, 8, 8, 3), np.uint8),
        np.zeros((0, 8, 3), np.uint8),
        np.full((8, 8), np.nan, np.float32),
        [[0.0, 1.0]],
    ],
)
def test_restore_array_rejects_bad_arrays_with_one_line(bad):
    with pytest.raises(ApirError) as err:
        restore_array(bad, identity_model())
    assert "\n" not in str(err.value)


def test_restore_array_is_public_and_loads_checkpoints(tmp_path):
    from apir.models.checkpoint import save_checkpoint

    model = random_model("rcan")
    save_checkpoint(tmp_path / "m.safetensors", model)
    image = _image((24, 20, 3), np.uint8)
    via_path = apir.restore_array(image, str(tmp_path / "m.safetensors"), device="cpu", tile=0)
    assert np.array_equal(via_path, restore_array(image, model, tile=0))
