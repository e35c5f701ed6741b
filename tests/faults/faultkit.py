"""Helpers of the fault tests: tiny models, checkpoints with edited headers, images, file trees."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from apir.data.imageio import write_image
from apir.models import create_model
from apir.models.checkpoint import save_checkpoint


def identity_model() -> torch.nn.Module:
    """A tiny NAFNet whose output is exactly its input (ending convolution zeroed)."""
    torch.manual_seed(0)
    model = create_model("nafnet", width=8)
    with torch.no_grad():
        model.ending.weight.zero_()
        model.ending.bias.zero_()
    return model.eval()


def blur_model() -> torch.nn.Module:
    """A tiny RCAN with random weights: a deterministic restorer whose output differs from its input."""
    torch.manual_seed(1)
    return create_model("rcan", n_feats=8, n_blocks=1, reduction=4).eval()


def save_model(path: Path, model: torch.nn.Module) -> Path:
    save_checkpoint(path, model, {"epoch": 1})
    return path


def rewrite_header(src: Path, dst: Path, edit) -> Path:
    """Copy checkpoint ``src`` to ``dst`` with its ``apir`` header changed by ``edit(header)``."""
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as f:
        header = json.loads(f.metadata()["apir"])
    edited = edit(header)
    save_file(
        load_file(str(src)), str(dst), metadata={"apir": json.dumps(header if edited is None else edited)}
    )
    return dst


def rewrite_tensors(src: Path, dst: Path, edit) -> Path:
    """Copy checkpoint ``src`` to ``dst`` with its tensors changed in place by ``edit(tensors)``."""
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(src))
    edit(tensors)
    save_file(tensors, str(dst), metadata=metadata)
    return dst


def write_images(folder: Path, n: int = 3, size: int = 24, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"img{i}.png"
        write_image(p, rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        paths.append(p)
    return paths


def tree(root: Path, hidden: bool = False) -> dict[str, bytes]:
    """Relative path → bytes of every file under ``root`` (hidden ones only if ``hidden``)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and (hidden or not any(part.startswith(".") for part in rel.parts)):
            out[rel.as_posix()] = p.read_bytes()
    return out
