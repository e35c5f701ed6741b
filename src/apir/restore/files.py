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
  forward pass, ``--device auto|cpu|cuda``: see :func:`apir.restore.inference.restore_tensor`. On CUDA,
  8-bit images run under bf16 autocast; 16-bit and float images always run in float32, whose
  precision they need.
* **Faults** (``docs/restore.md``, "Failures and recovery"): OUT_DIR is locked for the run
  (:mod:`apir.locking`), checked for writability and free space before the first image, outputs are
  published without ever replacing a file that appeared meanwhile, a model returning NaN stops the
  run, a full disk stops it, and ``manifest.json`` records every output
  (:mod:`apir.restore.manifest`). ``--resume`` keeps verified outputs and redoes the rest. Links out
  of an input folder are skipped with a warning unless ``--follow-symlinks``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from apir.data.imageio import IMAGE_EXTENSIONS, list_images
from apir.device import select_device
from apir.errors import ApirError
from apir.fsutil import (
    check_free_space,
    check_writable,
    is_relative_to,
    link_escapes,
    printable,
    remove_stale_temps,
)
from apir.locking import LOCK_NAME, RunLock
from apir.restore import manifest
from apir.restore.api import check_keep_input
from apir.restore.engine import check_engine, with_engine
from apir.restore.loading import resolve_model
from apir.restore.noise_level import check_noise_level, check_strength
from apir.restore.ray_executor import RayOptions, check_executor, ray_session, run_on_ray
from apir.restore.tiling import check_tiling, plan_tiles
from apir.restore.work import FileTask, Outcome, restore_file
from apir.version import __version__

__all__ = ["RestoreSummary", "plan_outputs", "restore_paths"]


@dataclass
class RestoreSummary:
    """What a :func:`restore_paths` run did: files written, and files skipped with the reason."""

    out_dir: Path
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    #: Outputs a ``resume`` run found complete and verified, so did not redo.
    verified: list[Path] = field(default_factory=list)
    #: Symbolic links left out because they lead out of their input folder.
    links_skipped: int = 0

    @property
    def ok(self) -> bool:
        """True if nothing was skipped (the CLI's exit code 0)."""
        return not self.skipped

    def describe(self) -> str:
        """One line for the end of a run, e.g. ``restored 12 images to out (2 skipped, see above)``."""
        noun = "image" if len(self.written) == 1 else "images"
        line = f"restored {len(self.written)} {noun} to {printable(self.out_dir)}"
        if self.verified:
            line += f" ({len(self.verified)} already complete, verified)"
        if self.links_skipped:
            line += f" ({self.links_skipped} symbolic links not followed)"
        if self.skipped:
            line += f" ({len(self.skipped)} skipped, see the warnings above)"
        return line


def _file_key(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def plan_outputs(
    inputs: list[Path],
    out_dir: Path,
    overwrite: bool = False,
    *,
    resume: bool = False,
    follow_symlinks: bool = False,
    warn: Callable[[str], None] | None = None,
) -> list[tuple[Path, Path]]:
    """(input image, output path) pairs for a run, after every check that needs no decoding.

    Raises ApirError for the "errors before any work" of the module docstring; returns the pairs in
    input order (folders sorted). Inside a folder input, a symbolic link leading out of that folder
    is left out (``warn`` gets one line for it) unless ``follow_symlinks``. With ``resume``, existing
    outputs are left for :func:`restore_paths` to verify against the run's journal and manifest.
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
            if not follow_symlinks:
                escaping = [p for p in images if link_escapes(p, src)]
                for p in escaping:
                    if warn is not None:
                        warn(_link_warning(p, src))
                images = [p for p in images if p not in escaping]
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
    if not overwrite and not resume:
        existing = [dst for _, dst in pairs if dst.exists()]
        if existing:
            what = f"{existing[0]} already exists"
            if len(existing) > 1:
                what = f"{existing[0]} and {len(existing) - 1} more outputs already exist"
            raise ApirError(
                f"{printable(what)}; pass --overwrite to replace them (or --resume to finish an "
                "interrupted run into this folder)"
            )
    return pairs


def _link_warning(path: Path, root: Path) -> str:
    try:
        target = os.path.realpath(path)
    except OSError:  # pragma: no cover
        target = "?"
    return (
        f"warning: skipped {printable(path)}: symbolic link to {printable(target)}, outside "
        f"{printable(root)} (pass --follow-symlinks to follow links out of it)"
    )


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
    resume: bool = False,
    follow_symlinks: bool = False,
    noise_level: float | None = None,
    strength: float = 1.0,
    engine: str = "auto",
    guard_dir: Path | None = None,
    guard_floor: float = 0.3,
    executor: str = "local",
    ray: RayOptions | None = None,
) -> RestoreSummary:
    """Restore image files and folders into ``out_dir``; see the module docstring for the rules.

    ``model`` is an ``nn.Module`` (moved to ``device`` unless that is "auto") or anything
    :func:`~apir.restore.loading.resolve_model` accepts. Paths are checked before the model is
    loaded, so a typo fails fast. Skipped files are reported on stderr as they happen and listed in
    the returned summary. ``resume`` finishes an interrupted run into ``out_dir``: outputs recorded
    as complete whose checksums still match are kept, the rest are redone (see "Failures and
    recovery" in ``docs/restore.md``). ``follow_symlinks`` follows links out of input folders.
    ``noise_level``/``strength`` set a noise-level-aware model's σ map (None = estimated per image),
    ``engine`` picks PyTorch or ONNX Runtime (:mod:`apir.restore.engine`), and ``guard_dir`` (good
    images of the same part) turns on detector-guided restoration (:mod:`apir.restore.guard`).
    ``executor="ray"`` restores the files on a Ray actor pool (``ray``: :class:`RayOptions`,
    :mod:`apir.restore.ray_executor`) with the same per-file code, outputs and manifest.
    """
    out_dir = Path(out_dir)
    check_tiling(tile, overlap, batch)
    check_keep_input(keep_input)
    check_strength(strength)
    check_noise_level(noise_level)
    check_engine(engine)
    ray = check_executor(executor, ray)
    if ray is not None and guard_dir is not None:
        raise ApirError("--guard is not supported with --executor ray yet; run it with --executor local")
    summary = RestoreSummary(out_dir=out_dir)

    def warn_link(line: str) -> None:
        summary.links_skipped += 1
        tqdm.write(line, file=sys.stderr)

    pairs = plan_outputs(
        [Path(p) for p in inputs],
        out_dir,
        overwrite=overwrite,
        resume=resume,
        follow_symlinks=follow_symlinks,
        warn=warn_link,
    )
    header: dict = {}
    # "auto" switches engines only for models apir loads itself; a module the caller passes in is
    # run as it is (its forward may be customised) unless "onnx" is asked for explicitly.
    given_module = isinstance(model, nn.Module)
    spec = model  # what each Ray actor loads (or unpickles) for itself
    worker_device = _ray_device(device, ray) if ray is not None else device
    on_gpu_workers = ray is not None and worker_device == "cuda"
    if on_gpu_workers:
        if engine == "onnx":
            raise ApirError("--engine onnx runs on the CPU; use --engine torch with --device cuda")
        device = "cpu"  # the driver only needs the weights' checksum; the actors hold the GPUs
    elif ray is not None:
        device = worker_device
    if isinstance(model, nn.Module):
        if not (isinstance(device, str) and device == "auto"):
            model = model.to(select_device(device))
    else:
        model, header = resolve_model(model, device)
    device_type = "cuda" if on_gpu_workers else str(_model_device(model).type)
    record = manifest.model_record(header, model)
    if (engine == "onnx" or not given_module) and not on_gpu_workers:
        model = with_engine(model, engine)  # on the driver too: exports the ONNX graph once, up front
    guard = None
    if guard_dir is not None:
        # Imported only with --guard: the guard brings the detector and the dataset layer, a third
        # of a second of start-up that a plain `apir restore` need not pay.
        from apir.restore.guard import guard_from_folder

        guard = guard_from_folder(
            guard_dir, model, floor=guard_floor, tile=tile, overlap=overlap, noise_level=noise_level,
            strength=strength,
        )  # fmt: skip
    # Pre-flight, before the first image: a read-only or full target fails now, not after hours.
    check_writable(out_dir, "output folder")
    check_free_space(out_dir, sum(_size(src) for src, _ in pairs), "the restored images")
    protected = _Protected([Path(p) for p in inputs], pairs)
    run = manifest.RunInfo(
        generator="apir restore",
        apir_version=__version__,
        model=record,
        settings={
            "tile": int(tile),
            "overlap": int(overlap),
            "batch": int(batch),
            "keep_input": float(keep_input),
            "device": device_type,
            "noise_level": noise_level,
            "strength": float(strength),
            "engine": "onnx" if type(model).__name__ == "OnnxModule" else "torch",
            "guard": None
            if guard_dir is None
            else {"dir": str(Path(guard_dir).absolute()), "floor": guard_floor},
        },
    )
    key = manifest.run_id(run)
    work = dict(tile=tile, overlap=overlap, batch=batch, keep_input=keep_input)
    level = {"noise_level": noise_level, "strength": strength, "guard": guard}
    if ray is None:

        def execute(tasks: list[FileTask], begin: Callable[[str], None]) -> Iterator[Outcome]:
            for task in tasks:
                yield restore_file(
                    task, model, out_dir, key, **work, level=level, begin=begin,
                    progress=lambda m, shape: _tile_progress(m, shape, tile, overlap, show_progress),
                )  # fmt: skip

    else:
        setup = partial(
            _ray_file_worker, spec, worker_device, engine, given_module, out_dir, key, work,
            {"noise_level": noise_level, "strength": strength},
        )  # fmt: skip

        def execute(tasks: list[FileTask], begin: Callable[[str], None]) -> Iterator[Outcome]:
            for task in tasks:  # workers write; a killed driver's resume may replace what they wrote
                begin(Path(task.dst).relative_to(out_dir).as_posix())
            try:
                yield from run_on_ray(tasks, setup, ray)
            except ApirError as err:
                if not err.message.startswith("the Ray job failed"):
                    raise
                raise ApirError(f"{err.message}; rerun with --resume to continue") from None

    with ray_session(ray), RunLock(out_dir / LOCK_NAME, f"output folder {out_dir}"):
        _restore_locked(
            pairs, out_dir, run, key, protected, summary, execute,
            overwrite=overwrite, resume=resume, show_progress=show_progress,
        )  # fmt: skip
    return summary


def _ray_device(device: str | torch.device, ray: RayOptions) -> str:
    """What a Ray actor will run on: a GPU only when it is given one (``--gpus-per-worker``)."""
    device = str(device)
    if device == "auto":
        return "cuda" if ray.gpus_per_worker > 0 else "cpu"
    if device.startswith("cuda") and ray.gpus_per_worker <= 0:
        raise ApirError("--device cuda with --executor ray needs --gpus-per-worker (e.g. 1)")
    return device


def _ray_file_worker(
    spec: nn.Module | str | Path | None,
    device: str,
    engine: str,
    given_module: bool,
    out_dir: Path,
    key: str,
    work: dict,
    level: dict,
) -> Callable[[FileTask], Outcome]:
    """Run once in each Ray actor: load the model as the local run does, return the per-file function."""
    if isinstance(spec, nn.Module):
        model = spec.to(select_device(device))
    else:
        model, _ = resolve_model(spec, device)
    if engine == "onnx" or not given_module:
        model = with_engine(model, engine)
    return partial(restore_file, model=model, out_dir=out_dir, run_key=key, **work, level=level)


def _sha_or_none(path: Path) -> str | None:
    try:
        return manifest.sha256_file(path)
    except OSError:
        return "unreadable"  # never matches: the output is redone (and the read error reported then)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _model_device(model: nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def _previous(out_dir: Path) -> tuple[manifest.Manifest | None, dict[str, manifest.RunInfo], dict, set[str]]:
    """An earlier run's manifest (None if absent or unreadable) and the journal of an interrupted one."""
    old = None
    if (out_dir / manifest.MANIFEST_FILE).is_file():
        try:
            old = manifest.load_manifest(out_dir)
        except ApirError as err:  # someone else's manifest.json: never replaced
            raise ApirError(
                f"{err}; apir writes its manifest.json there and never replaces a file it did not "
                "write, so choose another output folder"
            ) from None
    runs, done, begun = manifest.read_journal(out_dir / manifest.JOURNAL_FILE)
    return old, runs, done, begun


def _restore_locked(
    pairs: list[tuple[Path, Path]],
    out_dir: Path,
    run: manifest.RunInfo,
    key: str,
    protected: _Protected,
    summary: RestoreSummary,
    execute: Callable[[list[FileTask], Callable[[str], None]], Iterator[Outcome]],
    *,
    overwrite: bool,
    resume: bool,
    show_progress: bool,
) -> None:
    """The run itself, holding the lock on ``out_dir``: resume decisions, journal, images, manifest.

    ``execute(tasks, begin)`` restores the tasks (here, or on Ray) and yields their outcomes.
    """
    old, old_runs, journal_done, begun = _previous(out_dir)
    known: dict[str, manifest.Entry] = {e.output: e for e in old.entries} if old else {}
    known.update(journal_done)  # the interrupted run is newer than the manifest
    ours = set(known) | begun  # outputs an earlier apir run into out_dir wrote or started
    # An interrupted run's journal is folded into the manifest at the end, even when this run is
    # not a resume: what it finished stays on record.
    carried = [e for e in journal_done.values() if e.run in old_runs]
    todo: list[tuple[Path, Path, bool]] = []  # (source, output, may replace an existing file)
    for src, dst in pairs:
        rel = dst.relative_to(out_dir).as_posix()
        if resume and rel in known and known[rel].run == key:
            entry = known[rel]
            if entry.source == str(src.absolute()) and manifest.is_complete(dst, entry, _sha_or_none(src)):
                summary.verified.append(dst)
                continue
        exists = os.path.lexists(dst)
        if exists and not overwrite and not (resume and rel in ours):
            raise ApirError(
                f"{printable(dst)} already exists and is not an output of an earlier apir run into "
                f"{printable(out_dir)}; pass --overwrite to replace it"
            )
        todo.append((src, dst, exists and (overwrite or resume)))
    redone = [d for _, d, _ in todo if (e := known.get(d.relative_to(out_dir).as_posix())) and e.run != key]
    if resume and redone:
        tqdm.write(
            f"warning: {len(redone)} earlier output(s) were made with other settings (model, tile, "
            "overlap, keep-input, noise level, strength, engine, guard or device); they are redone "
            "with these",
            file=sys.stderr,
        )
    # kill -9 leftovers (we hold the lock, so no other run is writing them)
    remove_stale_temps([dst for _, dst in pairs] + [out_dir / manifest.MANIFEST_FILE])

    journal = manifest.Journal(out_dir / manifest.JOURNAL_FILE)
    journal.start(
        {**{k: v for k, v in old_runs.items() if any(e.run == k for e in carried)}, key: run}, fresh=True
    )
    for e in carried:
        journal.done(e)
    for dst in summary.verified:
        journal.done(known[dst.relative_to(out_dir).as_posix()])
    new_entries: list[manifest.Entry] = [
        *carried,
        *(known[d.relative_to(out_dir).as_posix()] for d in summary.verified),
    ]

    def skip(src: Path, reason: str) -> None:
        summary.skipped.append((src, reason))
        tqdm.write(f"warning: skipped {printable(reason)}", file=sys.stderr)

    tasks: list[FileTask] = []
    for src, dst, replace in todo:
        if src.suffix.lower() not in IMAGE_EXTENSIONS:
            skip(src, f"{src}: not an image file name (extensions: {', '.join(IMAGE_EXTENSIONS)})")
            continue
        if (reason := protected.reason(dst)) is not None:
            skip(src, f"{src}: {reason}")
            continue
        tasks.append(FileTask(index=len(tasks), src=str(src), dst=str(dst), replace=replace))
    bar = tqdm(total=len(todo), desc="restoring", unit="img", disable=not show_progress, file=sys.stderr)
    bar.update(len(todo) - len(tasks))
    written: list[int] = []  # task indices; Ray yields them in completion order
    outcomes = execute(tasks, journal.begin)
    try:
        for outcome in outcomes:
            src = Path(tasks[outcome.index].src)
            if outcome.skipped is not None:
                skip(src, outcome.skipped)
            outcome.raise_fatal()
            if outcome.entry is not None:
                journal.done(outcome.entry)
                new_entries.append(outcome.entry)
                written.append(outcome.index)
            bar.update(1)
    finally:
        outcomes.close()  # stops a Ray job that a fatal outcome cut short
        bar.close()
        journal.close()
        summary.written += [Path(tasks[i].dst) for i in sorted(written)]
    runs = {key: run, **old_runs}
    merged = manifest.merge(old, runs, new_entries)
    manifest.write_manifest(out_dir, merged)
    journal.close(remove=True)


class _TileBar:
    """A second progress bar counting tiles, for images with many of them (a 8192² image is 400+)."""

    def __init__(self, total: int) -> None:
        self.bar = tqdm(total=total, desc="  tiles", unit="tile", leave=False, file=sys.stderr)

    def __enter__(self) -> Callable[[int], object]:
        return self.bar.update

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


class _NoBar:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


#: Images with at least this many tiles get a tile progress bar (a 2048² image at the default tile).
TILE_BAR_MIN = 16


def _tile_progress(
    model: nn.Module, shape: tuple[int, ...], tile: int, overlap: int, show: bool
) -> _TileBar | _NoBar:
    if not show or tile == 0:
        return _NoBar()
    m = int(getattr(model, "size_multiple", 1) or 1)
    h, w = -(-shape[0] // m) * m, -(-shape[1] // m) * m
    n = len(plan_tiles(h, w, tile, overlap, m)[2])
    return _TileBar(n) if n >= TILE_BAR_MIN else _NoBar()
