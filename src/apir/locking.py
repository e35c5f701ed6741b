"""One writer per output folder: a lock file holding the writer's PID.

Two ``apir restore`` runs into one OUT_DIR, or two ``restore-dataset`` runs into one OUT_ROOT, would
each believe the folder is theirs: one overwrites the other's files, or deletes them when it
replaces the folder at the end. So every command that writes a folder holds :class:`RunLock` on it
for the whole run; a second run gets a one-line refusal naming the holder's PID.

The lock is ``fcntl.flock`` on a small file that also records the holder's PID. The kernel releases
a flock when its process dies (``kill -9`` included), so a lock left by a dead process is
recognised as stale and taken over; where ``flock`` is unavailable (Windows, some network file
systems) the file is created exclusively instead and a stale one is recognised by its PID no
longer running (``os.kill(pid, 0)``).
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from types import TracebackType

from apir.errors import ApirError
from apir.fsutil import os_error_reason, printable

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "LockHeld", "RunLock", "pid_alive"]

#: The lock file's name inside a locked folder (hidden, so apir's folder scans skip it).
LOCK_NAME = ".apir.lock"


class LockHeld(ApirError):
    """Another live process holds the lock."""


def pid_alive(pid: int) -> bool:
    """True if a process with this PID exists (signal 0 checks without sending anything)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    return True


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace").split()
        return int(text[0]) if text else None
    except (OSError, ValueError):
        return None


class RunLock:
    """Exclusive lock on ``path`` (a lock file) for one run; use as a context manager.

    ``what`` names the locked thing in the refusal, e.g. ``"output folder out/"``. The lock file is
    removed on release. Re-entrant use from the same process is not supported.
    """

    def __init__(self, path: str | os.PathLike[str], what: str) -> None:
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def _refuse(self, pid: int | None) -> LockHeld:
        holder = f"PID {pid}" if pid else "another process"
        return LockHeld(
            f"{printable(self.what)} is in use by another apir run ({holder}, lock file "
            f"{printable(self.path)}); wait for it to finish, or stop it"
        )

    def acquire(self) -> RunLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ApirError(
                f"{printable(self.path.parent)}: cannot create ({os_error_reason(err)})"
            ) from None
        for _ in range(20):
            if fcntl is not None:
                if self._try_flock():
                    return self
            elif self._try_exclusive():  # pragma: no cover - no flock
                return self
        raise self._refuse(_read_pid(self.path))  # pragma: no cover - lost the race 20 times

    def _try_flock(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ApirError(
                f"{printable(self.path)}: cannot create lock file ({os_error_reason(err)})"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._refuse(_read_pid(self.path)) from None
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL):
                return self._try_exclusive()
            raise ApirError(f"{printable(self.path)}: cannot lock ({os_error_reason(err)})") from None
        # The holder before us may have unlinked the file between our open and our flock: then we
        # hold a lock on a file nobody else can see, so start again on the current one.
        try:
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except OSError:
            same = False
        if not same:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def _try_exclusive(self) -> bool:
        """Fallback without flock: create the file exclusively; take over if its PID is dead."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pid = _read_pid(self.path)
            if pid is not None and pid_alive(pid) and pid != os.getpid():
                raise self._refuse(pid) from None
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # stale: its process is gone
            return False
        except OSError as err:
            raise ApirError(
                f"{printable(self.path)}: cannot create lock file ({os_error_reason(err)})"
            ) from None
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # unlink while still holding it: nobody can grab a dying file
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
