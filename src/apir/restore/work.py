"""One file's work — read, restore or degrade, write atomically, describe — shared by every executor.

Why a module of its own: ``apir restore`` and ``apir restore-dataset`` run either in one process
(the local loop) or on a Ray actor pool (:mod:`apir.restore.ray_executor`). Both must write the same
bytes and the same manifest entries, so "what happens to one file" lives here once and both loops
call it. A call never raises for a problem with its file: it returns an :class:`Outcome` (the entry,
or a one-line reason to skip the file, or a one-line reason to stop the run), which the driver
applies with the same code whichever executor produced it. That is also what lets a Ray worker's
error name its file instead of arriving as a remote traceback.

The driver keeps everything that needs the whole run: the lock, the resume decisions, the journal and
the manifest. Workers only write outputs (atomically: a temporary name, then a rename).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from apir.data.cases import iter_cases
from apir.data.imageio import read_image, write_image
from apir.data.mvtec import Sample
from apir.errors import ApirError, NonFiniteOutput
from apir.fsutil import atomic_path, os_error_reason, printable
from apir.restore import manifest
from apir.restore.api import restore_rgb
from apir.restore.functions import restore_case

__all__ = ["DatasetTask", "FileTask", "Outcome", "degrade_image", "restore_file"]

#: Write errors after which every further image would fail the same way: stop rather than warn per file.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT)
DISK_FULL = tuple(os.strerror(code) for code in DISK_FULL_ERRNOS)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileTask(_Frozen):
    """One image of ``apir restore``: its source, its output, and whether it may replace a file there."""

    index: int
    src: str
    dst: str
    replace: bool = False


class DatasetTask(_Frozen):
    """One image of ``apir restore-dataset``: the sample (source, mask, key) and its output path."""

    index: int
    src: str
    dst: str
    category: str
    split: str
    defect_type: str
    mask: str | None = None
    original: str | None = None

    def sample(self) -> Any:
        return Sample(
            image=Path(self.src),
            category=self.category,
            split=self.split,
            defect_type=self.defect_type,
            mask=Path(self.mask) if self.mask else None,
            original=Path(self.original) if self.original else None,
        )

    @classmethod
    def of(cls, index: int, sample: Any, dst: Path) -> DatasetTask:
        return cls(
            index=index,
            src=str(sample.image),
            dst=str(dst),
            category=sample.category,
            split=sample.split,
            defect_type=sample.defect_type,
            mask=str(sample.mask) if sample.mask else None,
            original=str(sample.original) if sample.original else None,
        )


class Outcome(_Frozen):
    """What became of one task: its manifest entry, or why it was skipped, or why the run must stop.
    ``skipped`` (the file is left out, the run goes on) and ``fatal`` (the run stops) are one-line
    messages naming the file; both may be set (a full disk skips this file and stops the run).
    """

    index: int
    entry: manifest.Entry | None = None
    skipped: str | None = None
    fatal: str | None = None
    fatal_kind: Literal["error", "nonfinite"] = "error"

    def raise_fatal(self) -> None:
        """Stop the run with ``fatal`` as the one-line error (a no-op when there is none)."""
        if self.fatal is None:
            return
        if self.fatal_kind == "nonfinite":
            raise NonFiniteOutput(self.fatal)
        raise ApirError(self.fatal)


def restore_file(
    task: FileTask,
    model: Any,
    out_dir: Path,
    run_key: str,
    *,
    tile: int,
    overlap: int,
    batch: int,
    keep_input: float,
    level: dict | None = None,
    progress: Callable[[Any, tuple[int, ...]], Any] | None = None,
    begin: Callable[[str], None] | None = None,
) -> Outcome:
    """Restore ``task.src`` with ``model`` and write it atomically to ``task.dst`` (``apir restore``).
    ``progress(model, shape)`` may return a context manager yielding a tile callback (the local run's
    tile bar); ``begin(rel)`` is called just before the output is written (the local journal).
    """
    src, dst = Path(task.src), Path(task.dst)
    rel = dst.relative_to(out_dir).as_posix()
    try:
        source_sha = manifest.sha256_file(src)
        image = read_image(src)
        amp = None if image.info.dtype == "uint8" else False
        bar = progress(model, image.rgb.shape) if progress is not None else contextlib.nullcontext()
        with bar as tick:
            restored = restore_rgb(
                model, image.rgb, tile=tile, overlap=overlap, batch=batch, amp=amp,
                keep_input=keep_input, progress=tick, **(level or {}),
            )  # fmt: skip
        if begin is not None:
            begin(rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dst, overwrite=task.replace) as tmp:
            write_image(tmp, restored, image.info, image.alpha)
    except NonFiniteOutput as err:
        return Outcome(
            index=task.index,
            fatal=f"{printable(src)}: {err}; stopped (nothing written for it)",
            fatal_kind="nonfinite",
        )
    except FileExistsError:
        return Outcome(
            index=task.index,
            skipped=f"{dst}: appeared while apir was running (written by another program); left untouched",
        )
    except ApirError as err:
        stop = any(reason in err.message for reason in DISK_FULL)
        fatal = f"{printable(err.message)}; stopped (rerun with --resume when fixed)" if stop else None
        return Outcome(index=task.index, skipped=err.message, fatal=fatal)
    except OSError as err:
        reason = os_error_reason(err)
        stop = err.errno in DISK_FULL_ERRNOS
        fatal = f"{printable(dst)}: {reason}; stopped (rerun with --resume when fixed)" if stop else None
        return Outcome(index=task.index, skipped=f"{dst}: cannot write image ({reason})", fatal=fatal)
    except Exception as err:  # a bug or an engine's own exception type: still one line naming the file
        return Outcome(index=task.index, fatal=_unexpected(src, err))
    entry = manifest.entry_for(dst, out_dir, src, "restored", run_key, source_sha256=source_sha)
    return Outcome(index=task.index, entry=entry)


def degrade_image(
    task: DatasetTask,
    staging: Path,
    run_key: str,
    pipeline: Any,
    seed: int,
    restore_fn: Callable[[np.ndarray, float], np.ndarray] | None,
    begin: Callable[[str], None] | None = None,
) -> Outcome:
    """Degrade one dataset image exactly as ``apir evaluate`` does, restore it, write it (restore-dataset).
    The image is the same :class:`~apir.data.cases.EvalCase` evaluation scores, its degradation fixed
    by ``(seed, sample key)`` only, never by which worker runs it or in which order, so every executor
    writes the same bytes; it is restored once by :func:`~apir.restore.functions.restore_case`.
    """
    sample = task.sample()
    dst = Path(task.dst)
    try:
        src_sha = manifest.sha256_file(sample.image)
        loaded = read_image(sample.image)
        case = next(iter_cases([sample], pipeline, seed))
        result = case.degraded if restore_fn is None else restore_case(case, restore_fn).restored
        if begin is not None:
            begin(dst.relative_to(staging).as_posix())
        write_image(dst, result, loaded.info, loaded.alpha)
        kind = "restored" if restore_fn is not None else "degraded"
        entry = manifest.entry_for(dst, staging, sample.image, kind, run_key, source_sha256=src_sha)
    except NonFiniteOutput as err:
        return Outcome(index=task.index, fatal=f"{printable(sample.image)}: {err}", fatal_kind="nonfinite")
    except ApirError as err:
        return Outcome(index=task.index, fatal=err.message)
    except OSError as err:
        where = err.filename or dst
        return Outcome(index=task.index, fatal=f"{printable(where)}: {os_error_reason(err)}")
    except Exception as err:
        return Outcome(index=task.index, fatal=_unexpected(sample.image, err))
    return Outcome(index=task.index, entry=entry)


def _unexpected(src: Path, err: Exception) -> str:
    first = (str(err).splitlines() or [""])[0]
    return f"{printable(src)}: {type(err).__name__}: {printable(first) or 'no message'}"
