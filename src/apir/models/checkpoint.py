"""Checkpoints as safetensors: weights without pickle, plus a JSON header saying how to rebuild.

A pickled ``torch.save`` file can run arbitrary code when loaded, and users share checkpoints; so
apir stores tensors in safetensors and everything else (the model's registry name and arguments,
epoch, metrics, optimizer hyper-parameters) as JSON in the file's metadata under the key ``apir``.
Optimizer tensors (Adam moments) sit beside the weights under the ``__optim__/`` prefix in
``last.safetensors`` only, so a run can resume exactly; ``best.safetensors`` holds the weights alone.

A checkpoint is untrusted input (edited by hand, truncated, shared by a stranger), so
:func:`load_model` checks it before allocating anything: the header's types and names
(:func:`check_header`), then the model is built on PyTorch's ``meta`` device (shapes only, no memory)
and its parameter count and tensor names and shapes are compared with the file's, read from the
safetensors index without loading a tensor. Only then are weights read, and non-finite ones
(NaN, inf) are refused: they would silently turn every output black.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from apir.errors import ApirError
from apir.fsutil import atomic_path, os_error_reason, printable
from apir.models import create_model, model_config

OPTIM_PREFIX = "__optim__/"
#: Largest model apir builds from a checkpoint: 2^30 parameters (4 GiB as float32), far above any
#: restoration network (the default is about 1e6) and far below what a typo such as
#: ``width: 1048576`` (about 5e15) would try to allocate.
MAX_PARAMETERS = 1 << 30
BEST = "best.safetensors"
LAST = "last.safetensors"


def _model_config(model: nn.Module) -> dict[str, Any]:
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
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"apir": json.dumps(header)})
    except (SafetensorError, OSError) as err:
        reason = os_error_reason(err) if isinstance(err, OSError) else str(err).splitlines()[0]
        raise ApirError(
            f"{printable(path)}: cannot write checkpoint ({reason}); the previous {path.name} is unchanged"
        ) from None


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and the ``apir`` header of a checkpoint; any problem is a one-line ApirError.
    The header is read and checked first (:func:`read_header`), the tensors only after.
    """
    path = Path(path)
    header, _ = read_header(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ApirError(f"{path}: not a valid safetensors checkpoint ({str(err).splitlines()[0]})") from None
    return tensors, header


def read_header(path: str | Path) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """The checked ``apir`` header and the name → shape index of a checkpoint, loading no tensor."""
    path = Path(path)
    if not path.is_file():
        raise ApirError(f"{printable(path)}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
        header = json.loads(metadata.get("apir", "{}"))
    except (SafetensorError, OSError, ValueError) as err:
        raise ApirError(
            f"{printable(path)}: not a valid safetensors checkpoint ({str(err).splitlines()[0]})"
        ) from None
    check_header(header, path)
    return header, shapes


def _json_scalar_tree(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list) and depth < 3 and len(value) <= 1024:
        return all(_json_scalar_tree(v, depth + 1) for v in value)
    return False


def check_header(header: Any, path: str | Path) -> None:
    """Refuse a header that cannot describe a model: one-line ApirError naming the file and field."""
    where = printable(path)
    if not isinstance(header, dict) or "model" not in header:
        raise ApirError(f"{where}: not an apir checkpoint (no model description in its metadata)")
    model = header["model"]
    if not isinstance(model, dict):
        raise ApirError(f"{where}: invalid checkpoint header (model must be a mapping, got {model!r:.40})")
    name = model.get("name")
    if not isinstance(name, str) or not name:
        raise ApirError(
            f"{where}: invalid checkpoint header (model.name must be a model name, got {name!r:.40})"
        )
    for key, value in model.items():
        if not isinstance(key, str) or not _json_scalar_tree(value):
            raise ApirError(f"{where}: invalid checkpoint header (model.{printable(key)} = {value!r:.40})")


def _build_checked(path: Path, header: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """Build the header's model on the meta device and check it against the file's tensors.
    Returns the keyword arguments for :func:`~apir.models.create_model`. Nothing is allocated: the
    meta device records shapes only.
    """
    config = dict(header["model"])
    name = config.pop("name")
    try:
        with torch.device("meta"):
            meta = create_model(name, **config)
    except ApirError as err:
        raise ApirError(f"{printable(path)}: {err}") from None
    except Exception as err:  # a constructor given a value of the wrong type or range
        raise ApirError(
            f"{printable(path)}: invalid model arguments in the checkpoint header ({type(err).__name__}: "
            f"{printable(str(err).splitlines()[0] if str(err) else '')})"
        ) from None
    count = sum(p.numel() for p in meta.parameters())
    if count > MAX_PARAMETERS:
        raise ApirError(
            f"{printable(path)}: the header describes a {name} model with {count:.2e} parameters "
            f"(limit {MAX_PARAMETERS:.2e}); the header is wrong or edited"
        )
    expected = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    _check_fit(expected, {k: tuple(v) for k, v in shapes.items()}, path)
    return config


def _check_fit(expected: dict[str, tuple], shapes: dict[str, tuple], source: str | Path) -> None:
    """One-line error if the checkpoint's weight names or shapes differ from the model's."""
    weights = {k: v for k, v in shapes.items() if not k.startswith(OPTIM_PREFIX)}
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = [k for k in expected if k in weights and weights[k] != expected[k]]
    if missing or unexpected or wrong:
        detail = (
            f"missing {missing[:2]}"
            if missing
            else f"unexpected {unexpected[:2]}"
            if unexpected
            else f"shape of {wrong[0]} is {weights[wrong[0]]}, expected {expected[wrong[0]]}"
        )
        raise ApirError(f"{printable(source)}: checkpoint does not fit this model ({detail})")


def check_finite(tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """Refuse weights holding NaN or infinity (they make every output NaN, i.e. black)."""
    for key, t in tensors.items():
        if key.startswith(OPTIM_PREFIX) or not t.is_floating_point():
            continue
        if not bool(torch.isfinite(t).all()):
            raise ApirError(
                f"{printable(path)}: weight {printable(key)} holds NaN or infinite values; "
                "the checkpoint is broken (was training diverging?)"
            )


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], source: str | Path) -> None:
    """Load model weights, turning architecture mismatches and NaN/infinite weights into one-line
    errors: every path that loads weights (restore, a training warm start, ``apir adapt``'s base, a
    resumed run) refuses a broken checkpoint before it computes anything with it."""
    check_finite(tensors, source)
    weights = {k: v for k, v in tensors.items() if not k.startswith(OPTIM_PREFIX)}
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    _check_fit(expected, {k: tuple(v.shape) for k, v in weights.items()}, source)
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
    path = resolve_checkpoint(spec)
    header, shapes = read_header(path)
    config = _build_checked(path, header, shapes)  # before any tensor is read or allocated
    tensors, header = read_checkpoint(path)
    model = create_model(header["model"]["name"], **config)
    load_weights(model, tensors, path)
    return model.to(map_location), header
