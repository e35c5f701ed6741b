"""Training configuration: plain YAML validated into typed objects.

Unknown keys are errors, not warnings: a typo such as ``learning_rate`` for ``lr`` would otherwise
silently train with the default and waste hours. Every field has a default, so a config file only
says what differs; the resolved config (defaults filled in) is written to ``RUN_DIR/config.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from apir.errors import ApirError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Strict):
    name: str = "nafnet"
    kwargs: dict[str, Any] = Field(default_factory=dict)
    init: str | None = Field(
        None,
        description="warm start from these weights: a checkpoint, a run directory or 'default' (the "
        "shipped model); extra input channels (e.g. a noise-level map) start at zero",
    )


class DataConfig(_Strict):
    root: str | None = None
    categories: list[str] | None = None
    degradation: str = "blind"
    patch_size: int = Field(96, ge=16, le=1024)
    batch_size: int = Field(8, ge=1)
    patches_per_image: int = Field(8, ge=1, description="training patches per image and epoch")
    defect_prob: float = Field(0.7, ge=0, le=1, description="share of patches given a synthetic defect")
    defect_ratio: float = Field(0.5, ge=0, le=1, description="share of real-defect patches centred on it")
    train_on: Literal["good", "all"] = Field(
        "good",
        description="good: train/good with synthetic defects; all: also the labelled test images "
        "(the paper's protocol), split per category into train/val",
    )
    val_fraction: float = Field(0.2, ge=0, lt=1)
    val_crop: int | None = Field(256, ge=16)
    val_max_images: int | None = Field(None, ge=1)
    num_workers: int = Field(1, ge=0)
    follow_symlinks: bool = Field(
        False, description="follow symbolic links out of data.root (default: skip them, with a warning)"
    )


class LossConfig(_Strict):
    alpha: float = Field(0.3, ge=0, le=1)
    normalize: Literal["all", "mask"] = "all"
    base: Literal["mse", "charbonnier"] = "mse"
    pair_weight: float = Field(
        0.0, ge=0, description="weight of the paired defect-response term (0 = off; field notes: 0.2)"
    )
    pair_rim: int = Field(2, ge=0, le=16, description="pixels the defect mask grows by for that term")


class OptimConfig(_Strict):
    name: Literal["adam", "adamw"] = "adam"
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    scheduler: Literal["none", "cosine"] = "none"
    min_lr: float = Field(1e-7, ge=0)
    grad_clip: float = Field(0.0, ge=0, description="max gradient norm; 0 disables")


class TrainConfig(_Strict):
    epochs: int = Field(350, ge=1)
    max_minutes: float | None = Field(None, gt=0)
    seed: int = 0
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    val_every: int = Field(1, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"


class RunConfig(_Strict):
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


def _one_line(err: ValidationError, source: str) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        msg = "unknown key (check the spelling)" if e["type"] == "extra_forbidden" else e["msg"]
        parts.append(f"{loc}: {msg}")
    return f"{source}: invalid config: " + "; ".join(parts)


def config_from_dict(data: dict[str, Any], source: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(data or {})
    except ValidationError as err:
        raise ApirError(_one_line(err, source)) from None


def load_config(path: str | Path | None) -> RunConfig:
    """Read a YAML config (None → all defaults). Unknown keys and bad values raise ApirError."""
    if path is None:
        return RunConfig()
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ApirError(f"{path}: config file not found") from None
    except (OSError, yaml.YAMLError) as err:
        raise ApirError(f"{path}: cannot read config ({str(err).splitlines()[0]})") from None
    if data is not None and not isinstance(data, dict):
        raise ApirError(f"{path}: a config must be a YAML mapping (model:, data:, loss:, optim:, train:)")
    return config_from_dict(data or {}, str(path))


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def override(config: RunConfig, **updates: Any) -> RunConfig:
    """Apply dotted-key overrides from the CLI (``{"train.epochs": 3}``), skipping None values."""
    data = config.model_dump(mode="json")
    for dotted, value in updates.items():
        if value is None:
            continue
        section, key = dotted.split(".")
        data[section][key] = value
    return config_from_dict(data, "command line")
