"""Choosing the compute device, the same way for training, restoring and evaluating."""

from __future__ import annotations

import torch

from apir.errors import ApirError


def select_device(choice: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA if available else CPU; ``"cuda"`` without CUDA is a one-line ApirError."""
    if isinstance(choice, torch.device):
        return choice
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice not in ("cpu", "cuda") and not str(choice).startswith("cuda:"):
        raise ApirError(f"unknown device {choice!r}; use auto, cpu or cuda")
    if str(choice).startswith("cuda") and not torch.cuda.is_available():
        raise ApirError("device cuda requested but CUDA is not available (use --device cpu)")
    return torch.device(choice)
