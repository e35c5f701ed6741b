"""ONNX export with dynamic batch, height and width, and a parity check against PyTorch.

``apir export --model M -o model.onnx`` calls :func:`export_onnx` and then :func:`check_onnx_parity`,
so a user never ships a graph that silently disagrees with the network it came from (NAFNet's and
SwinIR's users hit exactly that: custom LayerNorm functions and shape-dependent branches that froze
the export to one image size).

The graph has one input ``image`` and one output ``restored``, both N×C×H×W float32 in [0, 1], with
N, H and W dynamic: any image size works, since the models pad to their ``size_multiple`` inside the
graph. The export uses PyTorch's TorchScript-based exporter (``dynamo=False``), which handles every
apir model; the dynamo exporter needs ``onnxscript``, which apir does not depend on. The model's
registry config is stored in the ONNX metadata (``apir_model``, JSON) with its ``size_multiple``, so
a deployment can tile with the same alignment as :mod:`apir.restore.tiling`.

``onnx`` and ``onnxruntime`` are optional dependencies (``pip install apir[export]``), imported only
here and only when needed.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from apir.errors import ApirError
from apir.fsutil import atomic_path, os_error_reason, printable
from apir.models import model_config
from apir.version import __version__

__all__ = ["DEFAULT_PARITY_SIZES", "check_onnx_parity", "export_onnx"]

INPUT_NAME = "image"
OUTPUT_NAME = "restored"
#: Sizes that differ from the export's example (64×64) and from each other, odd ones included, so a
#: graph frozen to one shape or one padding amount fails the check.
DEFAULT_PARITY_SIZES: tuple[tuple[int, int, int, int], ...] = ((1, 3, 48, 40), (1, 3, 37, 81))


def _require(name: str) -> ModuleType:
    try:
        return __import__(name)
    except ImportError:
        raise ApirError(f"ONNX export needs the {name} package; pip install apir[export]") from None


def input_channels(model: nn.Module) -> int:
    """Channels of the model's input tensor: the image's, plus one for a noise-level map."""
    return int(getattr(model, "in_channels", 3)) + int(bool(getattr(model, "level_input", False)))


def _model_device(model: nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def export_onnx(model: nn.Module, path: str | Path, *, opset: int = 17, example_size: int = 64) -> Path:
    """Write ``model`` as an ONNX graph with dynamic N, H, W to ``path`` (atomically); return the path.

    The model is traced in eval mode (and left in the mode it was in) with a 1×C×S×S example,
    ``S = example_size``. The parent folder is created if missing.
    """
    onnx = _require("onnx")
    if isinstance(example_size, bool) or not isinstance(example_size, int) or example_size < 1:
        raise ApirError(f"example_size must be a positive integer, got {example_size!r}")
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ApirError(f"{path}: the output file name should end in .onnx")
    if path.is_dir():
        raise ApirError(f"{path}: is a folder; give the .onnx file to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ApirError(f"{path.parent}: cannot create folder ({err.strerror or err})") from None
    example = torch.rand(1, input_channels(model), example_size, example_size, device=_model_device(model))
    axes = {0: "batch", 2: "height", 3: "width"}
    was_training = model.training
    model.eval()
    try:
        with _writing(path), atomic_path(path) as tmp, warnings.catch_warnings():
            # TracerWarnings about shape arithmetic are expected: the parity check is the real test.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
            graph = onnx.load(str(tmp))
            _add_metadata(graph, model)
            onnx.checker.check_model(graph)
            onnx.save(graph, str(tmp))
    finally:
        model.train(was_training)
    return path


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Disk errors (read-only folder, disk full) while writing ``path`` as one-line ApirErrors."""
    try:
        yield
    except OSError as err:
        raise ApirError(f"{printable(path)}: cannot write the ONNX file ({os_error_reason(err)})") from None


def _add_metadata(graph: Any, model: nn.Module) -> None:
    entries = {"apir_version": __version__, "size_multiple": str(int(getattr(model, "size_multiple", 1)))}
    with contextlib.suppress(ApirError):  # not a registry model: exported without a config to rebuild it
        entries["apir_model"] = json.dumps(model_config(model))
    for key, value in entries.items():
        prop = graph.metadata_props.add()
        prop.key, prop.value = key, value


def check_onnx_parity(
    model: nn.Module,
    path: str | Path,
    sizes: Sequence[tuple[int, int, int, int]] = DEFAULT_PARITY_SIZES,
    *,
    seed: int = 0,
) -> float:
    """Largest absolute difference between ``model`` and the ONNX graph at ``path`` (onnxruntime CPU).

    Runs random images in [0, 1] of each N×C×H×W in ``sizes`` through both. A float32 export of an
    apir model agrees to about 1e-5; anything near 1e-2 means the graph is wrong for that size.
    """
    _require("onnx")
    ort = _require("onnxruntime")
    path = Path(path)
    if not path.is_file():
        raise ApirError(f"{path}: ONNX file not found")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        raise ApirError(f"{path}: onnxruntime cannot load it ({str(err).splitlines()[0]})") from None
    name = session.get_inputs()[0].name
    generator = torch.Generator().manual_seed(seed)
    device = _model_device(model)
    was_training = model.training
    model.eval()
    worst = 0.0
    try:
        for size in sizes:
            n, _, h, w = size
            x = torch.rand(n, input_channels(model), h, w, generator=generator)
            with torch.inference_mode():
                expected = model(x.to(device)).float().cpu().numpy()
            got = session.run(None, {name: x.numpy()})[0]
            if got.shape != expected.shape:
                raise ApirError(
                    f"{path}: ONNX output shape {got.shape} differs from PyTorch's {expected.shape}"
                )
            # max(worst, nan) keeps worst, so NaN/inf must be caught explicitly, on both sides.
            for what, arr in (("PyTorch model", expected), ("ONNX graph", got)):
                if not np.isfinite(arr).all():
                    raise ApirError(
                        f"{path}: the {what}'s output holds NaN or infinite values at size "
                        f"{tuple(size)}; do not use this export"
                    )
            worst = max(worst, float(np.abs(got - expected).max()))
    finally:
        model.train(was_training)
    return worst
