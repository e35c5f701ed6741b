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
