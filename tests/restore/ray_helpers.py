"""Restore functions for the Ray tests, in a module of their own so Ray workers can import them.

The test fixture puts this folder on the workers' ``PYTHONPATH``; functions defined in a test module
would be pickled by reference to a module the workers cannot import.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """A deterministic restore function (Gaussian blur, σ 1 px)."""
    return cv2.GaussianBlur(image, (0, 0), 1.0)


class KillOnce:
    """Blur, but the process that makes its ``after``-th call SIGKILLs itself — once per test.

    Each call records the process's PID in ``folder``; ``folder/killed`` (created just before the
    kill) makes sure only one actor dies, so Ray's retry then succeeds.
    """

    def __init__(self, folder: Path, after: int = 2) -> None:
        self.folder = Path(folder)
        self.after = after
        self.calls = 0

    def __call__(self, image: np.ndarray, sigma: float) -> np.ndarray:
        self.calls += 1
        (self.folder / f"pid-{os.getpid()}").touch()
        flag = self.folder / "killed"
        if self.calls > self.after and not flag.exists():
            flag.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return blur(image, sigma)


def boom(image: np.ndarray, sigma: float) -> np.ndarray:
    """A restore function with a bug."""
    raise RuntimeError("boom in the restore function")


class KillingModel(nn.Module):
    """A fixed 3×3 convolution (seeded, so every copy is the same model) whose ``after``-th forward
    pass in a process SIGKILLs that process, once per ``flag`` file; ``flag=None`` never kills."""

    def __init__(self, flag: Path | None, after: int = 2) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.mul_(0.1)
            self.conv.weight[:, :, 1, 1] += torch.eye(3)
        self.flag = None if flag is None else str(flag)
        self.after = after
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.flag is not None and self.calls > self.after and not os.path.exists(self.flag):
            Path(self.flag).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return self.conv(x)
