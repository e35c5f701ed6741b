"""apir's cache folder: fetched Debian packages, exported ONNX graphs.

``$APIR_CACHE`` if set, else ``$XDG_CACHE_HOME/apir``, else ``~/.cache/apir``. Everything in it can be
rebuilt (deleting it only costs time); nothing there is ever an input apir must not lose.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    base = os.environ.get("APIR_CACHE")
    root = Path(base) if base else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "apir"
    return root.joinpath(*parts)
