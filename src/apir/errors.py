"""User-facing errors.

Anything a user can cause (a missing folder, a corrupt image, a typo in a config) raises
:class:`ApirError`. The CLI turns it into one line on stderr and exit code 2, never a traceback;
library users can catch it like any exception.
"""

from __future__ import annotations


class ApirError(Exception):
    """An error caused by the user's input, reported as one line with exit code 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def safe_name(path: object) -> str:
    """``path`` as text fit for a one-line message: control and invisible characters escaped.

    File names may hold newlines, terminal escape sequences or right-to-left overrides; printed raw
    they break the one-line error or make it lie. Printable characters (including non-ASCII
    letters) are kept; others become ``\\n``, ``\\x1b``, ``\\u202e``...; bytes that were not valid
    in the file system's encoding (surrogate escapes) become ``\\xNN``.
    """
    text = path if isinstance(path, str) else str(path)
    out = []
    for ch in text:
        code = ord(ch)
        if ch.isprintable():
            out.append(ch)
        elif 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's escape for an undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


class NonFiniteOutput(ApirError):
    """A model returned NaN or infinite values: a broken model, so a run stops rather than skipping.

    Every image would come out black (NaN clipped to 0); skipping them one by one with a warning
    each, or worse writing them, would hide that the model itself is the problem.
    """
