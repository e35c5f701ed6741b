"""Checkpoints as safetensors: weights without pickle, plus a JSON header saying how to rebuild.

A pickled ``torch.save`` file can run arbitrary code when loaded, and users share checkpoints; so
apir stores tensors in safetensors and everything else (the model's registry name and arguments,
epoch, metrics, optimizer hyper-parameters) as JSON in the file's metadata under the key ``apir``.
Optimizer tensors (Adam moments) sit beside the weights under the ``__optim__/`` prefix in
``last.safetensors`` only, so a run can resume exactly; ``best.safetensors`` holds the weights alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from apir.errors import ApirError
from apir.fsutil import atomic_path

OPTIM_PREFIX = "__optim__/"
BEST = "best.safetensors"
LAST = "last.safetensors"


def _model_config(model: nn.Module) -> dict[str, Any]:
    from apir.models import model_config

    return model_config(model)


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    meta: dict[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Write weights (+ optimizer state if given) atomically: a crash never leaves a half file."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header: dict[str, Any] = {"model": _model_config(model), **(meta or {})}
    if optimizer is not None:
        opt_state = optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for idx, state in opt_state["state"].items():
            for name, value in state.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"{OPTIM_PREFIX}{idx}/{name}"] = value.detach().cpu().contiguous()
                else:
                    scalars.setdefault(str(idx), {})[name] = value
        header["optimizer"] = {"param_groups": opt_state["param_groups"], "scalars": scalars}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"apir": json.dumps(header)})


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and the ``apir`` header of a checkpoint; any problem is a one-line ApirError."""
    path = Path(path)
    if not path.is_file():
        raise ApirError(f"{path}: checkpoint not found")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        header = json.loads(metadata.get("apir", "{}"))
    except (SafetensorError, OSError, ValueError) as err:
        raise ApirError(f"{path}: not a valid safetensors checkpoint ({str(err).splitlines()[0]})") from None
    if "model" not in header:
        raise ApirError(f"{path}: not an apir checkpoint (no model description in its metadata)")
    return tensors, header


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], source: str | Path) -> None:
    """Load model weights, turning architecture mismatches into a one-line error."""
    weights = {k: v for k, v in tensors.items() if not k.startswith(OPTIM_PREFIX)}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = [k for k in expected if k in weights and weights[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        detail = (
            f"missing {missing[:2]}"
            if missing
            else f"unexpected {unexpected[:2]}"
            if unexpected
            else f"shape of {wrong[0]} is {tuple(weights[wrong[0]].shape)}, "
            f"expected {tuple(expected[wrong[0]].shape)}"
        )
        raise ApirError(f"{source}: checkpoint does not fit this model ({detail})")
    model.load_state_dict(weights)


def init_from_checkpoint(model: nn.Module, tensors: dict[str, torch.Tensor], source: str | Path) -> list[str]:
    """Warm-start ``model`` from another checkpoint's weights; returns the names that were widened.

    A weight whose shape differs from the model's only by *more input channels* (dimension 1 of a
    convolution, e.g. the noise-level channel a noise-level-aware model adds to the intro conv) is
    copied into the first channels and the new ones start at zero, so the new model starts out
    computing exactly what the old one did and learns to use the extra input. Anything else that does
    not fit is a one-line error, as in :func:`load_weights`.
    """
    weights = {k: v for k, v in tensors.items() if not k.startswith(OPTIM_PREFIX)}
    expected = model.state_dict()
    widened = []
    for key, target in expected.items():
        have = weights.get(key)
        if have is None or have.shape == target.shape:
            continue
        grows_inputs = (
            have.ndim == target.ndim >= 2
            and have.shape[0] == target.shape[0]
            and have.shape[2:] == target.shape[2:]
            and have.shape[1] < target.shape[1]
        )
        if grows_inputs:
            wide = torch.zeros_like(target)
            wide[:, : have.shape[1]] = have
            weights[key] = wide
            widened.append(key)
    load_weights(model, weights, source)
    return widened


def load_optimizer(
    optimizer: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    header: dict[str, Any],
    source: str | Path,
) -> None:
    """Restore optimizer state saved by :func:`save_checkpoint`."""
    saved = header.get("optimizer")
    if saved is None:
        raise ApirError(f"{source}: checkpoint has no optimizer state, cannot resume from it")
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(OPTIM_PREFIX):
            idx, name = key[len(OPTIM_PREFIX) :].split("/", 1)
            state.setdefault(int(idx), {})[name] = value
    for idx, values in saved.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
    except (ValueError, KeyError) as err:
        raise ApirError(f"{source}: optimizer state does not fit ({err})") from None


def resolve_checkpoint(spec: str | Path) -> Path:
    """A checkpoint file, or a training run directory (its best checkpoint, else its last)."""
    path = Path(spec)
    if path.is_dir():
        for name in (BEST, LAST):
            if (path / name).is_file():
                return path / name
        raise ApirError(f"{path}: no {BEST} or {LAST} in this run directory")
    if not path.exists():
        raise ApirError(f"{path}: checkpoint not found")
    return path


def load_model(spec: str | Path, map_location: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Build a model from a checkpoint file or run directory and load its weights (no pickle)."""
    from apir.models import create_model

    path = resolve_checkpoint(spec)
    tensors, header = read_checkpoint(path)
    config = dict(header["model"])
    name = config.pop("name")
    model = create_model(name, **config)
    load_weights(model, tensors, path)
    return model.to(map_location), header
