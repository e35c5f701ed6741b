"""The paper's UNet (Section II), pinned layer by layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from apir.models import create_model
from apir.models.unet import UNet


def _conv_params(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def test_layers_are_exactly_the_papers():
    model = create_model("unet")
    assert isinstance(model, UNet)
    types = [type(m) for m in model.body]
    assert types == [
        nn.Conv2d,
        nn.ReLU,
        nn.Conv2d,
        nn.ReLU,
        nn.MaxPool2d,
        nn.ConvTranspose2d,
        nn.ReLU,
        nn.Conv2d,
    ]
    c1, _, c2, _, pool, up, _, c3 = model.body
    assert (c1.in_channels, c1.out_channels, c1.kernel_size, c1.padding) == (3, 128, (3, 3), (1, 1))
    assert (c2.in_channels, c2.out_channels, c2.kernel_size, c2.padding) == (128, 256, (3, 3), (1, 1))
    assert pool.kernel_size == 2 and pool.stride == 2
    assert (up.in_channels, up.out_channels, up.kernel_size, up.stride) == (256, 128, (2, 2), (2, 2))
    assert (c3.in_channels, c3.out_channels, c3.kernel_size, c3.padding) == (128, 3, (1, 1), (0, 0))
    assert all(conv.bias is not None for conv in (c1, c2, up, c3))
    # Nothing else holds parameters: no hidden residual, norm or output activation.
    assert [name for name, _ in model.named_children()] == ["body"]
    assert model.size_multiple == 2 and model.in_channels == 3


def test_parameter_count():
    transposed = 256 * 128 * 2 * 2 + 128  # ConvTranspose2d(256, 128, 2): weight in×out×k×k, bias out
    expected = _conv_params(3, 128, 3) + _conv_params(128, 256, 3) + transposed + _conv_params(128, 3, 1)
    assert expected == 430_339
    assert sum(p.numel() for p in create_model("unet").parameters()) == expected


def test_forward_is_the_plain_stack_and_odd_sizes_are_padded_then_cropped():
    torch.manual_seed(0)
    model = create_model("unet").eval()
    even = torch.rand(1, 3, 16, 20)
    with torch.no_grad():
        assert torch.equal(model(even), model.body(even))  # no residual, no sigmoid
        odd = torch.rand(1, 3, 17, 23)
        padded = F.pad(odd, (0, 1, 0, 1), mode="replicate")
        torch.testing.assert_close(model(odd), model.body(padded)[..., :17, :23])


def test_gray_channels():
    model = create_model("unet", in_channels=1)
    assert model.body[0].in_channels == 1 and model.body[-1].out_channels == 1
    assert model(torch.rand(2, 1, 9, 12)).shape == (2, 1, 9, 12)
