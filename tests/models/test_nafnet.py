"""NAFNet-style default model: structure, parameter count, identity at init, local (TLC) pooling."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from apir.errors import ApirError
from apir.models import create_model
from apir.models.common import local_avg_pool, pad_to_multiple
from apir.models.nafnet import LayerNorm2d, NAFBlock, NAFNet


def _block_params(c: int) -> int:
    """NAFBlock(c) by hand: two LayerNorms, 1×1 c→2c, depthwise 3×3 on 2c, SCA 1×1 c→c, 1×1 c→c,
    FFN 1×1 c→2c and 1×1 c→c (all with bias), beta and gamma."""
    norms = 2 * 2 * c
    branch1 = (c * 2 * c + 2 * c) + (2 * c * 9 + 2 * c) + (c * c + c) + (c * c + c)
    branch2 = (c * 2 * c + 2 * c) + (c * c + c)
    return norms + branch1 + branch2 + 2 * c


def _nafnet_params(width: int, enc: list[int], middle: int, dec: list[int], cin: int = 3) -> int:
    total = (cin * width * 9 + width) + (width * cin * 9 + cin)  # intro, ending
    chan = width
    for n in enc:
        total += n * _block_params(chan) + (chan * 2 * chan * 4 + 2 * chan)  # blocks + 2×2 down conv
        chan *= 2
    total += middle * _block_params(chan)
    for n in dec:
        total += chan * 2 * chan  # 1×1 up conv, no bias, before PixelShuffle
        chan //= 2
        total += n * _block_params(chan)
    return total


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("nafnet", (16, [1, 1, 1, 1], 1, [1, 1, 1, 1]), 1_137_203),  # field notes: 1.14M
        ("nafnet_deep", (16, [1, 1, 2, 4], 2, [1, 1, 1, 1]), 1_991_923),  # field notes: 1.99M
        ("nafnet_w32", (32, [1, 1, 1, 1], 1, [1, 1, 1, 1]), 4_497_507),  # field notes: 4.50M
    ],
)
def test_parameter_counts(name, args, expected):
    assert _nafnet_params(*args) == expected
    assert sum(p.numel() for p in create_model(name).parameters()) == expected


def test_structure():
    model = create_model("nafnet")
    assert isinstance(model, NAFNet) and model.size_multiple == 16 and model.in_channels == 3
    assert [len(s) for s in model.encoders] == [1, 1, 1, 1] and len(model.middle) == 1
    widths = [16, 32, 64, 128]
    for chan, down in zip(widths, model.downs, strict=True):
        assert (down.in_channels, down.out_channels) == (chan, 2 * chan)
        assert (down.kernel_size, down.stride) == ((2, 2), (2, 2))
    for chan, up in zip([256, 128, 64, 32], model.ups, strict=True):
        assert [type(m) for m in up] == [nn.Conv2d, nn.PixelShuffle] and up[1].upscale_factor == 2
        assert (up[0].in_channels, up[0].out_channels) == (chan, 2 * chan)
        assert up[0].kernel_size == (1, 1) and up[0].bias is None
    block = model.encoders[0][0]
    assert block.conv2.groups == 32 and block.conv2.kernel_size == (3, 3)  # depthwise on 2c
    assert (block.sca.conv.in_channels, block.conv3.in_channels) == (16, 16)  # after SimpleGate: c
    assert not any(isinstance(m, nn.ReLU | nn.Sigmoid) for m in model.modules())  # activation free
    assert create_model("nafnet", enc_blocks=[1, 1], dec_blocks=[1, 1]).size_multiple == 4


def test_layernorm2d_is_layernorm_over_channels():
    torch.manual_seed(0)
    norm = LayerNorm2d(5)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 5, 4, 3)
    ref = F.layer_norm(x.permute(0, 2, 3, 1), (5,), norm.weight, norm.bias, eps=1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(norm(x), ref)


def test_block_is_identity_at_init():
    x = torch.randn(2, 8, 6, 5)
    assert torch.equal(NAFBlock(8)(x), x)


def test_at_init_output_is_input_plus_the_blockless_path():
    """beta = gamma = 0: every block is the identity, so the net is intro → downs → ups + skips → ending."""
    torch.manual_seed(0)
    model = create_model("nafnet").eval()
    x = torch.rand(1, 3, 33, 20)
    inp = pad_to_multiple(x, 16)
    feat = model.intro(inp)
    skips = []
    for down in model.downs:
        skips.append(feat)
        feat = down(feat)
    for up, skip in zip(model.ups, skips[::-1], strict=True):
        feat = up(feat) + skip
    expected = (inp + model.ending(feat))[..., :33, :20]
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(out, expected)
    assert torch.isfinite(out).all() and (out - x).abs().mean() < 0.5


def _brute_local_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """Reference: window [s, s+k) with s = clamp(i - (k-1)//2, 0, n-k), per axis, by explicit loops."""
    _, _, h, w = x.shape
    out = torch.empty_like(x)
    kh, kw = min(k, h), min(k, w)
    for i, j in itertools.product(range(h), range(w)):
        si = min(max(i - (k - 1) // 2, 0), h - kh)
        sj = min(max(j - (k - 1) // 2, 0), w - kw)
        out[..., i, j] = x[..., si : si + kh, sj : sj + kw].mean(dim=(-2, -1))
    return out


@pytest.mark.parametrize("k", [1, 2, 3, 4, 7, 9, 20])
def test_local_avg_pool_matches_brute_force(k):
    torch.manual_seed(k)
    x = torch.randn(2, 3, 9, 7, dtype=torch.float64)
    torch.testing.assert_close(local_avg_pool(x, k), _brute_local_mean(x, k))


def _structured(h: int, w: int) -> torch.Tensor:
    x = torch.rand(1, 3, h, w)
    x[..., :, : w // 2] *= 0.2  # so local means differ from the global one
    return x


def _perturb(model: nn.Module) -> nn.Module:
    """Non-zero beta/gamma so the blocks (and their attention) actually act."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("beta", "gamma")):
                p.normal_(0, 0.5)
    return model


def test_local_pool_equals_global_on_train_size_and_differs_on_larger():
    torch.manual_seed(0)
    model = _perturb(create_model("nafnet", width=8)).eval()
    small, large = _structured(32, 32), _structured(96, 80)
    with torch.no_grad():
        global_small, global_large = model(small), model(large)
        model.set_local_pool(32)
        kernels = [b.sca.pool.kernel for stage in (*model.encoders, model.middle) for b in stage]
        assert kernels == [48, 24, 12, 6, 3]  # 1.5 × 32, scaled per level
        assert model.config["attention_pool"] == 32
        torch.testing.assert_close(model(small), global_small, atol=1e-5, rtol=1e-5)
        assert (model(large) - global_large).abs().max() > 1e-3
        model.set_local_pool(None)
        assert model.config["attention_pool"] == "global"
        torch.testing.assert_close(model(large), global_large)


def test_local_pool_from_constructor_and_validation():
    model = create_model("nafnet", width=8, attention_pool=64, pool_factor=1.0)
    assert model.decoders[-1][0].sca.pool.kernel == 64 and model.middle[0].sca.pool.kernel == 4
    for bad in (
        {"attention_pool": "local"},
        {"attention_pool": 0},
        {"pool_factor": 0},
        {"width": 0},
        {"enc_blocks": [1, 1]},
        {"enc_blocks": "1111"},
        {"middle_blocks": 1.5},
    ):
        with pytest.raises(ApirError):
            create_model("nafnet", **bad)


def test_local_pool_tiles_agree_with_whole_image_inside():
    """With local pooling, a tile's interior matches whole-image inference (global pooling cannot)."""
    torch.manual_seed(0)
    model = _perturb(create_model("nafnet", width=8, enc_blocks=[1, 1], dec_blocks=[1, 1])).eval()
    x = _structured(64, 128)
    with torch.no_grad():
        model.set_local_pool(8, factor=1.0)  # small windows: 8 px at full resolution
        whole, tile = model(x), model(x[..., :, :64])
    # Receptive field of convs plus the pooling windows stays well inside 24 px from the tile border.
    torch.testing.assert_close(tile[..., 16:48, 8:40], whole[..., 16:48, 8:40], atol=1e-5, rtol=1e-4)
