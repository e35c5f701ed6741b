"""Shared fixtures: a tiny demo dataset (64 px, two categories) built once per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from apir.data.demo import DemoCounts, build_demo_dataset

TINY_CATEGORIES = ["brick", "coffee"]


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Exported ONNX graphs and fetched packages go to a per-session folder, not the user's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("APIR_CACHE", str(tmp_path_factory.mktemp("apir-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """A read-only tiny demo dataset; copy it (``tiny_demo_copy``) before changing anything."""
    root = tmp_path_factory.mktemp("demo") / "data"
    return build_demo_dataset(
        root, size=64, seed=0, categories=TINY_CATEGORIES, counts=DemoCounts(6, 2, 2), show_progress=False
    )


@pytest.fixture()
def tiny_demo_copy(tiny_demo, tmp_path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(tiny_demo, dst)
    return dst


@pytest.fixture()
def tiny_train_config() -> dict:
    """A training config small enough for an epoch to take about a second on a CPU."""
    return {
        "model": {"name": "rcan", "kwargs": {"n_feats": 16, "n_blocks": 2}},
        "data": {
            "degradation": "noise25",
            "patch_size": 32,
            "batch_size": 4,
            "patches_per_image": 4,
            "val_fraction": 0.34,
            "val_crop": 48,
            "num_workers": 0,
        },
        "optim": {"lr": 2e-3},
        "train": {"epochs": 3, "seed": 0},
    }
