"""Which engine runs a model's forward pass on the CPU: PyTorch eager, or ONNX Runtime.

Measured on the 2-core development CPU (``benchmarks/results/speed_cpu.md``): the default model runs at
2.47 MP/s at 1024² in ONNX Runtime against 1.28 in PyTorch eager, for the same graph (parity ≤ 1e-5).
So where ``onnxruntime`` is installed and the model runs on the CPU, ``engine="auto"`` exports the
model once to ONNX (cached by the weights' checksum, see :func:`onnx_cache_dir`) and runs tiles
through an ``InferenceSession``; everything else (tiling, blending, the noise-level channel, I/O)
stays the same code, because :class:`OnnxModule` is an ``nn.Module`` with the attributes the tiler
reads. ``engine="torch"`` keeps PyTorch; ``engine="onnx"`` insists and fails in one line without
``onnxruntime`` (``pip install 'apir[export]'``).
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from apir.cache import cache_dir
from apir.errors import ApirError
from apir.models import model_config
from apir.restore.export import export_onnx
from apir.version import __version__

ENGINES = ("auto", "torch", "onnx")


def onnx_available() -> bool:
    return (
        importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
    )


def check_engine(engine: str) -> str:
    """Validate ``engine`` before any work; ``onnx`` without onnxruntime is a one-line error here."""
    if engine not in ENGINES:
        raise ApirError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "onnx" and not onnx_available():
        raise ApirError("--engine onnx needs onnxruntime and onnx: pip install 'apir[export]'")
    return engine


def onnx_cache_dir() -> Path:
    return cache_dir("onnx")


def _weights_digest(model: nn.Module) -> str:
    h = hashlib.sha256(f"{__version__}/{model_config(model)}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


class OnnxModule(nn.Module):
    """An ONNX Runtime session behind the ``nn.Module`` interface :mod:`apir.restore.tiling` uses."""

    def __init__(self, path: Path, like: nn.Module, threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort  # optional dependency (extra "export"), checked by check_engine

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise ApirError(f"{path}: onnxruntime cannot load it ({str(err).splitlines()[0]})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.path = path
        for attr in ("size_multiple", "in_channels", "level_input"):
            if hasattr(like, attr):
                setattr(self, attr, getattr(like, attr))

    def forward(self, x: Tensor) -> Tensor:
        out = self.session.run(None, {self.input_name: x.detach().float().cpu().numpy()})[0]
        return torch.from_numpy(np.ascontiguousarray(out))


def _model_device(model: nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def with_engine(model: nn.Module, engine: str = "auto") -> nn.Module:
    """``model`` itself (torch), or an :class:`OnnxModule` running its exported graph (onnx / auto).

    "auto" picks ONNX Runtime only for a CPU model when onnxruntime is installed (callers apply it to
    models apir loaded itself, not to a module passed in by the user); a model that cannot
    be exported (not a registry model) falls back to PyTorch under "auto" and is an error under "onnx".
    """
    check_engine(engine)
    on_cpu = _model_device(model).type == "cpu"
    if engine == "torch" or (engine == "auto" and not (on_cpu and onnx_available())):
        return model
    if not on_cpu:
        raise ApirError("--engine onnx runs on the CPU; use --engine torch with --device cuda")

    try:
        digest = _weights_digest(model)
    except ApirError:
        if engine == "auto":
            return model
        raise
    path = onnx_cache_dir() / f"{digest}.onnx"
    if not path.is_file():
        export_onnx(model, path)
    return OnnxModule(path, model)
