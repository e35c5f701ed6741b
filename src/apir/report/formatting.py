"""Small text helpers shared by the report's sections (numbers as table cells, names as file names)."""

from __future__ import annotations

import html
import math
import re
from typing import Any

#: HTML-escape every piece of user or results text that goes into the page.
e = html.escape


def num(value: Any) -> float | None:
    """A metric value as a finite float, or None (null, NaN, inf, or not a number at all)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def fmt(v: float | None, digits: int) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def fmt_sig(v: float | None) -> str:
    return "—" if v is None else f"{v:.3g}"


def slug(text: str) -> str:
    """A file-name-safe version of a label (result-set labels are free text)."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return s[:40] or "set"


def swatch(color: str) -> str:
    """A small square of a result set's chart colour, for tables."""
    return f'<span class="sw" style="background:{e(color)}"></span>'
