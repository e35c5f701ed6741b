"""Restore image files and folders, writing each result in its input's own format, mode and depth.

What ``apir restore INPUT... -o OUT_DIR [--model M] [--tile N] [--overlap P] [--device D]
[--batch B] [--overwrite]`` does (the CLI calls :func:`restore_paths` and prints
:meth:`RestoreSummary.describe`; it exits 0 if every image was written, 1 if any was skipped, 2 on an
ApirError):

* **Inputs** are image files and folders, any mix. A folder is searched recursively
  (:func:`~apir.data.imageio.list_images`: files with an image extension, hidden files and folders
  skipped) and each image keeps its path relative to that folder under OUT_DIR:
  ``in/a/b.png`` → ``OUT_DIR/a/b.png``. A file input goes to ``OUT_DIR/<its name>``. Two inputs that
  would land on the same output path are an error before anything is written.
* **Outputs** keep the file name (hence the format: JPEG stays JPEG, 16-bit PNG/TIFF stays 16-bit),
  the size, and the mode: gray stays 1-channel gray (the network restores the replicated RGB image,
  the file gets the channel mean), RGB stays RGB, and an alpha channel is copied bit-exactly.
  Writes are atomic (a temporary file renamed into place), so an interrupted run never leaves a
  half-written image, and missing sub-folders of OUT_DIR are created.
* **Bad files** (unreadable, not really an image, truncated, a file whose name has no image
  extension, a result the format cannot store) are *skipped*: one warning line on stderr naming the
  file and the reason, then the run continues. The summary counts them.
* **Errors before any work** (ApirError, exit 2, nothing written): no inputs, an input that does not
  exist, a folder without images ("no images found in ..."), OUT_DIR being a file, OUT_DIR equal to
  or inside an input folder, output files that already exist, two inputs mapping to one output,
  and model problems (see :func:`apir.restore.loading.resolve_model`).
* ``--overwrite`` allows exactly two things: replacing files that already exist in OUT_DIR, and an
  OUT_DIR equal to or inside an input folder. Images already inside OUT_DIR are then not restored
  (they would be earlier results; restoring them would nest OUT_DIR/OUT_DIR/...). Even with
  ``--overwrite``, apir never writes over an input file (same path, or the same file through a link)
  nor over *any* file that already exists inside an input folder: such an image is skipped with a
  warning and counted. So with OUT_DIR inside an input folder, only new files are created there; a
  second run into the same OUT_DIR skips every image whose result is already there (delete OUT_DIR,
  or use one outside the inputs, to redo them), and OUT_DIR = the input folder skips everything.
* ``--tile N`` (default 512; 0 = whole image), ``--overlap P`` (default 32), ``--batch B`` tiles per
  forward pass, ``--device auto|cpu|cuda``: see :func:`apir.restore.tiling.restore_tensor`. On CUDA,
  8-bit images run under bf16 autocast; 16-bit and float images always run in float32, whose
  precision they need.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from apir.data.imageio import IMAGE_EXTENSIONS, list_images, read_image, write_image
from apir.errors import ApirError
from apir.fsutil import is_relative_to
from apir.restore.engine import check_engine, with_engine
from apir.restore.noise_level import check_noise_level, check_strength
from apir.restore.tiling import check_keep_input, check_tiling, restore_rgb, select_device

__all__ = ["RestoreSummary", "plan_outputs", "restore_paths"]


@dataclass
class RestoreSummary:
    """What a :func:`restore_paths` run did: files written, and files skipped with the reason."""

    out_dir: Path
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True if nothing was skipped (the CLI's exit code 0)."""
        return not self.skipped

    def describe(self) -> str:
        """One line for the end of a run, e.g. ``restored 12 images to out (2 skipped, see above)``."""
        noun = "image" if len(self.written) == 1 else "images"
        line = f"restored {len(self.written)} {noun} to {self.out_dir}"
        if self.skipped:
            line += f" ({len(self.skipped)} skipped, see the warnings above)"
        return line


def _file_key(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def plan_outputs(inputs: list[Path], out_dir: Path, overwrite: bool = False) -> list[tuple[Path, Path]]:
    """(input image, output path) pairs for a run, after every check that needs no decoding.

    Raises ApirError for the "errors before any work" of the module docstring; returns the pairs in
    input order (folders sorted).
    """
    if not inputs:
        raise ApirError("no inputs given; pass image files or folders to restore")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ApirError(f"{out_dir}: output path exists and is not a folder")
    plan: list[tuple[Path, Path]] = []
    for raw in inputs:
        src = Path(raw)
        if not src.exists():
            raise ApirError(f"{src}: input not found")
        if src.is_dir():
            if is_relative_to(out_dir, src) and not overwrite:
                where = "the" if out_dir.resolve() == src.resolve() else "inside the"
                raise ApirError(
                    f"{out_dir}: output folder is {where} input folder {src}; "
                    "choose another output folder (or pass --overwrite)"
                )
            images = [p for p in list_images(src) if not is_relative_to(p, out_dir)]
            if not images:
                raise ApirError(f"no images found in {src} (looked for {', '.join(IMAGE_EXTENSIONS)})")
            plan += [(p, out_dir / p.relative_to(src)) for p in images]
        else:
            plan.append((src, out_dir / src.name))
    unique: dict[Path, Path] = {}
    pairs: list[tuple[Path, Path]] = []
    for src, dst in plan:
        key = dst.resolve()
        if key in unique:
            if unique[key].resolve() == src.resolve():
                continue  # the same file given twice (e.g. alone and inside its folder)
            raise ApirError(
                f"{unique[key]} and {src} would both be written to {dst}; restore them separately"
            )
        unique[key] = src
        pairs.append((src, dst))
    if not overwrite:
        existing = [dst for _, dst in pairs if dst.exists()]
        if existing:
            what = f"{existing[0]} already exists"
            if len(existing) > 1:
                what = f"{existing[0]} and {len(existing) - 1} more outputs already exist"
            raise ApirError(f"{what}; pass --overwrite to replace them")
    return pairs


class _Protected:
    """The files a run must never write: its input files, and anything already inside an input folder."""

    def __init__(self, inputs: list[Path], pairs: list[tuple[Path, Path]]) -> None:
        self.folders = [p for p in inputs if p.is_dir()]
        self.paths = {src.resolve() for src, _ in pairs}
        self.keys = {k for src, _ in pairs if (k := _file_key(src)) is not None}

    def reason(self, dst: Path) -> str | None:
        if dst.resolve() in self.paths or _file_key(dst) in self.keys:
            return f"its output {dst} is an input image, which is never overwritten"
        if dst.exists() and any(is_relative_to(dst, folder) for folder in self.folders):
            return (
                f"its output {dst} already exists inside an input folder, where apir never replaces "
                "files; delete it or choose an output folder outside the inputs"
            )
        return None


def restore_paths(
    inputs: list[Path],
    out_dir: Path,
    model: nn.Module | str | Path | None = None,
    *,
    tile: int = 512,
    overlap: int = 32,
    device: str | torch.device = "auto",
    batch: int = 1,
    overwrite: bool = False,
    show_progress: bool = True,
    keep_input: float = 0.0,
    noise_level: float | None = None,
    strength: float = 1.0,
    engine: str = "auto",
    guard_dir: Path | None = None,
    guard_floor: float = 0.3,
) -> RestoreSummary:
    """Restore image files and folders into ``out_dir``; see the module docstring for the rules.

    ``model`` is an ``nn.Module`` (moved to ``device`` unless that is "auto") or anything
    :func:`~apir.restore.loading.resolve_model` accepts. Paths are checked before the model is
    loaded, so a typo fails fast. Skipped files are reported on stderr as they happen and listed in
    the returned summary.
    """
    out_dir = Path(out_dir)
    check_tiling(tile, overlap, batch)
    check_keep_input(keep_input)
    check_strength(strength)
    check_noise_level(noise_level)
    check_engine(engine)
    pairs = plan_outputs([Path(p) for p in inputs], out_dir, overwrite=overwrite)
    if isinstance(model, nn.Module):
        if not (isinstance(device, str) and device == "auto"):
            model = model.to(select_device(device))
    else:
        from apir.restore.loading import resolve_model

        model, _ = resolve_model(model, device)
    model = with_engine(model, engine)
    guard = None
    if guard_dir is not None:
        from apir.restore.guard import guard_from_folder

        guard = guard_from_folder(
            guard_dir,
            model,
            floor=guard_floor,
            tile=tile,
            overlap=overlap,
            noise_level=noise_level,
            strength=strength,
        )
    protected = _Protected([Path(p) for p in inputs], pairs)
    summary = RestoreSummary(out_dir=out_dir)

    def skip(src: Path, reason: str) -> None:
        summary.skipped.append((src, reason))
        tqdm.write(f"warning: skipped {reason}", file=sys.stderr)

    bar = tqdm(pairs, desc="restoring", unit="img", disable=not show_progress, file=sys.stderr)
    for src, dst in bar:
        if src.suffix.lower() not in IMAGE_EXTENSIONS:
            skip(src, f"{src}: not an image file name (extensions: {', '.join(IMAGE_EXTENSIONS)})")
            continue
        if (reason := protected.reason(dst)) is not None:
            skip(src, f"{src}: {reason}")
            continue
        try:
            image = read_image(src)
            amp = None if image.info.dtype == "uint8" else False
            restored = restore_rgb(
                model,
                image.rgb,
                tile=tile,
                overlap=overlap,
                batch=batch,
                amp=amp,
                keep_input=keep_input,
                noise_level=noise_level,
                strength=strength,
                guard=guard,
            )
            write_image(dst, restored, image.info, image.alpha)
        except ApirError as err:
            skip(src, err.message)
            continue
        summary.written.append(dst)
    bar.close()
    return summary
