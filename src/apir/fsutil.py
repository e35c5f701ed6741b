"""Small file-system helpers: atomic writes and path containment.

Every file apir writes (images, masks, checkpoints, reports) goes through :func:`atomic_write_bytes`
or :func:`atomic_path`: the data is written to a hidden temporary file in the *same directory* as the
target, flushed to disk, and then renamed over the target with :func:`os.replace`. A rename within
one directory is atomic on POSIX and Windows, so a reader (or a crash) sees either the old file or
the complete new one, never half of it. On any failure the temporary file is removed and an
existing target is left untouched.

Temporary files are named ``.<target name>.<random>.tmp<suffix>``: hidden (apir's folder scans skip
dot-files) and ending in the target's suffix, so libraries that pick a format from the file name
(matplotlib, tifffile, ...) write the right format.

Why not :class:`tempfile.NamedTemporaryFile`: it creates files with mode 0600, so every output would
end up readable only by its owner. The temporary file here is created with ``os.open(..., 0o666)``
and ``O_EXCL``, which lets the process umask decide the permissions exactly as for a plain
``open(path, "w")``; when an existing file is replaced, its permission bits are kept.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "is_relative_to"]


def _create_temp(target: Path) -> tuple[int, Path]:
    """Create a new, empty, hidden file next to ``target``; return its open descriptor and path."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp{target.suffix}")
        try:
            fd = os.open(tmp, flags, 0o666)  # the umask applies, as for any new file
        except FileExistsError:
            continue
        return fd, tmp
    raise FileExistsError(f"could not create a temporary file next to {target}")


def _keep_mode(tmp: Path, target: Path) -> None:
    """Give the new file the permission bits of the file it replaces (best effort)."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return  # no existing target: the umask-derived mode stands
    with contextlib.suppress(OSError):
        os.chmod(tmp, mode)


def _fsync_file(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # e.g. Windows refuses fsync on a read-only descriptor; the rename is still atomic
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX only; a no-op where directories cannot be opened)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, fsync, ``os.replace``).

    The parent directory must exist. On any failure (including KeyboardInterrupt) the temporary file
    is removed, the exception propagates and an existing ``path`` is unchanged.
    """
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` to write to; it replaces ``path`` only on success.

    The yielded file already exists (empty, so its name is reserved) and has the same suffix as
    ``path``, e.g. ``.plot.png.1a2b3c4d.tmp.png``. When the ``with`` body finishes without an
    exception the file is flushed to disk and renamed over ``path``; if the body (or the rename)
    fails, the temporary file is removed and ``path`` is left as it was. The parent directory must
    exist.
    """
    target = Path(path)
    fd, tmp = _create_temp(target)
    os.close(fd)
    try:
        yield tmp
        _fsync_file(tmp)
        _keep_mode(tmp, target)
        os.replace(tmp, target)
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_dir(target.parent)


def is_relative_to(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True if ``a`` is ``b`` or lies inside it, after resolving symlinks and ``..`` in both."""
    ra, rb = Path(a).resolve(), Path(b).resolve()
    return ra == rb or rb in ra.parents
