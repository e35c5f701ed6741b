"""Small models with known behaviour, shared by the restore tests."""

from __future__ import annotations

import torch
from torch import nn

from apir.models import create_model


def identity_model() -> nn.Module:
    """A tiny NAFNet whose output is exactly its input.

    A *fresh* NAFNet is not identity-like: its blocks are (zero-initialised branch scales), but the
    intro, down, up and ending convolutions are random and its outputs are off by up to ~0.5.
    Zeroing the ending convolution leaves only the global residual: output = input.
    """
    torch.manual_seed(0)
    model = create_model("nafnet", width=8)
    with torch.no_grad():
        model.ending.weight.zero_()
        model.ending.bias.zero_()
    return model.eval()
