"""Small helpers shared by the report's sections: numbers as table text, names as file names, and the
page templates (Jinja2, autoescaped: every label and path from a results file is shown as text)."""

from __future__ import annotations

import math
import re
from functools import cache
from typing import Any

import jinja2


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


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("apir.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt name fails the tests instead of vanishing
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, **context: Any) -> str:
    """Render ``templates/<template>`` with ``context`` (autoescaped HTML)."""
    return _environment().get_template(template).render(**context)
