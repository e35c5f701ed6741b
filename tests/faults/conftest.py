"""Shared fixtures of the fault tests (helpers live in ``faultkit``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from faultkit import identity_model, save_model


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors gain nothing from threads; on a busy 2-core machine OpenMP waits make them slow."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def checkpoint(tmp_path) -> Path:
    """A valid checkpoint of :func:`identity_model`."""
    return save_model(tmp_path / "good.safetensors", identity_model())
