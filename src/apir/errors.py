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


class NonFiniteOutput(ApirError):
    """A model returned NaN or infinite values: a broken model, so a run stops rather than skipping.

    Every image would come out black (NaN clipped to 0); skipping them one by one with a warning
    each, or worse writing them, would hide that the model itself is the problem.
    """
