"""apir: Anomaly-Preserving Image Restoration.

Restore noisy and blurred images while keeping the defects (scratches, cracks, stains) that
inspection and anomaly-detection pipelines exist to find.
"""

from __future__ import annotations

__version__ = "0.1.0"

from apir.errors import ApirError  # noqa: E402

__all__ = ["ApirError", "__version__"]
