"""apir: Anomaly-Preserving Image Restoration.

Restore noisy and blurred images while keeping the defects (scratches, cracks, stains) that
inspection and anomaly-detection pipelines exist to find.
"""

from __future__ import annotations

from apir.errors import ApirError
from apir.version import __version__

__all__ = ["ApirError", "__version__"]


def __getattr__(name: str) -> object:
    """``apir.restore_array`` is imported on first use, so ``import apir`` does not load torch."""
    if name == "restore_array":
        from apir.restore.api import restore_array

        return restore_array
    raise AttributeError(f"module 'apir' has no attribute {name!r}")
