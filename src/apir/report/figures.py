"""The charts of the HTML report: per-category bars, defect survival, and example panels.

Every chart answers one question at a glance, in the same colour per method everywhere (the degraded
input is always grey), so a reader who learned "blue is the model" on the first chart can read the
rest without checking legends. Overall PSNR alone can hide a restorer that erases defects (denoisers
can gain dB while making small defects fainter), so the survival chart puts PSNR inside the defect
against PSNR outside it, and the examples show a zoom on the defect and the error map next to the
images: the paper's Figs. 2–5, with the defect made visible.

All functions take plain numbers and arrays (no results-folder knowledge; :mod:`apir.report.html`
does the reading) and write a PNG atomically.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.patches as mpatches  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from apir.fsutil import atomic_path  # noqa: E402

__all__ = [
    "INPUT_COLOR",
    "ExampleImages",
    "ExamplePanel",
    "Series",
    "method_colors",
    "plot_category_bars",
    "plot_defect_survival",
    "SurvivalSeries",
    "plot_example",
]

#: The degraded input's colour in every chart: neutral, so the methods stand out against it.
INPUT_COLOR = "#8c8c8c"
#: Colour of the defect outline: cyan shows on photos and on the dark-to-yellow error heatmap alike.
OUTLINE_COLOR = "#00e5ff"
_DPI = 100


def method_colors(n: int) -> list[str]:
    """``n`` distinct colours (tab10, then tab20), assigned in result-set order and reused by every chart."""
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    # tab10's grey (index 7) would be confused with the input's grey: skip it.
    idx = [i for i in range(cmap.N) if not (cmap.N == 10 and i == 7)]
    return [matplotlib.colors.to_hex(cmap(idx[i % len(idx)])) for i in range(n)]


@dataclass
class Series:
    """One bar series / scatter series: a result set (or the degraded input) and its values."""

    label: str
    color: str
    values: list[float | None]  # one per category, None where missing
    is_input: bool = False


def _t(text: str) -> str:
    """User text for matplotlib: a ``$`` in a label would otherwise start mathtext (and may fail to parse)."""
    return text.replace("$", r"\$")


def _save(fig: Figure, out: Path) -> Path:
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=_DPI)
    return out


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def _no_data(fig: Figure, ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=10, color="#555")
    ax.set_xticks([])
    ax.set_yticks([])


def _mark_missing(ax, categories: list[str], series: list[list[float | None]]) -> None:
    """Write "n/a" where a category has no value at all, so an empty group is not read as zero."""
    for i in range(len(categories)):
        if not _finite([vals[i] for vals in series]):
            ax.text(
                i,
                0.02,
                "n/a",
                ha="center",
                va="bottom",
                transform=ax.get_xaxis_transform(),
                fontsize=8,
                color="#777",
            )


def plot_category_bars(
    categories: list[str],
    series: list[Series],
    ylabel: str,
    title: str,
    out: str | Path,
    *,
    start_at_zero: bool = False,
    reference: tuple[float, str] | None = None,
    empty_message: str | None = None,
) -> Path:
    """Grouped bars: one group per category, one bar per series (the paper's Figs. 4–5, methods side by side).

    PSNR differences of a few tenths of a dB vanish on an axis starting at 0, so unless
    ``start_at_zero`` the axis starts just below the smallest value and the chart says so.
    ``reference`` (value, text) draws a dashed line, e.g. retention 1 = "all kept".
    """
    n_cat, n_ser = max(1, len(categories)), max(1, len(series))
    width_in = min(18.0, max(6.4, 0.28 * n_cat * (n_ser + 1) + 2.5))
    fig = Figure(figsize=(width_in, 3.6), layout="constrained")
    ax = fig.add_subplot()
    vals = [v for s in series for v in _finite(s.values)]
    if not categories or not vals:
        _no_data(fig, ax, _t(empty_message or f"{title}: no values to plot"))
        return _save(fig, out)
    bar_w = 0.8 / n_ser
    x = np.arange(len(categories))
    for i, s in enumerate(series):
        heights = [v if v is not None and math.isfinite(v) else np.nan for v in s.values]
        ax.bar(
            x + (i - (n_ser - 1) / 2) * bar_w,
            heights,
            bar_w * 0.92,
            label=_t(s.label),
            color=s.color,
            hatch="//" if s.is_input else None,
            edgecolor="white" if s.is_input else None,
            linewidth=0,
        )
    lo, hi = min(vals), max(vals)
    if reference is not None:  # on the axis, wherever it lies (text far off-axis overflows the renderer)
        lo, hi = min(lo, reference[0]), max(hi, reference[0])
    span = max(hi - lo, 0.05 * abs(hi), 1e-6)  # equal values still get a readable axis
    if start_at_zero or lo <= 0:
        ax.set_ylim(min(0.0, lo), hi + 0.1 * span)
    else:
        bottom = max(0.0, lo - 0.25 * span)
        ax.set_ylim(bottom, hi + 0.1 * span)
        if bottom > 0:
            title = f"{title}  (axis starts at {bottom:.3g})"
    if reference is not None:
        ax.axhline(reference[0], color="black", linestyle="--", linewidth=0.8)
        ax.text(len(categories) - 0.45, reference[0], _t(reference[1]), ha="right", va="bottom", fontsize=7)
    rotate = len(categories) > 5
    ax.set_xticks(
        x, [_t(c) for c in categories], rotation=30 if rotate else 0, ha="right" if rotate else "center"
    )
    ax.set_xlim(-0.6, len(categories) - 0.4)
    _mark_missing(ax, categories, [s.values for s in series])
    ax.set_ylabel(ylabel)
    ax.set_xlabel("category")
    ax.set_title(_t(title), fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return _save(fig, out)


@dataclass
class SurvivalSeries:
    """A result set's defect survival: overall and per-category (background PSNR, defect PSNR)."""

    label: str
    color: str
    overall: tuple[float | None, float | None]  # (psnr_background, psnr_defect)
    per_category: list[tuple[float | None, float | None]]
    is_input: bool = False


def _point_ok(p: tuple[float | None, float | None]) -> bool:
    return p[0] is not None and p[1] is not None and math.isfinite(p[0]) and math.isfinite(p[1])


def plot_defect_survival(series: list[SurvivalSeries], out: str | Path) -> Path:
    """Defect PSNR against background PSNR: on the diagonal the defect is restored as well as the rest.

    A method that moves its point up (towards the diagonal) without moving it left keeps defects
    better; moving left (denoising less) also narrows the gap and is no gain. Large markers are
    the overall values, small ones the categories, so one bad category cannot hide in the mean.
    """
    fig = Figure(figsize=(6.4, 5.6), layout="constrained")
    ax = fig.add_subplot()
    pts = [p for s in series for p in [s.overall, *s.per_category] if _point_ok(p)]
    if not pts:
        _no_data(fig, ax, "no defect / background PSNR values")
    else:
        for s in series:
            marker = "X" if s.is_input else "o"
            cats = [p for p in s.per_category if _point_ok(p)]
            if cats:
                ax.scatter(
                    [p[0] for p in cats], [p[1] for p in cats], s=18, color=s.color, alpha=0.6, marker=marker
                )
            if _point_ok(s.overall):
                ax.scatter(
                    [s.overall[0]],
                    [s.overall[1]],
                    s=120,
                    color=s.color,
                    marker=marker,
                    edgecolor="black",
                    linewidth=0.8,
                    zorder=3,
                )
        lo = min(min(p) for p in pts)
        hi = max(max(p) for p in pts)
        pad = max(0.5, 0.06 * (hi - lo))
        lo, hi = lo - pad, hi + pad
        ax.plot([lo, hi], [lo, hi], color="black", linestyle="--", linewidth=0.8)
        at = lo + 0.93 * (hi - lo)
        ax.text(
            at,
            at,
            "defect = background  ",
            ha="right",
            va="bottom",
            rotation=45,
            fontsize=8,
            rotation_mode="anchor",
            color="#333",
        )
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal", adjustable="box")
        handles = [
            Line2D(
                [],
                [],
                marker="X" if s.is_input else "o",
                linestyle="",
                color=s.color,
                label=_t(s.label),
                markersize=8,
            )
            for s in series
        ]
        handles += [
            Line2D(
                [],
                [],
                marker="o",
                linestyle="",
                color="black",
                markerfacecolor="white",
                markersize=9,
                label="large: overall",
            ),
            Line2D(
                [],
                [],
                marker="o",
                linestyle="",
                color="black",
                alpha=0.6,
                markersize=4,
                label="small: one category",
            ),
        ]
        ax.legend(handles=handles, fontsize=8, loc="upper left", frameon=True, framealpha=0.9)
        ax.grid(alpha=0.3)
    ax.set_xlabel("PSNR outside the defect (dB)")
    ax.set_ylabel("PSNR inside the defect (dB)")
    ax.set_title("defect vs background quality (up = defect kept better)", fontsize=11)
    return _save(fig, out)


# ---------------------------------------------------------------------------------- examples


@dataclass
class ExamplePanel:
    """One restored (or degraded) image of an example, with its caption lines."""

    label: str
    color: str
    image: np.ndarray | None  # H×W×3 float in [0, 1]; None: missing (caption says why)
    caption: str = ""


@dataclass
class ExampleImages:
    """Everything drawn for one example image: the shared clean/degraded/mask and one panel per method."""

    title: str
    clean: np.ndarray
    mask: np.ndarray  # H×W bool
    degraded: ExamplePanel
    restored: list[ExamplePanel] = field(default_factory=list)


def _zoom_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """A square-ish crop (y0, y1, x0, x1) around the mask's bounding box, padded by half its size (≥ 8 px)."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return 0, h, 0, w
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = max(y1 - y0, x1 - x0)
    side = min(max(h, w), side + 2 * max(8, side // 2))
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2

    def span(c: float, n: int) -> tuple[int, int]:
        s = min(side, n)
        a = int(round(c - s / 2))
        a = min(max(a, 0), n - s)
        return a, a + s

    return (*span(cy, h), *span(cx, w))


def _upscale(a: np.ndarray, k: int) -> np.ndarray:
    """Nearest-neighbour upscaling by an integer factor: each pixel stays a sharp square, nothing invented."""
    return np.repeat(np.repeat(a, k, axis=0), k, axis=1) if k > 1 else a


def _outline(ax, mask: np.ndarray) -> None:
    if mask.any() and not mask.all():
        ax.contour(mask.astype(np.float32), levels=[0.5], colors=[OUTLINE_COLOR], linewidths=0.9)


def _error_map(image: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """|image − clean| averaged over RGB, in 8-bit grey levels (0–255), the unit people read errors in."""
    return np.abs(image.astype(np.float32) - clean.astype(np.float32)).mean(axis=2) * 255.0


def _tint(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = image.copy()
    out[mask] = 0.45 * out[mask] + 0.55 * np.array([1.0, 0.1, 0.1], np.float32)
    return out


def plot_example(ex: ExampleImages, out: str | Path) -> Path:
    """Three rows: the full images, a nearest-neighbour zoom on the defect, and the error maps.

    Columns: clean, degraded, then one per method. The error maps share one colour scale (the 99.5th
    percentile of the methods' errors), so a brighter defect means that method changed the defect
    more; the degraded input's map uses the same scale and usually saturates.
    """
    clean = np.clip(ex.clean, 0, 1)
    mask = ex.mask.astype(bool)
    h, w = mask.shape
    y0, y1, x0, x1 = _zoom_box(mask)
    zoom_side = max(y1 - y0, x1 - x0)
    k = max(1, min(16, round(256 / max(1, zoom_side))))
    zmask = _upscale(mask[y0:y1, x0:x1], k)

    panels = [ExamplePanel("clean", "black", clean, "reference"), ex.degraded, *ex.restored]
    errors: list[np.ndarray | None] = []
    for p in panels:
        ok = p.image is not None and p.image.shape[:2] == (h, w)
        errors.append(_error_map(np.clip(p.image, 0, 1), clean) if ok else None)
    method_err = [e for e in errors[2:] if e is not None]
    pool = np.concatenate([e.ravel() for e in method_err]) if method_err else np.array([1.0])
    vmax = max(1.0, float(np.percentile(pool, 99.5)))

    ncols = len(panels)
    aspect = h / max(1, w)
    col_w = 2.35
    fig = Figure(figsize=(col_w * ncols + 0.9, col_w * (aspect + 1 + aspect) + 1.5), layout="constrained")
    axes = fig.subplots(3, ncols, squeeze=False, height_ratios=[aspect, 1.0, aspect])
    im = None
    for c, (p, err) in enumerate(zip(panels, errors, strict=True)):
        a_full, a_zoom, a_err = axes[0, c], axes[1, c], axes[2, c]
        for a in (a_full, a_zoom, a_err):
            a.set_xticks([])
            a.set_yticks([])
            for spine in a.spines.values():
                spine.set_edgecolor(p.color)
                spine.set_linewidth(2.0 if c >= 2 else 0.8)
        wrapped = "\n".join(textwrap.wrap(_t(p.label), 28)[:2])
        a_full.set_title(f"{wrapped}\n{_t(p.caption)}" if p.caption else wrapped, fontsize=8, color="black")
        if p.image is None or p.image.shape[:2] != (h, w):
            why = "missing" if p.image is None else f"size {p.image.shape[1]}×{p.image.shape[0]} ≠ clean"
            for a in (a_full, a_zoom, a_err):
                a.text(0.5, 0.5, why, ha="center", va="center", transform=a.transAxes, fontsize=8)
            continue
        img = np.clip(p.image, 0, 1)
        a_full.imshow(img, interpolation="antialiased")
        a_full.add_patch(
            mpatches.Rectangle(
                (x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=OUTLINE_COLOR, lw=1.0
            )
        )
        a_zoom.imshow(_upscale(img[y0:y1, x0:x1], k), interpolation="nearest")
        _outline(a_zoom, zmask)
        if c == 0:
            a_err.imshow(_tint(clean, mask), interpolation="antialiased")
            a_err.set_title("defect mask (red)", fontsize=8)
        else:
            im = a_err.imshow(err, cmap="magma", vmin=0, vmax=vmax, interpolation="antialiased")
            _outline(a_err, mask)
            if c == 1:
                a_err.set_title("input error (same scale)", fontsize=8)
    axes[0, 0].set_ylabel("image", fontsize=9)
    axes[1, 0].set_ylabel(f"defect zoom ×{k}" if k > 1 else "defect zoom", fontsize=9)
    axes[2, 0].set_ylabel("|error| vs clean", fontsize=9)
    if im is not None:
        cb = fig.colorbar(im, ax=list(axes[2, 1:]), shrink=0.9, pad=0.01)
        cb.set_label("|restored − clean| (0–255 levels)", fontsize=8)
        cb.ax.tick_params(labelsize=7)
    fig.suptitle(_t(ex.title), fontsize=10)
    return _save(fig, out)
