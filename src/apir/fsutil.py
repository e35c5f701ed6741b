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
import errno
import os
import re
import secrets
import shutil
import stat
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from apir.errors import ApirError

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "check_free_space",
    "check_writable",
    "is_relative_to",
    "link_escapes",
    "os_error_reason",
    "printable",
    "remove_stale_temps",
    "stale_temp_files",
]


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
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` to write to; it replaces ``path`` only on success.
    The yielded file already exists (empty, so its name is reserved) and has the same suffix as
    ``path``, e.g. ``.plot.png.1a2b3c4d.tmp.png``. When the ``with`` body finishes without an
    exception the file is flushed to disk and renamed over ``path``; if the body (or the rename)
    fails, the temporary file is removed and ``path`` is left as it was. The parent directory must
    exist.

    ``overwrite=False`` publishes without ever replacing a file: if ``path`` exists at the moment of
    the rename (say another program created it meanwhile), :class:`FileExistsError` is raised and
    that file is left alone. It uses a hard link (atomic and exclusive on POSIX); where the file
    system has none, an existence check just before the rename (a tiny window remains).
    """
    target = Path(path)
    fd, tmp = _create_temp(target)
    os.close(fd)
    try:
        yield tmp
        _fsync_file(tmp)
        if overwrite:
            _keep_mode(tmp, target)
            os.replace(tmp, target)
        else:
            _publish_exclusive(tmp, target)
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_dir(target.parent)


def _publish_exclusive(tmp: Path, target: Path) -> None:
    try:
        os.link(tmp, target)  # fails with FileExistsError if target exists, atomically
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "file appeared while apir was writing it", str(target)) from None
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        if os.path.lexists(target):  # no hard links here (FAT, some FUSE): check, then rename
            raise FileExistsError(
                errno.EEXIST, "file appeared while apir was writing it", str(target)
            ) from None
        os.replace(tmp, target)
        return
    _remove_quietly(tmp)


def is_relative_to(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True if ``a`` is ``b`` or lies inside it, after resolving symlinks and ``..`` in both."""
    ra, rb = Path(a).resolve(), Path(b).resolve()
    return ra == rb or rb in ra.parents


def link_escapes(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """True if ``path`` reaches outside ``root`` through a symbolic link (of itself or a parent).
    Why: a dataset or input folder may hold a link to ``/etc/shadow`` or to a folder elsewhere;
    following it would copy, or take as data, files the user never gave apir. Links that stay
    inside ``root`` are harmless and followed.
    """
    return not is_relative_to(path, root)


# ------------------------------------------------------------------------------ stale temp files

_HEX = "[0-9a-f]{8}"


def _temp_pattern(target: Path) -> re.Pattern[str]:
    """Names :func:`_create_temp` gives temporaries of ``target`` (also nested: a temp of a temp)."""
    name, suffix = re.escape(target.name), re.escape(target.suffix)
    return re.compile(rf"\.+{name}\.{_HEX}\.tmp{suffix}(?:\.{_HEX}\.tmp{suffix})*")


def stale_temp_files(target: str | os.PathLike[str]) -> list[Path]:
    """apir's temporary files for ``target`` (hidden, next to it), e.g. left behind by ``kill -9``.
    Only call this while holding the lock of the folder (:mod:`apir.locking`): otherwise a temp
    file may belong to a run that is still writing.
    """
    t = Path(target)
    try:
        names = os.listdir(t.parent)
    except OSError:
        return []
    pattern = _temp_pattern(t)
    return sorted(t.parent / n for n in names if n.startswith(".") and pattern.fullmatch(n))


def remove_stale_temps(targets: list[Path]) -> int:
    """Delete :func:`stale_temp_files` of every target; return how many were removed."""
    removed = 0
    by_dir: dict[Path, list[Path]] = {}
    for t in targets:
        by_dir.setdefault(Path(t).parent, []).append(Path(t))
    for folder, items in by_dir.items():
        try:
            names = [n for n in os.listdir(folder) if n.startswith(".") and ".tmp" in n]
        except OSError:
            continue
        for t in items:
            pattern = _temp_pattern(t)
            for n in names:
                if pattern.fullmatch(n):
                    with contextlib.suppress(OSError):
                        os.unlink(folder / n)
                        removed += 1
    return removed


# ------------------------------------------------------------------------------ pre-flight checks


def os_error_reason(err: BaseException) -> str:
    """A short reason for an OS error: "No space left on device", "Read-only file system", ..."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def check_writable(folder: str | os.PathLike[str], what: str = "output folder") -> None:
    """Create (if needed) ``folder`` and prove a file can be created in it, or raise ApirError.
    Done before long work, so a read-only target fails in the first second, not after hours.
    """
    d = Path(folder)
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, probe = _create_temp(d / ".apir-write-test")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ApirError(f"{printable(d)}: {what} is not writable ({os_error_reason(err)})") from None


def check_free_space(folder: str | os.PathLike[str], needed: int, what: str = "the outputs") -> None:
    """Raise ApirError if the file system of ``folder`` has less than ``needed`` bytes free.
    ``needed`` is an estimate from the inputs (outputs are about as large as their inputs); a disk
    that fills anyway is still an error naming the file, but this catches the obvious case up front.
    """
    d = Path(folder)
    while not d.exists() and d != d.parent:
        d = d.parent
    try:
        free = shutil.disk_usage(d).free
    except OSError:
        return  # cannot tell: let the writes report it
    if free < needed:
        raise ApirError(
            f"{printable(folder)}: not enough free space for {what} "
            f"(about {_size(needed)} needed, {_size(free)} free)"
        )


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


# ------------------------------------------------------------------------------ printing names

# Bidirectional overrides and isolates can make a printed name read as something else.
_BIDI = {chr(c) for c in (0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def printable(text: object) -> str:
    """``text`` (a path, a message) with control characters escaped, for one safe terminal line.
    A file name may hold a newline (which would split a warning in two), ANSI escape sequences
    (which would recolour or rewrite the terminal), bidirectional overrides, or bytes that are not
    UTF-8 (surrogates here, which would make ``print`` fail). They are shown as ``\\n``, ``\\x1b``,
    ``\\u202e`` and ``\\xff``; everything else, accented letters included, is printed as it is.
    """
    s = os.fspath(text) if isinstance(text, os.PathLike) else str(text)
    if s.isprintable():
        return s
    out = []
    for ch in s:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == " " or (unicodedata.category(ch)[0] != "C" and ch not in _BIDI):
            out.append(ch)
        else:
            escaped = repr(ch)[1:-1]
            out.append(escaped if escaped != ch else f"\\u{code:04x}")
    return "".join(out)


def prepare_staging(folder: str | os.PathLike[str], *, marker: str, force: bool, what: str) -> Path:
    """A fresh hidden staging folder beside ``folder`` for a build published by :func:`publish_staging`.
    Why one helper: every apir command that builds a folder (demo dataset, corpus, unseen set) writes
    it in a hidden ``.<name>.building`` sibling and renames it at the end, so an interrupted build
    leaves no half folder, and replaces an existing ``folder`` only if it holds ``marker`` (apir built
    it) and ``force`` is set: apir never deletes a folder it did not create. Nothing is deleted here;
    the old folder goes only when the new one is complete.
    """
    folder = Path(folder)
    if folder.exists():
        if not (folder / marker).is_file():
            raise ApirError(
                f"{printable(folder)}: already exists and is not an {what}; choose another folder"
            )
        if not force:
            raise ApirError(f"{printable(folder)}: already exists (pass --force to rebuild this {what})")
    staging = folder.with_name(f".{folder.name}.building")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def claim_output_folder(
    folder: str | os.PathLike[str],
    *,
    marker: str,
    stamp: str,
    what: str,
    clear: Callable[[Path], None],
    recognise: Callable[[Path], bool] | None = None,
) -> Path:
    """Create ``folder`` for a command's output, or take back one it wrote before; refuse any other.
    Why one helper: apir never writes into a folder it did not create. A folder that exists and is
    not empty is taken only if it holds ``marker`` (or ``recognise(folder)`` says it is the
    command's own, e.g. written before markers existed); ``clear(folder)`` then removes what the
    earlier run wrote. The marker (text ``stamp``) is written first, so an interrupted run's folder is
    still recognised by the next. Problems are one-line errors.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ApirError(f"{printable(folder)}: exists and is not a folder; choose another output folder")
    if folder.is_dir() and any(folder.iterdir()):
        if not ((folder / marker).is_file() or (recognise is not None and recognise(folder))):
            raise ApirError(
                f"{printable(folder)}: folder is not empty and holds no {what}; choose another output folder"
            )
        clear(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / marker, f"{stamp}\n".encode())
    except OSError as err:
        raise ApirError(f"{printable(folder)}: cannot write {what} ({os_error_reason(err)})") from None
    return folder


class FolderAppeared(Exception):
    """A folder apir does not own appeared at the target while apir built its replacement."""


def publish_staging(staging: Path, folder: str | os.PathLike[str], *, marker: str | None = None) -> None:
    """Put the complete ``staging`` folder at ``folder``, replacing an earlier one only now.
    Why one helper: the demo dataset, the corpus, restored datasets and reports are all built beside
    their target and published at the end. An earlier ``folder`` (its ownership checked by the
    caller before the work) is moved aside, the new one renamed in, and the old one deleted last;
    if the rename fails, the old one is put back. With ``marker``, ownership is checked again here:
    a non-empty ``folder`` without it appeared while apir worked, and is left untouched
    (:class:`FolderAppeared`; the staging folder is kept too). An empty folder is simply replaced.
    """
    folder = Path(folder)
    old = None
    if folder.exists():
        if any(folder.iterdir()):
            if marker is not None and not (folder / marker).is_file():
                raise FolderAppeared(str(folder))
            old = folder.with_name(f".{folder.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(folder, old)
        else:
            folder.rmdir()
    try:
        os.replace(staging, folder)
    except BaseException:
        if old is not None:
            os.replace(old, folder)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
