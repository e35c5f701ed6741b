"""Restoring images with a trained model: model resolution, tiled inference, files, ONNX export.

- :func:`resolve_model`: a checkpoint file, a training run directory, or shipped weights by name.
- :func:`restore_tensor` / :func:`restore_array`: tiled inference on tensors / numpy images
  (``apir.restore_array`` is the public entry point).
- :func:`restore_paths`: files and folders in, same-format files out (``apir restore``).
- :func:`export_onnx` / :func:`check_onnx_parity`: dynamic-size ONNX graphs (``apir export``).

Submodules are imported on first use, so ``import apir.restore`` stays cheap and onnx/onnxruntime are
only needed for export.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "resolve_model": "apir.restore.loading",
    "restore_tensor": "apir.restore.tiling",
    "restore_array": "apir.restore.api",
    "restore_paths": "apir.restore.files",
    "RestoreSummary": "apir.restore.files",
    "export_onnx": "apir.restore.export",
    "check_onnx_parity": "apir.restore.export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'apir.restore' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
