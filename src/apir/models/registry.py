"""Model registry: architectures by name, so configs, checkpoints and the CLI never import classes.

A training config says ``model: {name: nafnet, kwargs: {width: 32}}``; a checkpoint stores
:func:`model_config` (``{"name": ..., **resolved kwargs}``) and rebuilds with
``create_model(**config)``. Because names and kwargs come from YAML files typed by people, a wrong
name or argument is an :class:`~apir.errors.ApirError` listing what *is* accepted, not a TypeError
traceback from deep inside a constructor.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import nn

from apir.errors import ApirError
from apir.registry import Registry

T = TypeVar("T", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., nn.Module]
    defaults: dict[str, Any] = field(default_factory=dict)
    accepted: tuple[str, ...] | None = None  # None: the builder takes **kwargs, accept anything


#: Architectures by name (the same :class:`apir.registry.Registry` as every other plug-in kind).
_REGISTRY: Registry[_Entry] = Registry("model")


def _accepted_kwargs(builder: Callable[..., nn.Module]) -> tuple[str, ...] | None:
    params = inspect.signature(builder).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(p.name for p in params if p.kind in kinds)


def register_model(name: str, **defaults: Any) -> Callable[[T], T]:
    """Register a model class (or factory) under ``name``; ``defaults`` make a named variant.

    Stack it to give one class several names, e.g. ``@register_model("nafnet_w32", width=32)``. The
    innermost (first applied) name becomes the class's own ``registry_name``, used by
    :func:`model_config` for models built directly rather than through :func:`create_model`.
    """

    def decorator(builder: T) -> T:
        accepted = _accepted_kwargs(builder)
        if accepted is not None and (bad := sorted(set(defaults) - set(accepted))):
            raise ValueError(f"defaults {bad} of model {name!r} are not arguments of {builder.__name__}")
        _REGISTRY.add(name, _Entry(builder, copy.deepcopy(defaults), accepted))
        if isinstance(builder, type) and "registry_name" not in vars(builder):
            builder.registry_name = name  # type: ignore[attr-defined]
        return builder

    return decorator


def list_models() -> list[str]:
    """All registered model names, sorted."""
    return sorted(_REGISTRY.names())


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name``; unknown names or arguments are one-line ApirErrors."""
    entry = _REGISTRY[name] if isinstance(name, str) and name in _REGISTRY else None
    if entry is None:
        raise ApirError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    if entry.accepted is not None and (unknown := sorted(set(kwargs) - set(entry.accepted))):
        raise ApirError(
            f"model {name!r} has no argument(s) {', '.join(unknown)}; accepted: {', '.join(entry.accepted)}"
        )
    model = entry.builder(**{**copy.deepcopy(entry.defaults), **kwargs})
    model.registry_name = name
    return model


def _unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def model_config(model: nn.Module) -> dict[str, Any]:
    """``{"name": ..., **kwargs}`` such that ``create_model(**model_config(m))`` rebuilds ``m``."""
    model = _unwrap(model)
    name = getattr(model, "registry_name", None)
    config = getattr(model, "config", None)
    if not isinstance(name, str) or not isinstance(config, dict):
        raise ApirError(f"{type(model).__name__} is not an apir registry model (no name/config to save)")
    return {"name": name, **copy.deepcopy(config)}
