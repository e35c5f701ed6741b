"""Which model to restore with: a checkpoint, a training run, or weights shipped with apir.

``apir restore --model M`` and ``apir.restore_array(img, model=M)`` accept the same things, resolved
in this order:

1. an existing path: a ``.safetensors`` checkpoint file, or a training run directory (its
   ``best.safetensors``, else ``last.safetensors``). An existing path always wins, so a run directory
   that happens to be called ``rcan`` is used as such (write ``./rcan`` to make that explicit);
2. the name of weights shipped inside the package, ``apir/weights/<name>.safetensors``
   (:func:`shipped_names`: ``default``; ``survival``, the default fine-tuned to keep more of a defect,
   docs/model_card.md), or a registry model name (``apir models``) whose pretrained weights ship
   under that name. Weights ship with the package rather than being downloaded because dead
   download links are the most common complaint about restoration repos;
3. None: the shipped default model, ``apir/weights/default.safetensors``.

Anything else is a one-line :class:`~apir.errors.ApirError` saying what to pass instead. Checkpoints
are read with safetensors only (never ``torch.load``/pickle, which can run code from a shared file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from apir.device import select_device
from apir.errors import ApirError
from apir.models import list_models
from apir.models.checkpoint import load_model, resolve_checkpoint

__all__ = ["DEFAULT_WEIGHTS", "WEIGHTS_DIR", "resolve_model", "shipped_names", "shipped_weights"]

#: Where pretrained weights live inside the installed package (package data, see pyproject.toml).
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_WEIGHTS = "default"

_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".bin", ".tar")
_HINT = "pass --model with a checkpoint file or a training run directory (apir train ...)"


def shipped_weights(name: str = DEFAULT_WEIGHTS) -> Path:
    """Path of the shipped weights file for ``name`` (it may not exist)."""
    return WEIGHTS_DIR / f"{name}.safetensors"


def shipped_names() -> list[str]:
    """Names of the weights shipped inside the package (``--model NAME``), sorted."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))


def _device(device: str | torch.device | None) -> torch.device:
    return select_device("auto" if device is None else device)


def _load(path: Path, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    path = resolve_checkpoint(path)  # a run directory → its best (else last) checkpoint
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise ApirError(
            f"{path}: PyTorch pickle checkpoints are not loaded (unpickling can run code); "
            "apir checkpoints are .safetensors files"
        )
    model, header = load_model(path, map_location="cpu")
    model = model.to(device).eval()
    return model, {**header, "source": str(path)}


def resolve_model(
    spec: str | Path | None, device: str | torch.device | None = "auto"
) -> tuple[nn.Module, dict[str, Any]]:
    """The model (on ``device``, in eval mode) and its checkpoint header for ``spec``.

    See the module docstring for what ``spec`` may be. The header is the checkpoint's ``apir``
    metadata (``model`` config, training ``config``, ``metrics``...) plus ``source``, the file the
    weights came from, for messages such as "restoring with ...".
    """
    dev = _device(device)
    if spec is None:
        path = shipped_weights(DEFAULT_WEIGHTS)
        if not path.is_file():
            raise ApirError(f"no default model ships yet; {_HINT}")
        return _load(path, dev)
    text = str(spec)
    if not text.strip():
        raise ApirError(f"empty model name; {_HINT}")
    path = Path(spec).expanduser()
    if path.exists():
        return _load(path, dev)
    if isinstance(spec, str) and "/" not in text and "\\" not in text and not path.suffix:
        if text in shipped_names():
            return _load(shipped_weights(text), dev)
        if text in list_models():
            raise ApirError(f"no pretrained weights ship for {text!r} yet; {_HINT}")
        raise ApirError(
            f"{text!r} is neither a checkpoint file, a training run directory nor a model name "
            f"(shipped weights: {', '.join(shipped_names())}; models: {', '.join(list_models())})"
        )
    raise ApirError(f"{path}: checkpoint not found")
