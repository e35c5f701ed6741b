"""Noise-level-aware NAFNet: the σ map as an extra input channel, and warm starts that widen the input."""

from __future__ import annotations

import pytest
import torch

from apir.errors import ApirError
from apir.models import create_model
from apir.models.checkpoint import init_from_checkpoint


def _randomise(model):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return model


@pytest.mark.parametrize("unshuffle", [1, 2])
def test_level_channel_in_image_channels_out(unshuffle):
    torch.manual_seed(0)
    model = _randomise(create_model("nafnet", width=8, unshuffle=unshuffle, level_input=True)).eval()
    x = torch.rand(1, 3, 37, 45)
    low = model(torch.cat([x, torch.full((1, 1, 37, 45), 0.02)], 1))
    high = model(torch.cat([x, torch.full((1, 1, 37, 45), 0.2)], 1))
    assert low.shape == (1, 3, 37, 45)
    assert not torch.allclose(low, high)  # the map is used


def test_warm_start_widens_the_input_and_keeps_the_old_output():
    torch.manual_seed(0)
    old = _randomise(create_model("nafnet", width=8, unshuffle=2)).eval()
    new = create_model("nafnet", width=8, unshuffle=2, level_input=True).eval()
    widened = init_from_checkpoint(new, old.state_dict(), "old")
    assert widened == ["intro.weight"]
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = old(x)
        for sigma in (0.0, 0.1):
            got = new(torch.cat([x, torch.full((1, 1, 32, 32), sigma)], 1))
            torch.testing.assert_close(got, expected)


def test_warm_start_refuses_other_shape_changes():
    old = create_model("nafnet", width=8)
    new = create_model("nafnet", width=16, level_input=True)
    with pytest.raises(ApirError, match="does not fit"):
        init_from_checkpoint(new, old.state_dict(), "old")


def test_level_input_must_be_a_bool():
    with pytest.raises(ApirError, match="level_input"):
        create_model("nafnet", width=8, level_input="yes")
