"""Category adaptation: fine-tune a restorer on one part's good images, for a few CPU minutes.

Users have what no generic denoiser uses: good images of the very part they inspect. Fine-tuning the
default on a category's ``train/good`` — with the same on-the-fly synthetic defects and degradations
as its training, and equation (1) — was measured (field notes, "Category adaptation") at +0.7 to
+2.0 dB overall in 4 CPU minutes, with a mixed effect inside the defects; so judge an adapted model
on the frontier (``benchmarks/frontier.py``), not by overall PSNR.

``apir adapt`` is ``apir train`` with a fixed recipe: warm start from the base model (its
architecture and weights), only ``train/good`` of one category (the test split is never read; the
loop's ``train_on: good`` takes nothing else), 20 % of those images for validation, AdamW at a constant
2e-4 (a schedule needs a step count a time budget cannot promise) and a time limit. The run directory
is a normal one: every ``--model`` accepts it, ``--resume`` continues it.
"""

from __future__ import annotations

from pathlib import Path

from apir.errors import ApirError
from apir.models.checkpoint import read_checkpoint, resolve_checkpoint
from apir.restore.loading import shipped_weights
from apir.train.config import RunConfig, config_from_dict
from apir.train.loop import TrainResult, train

DEFAULT_MINUTES = 10.0


def _base_checkpoint(base: str | Path | None) -> Path:
    if base is None or str(base) == "default":
        return shipped_weights()
    return resolve_checkpoint(base)


def adapt_config(
    data: str | Path,
    category: str,
    base: str | Path | None = None,
    minutes: float = DEFAULT_MINUTES,
    survival: float = 0.0,
) -> RunConfig:
    """The run config of an adaptation of ``base`` (default: the shipped model) to ``category``."""
    if not minutes > 0:
        raise ApirError(f"--minutes must be > 0, got {minutes}")
    checkpoint = _base_checkpoint(base)
    _, header = read_checkpoint(checkpoint)
    model = dict(header["model"])
    name = model.pop("name", None)
    if not isinstance(name, str):
        raise ApirError(f"{checkpoint}: checkpoint names no model")
    level = bool(model.get("level_input", False))
    return config_from_dict(
        {
            "model": {"name": name, "kwargs": model, "init": str(checkpoint)},
            "data": {
                "root": str(data),
                "categories": [category],
                "degradation": "blind_level" if level else "blind",
                "patch_size": 96,
                "batch_size": 8,
                "patches_per_image": 16,
                "defect_prob": 0.7,
                "train_on": "good",
                "val_fraction": 0.2,
                "val_crop": 192,
                "num_workers": 0,
            },
            "loss": {"alpha": 0.3, "pair_weight": float(survival)},
            "optim": {"name": "adamw", "lr": 2e-4, "betas": [0.9, 0.9], "grad_clip": 0.5},
            "train": {"epochs": 100000, "max_minutes": float(minutes), "seed": 0},
        },
        source="apir adapt",
    )


def adapt(
    data: str | Path,
    category: str,
    out: str | Path,
    *,
    minutes: float = DEFAULT_MINUTES,
    base: str | Path | None = None,
    force: bool = False,
    show_progress: bool = True,
    survival: float = 0.0,
) -> TrainResult:
    """Fine-tune ``base`` on ``data/category/train/good`` into the run directory ``out``; ``survival``
    is the weight of the paired defect-response term (:func:`apir.losses.defect_response_loss`)."""
    config = adapt_config(data, category, base, minutes, survival)
    return train(config, out, force=force, show_progress=show_progress)
