"""Restored (or degraded) copies of an MVTec-layout dataset, for any anomaly detector.

apir's own detection check (:mod:`apir.evaluate.detection`) uses a reference detector that needs no
download; users with a PatchCore/PaDiM/EfficientAD pipeline (anomalib) want *their* detector's answer.
The simplest interface to every such tool is a dataset on disk, so :func:`restore_dataset` writes one:

* the same folders and file names as the input (``<category>/train/good``, ``test/<type>``,
  ``ground_truth/<type>``, apir's ``original/<type>``, and any other files);
* every image of ``train/good`` and ``test/*`` degraded with parameters fixed per image by
  ``(seed, key)`` — the very bytes ``apir evaluate`` and the detection check use
  (:class:`~apir.data.datasets.EvalImageDataset`) — then restored by ``restore_fn(degraded, sigma)``,
  and written in the input's own format, mode and bit depth (gray stays 1-channel, 16-bit stays
  16-bit, alpha is copied unchanged; a JPEG is re-encoded as JPEG, quality 95);
* masks (``ground_truth/``), originals (``original/``) and every other non-hidden file copied byte
  for byte (:func:`shutil.copy2`), so scores are compared against untouched ground truth.
  ``originals=False`` leaves out apir's ``original/`` folders: anomalib's ``MVTecAD`` datamodule
  globs every image under a category and takes any folder other than ``good`` for a defect type
  that needs a mask, so it refuses a category that has them (``docs/anomaly-detection.md``).

``restore_fn=None`` writes the *degraded* dataset: the baseline a detector sees without restoration.
Training images are degraded too, as a camera would deliver them; train on the clean ``train/good``
of the original dataset instead if your question is "fitted on clean, tested on restored" (that is
what the detection check does).

Safety: ``out_root`` may not be ``root``, lie inside it, or contain it; a non-empty ``out_root`` is
refused unless ``overwrite`` is set *and* it is an earlier output of this function (it carries a
hidden marker file), so no folder apir did not create is ever deleted. The copy is built in a hidden
staging folder next to ``out_root`` and renamed into place at the end: an interrupted run leaves no
half dataset behind. That check is repeated at the rename: a folder created at ``out_root`` during
the run is left alone (the finished staging folder is kept for ``resume``).

Faults (``docs/restore.md``, "Failures and recovery"): the run holds a lock next to ``out_root``; the
dataset is checked as ``apir data check`` does, the target for writability and free space, before
any work; a journal in the staging folder records each finished file so ``resume`` continues
byte-identically after a crash; ``manifest.json`` lists every output with its checksum
(:mod:`apir.restore.manifest`). Links out of ``root`` are not followed unless ``follow_symlinks``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from tqdm import tqdm

from apir.data.check import check_category
from apir.data.degradations import DegradationPipeline, get_degradation
from apir.data.mvtec import Category, _inside, is_category_dir, load_dataset
from apir.errors import ApirError
from apir.fsutil import (
    FolderAppeared,
    atomic_path,
    atomic_write_bytes,
    check_free_space,
    check_writable,
    is_relative_to,
    os_error_reason,
    printable,
    publish_staging,
    remove_stale_temps,
)
from apir.locking import LOCK_NAME, RunLock
from apir.restore import manifest
from apir.restore.functions import RestoreFn
from apir.restore.ray_executor import RayOptions, check_executor, ray_session, run_on_ray
from apir.restore.work import DatasetTask, Outcome, degrade_image
from apir.version import __version__

__all__ = ["MARKER_FILE", "degrade_dataset", "restore_dataset"]


#: Hidden file in every dataset this module writes (apir's scans skip dot-files): what it was made
#: from and how; its presence is what lets ``overwrite`` replace the folder.
MARKER_FILE = ".apir-restored-dataset.json"


def _check_out_root(root: Path, out_root: Path, overwrite: bool, resume: bool = False) -> None:
    if is_relative_to(out_root, root):
        where = "the dataset folder" if out_root.resolve() == root.resolve() else "inside the dataset folder"
        raise ApirError(f"{out_root}: output folder is {where} {root}; choose a folder outside it")
    if is_relative_to(root, out_root):
        raise ApirError(f"{out_root}: output folder contains the dataset {root}; choose another folder")
    if out_root.exists() and not out_root.is_dir():
        raise ApirError(f"{out_root}: exists and is not a folder; choose another output folder")
    if out_root.is_dir() and any(out_root.iterdir()):
        if resume and (out_root / MARKER_FILE).is_file():
            return  # a finished earlier run: resume verifies it
        if not overwrite:
            raise ApirError(f"{out_root}: folder is not empty; choose another folder (or pass --overwrite)")
        if not (out_root / MARKER_FILE).is_file():
            raise ApirError(
                f"{out_root}: folder is not empty and is not a dataset written by apir restore-dataset; "
                "apir only replaces its own outputs, so choose another folder"
            )


def _other_files(src: Path, top: Path, follow_symlinks: bool) -> list[Path]:
    """Every non-hidden file under ``src`` (hidden folders skipped, symlinked folders not followed;
    a file linking out of ``top`` is left out with a warning unless ``follow_symlinks``)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")]
    return [f for f in found if _inside(f, top, follow_symlinks)]


def _preflight_check(cats: Sequence[Category]) -> None:
    """Refuse a dataset that ``apir data check`` would fault, before any work (one line)."""
    problems = [p for c in cats for p in check_category(c).problems]
    if problems:
        n = len(problems)
        raise ApirError(
            f"{printable(problems[0])} ({n} problem{'s' if n != 1 else ''} in the dataset; run "
            "`apir data check` on it for the list, or pass check=False from Python)"
        )


def _atomic_copy(src: Path, dst: Path) -> None:
    """``shutil.copy2`` through a temporary file: an interrupted copy leaves no half file."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
        shutil.copystat(src, tmp)


def _estimate_bytes(cats: Sequence[Category], root: Path, single: bool) -> int:
    """Bytes the output will take: about what the dataset's files take (same formats, same sizes)."""
    total = 0
    for folder in [c.root for c in cats] + ([] if single else [root]):
        for dirpath, dirnames, filenames in os.walk(folder):
            if not single and Path(dirpath) == root:
                dirnames[:] = []  # the root's own files only; categories are counted above
            for name in filenames:
                with contextlib.suppress(OSError):
                    total += (Path(dirpath) / name).stat().st_size
    return total


def restore_dataset(
    root: str | Path,
    out_root: str | Path,
    *,
    restore_fn: RestoreFn | None,
    degradation: str | Path | DegradationPipeline = "blind",
    seed: int = 0,
    categories: Sequence[str] | None = None,
    show_progress: bool = True,
    overwrite: bool = False,
    label: str | None = None,
    originals: bool = True,
    resume: bool = False,
    follow_symlinks: bool = False,
    model_info: dict[str, Any] | None = None,
    check: bool = True,
    executor: str = "local",
    ray: RayOptions | None = None,
    restore_factory: Callable[[], RestoreFn] | None = None,
) -> Path:
    """Write a degraded-then-restored copy of the MVTec-layout dataset ``root`` to ``out_root``.
    ``root`` is a dataset root (its selected ``categories`` are copied, with the root's own files) or
    one category folder (then ``out_root`` becomes that category). ``restore_fn(degraded, sigma)``
    gets float32 H×W×3 in [0, 1] and the true noise σ (0–255); None writes the degraded images
    unrestored. ``label`` (e.g. the model's name) is recorded in the marker file. ``originals=False``
    skips the ``<category>/original/`` folders (needed for anomalib's MVTecAD loader). Returns
    ``out_root``.

    ``resume`` continues an interrupted run (its hidden staging folder): outputs its journal records
    whose checksums still match are kept, the rest redone; the result is byte for byte what an
    uninterrupted run writes. ``model_info`` (``{"source": checkpoint, "model": {...}}``) goes into
    ``manifest.json`` with the checkpoint's SHA-256. ``check`` runs the checks of ``apir data check``
    first and refuses a dataset with problems. ``follow_symlinks``: see :mod:`apir.data.mvtec`.

    ``executor="ray"`` degrades and restores the images on a Ray actor pool (``ray``:
    :class:`~apir.restore.ray_executor.RayOptions`); the bytes and the manifest are the same as a
    local run's. Each actor calls ``restore_factory()`` once (e.g. to load the model) when given,
    else ``restore_fn`` is pickled to it; ``restore_fn`` still says whether to restore (None: degrade
    only) and is what a local run calls. Masks, originals and other files are copied by this process.
    See the module docstring for what is copied, how, and which folders are refused.
    """
    root, out_root = Path(root), Path(out_root)
    if restore_fn is not None and not callable(restore_fn):
        raise ApirError("restore_fn must be a callable (degraded, sigma) -> restored, or None")
    ray = check_executor(executor, ray)  # before any work: a missing extra is one line here
    cats = load_dataset(root, categories, follow_symlinks)  # checks that root exists and is MVTec-shaped
    _check_out_root(root, out_root, overwrite, resume)
    pipeline = degradation if isinstance(degradation, DegradationPipeline) else get_degradation(degradation)
    single = is_category_dir(root)
    if check:
        _preflight_check(cats)
    try:
        out_root.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ApirError(f"{out_root}: cannot create the output folder ({os_error_reason(err)})") from None
    check_writable(out_root.parent, "folder of the output")
    staging = out_root.parent / f".{out_root.name}.building"
    run = manifest.RunInfo(
        generator="apir restore-dataset",
        apir_version=__version__,
        model=manifest.model_record(model_info) if model_info else None,
        label=label,
        degradation=pipeline.name,
        degradation_description=pipeline.description,
        seed=int(seed),
        settings={
            "source": str(root.resolve()),
            "categories": [c.name for c in cats],
            "restored": restore_fn is not None,
            "originals": bool(originals),
            "follow_symlinks": bool(follow_symlinks),
            **({"keep_input": model_info.get("keep_input")} if model_info else {}),
        },
    )
    lock = RunLock(out_root.parent / f".{out_root.name}{LOCK_NAME}", f"output folder {out_root}")
    with ray_session(ray), lock:
        _check_out_root(root, out_root, overwrite, resume)  # again, now that no other run can write
        if resume and not staging.is_dir() and (out_root / MARKER_FILE).is_file():
            _verify_finished(out_root, manifest.run_id(run))
            return out_root
        if staging.exists() and not resume:
            shutil.rmtree(staging)  # a crashed earlier run's leftovers (hidden name of our own making)
        check_free_space(out_root.parent, _estimate_bytes(cats, root, single), "the restored dataset")
        _build(root, out_root, staging, cats, pipeline, run, restore_fn, seed, single, originals,
               follow_symlinks, label, show_progress, ray, restore_factory)  # fmt: skip
    return out_root


def _verify_finished(out_root: Path, key: str) -> None:
    """``--resume`` on a finished dataset: nothing to do if it still matches its manifest."""
    if key not in manifest.load_manifest(out_root).runs:
        raise ApirError(
            f"{printable(out_root)}: this dataset was finished with other settings (model, degradation, "
            "seed, categories or originals); pass --overwrite to build it again with these"
        )
    problems = manifest.verify(out_root)
    if problems:
        path, what = problems[0]
        raise ApirError(
            f"{printable(path)}: {what}; the dataset was finished and has changed since "
            f"({len(problems)} problem(s), see `apir data check {printable(out_root)}`); "
            "pass --overwrite to build it again"
        )


def _build(
    root: Path,
    out_root: Path,
    staging: Path,
    cats: Sequence[Category],
    pipeline: DegradationPipeline,
    run: manifest.RunInfo,
    restore_fn: RestoreFn | None,
    seed: int,
    single: bool,
    originals: bool,
    follow_symlinks: bool,
    label: str | None,
    show_progress: bool,
    ray: RayOptions | None = None,
    restore_factory: Callable[[], RestoreFn] | None = None,
) -> None:
    """Fill ``staging`` (resuming what its journal says is done) and move it to ``out_root``."""
    key = manifest.run_id(run)
    journal_path = staging / manifest.JOURNAL_FILE
    old_runs, done, _ = manifest.read_journal(journal_path)
    if not done and (staging / manifest.MANIFEST_FILE).is_file():
        # A finished staging folder that could not be moved into place (a folder appeared there):
        # its manifest says what is done, so the resume only verifies checksums.
        with contextlib.suppress(ApirError):
            finished_copy = manifest.load_manifest(staging)
            old_runs = dict(finished_copy.runs)
            done = {e.output: e for e in finished_copy.entries}
    if old_runs and key not in old_runs:
        raise ApirError(
            f"{printable(out_root)}: the interrupted run was started with other settings (model, "
            "degradation, seed, categories or originals); pass --overwrite to start over with these"
        )
    created = not staging.exists()
    try:
        staging.mkdir(exist_ok=True)
    except OSError as err:
        raise ApirError(f"{printable(staging)}: cannot create ({os_error_reason(err)})") from None
    journal = manifest.Journal(journal_path)
    entries: list[manifest.Entry] = []
    kept_going = False
    total = sum(len(c.train) + len(c.test) for c in cats)
    try:
        journal.start({key: run}, fresh=not done)

        def finished(dst: Path, src: Path) -> bool:
            entry = done.get(dst.relative_to(staging).as_posix())
            if entry is None or entry.run != key or entry.source != str(src.absolute()):
                return False
            try:
                src_sha = manifest.sha256_file(src)
            except OSError:
                return False
            if manifest.is_complete(dst, entry, src_sha):
                entries.append(entry)
                return True
            return False

        def record(dst: Path, src: Path, kind: str, src_sha: str | None) -> None:
            entry = manifest.entry_for(dst, staging, src, kind, key, source_sha256=src_sha)
            journal.done(entry)
            entries.append(entry)

        def copy(src: Path, dst: Path) -> None:
            if finished(dst, src):
                return
            try:
                dst.parent.mkdir(parents=True, exist_ok=True)
                src_sha = manifest.sha256_file(src)
                _atomic_copy(src, dst)
            except OSError as err:
                raise ApirError(
                    f"{printable(dst)}: cannot copy {printable(src)} ({os_error_reason(err)})"
                ) from None
            record(dst, src, "copied", src_sha)

        plan: list[tuple[Path, Path]] = []  # every (source, output) to remove stale temp files up front
        if not single:
            for f in sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")):
                if f.name == manifest.MANIFEST_FILE:
                    _not_copied(f)  # the copy's own manifest takes its place
                    continue
                if not _inside(f, root, follow_symlinks):
                    continue
                plan.append((f, staging / f.name))
        remove_stale_temps(
            [dst for _, dst in plan] + [staging / MARKER_FILE, staging / manifest.MANIFEST_FILE]
        )  # left by a kill -9 of an earlier run (we hold the lock)
        for src, dst in plan:
            copy(src, dst)
        tasks: list[DatasetTask] = []
        copies: list[tuple[Path, Path]] = []
        with tqdm(total=total, desc="restore-dataset", unit="img", disable=not show_progress) as bar:
            for cat in cats:
                dst_root = staging if single else staging / cat.name
                samples = [*cat.train, *cat.test]
                images = {s.image.resolve() for s in samples}
                skip = None if originals else cat.root / "original"
                others = [
                    f
                    for f in _other_files(cat.root, root, follow_symlinks)
                    if f.resolve() not in images and not (skip is not None and is_relative_to(f, skip))
                ]
                if single:
                    top = [f for f in others if f.name == manifest.MANIFEST_FILE and f.parent == cat.root]
                    for f in top:
                        _not_copied(f)
                    others = [f for f in others if f not in top]
                remove_stale_temps(
                    [dst_root / s.image.relative_to(cat.root) for s in samples]
                    + [dst_root / f.relative_to(cat.root) for f in others]
                )
                for sample in samples:
                    dst = dst_root / sample.image.relative_to(cat.root)
                    if finished(dst, sample.image):
                        bar.update(1)
                        continue
                    tasks.append(DatasetTask.of(len(tasks), sample, dst))
                copies += [(f, dst_root / f.relative_to(cat.root)) for f in others]
            if ray is None:
                outcomes = (
                    degrade_image(t, staging, key, pipeline, seed, restore_fn, begin=journal.begin)
                    for t in tasks
                )
            else:
                # With a factory, the restore function (which may hold an unpicklable ONNX session)
                # is built in each actor instead of being shipped there.
                factory = restore_factory if restore_fn is not None else None
                shipped = restore_fn if factory is None else None
                setup = partial(_ray_image_worker, staging, key, pipeline, seed, shipped, factory)
                outcomes = run_on_ray(tasks, setup, ray)
            try:
                for outcome in outcomes:
                    bar.set_postfix_str(tasks[outcome.index].category, refresh=False)
                    outcome.raise_fatal()
                    if outcome.entry is not None:
                        journal.done(outcome.entry)
                        entries.append(outcome.entry)
                        kept_going = True
                    bar.update(1)
            finally:
                outcomes.close()  # stops a Ray job that a fatal outcome cut short
        for src, dst in copies:
            copy(src, dst)
        marker = {
            "generator": "apir restore-dataset",
            "source": str(root.resolve()),
            "categories": [c.name for c in cats],
            "restored": restore_fn is not None,
            "originals": originals,
            "label": label,
            "degradation": pipeline.name,
            "degradation_description": pipeline.description,
            "seed": int(seed),
            "images": total,
            "apir_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write_bytes(staging / MARKER_FILE, json.dumps(marker, indent=1).encode("utf-8"))
        manifest.write_manifest(staging, manifest.Manifest(runs={key: run}, entries=entries))
        journal.close(remove=True)
        _replace(out_root, staging)
    except _Appeared:
        raise
    except (ApirError, OSError) as err:
        journal.close()
        message = (
            err.message
            if isinstance(err, ApirError)
            else f"{err.filename or staging}: {os_error_reason(err)}"
        )
        # A failed Ray job may have finished images on its workers before the driver heard of them:
        # keep the staging folder then too (resume verifies what it finds and redoes the rest).
        ray_failed = ray is not None and message.startswith("the Ray job failed")
        if (entries and (kept_going or not created)) or ray_failed:
            raise ApirError(
                f"{printable(message)}; the finished part is kept, rerun with --resume to continue"
            ) from None
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(err, ApirError):
            raise
        raise ApirError(printable(message)) from None
    except BaseException:
        journal.close()  # Ctrl-C: keep the staging folder, --resume continues from it
        raise


def _not_copied(path: Path) -> None:
    """A source's ``manifest.json``: an apir one describes the source, not the copy (left out
    silently); anything else is named, since the copy's own manifest takes its place."""
    try:
        manifest.load_manifest(path)
    except ApirError:
        print(
            f"warning: not copied {printable(path)}: the copy's own {manifest.MANIFEST_FILE} takes its place",
            file=sys.stderr,
        )


def _ray_image_worker(
    staging: Path,
    key: str,
    pipeline: DegradationPipeline,
    seed: int,
    restore_fn: RestoreFn | None,
    restore_factory: Callable[[], RestoreFn] | None,
) -> Callable[[DatasetTask], Outcome]:
    """Run once in each Ray actor: build the restore function (load the model) and return the
    per-image function, the one the local loop calls."""
    fn = restore_factory() if restore_factory is not None else restore_fn
    return partial(degrade_image, staging=staging, run_key=key, pipeline=pipeline, seed=seed, restore_fn=fn)


class _Appeared(ApirError):
    """A folder appeared at the output path during the run (it is left alone, and so is ours)."""


def _replace(out_root: Path, staging: Path) -> None:
    """Move ``staging`` to ``out_root``; an earlier output (checked before) is removed only now.
    Checked again here: a folder someone created at ``out_root`` while the run worked is never
    renamed or deleted, and the finished dataset stays in ``staging`` for ``--resume``.
    """
    try:
        publish_staging(staging, out_root, marker=MARKER_FILE)
    except FolderAppeared:
        raise _Appeared(
            f"{printable(out_root)}: a folder appeared there while restore-dataset ran; it is "
            f"left untouched, and the finished dataset is kept in {printable(staging)}: move "
            "that folder away and rerun with --resume to put it in place"
        ) from None


def degrade_dataset(root: str | Path, out_root: str | Path, **kwargs: Any) -> Path:
    """The degraded dataset (no restoration): :func:`restore_dataset` with ``restore_fn=None``."""
    return restore_dataset(root, out_root, restore_fn=None, **kwargs)
