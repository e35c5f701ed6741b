"""A self-contained HTML report comparing result sets written by ``apir evaluate``.

Why a folder of plain HTML and PNGs: reports get copied to shared drives, attached to tickets and
opened on offline inspection PCs, so the page uses no scripts, no external CSS, fonts or CDNs, and
every image it shows lies inside the folder (together with a copy of each ``metrics.json``, so the
numbers can be checked). Why these sections: overall PSNR alone can hide a restorer that erases
defects, so defect PSNR always sits next to it, a survival chart plots defect against background
quality, and the examples zoom on each defect with its error map (the paper's Figs. 2–5).

Several result sets (a model, CBM3D, NLM, ...) evaluated on the same data share image keys; their
clean and degraded images are identical and only ``restored.png`` differs. When the sets hold
different images, every table and chart is computed over the images common to all of them (and the
page says so); different degradations or datasets are allowed but flagged at the top of the page.

This module computes what the page shows; the markup is ``templates/report.html.j2`` (Jinja2,
autoescaped). Results are read by :func:`apir.evaluate.results.load_results`, so a malformed
``metrics.json`` stops the report with one line naming the file and the field.

The report is built in a hidden temporary folder next to ``out_dir`` and renamed into place at the
end, so a crash never leaves half a report; an existing report in ``out_dir`` is replaced, anything
else there is refused.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from apir.data.imageio import read_image, read_mask
from apir.errors import ApirError, safe_name
from apir.evaluate.metrics import METRICS as METRIC_REGISTRY
from apir.evaluate.metrics import metric_names
from apir.evaluate.results import RESULTS_FILE, SCHEMA, ImageRow, Results, Summary, load_results
from apir.fsutil import atomic_write_bytes, is_relative_to, publish_staging
from apir.report.detection import DetectionSet, detection_context
from apir.report.figures import (
    INPUT_COLOR,
    ExampleImages,
    ExamplePanel,
    Series,
    SurvivalSeries,
    method_colors,
    plot_category_bars,
    plot_defect_survival,
    plot_example,
)
from apir.report.formatting import fmt, fmt_sig, render, slug
from apir.report.frontier import frontier_context
from apir.version import __version__

__all__ = ["SCHEMA", "ResultSet", "write_report"]

#: Marks an index.html as ours: only such a folder may be replaced by a new report.
GENERATOR = "apir report"
_GENERATOR_META = f'<meta name="generator" content="{GENERATOR}">'


# ---------------------------------------------------------------------------------- reading


@dataclass
class ResultSet:
    """One results folder: its typed results, the file's bytes, its display label (unique in the
    report) and colour."""

    path: Path
    results: Results
    raw: bytes
    label: str = ""
    color: str = ""

    @property
    def images(self) -> dict[str, ImageRow]:
        return {img.key: img for img in self.results.images}


def _load_set(path: str | os.PathLike[str]) -> ResultSet:
    """Read one results folder with the evaluator's own typed reader (one-line errors)."""
    p = Path(path)
    if not p.is_dir():
        raise ApirError(f"{safe_name(p)}: results folder not found")
    return ResultSet(path=p, results=load_results(p), raw=(p / RESULTS_FILE).read_bytes())


# ---------------------------------------------------------------------------------- statistics


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _aggregate(images: list[ImageRow]) -> Summary:
    """Means over images of every metric, for sets that must be compared on a common subset."""
    means = {}
    for m in metric_names():
        means[m] = _mean(img.metric(m) for img in images)
        means[f"input_{m}"] = _mean(img.metric(f"input_{m}") for img in images)
    secs = sum(img.seconds or 0.0 for img in images)
    pix = sum(img.height * img.width for img in images)
    mps = pix / secs / 1e6 if secs > 0 and pix > 0 else None
    return Summary(**means, n_images=len(images), seconds=secs, megapixels_per_second=mps)


@dataclass
class _Stats:
    overall: Summary
    categories: dict[str, Summary]


def _stats(rs: ResultSet, keys: set[str] | None) -> _Stats:
    """The evaluator's own aggregates when every set holds the same images, else means over ``keys``."""
    if keys is None:
        return _Stats(rs.results.overall, dict(rs.results.categories))
    imgs = [img for img in rs.results.images if img.key in keys]
    groups: dict[str, list[ImageRow]] = defaultdict(list)
    for img in imgs:
        groups[img.category].append(img)
    return _Stats(_aggregate(imgs), {c: _aggregate(g) for c, g in sorted(groups.items())})


def _gap(d: Summary, prefix: str = "") -> float | None:
    bg, df = d.metric(f"{prefix}psnr_background"), d.metric(f"{prefix}psnr_defect")
    return bg - df if bg is not None and df is not None else None


# ---------------------------------------------------------------------------------- tables


# (key, header lines, tooltip, digits, rule): rule picks the best value among the result sets.
_Column = tuple[str, tuple[str, ...], str, int, str]
#: Report-only columns, at their place among the registered metrics' (``column`` meta).
_GAP_TIP = "background PSNR minus defect PSNR; smaller is better"
_GAP = ("gap", ("gap", "bg − defect (dB)"), _GAP_TIP, 2, "minabs")
_SPEED_TIP = "megapixels restored per second, higher is better"
_SPEED = ("megapixels_per_second", ("speed", "(MP/s)"), _SPEED_TIP, 3, "max")
_EXTRA_COLUMNS: list[tuple[int, _Column]] = [(3, _GAP), (1000, _SPEED)]


def _columns() -> list[_Column]:
    """The overall table's columns: every registered metric (:data:`apir.evaluate.metrics.METRICS`)
    in its ``column`` order, with the background−defect gap and the speed."""
    placed = []
    for name in metric_names():
        meta = METRIC_REGISTRY.meta(name)
        placed.append((meta["column"], (name, meta["header"], meta["tooltip"], meta["digits"], meta["best"])))
    return [col for _, col in sorted(placed + _EXTRA_COLUMNS, key=lambda pc: pc[0])]


_BEST: dict[str, Callable[[float], float]] = {
    "max": lambda v: -v,
    "min": lambda v: v,
    "minabs": abs,
    "one": lambda v: abs(v - 1.0),
}


def _best(values: list[float | None], rule: str) -> float | None:
    vals = [v for v in values if v is not None]
    return min(vals, key=_BEST[rule]) if vals else None


def _overall_table(sets: list[ResultSet], stats: list[_Stats]) -> dict[str, Any]:
    cols = _columns()
    inp = stats[0].overall
    inp_vals: dict[str, float | None] = {k: inp.metric(f"input_{k}") for k, *_ in cols}
    inp_vals["gap"] = _gap(inp, "input_")
    inp_vals["megapixels_per_second"] = None
    rows = [(f"degraded input ({sets[0].results.degradation})", INPUT_COLOR, inp_vals, True, inp.n_images)]
    for s, st in zip(sets, stats, strict=True):
        vals: dict[str, float | None] = {k: st.overall.metric(k) for k, *_ in cols}
        vals["gap"] = _gap(st.overall)
        rows.append((s.label, s.color, vals, False, st.overall.n_images))
    best = {k: _best([r[2][k] for r in rows if not r[3]], rule) for k, _, _, _, rule in cols}
    out_rows = []
    for label, color, vals, is_input, n in rows:
        cells = []
        for key, _, _, digits, _ in cols:
            v = vals[key]
            delta = None
            if (
                key in ("psnr", "psnr_defect")
                and not is_input
                and v is not None
                and inp_vals[key] is not None
            ):
                delta = f"{v - inp_vals[key]:+.2f}"
            text = fmt_sig(v) if key == "megapixels_per_second" else fmt(v, digits)
            ranked = not is_input and v is not None and v == best[key] and len(rows) > 2
            cells.append({"text": text, "delta": delta, "best": ranked})
        out_rows.append({"label": label, "color": color, "is_input": is_input, "cells": cells, "n": n})
    columns = [{"lines": lines, "tip": tip} for _, lines, tip, _, _ in cols]
    return {"columns": columns, "rows": out_rows}


_CATEGORY_COLUMNS = (("psnr", "PSNR", 2), ("psnr_defect", "defect PSNR", 2), ("ssim", "SSIM", 4))
_CATEGORY_COLUMNS += (("retention", "retention", 3),)


def _category_table(categories: list[str], sets: list[ResultSet], stats: list[_Stats]) -> dict[str, Any]:
    def row(label: str, color: str, summary: Summary | None, prefix: str, is_input: bool) -> dict[str, Any]:
        cells = [fmt(summary.metric(prefix + k) if summary else None, d) for k, _, d in _CATEGORY_COLUMNS]
        n = summary.n_images if summary else "—"
        return {"label": label, "color": color, "is_input": is_input, "cells": cells, "n": n}

    out = []
    for cat in categories:
        rows = [row("degraded input", INPUT_COLOR, stats[0].categories.get(cat), "input_", True)]
        rows += [
            row(s.label, s.color, st.categories.get(cat), "", False)
            for s, st in zip(sets, stats, strict=True)
        ]
        out.append({"name": cat, "rows": rows})
    return {"headers": [h for _, h, _ in _CATEGORY_COLUMNS], "categories": out}


def _image_table(sets: list[ResultSet]) -> dict[str, Any]:
    """Every image, worst defect survival (lowest retention over the result sets) first."""
    maps = [s.images for s in sets]
    keys = list(dict.fromkeys(k for m in maps for k in m))

    def worst(k: str) -> tuple[int, float, str]:
        rets = [r for r in (m[k].retention for m in maps if k in m) if r is not None]
        return (0, min(rets), k) if rets else (1, 0.0, k)

    rows = []
    for k in sorted(keys, key=worst):
        ref = next(m[k] for m in maps if k in m)
        cells = [fmt(ref.input_psnr, 2), fmt(ref.input_psnr_defect, 2)]
        for m in maps:
            img = m.get(k)
            cells += [fmt(img.psnr, 2), fmt(img.psnr_defect, 2), fmt(img.retention, 3)] if img else ["—"] * 3
        rows.append({"key": k, "defect_type": ref.defect_type, "cells": cells})
    return {"rows": rows}


def _result_sets(sets: list[ResultSet], json_names: list[str]) -> list[dict[str, Any]]:
    out = []
    for s, json_name in zip(sets, json_names, strict=True):
        r = s.results
        model = json.dumps(r.model, sort_keys=True, default=str) if r.model else "—"
        out.append(
            {
                "label": s.label,
                "color": s.color,
                "method": r.method,
                "model": model[:157] + "…" if len(model) > 160 else model,
                "degradation": r.degradation,
                "seed": r.seed,
                "n_images": len(r.images),
                "created": r.created,
                "apir_version": r.apir_version,
                "path": str(s.path),
                "json_name": json_name,
            }
        )
    return out


# ---------------------------------------------------------------------------------- examples


def _image_dir(rs: ResultSet, img: ImageRow) -> Path | None:
    """The example folder of an image, only if it lies inside the results folder (never follow ``..``)."""
    if not img.image_dir:
        return None
    d = rs.path / img.image_dir
    return d if is_relative_to(d, rs.path) and d.is_dir() else None


def _pick_examples(sets: list[ResultSet], common: list[str], n: int) -> list[str]:
    """Up to ``n`` defective images with pictures, spread round-robin over categories and defect types."""
    if n <= 0:
        return []
    maps = [s.images for s in sets]
    candidates = []
    for k in common:
        if maps[0][k].defect_type == "good":
            continue
        have = sum(_image_dir(s, m[k]) is not None for s, m in zip(sets, maps, strict=True))
        if have:
            candidates.append((-have, k))
    candidates.sort()
    best_have = candidates[0][0] if candidates else 0
    pool = [k for h, k in candidates if h == best_have] + [k for h, k in candidates if h != best_have]
    by_cat: dict[str, list[str]] = defaultdict(list)
    for k in pool:
        by_cat[maps[0][k].category].append(k)
    # within a category, alternate defect types so one kind of defect does not fill the page
    for cat, ks in by_cat.items():
        by_type: dict[str, list[str]] = defaultdict(list)
        for k in ks:
            by_type[maps[0][k].defect_type].append(k)
        lists = list(by_type.values())
        by_cat[cat] = [lst[i] for i in range(max(map(len, lists))) for lst in lists if i < len(lst)]
    picked: list[str] = []
    queues = [by_cat[c] for c in sorted(by_cat)]
    i = 0
    while len(picked) < n and any(i < len(q) for q in queues):
        picked += [q[i] for q in queues if i < len(q)][: n - len(picked)]
        i += 1
    return picked


def _caption(img: ImageRow, prefix: str = "") -> str:
    parts = [f"PSNR {fmt(img.metric(prefix + 'psnr'), 2)} dB"]
    parts.append(f"defect {fmt(img.metric(prefix + 'psnr_defect'), 2)} dB")
    ret = img.metric(prefix + "retention")
    if ret is not None:
        parts.append(f"ret {ret:.2f}")
    return parts[0] + "\n" + " · ".join(parts[1:])


def _read_rgb(path: Path) -> np.ndarray | None:
    return read_image(path).rgb if path.is_file() else None


def _example(sets: list[ResultSet], key: str, out: Path) -> dict[str, str]:
    """Draw one example; returns its image for the page. An unreadable image is an ApirError."""
    maps = [s.images for s in sets]
    dirs = [_image_dir(s, m[key]) if key in m else None for s, m in zip(sets, maps, strict=True)]
    src = next(i for i, d in enumerate(dirs) if d is not None)
    sdir, simg = dirs[src], maps[src][key]
    assert sdir is not None
    clean = _read_rgb(sdir / "clean.png")
    if clean is None:
        raise ApirError(f"{safe_name(sdir)}: clean.png missing")
    mask_path = sdir / "mask.png"
    mask = read_mask(mask_path, clean.shape[:2]) if mask_path.is_file() else np.zeros(clean.shape[:2], bool)
    degraded = ExamplePanel(
        f"degraded ({sets[src].results.degradation})",
        INPUT_COLOR,
        _read_rgb(sdir / "degraded.png"),
        _caption(simg, "input_"),
    )
    restored = []
    for s, m, d in zip(sets, maps, dirs, strict=True):
        img = _read_rgb(d / "restored.png") if d is not None else None
        restored.append(ExamplePanel(s.label, s.color, img, _caption(m[key]) if key in m else ""))
    title = f"{key}   ({simg.category} / {simg.defect_type}, {mask.sum()} defect pixels)"
    plot_example(ExampleImages(title, clean, mask, degraded, restored), out)
    return {"src": f"{out.parent.name}/{out.name}", "alt": f"example {key}"}


# ---------------------------------------------------------------------------------- writing


def _is_report(folder: Path) -> bool:
    index = folder / "index.html"
    try:
        with open(index, encoding="utf-8", errors="replace") as fh:
            return _GENERATOR_META in fh.read(4096)
    except OSError:
        return False


def _check_out_dir(out_dir: Path, sets: list[ResultSet]) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ApirError(f"{safe_name(out_dir)}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not _is_report(out_dir):
        raise ApirError(
            f"{safe_name(out_dir)}: folder is not empty and holds no apir report; "
            "choose a new or empty folder"
        )
    for s in sets:
        if is_relative_to(s.path, out_dir):
            raise ApirError(
                f"{safe_name(out_dir)}: the report would replace the results folder {safe_name(s.path)}; "
                "choose another"
            )


def _unique_labels(sets: list[ResultSet]) -> None:
    seen: dict[str, int] = {}
    for s in sets:
        base = s.results.label or s.results.method or s.path.name
        seen[base] = seen.get(base, 0) + 1
        s.label = base if seen[base] == 1 else f"{base} ({seen[base]})"


def _warnings(sets: list[ResultSet]) -> list[str]:
    out = []
    for key, what in (("dataset", "datasets"), ("degradation", "degradations"), ("split", "splits")):
        vals = {str(getattr(s.results, key)) for s in sets}
        if len(vals) > 1:
            out.append(
                f"The result sets use different {what} ({', '.join(sorted(vals))}): their numbers are not "
                "directly comparable. The degraded-input row and the example inputs come from the first set."
            )
    if len({json.dumps(s.results.conventions, sort_keys=True) for s in sets}) > 1:
        out.append("The result sets state different metric conventions (see their metrics.json).")
    return out


def _charts(figs: Path, categories: list[str], sets: list[ResultSet], stats: list[_Stats]) -> None:
    ic = stats[0].categories

    def metric(summary: Summary | None, name: str) -> float | None:
        return summary.metric(name) if summary is not None else None

    def series(name: str) -> list[Series]:
        out = [
            Series(
                "degraded input", INPUT_COLOR, [metric(ic.get(c), f"input_{name}") for c in categories], True
            )
        ]
        out += [
            Series(s.label, s.color, [metric(st.categories.get(c), name) for c in categories])
            for s, st in zip(sets, stats, strict=True)
        ]
        return out

    plot_category_bars(
        categories, series("psnr"), "PSNR (dB)", "PSNR per category", figs / "category_psnr.png"
    )
    plot_category_bars(
        categories,
        series("psnr_defect"),
        "PSNR inside the defect (dB)",
        "defect PSNR per category",
        figs / "category_psnr_defect.png",
    )
    plot_category_bars(
        categories, series("ssim"), "SSIM (0–1)", "SSIM per category", figs / "category_ssim.png"
    )

    def point(d: Summary | None, prefix: str = "") -> tuple[float | None, float | None]:
        return metric(d, f"{prefix}psnr_background"), metric(d, f"{prefix}psnr_defect")

    surv = [
        SurvivalSeries(
            "degraded input",
            INPUT_COLOR,
            point(stats[0].overall, "input_"),
            [point(ic.get(c), "input_") for c in categories],
            True,
        )
    ]
    surv += [
        SurvivalSeries(s.label, s.color, point(st.overall), [point(st.categories.get(c)) for c in categories])
        for s, st in zip(sets, stats, strict=True)
    ]
    plot_defect_survival(surv, figs / "defect_survival.png")
    plot_category_bars(
        categories,
        series("retention"),
        "retention (share of the defect kept)",
        "defect retention per category",
        figs / "category_retention.png",
        start_at_zero=True,
        reference=(1.0, "1 = all kept"),
        empty_message="defect retention: not available\n(it needs the defect-free original/ images)",
    )


def _build(folder: Path, sets: list[ResultSet], title: str | None, max_examples: int) -> None:
    for sub in ("figures", "examples", "data"):
        (folder / sub).mkdir()
    warnings = _warnings(sets)
    key_sets = [set(s.images) for s in sets]
    common_set = set.intersection(*key_sets)
    same = all(k == key_sets[0] for k in key_sets)
    common = [k for k in sets[0].images if k in common_set]
    subset_note = ""
    if not same:
        counts = ", ".join(f"{s.label}: {len(k)}" for s, k in zip(sets, key_sets, strict=True))
        subset_note = (
            f"Computed as means of per-image values over the {len(common)} images common to all result sets "
            f"(images per set: {counts})."
        )
        warnings.append(f"The result sets hold different images. {subset_note}")
    stats = [_stats(s, None if same else common_set) for s in sets]

    json_names = []
    for i, s in enumerate(sets, 1):
        name = f"data/{i}-{slug(s.label)}.metrics.json"
        atomic_write_bytes(folder / name, s.raw)
        json_names.append(name)

    if same:
        categories = sorted({c for st in stats for c in st.categories})
    else:
        categories = sorted({sets[0].images[k].category for k in common})
    _charts(folder / "figures", categories, sets, stats)

    examples: list[dict[str, str]] = []
    for n, key in enumerate(_pick_examples(sets, common, max_examples), 1):
        try:
            examples.append(_example(sets, key, folder / "examples" / f"example_{n:02d}.png"))
        except ApirError as err:
            examples.append({"key": key, "src": "", "error": str(err)})

    detection = detection_context(
        [DetectionSet(s.label, s.color, s.path, s.results.detection) for s in sets],
        folder,
        "5. Anomaly detection after restoration",
    )
    frontier = frontier_context(
        [(s.label, s.color, s.results, st.overall) for s, st in zip(sets, stats, strict=True)],
        folder / "figures",
    )
    first = sets[0].results

    def field(key: str) -> str:
        return " / ".join(sorted({str(getattr(s.results, key)) for s in sets}))

    page = render(
        "report.html.j2",
        generator=GENERATOR,
        title=title or f"apir report: {first.dataset} · {first.degradation}",
        version=__version__,
        meta={
            "dataset": field("dataset"),
            "degradation": field("degradation"),
            "split": field("split"),
            "created": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        },
        conventions=list(first.conventions.items()),
        warnings=warnings,
        sets=_result_sets(sets, json_names),
        overall=_overall_table(sets, stats),
        subset_note=subset_note,
        per_category=_category_table(categories, sets, stats),
        examples=examples,
        detection=detection,
        frontier=frontier,
        per_image=_image_table(sets),
    )
    atomic_write_bytes(folder / "index.html", page.encode("utf-8"))


def write_report(
    results_dirs: list[Path],
    out_dir: Path,
    *,
    title: str | None = None,
    max_examples: int = 6,
) -> Path:
    """Write the comparison report of ``results_dirs`` into ``out_dir``; return ``out_dir/index.html``.

    ``out_dir`` must be new, empty, or hold a previous apir report (which is replaced as a whole).
    The first result set provides the degraded-input reference. Raises :class:`ApirError` for a
    missing or invalid results folder or an unusable ``out_dir``.
    """
    if not results_dirs:
        raise ApirError("no results folders given (pass one or more folders written by apir evaluate)")
    sets = [_load_set(p) for p in results_dirs]
    _unique_labels(sets)
    for s, color in zip(sets, method_colors(len(sets)), strict=True):
        s.color = color
    out_dir = Path(out_dir).absolute()
    _check_out_dir(out_dir, sets)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(4)
    tmp = out_dir.parent / f".{out_dir.name}.{token}.tmp"
    tmp.mkdir()
    try:
        _build(tmp, sets, title, max_examples)
        publish_staging(tmp, out_dir)  # ownership checked by _check_out_dir before the build
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir / "index.html"
