"""The paper's RCAN-like network (Section III-A), pinned layer by layer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from apir.errors import ApirError
from apir.models import create_model
from apir.models.common import AttentionPool
from apir.models.rcan import RCAB, RCAN, ChannelAttention


def _conv_params(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def test_head_blocks_tail_are_exactly_the_papers():
    model = create_model("rcan")
    assert isinstance(model, RCAN)
    assert [name for name, _ in model.named_children()] == ["head", "blocks", "tail"]
    head, tail = model.head, model.tail
    assert (head.in_channels, head.out_channels, head.kernel_size, head.padding) == (3, 64, (7, 7), (3, 3))
    assert (tail.in_channels, tail.out_channels, tail.kernel_size, tail.padding) == (64, 3, (7, 7), (3, 3))
    assert len(model.blocks) == 10 and all(isinstance(b, RCAB) for b in model.blocks)
    assert model.size_multiple == 1 and model.in_channels == 3


def test_each_block_is_exactly_the_papers():
    for block in create_model("rcan").blocks:
        assert [type(m) for m in block.body] == [nn.Conv2d, nn.ReLU, nn.Conv2d, ChannelAttention]
        for conv in (block.body[0], block.body[2]):
            assert (conv.in_channels, conv.out_channels) == (64, 64)
            assert (conv.kernel_size, conv.padding) == ((3, 3), (2, 2))
            assert (conv.dilation, conv.stride) == ((2, 2), (1, 1))
            assert conv.bias is not None
        ca = block.body[3].body
        assert [type(m) for m in ca] == [nn.AdaptiveAvgPool2d, nn.Conv2d, nn.ReLU, nn.Conv2d, nn.Sigmoid]
        assert ca[0].output_size == 1
        assert (ca[1].in_channels, ca[1].out_channels, ca[1].kernel_size) == (64, 4, (1, 1))  # 64 // 16
        assert (ca[3].in_channels, ca[3].out_channels, ca[3].kernel_size) == (4, 64, (1, 1))


def test_parameter_count():
    block = 2 * _conv_params(64, 64, 3) + _conv_params(64, 4, 1) + _conv_params(4, 64, 1)
    expected = _conv_params(3, 64, 7) + 10 * block + _conv_params(64, 3, 7)
    assert expected == 763_243  # the field notes' 0.76M
    assert sum(p.numel() for p in create_model("rcan").parameters()) == expected


def test_block_computes_x_plus_attention_times_conv2():
    torch.manual_seed(0)
    block = RCAB(8, reduction=4).eval()
    x = torch.randn(2, 8, 9, 11)
    c1, _, c2, ca = block.body
    y = c2(F.relu(c1(x)))
    w = torch.sigmoid(ca.body[3](F.relu(ca.body[1](y.mean(dim=(2, 3), keepdim=True)))))
    with torch.no_grad():
        torch.testing.assert_close(block(x), x + y * w)


def test_global_residual_with_zero_tail_is_identity():
    model = create_model("rcan", n_feats=16, n_blocks=2, reduction=4)
    nn.init.zeros_(model.tail.weight)
    nn.init.zeros_(model.tail.bias)
    x = torch.rand(2, 3, 13, 10)
    assert torch.equal(model(x), x)


def test_configurable_and_validated():
    model = create_model("rcan", in_channels=1, n_feats=32, n_blocks=3, reduction=8)
    assert len(model.blocks) == 3 and model.blocks[0].body[3].body[1].out_channels == 4
    assert model(torch.rand(1, 1, 7, 5)).shape == (1, 1, 7, 5)
    with pytest.raises(ApirError, match="reduction"):
        create_model("rcan", n_feats=8, reduction=16)
    with pytest.raises(ApirError, match="n_blocks"):
        create_model("rcan", n_blocks=-1)


def test_local_pool_matches_global_on_a_train_size_image_and_keeps_weights():
    torch.manual_seed(0)
    model = create_model("rcan", n_feats=16, n_blocks=2, reduction=4).eval()
    keys = {k: v.shape for k, v in model.state_dict().items()}
    small, large = torch.rand(1, 3, 24, 24), torch.rand(1, 3, 80, 72)
    large[..., :, :36] *= 0.1  # local statistics must differ from the global ones somewhere
    with torch.no_grad():
        global_small, global_large = model(small), model(large)
        model.set_local_pool(24)
        assert isinstance(model.blocks[0].body[3].body[0], AttentionPool)
        assert model.blocks[0].body[3].body[0].kernel == 36  # TLC: 1.5 × the training patch
        torch.testing.assert_close(model(small), global_small, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(model(large), global_large, atol=1e-4)
        model.set_local_pool(None)
        assert isinstance(model.blocks[0].body[3].body[0], nn.AdaptiveAvgPool2d)
        torch.testing.assert_close(model(large), global_large)
    assert {k: v.shape for k, v in model.state_dict().items()} == keys
