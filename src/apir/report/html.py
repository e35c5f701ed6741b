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

from apir import __version__
from apir.data.imageio import read_image, read_mask
from apir.errors import ApirError, safe_name
from apir.evaluate.results import RESULTS_FILE, SCHEMA, Results, load_results
from apir.fsutil import atomic_write_bytes, is_relative_to
from apir.report.detection import DetectionSet, detection_section
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
from apir.report.formatting import e
from apir.report.formatting import fmt as _fmt
from apir.report.formatting import fmt_sig as _fmt_sig
from apir.report.formatting import num as _num
from apir.report.formatting import slug as _slug
from apir.report.formatting import swatch as _swatch

__all__ = ["SCHEMA", "ResultSet", "write_report"]

METRICS = ("psnr", "ssim", "psnr_defect", "psnr_background", "retention", "contrast_ratio")
#: Marks an index.html as ours: only such a folder may be replaced by a new report.
GENERATOR = "apir report"
_GENERATOR_META = f'<meta name="generator" content="{GENERATOR}">'


# ---------------------------------------------------------------------------------- reading


@dataclass
class ResultSet:
    """One results folder: its typed results, the file's bytes, its display label (unique in the
    report) and colour. ``data`` is the results as the JSON dict, for the page code."""

    path: Path
    results: Results
    raw: bytes
    label: str = ""
    color: str = ""

    def __post_init__(self) -> None:
        self.data = self.results.to_dict()

    @property
    def images(self) -> dict[str, dict[str, Any]]:
        return {img["key"]: img for img in self.data["images"]}


def _load_set(path: str | os.PathLike[str]) -> ResultSet:
    """Read one results folder with the evaluator's own typed reader (one-line errors)."""
    p = Path(path)
    if not p.is_dir():
        raise ApirError(f"{safe_name(p)}: results folder not found")
    return ResultSet(path=p, results=load_results(p), raw=(p / RESULTS_FILE).read_bytes())


# ---------------------------------------------------------------------------------- statistics


def _mean(values: Iterable[Any]) -> float | None:
    vals = [v for v in (_num(x) for x in values) if v is not None]
    return sum(vals) / len(vals) if vals else None


def _aggregate(images: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over images of every metric, for sets that must be compared on a common subset."""
    out: dict[str, Any] = {}
    for m in METRICS:
        out[m] = _mean(img.get(m) for img in images)
        out[f"input_{m}"] = _mean(img.get(f"input_{m}") for img in images)
    out["n_images"] = len(images)
    secs = sum(_num(img.get("seconds")) or 0.0 for img in images)
    pix = sum((_num(img.get("height")) or 0.0) * (_num(img.get("width")) or 0.0) for img in images)
    out["seconds"] = secs
    out["megapixels_per_second"] = pix / secs / 1e6 if secs > 0 and pix > 0 else None
    return out


@dataclass
class _Stats:
    overall: dict[str, Any]
    categories: dict[str, dict[str, Any]]


def _stats(rs: ResultSet, keys: set[str] | None) -> _Stats:
    """The evaluator's own aggregates when every set holds the same images, else means over ``keys``."""
    if keys is None:
        cats = {c: v for c, v in rs.data["categories"].items() if isinstance(v, dict)}
        return _Stats(rs.data["overall"], cats)
    imgs = [img for img in rs.data["images"] if img["key"] in keys]
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for img in imgs:
        groups[str(img.get("category", "?"))].append(img)
    return _Stats(_aggregate(imgs), {c: _aggregate(g) for c, g in sorted(groups.items())})


def _gap(d: dict[str, Any], prefix: str = "") -> float | None:
    bg, df = _num(d.get(f"{prefix}psnr_background")), _num(d.get(f"{prefix}psnr_defect"))
    return bg - df if bg is not None and df is not None else None


# ---------------------------------------------------------------------------------- formatting


# (key, header, tooltip, digits, rule): rule picks the best value among the result sets.
_COLUMNS: list[tuple[str, str, str, int, str]] = [
    ("psnr", "PSNR<br>(dB)", "PSNR over the whole image, higher is better", 2, "max"),
    ("psnr_defect", "PSNR in defect<br>(dB)", "PSNR over the defect mask only, higher is better", 2, "max"),
    (
        "psnr_background",
        "PSNR background<br>(dB)",
        "PSNR outside the defect mask, higher is better",
        2,
        "max",
    ),
    ("gap", "gap<br>bg − defect (dB)", "background PSNR minus defect PSNR; smaller is better", 2, "minabs"),
    ("ssim", "SSIM", "structural similarity, higher is better", 4, "max"),
    ("retention", "retention", "share of the defect's signal that survives; 1 = all kept", 3, "one"),
    ("contrast_ratio", "contrast<br>ratio", "defect contrast after / before; 1 = unchanged", 3, "one"),
    (
        "megapixels_per_second",
        "speed<br>(MP/s)",
        "megapixels restored per second, higher is better",
        3,
        "max",
    ),
]


def _best(values: list[float | None], rule: str) -> float | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    score: Callable[[float], float] = {
        "max": lambda v: -v,
        "minabs": abs,
        "one": lambda v: abs(v - 1.0),
    }[rule]
    return min(vals, key=score)


# ---------------------------------------------------------------------------------- the page

_CSS = """
body{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;margin:24px auto;max-width:1360px;padding:0 16px;
color:#222;line-height:1.45;font-size:14px}
h1{font-size:24px;margin:0 0 6px}
h2{font-size:19px;margin:32px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #d6d6d6;padding:4px 8px;vertical-align:top}
th{background:#f3f3f3;font-weight:600;text-align:center}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.best{background:#d9f2d9;font-weight:700}
tr.input td{color:#555;font-style:italic;background:#fafafa}
.sw{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px;vertical-align:-1px}
.meta{color:#555;font-size:13px}.meta b{color:#222}
.warn{background:#fff4e0;border:1px solid #f0b45a;border-radius:4px;padding:8px 12px;margin:10px 0}
.note{background:#eef5ff;border-left:4px solid #5b8def;padding:6px 12px;margin:8px 0}
.small{font-size:12px;color:#555}
img.fig{max-width:100%;height:auto;display:block;margin:10px 0;border:1px solid #eee}
.figs{display:flex;flex-wrap:wrap;gap:0 16px;align-items:flex-start}
details{margin:10px 0}summary{cursor:pointer;font-weight:600}
.scroll{max-height:640px;overflow:auto;border:1px solid #eee}
.scroll th{position:sticky;top:0;z-index:1}
code{background:#f4f4f4;padding:0 3px;border-radius:3px}
"""


def _header(title: str, sets: list[ResultSet], warnings: list[str], json_names: list[str]) -> str:
    first = sets[0].data
    conv = first.get("conventions") if isinstance(first.get("conventions"), dict) else {}
    created = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")

    def field(key: str) -> str:
        vals = sorted({str(s.data.get(key, "?")) for s in sets})
        return e(" / ".join(vals))

    out = [f"<h1>{e(title)}</h1>", '<p class="meta">']
    out.append(
        f"<b>dataset</b> {field('dataset')} · <b>degradation</b> {field('degradation')} · "
        f"<b>split</b> {field('split')} · <b>report written</b> {e(created)} by apir {e(__version__)}"
    )
    out.append("</p>")
    if conv:
        items = "".join(f"<li><b>{e(str(k))}</b>: {e(str(v))}</li>" for k, v in conv.items())
        out.append(f'<div class="meta">Metric conventions:<ul>{items}</ul></div>')
    for w in warnings:
        out.append(f'<div class="warn">⚠ {w}</div>')
    out.append("<h3>Result sets</h3><table><tr><th>#</th><th>label</th><th>method</th><th>model</th>")
    out.append(
        "<th>degradation</th><th>seed</th><th>images</th><th>evaluated</th><th>apir</th><th>folder</th>"
    )
    out.append("<th>numbers</th></tr>")
    for i, (s, jn) in enumerate(zip(sets, json_names, strict=True), 1):
        d = s.data
        model = d.get("model")
        model_txt = json.dumps(model, sort_keys=True, default=str) if model else "—"
        if len(model_txt) > 160:
            model_txt = model_txt[:157] + "…"
        out.append(
            f"<tr><td class='n'>{i}</td><td>{_swatch(s.color)}{e(s.label)}</td>"
            f"<td>{e(str(d.get('method', '?')))}</td>"
            f"<td class='small'>{e(model_txt)}</td><td>{e(str(d.get('degradation', '?')))}</td>"
            f"<td class='n'>{e(str(d.get('seed', '?')))}</td><td class='n'>{len(d['images'])}</td>"
            f"<td>{e(str(d.get('created', '?')))}</td><td>{e(str(d.get('apir_version', '?')))}</td>"
            f"<td class='small'>{e(str(s.path))}</td><td><a href='{e(jn)}'>metrics.json</a></td></tr>"
        )
    out.append("</table>")
    return "\n".join(out)


def _overall_table(sets: list[ResultSet], stats: list[_Stats], subset_note: str) -> str:
    inp = stats[0].overall
    rows: list[tuple[str, str, dict[str, float | None], bool, Any]] = []
    inp_vals = {k: _num(inp.get(f"input_{k}")) for k, *_ in _COLUMNS}
    inp_vals["gap"] = _gap(inp, "input_")
    inp_vals["megapixels_per_second"] = None
    inp_label = f"degraded input ({sets[0].data.get('degradation', '?')})"
    rows.append((inp_label, INPUT_COLOR, inp_vals, True, inp.get("n_images")))
    for s, st in zip(sets, stats, strict=True):
        vals = {k: _num(st.overall.get(k)) for k, *_ in _COLUMNS}
        vals["gap"] = _gap(st.overall)
        rows.append((s.label, s.color, vals, False, st.overall.get("n_images")))
    best = {k: _best([r[2][k] for r in rows if not r[3]], rule) for k, _, _, _, rule in _COLUMNS}

    out = ["<table><tr><th>result set</th>"]
    out += [f"<th title='{e(tip)}'>{head}</th>" for _, head, tip, _, _ in _COLUMNS]
    out.append("<th>images</th></tr>")
    for label, color, vals, is_input, n in rows:
        out.append("<tr class='input'>" if is_input else "<tr>")
        out.append(f"<td>{_swatch(color)}{e(label)}</td>")
        for key, _, _, digits, _ in _COLUMNS:
            v = vals[key]
            txt = _fmt_sig(v) if key == "megapixels_per_second" else _fmt(v, digits)
            if (
                key in ("psnr", "psnr_defect")
                and not is_input
                and v is not None
                and inp_vals[key] is not None
            ):
                txt += f" <span class='small'>({v - inp_vals[key]:+.2f})</span>"
            cls = "n best" if (not is_input and v is not None and v == best[key] and len(rows) > 2) else "n"
            out.append(f"<td class='{cls}'>{txt}</td>")
        out.append(f"<td class='n'>{e(str(n if n is not None else '—'))}</td></tr>")
    out.append("</table>")
    out.append(
        "<p class='note'><b>Read defect PSNR together with overall PSNR.</b> A smaller gap "
        "(background − defect) bought by denoising less, with a lower background or overall PSNR, is no "
        "gain: only a gap narrowed at equal or better overall PSNR means defects survive better.</p>"
    )
    out.append(
        "<p class='small'>Highlighted: best among the result sets (highest PSNR, SSIM and speed; "
        "smallest |gap|; retention and contrast ratio closest to 1). The degraded input is a reference, "
        "not ranked. "
        "Numbers in brackets: change from the degraded input. — : not available (e.g. retention needs the "
        f"defect-free originals). {subset_note}</p>"
    )
    return "\n".join(out)


def _category_table(categories: list[str], sets: list[ResultSet], stats: list[_Stats]) -> str:
    cols = [
        ("psnr", "PSNR", 2),
        ("psnr_defect", "defect PSNR", 2),
        ("ssim", "SSIM", 4),
        ("retention", "retention", 3),
    ]
    out = ["<details><summary>Per-category numbers</summary><table><tr><th>category</th><th>result set</th>"]
    out += [f"<th>{e(h)}</th>" for _, h, _ in cols]
    out.append("<th>images</th></tr>")
    for cat in categories:
        ic = stats[0].categories.get(cat, {})
        rows = [
            ("degraded input", INPUT_COLOR, {k: _num(ic.get(f"input_{k}")) for k, _, _ in cols}, True, ic)
        ]
        for s, st in zip(sets, stats, strict=True):
            c = st.categories.get(cat, {})
            rows.append((s.label, s.color, {k: _num(c.get(k)) for k, _, _ in cols}, False, c))
        for j, (label, color, vals, is_input, c) in enumerate(rows):
            cls = " class='input'" if is_input else ""
            head = f"<td rowspan='{len(rows)}'>{e(cat)}</td>" if j == 0 else ""
            cells = "".join(f"<td class='n'>{_fmt(vals[k], d)}</td>" for k, _, d in cols)
            n = c.get("n_images", "—")
            out.append(
                f"<tr{cls}>{head}<td>{_swatch(color)}{e(label)}</td>{cells}"
                f"<td class='n'>{e(str(n))}</td></tr>"
            )
    out.append("</table></details>")
    return "\n".join(out)


def _image_table(sets: list[ResultSet]) -> str:
    """Every image, worst defect survival (lowest retention over the result sets) first."""
    maps = [s.images for s in sets]
    keys: list[str] = []
    seen: set[str] = set()
    for m in maps:
        for k in m:
            if k not in seen:
                seen.add(k)
                keys.append(k)

    def worst(k: str) -> tuple[int, float, str]:
        rets = [r for r in (_num(m[k].get("retention")) for m in maps if k in m) if r is not None]
        return (0, min(rets), k) if rets else (1, 0.0, k)

    keys.sort(key=worst)
    out = [
        f"<details><summary>Per-image numbers ({len(keys)} images, worst defect survival first)</summary>",
        "<div class='scroll'><table><tr><th rowspan='2'>image</th><th rowspan='2'>defect type</th>",
        "<th colspan='2'>degraded input</th>",
    ]
    out += [f"<th colspan='3'>{_swatch(s.color)}{e(s.label)}</th>" for s in sets]
    out.append("</tr><tr><th>PSNR</th><th>defect</th>")
    out += ["<th>PSNR</th><th>defect</th><th>retention</th>" for _ in sets]
    out.append("</tr>")
    for k in keys:
        ref = next(m[k] for m in maps if k in m)
        cells = [
            f"<td>{e(k)}</td><td>{e(str(ref.get('defect_type', '?')))}</td>",
            f"<td class='n'>{_fmt(_num(ref.get('input_psnr')), 2)}</td>",
            f"<td class='n'>{_fmt(_num(ref.get('input_psnr_defect')), 2)}</td>",
        ]
        for m in maps:
            img = m.get(k, {})
            cells.append(
                f"<td class='n'>{_fmt(_num(img.get('psnr')), 2)}</td>"
                f"<td class='n'>{_fmt(_num(img.get('psnr_defect')), 2)}</td>"
                f"<td class='n'>{_fmt(_num(img.get('retention')), 3)}</td>"
            )
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table></div></details>")
    return "\n".join(out)


# ---------------------------------------------------------------------------------- examples


def _image_dir(rs: ResultSet, img: dict[str, Any]) -> Path | None:
    """The example folder of an image, only if it lies inside the results folder (never follow ``..``)."""
    rel = img.get("image_dir")
    if not isinstance(rel, str) or not rel:
        return None
    d = rs.path / rel
    return d if is_relative_to(d, rs.path) and d.is_dir() else None


def _pick_examples(sets: list[ResultSet], common: list[str], n: int) -> list[str]:
    """Up to ``n`` defective images with pictures, spread round-robin over categories and defect types."""
    if n <= 0:
        return []
    maps = [s.images for s in sets]
    candidates = []
    for k in common:
        img = maps[0][k]
        if str(img.get("defect_type", "good")) == "good":
            continue
        have = sum(_image_dir(s, m[k]) is not None for s, m in zip(sets, maps, strict=True))
        if have:
            candidates.append((-have, k))
    candidates.sort()
    best_have = candidates[0][0] if candidates else 0
    pool = [k for h, k in candidates if h == best_have] + [k for h, k in candidates if h != best_have]
    by_cat: dict[str, list[str]] = defaultdict(list)
    for k in pool:
        by_cat[str(maps[0][k].get("category", "?"))].append(k)
    # within a category, alternate defect types so one kind of defect does not fill the page
    for cat, ks in by_cat.items():
        by_type: dict[str, list[str]] = defaultdict(list)
        for k in ks:
            by_type[str(maps[0][k].get("defect_type"))].append(k)
        lists = list(by_type.values())
        by_cat[cat] = [lst[i] for i in range(max(map(len, lists))) for lst in lists if i < len(lst)]
    picked: list[str] = []
    queues = [by_cat[c] for c in sorted(by_cat)]
    i = 0
    while len(picked) < n and any(i < len(q) for q in queues):
        picked += [q[i] for q in queues if i < len(q)][: n - len(picked)]
        i += 1
    return picked


def _caption(img: dict[str, Any], prefix: str = "") -> str:
    parts = [f"PSNR {_fmt(_num(img.get(prefix + 'psnr')), 2)} dB"]
    parts.append(f"defect {_fmt(_num(img.get(prefix + 'psnr_defect')), 2)} dB")
    ret = _num(img.get(prefix + "retention"))
    if ret is not None:
        parts.append(f"ret {ret:.2f}")
    return parts[0] + "\n" + " · ".join(parts[1:])


def _read_rgb(path: Path) -> np.ndarray | None:
    return read_image(path).rgb if path.is_file() else None


def _example(sets: list[ResultSet], key: str, out: Path) -> str:
    """Draw one example; returns the HTML snippet. An unreadable image is an ApirError for the caller."""
    maps = [s.images for s in sets]
    dirs = [_image_dir(s, m[key]) if key in m else None for s, m in zip(sets, maps, strict=True)]
    src = next(i for i, d in enumerate(dirs) if d is not None)
    sdir, simg = dirs[src], maps[src][key]
    assert sdir is not None
    clean = _read_rgb(sdir / "clean.png")
    if clean is None:
        raise ApirError(f"{sdir}: clean.png missing")
    mask_path = sdir / "mask.png"
    mask = read_mask(mask_path, clean.shape[:2]) if mask_path.is_file() else np.zeros(clean.shape[:2], bool)
    degraded = ExamplePanel(
        f"degraded ({sets[src].data.get('degradation', '?')})",
        INPUT_COLOR,
        _read_rgb(sdir / "degraded.png"),
        _caption(simg, "input_"),
    )
    restored = []
    for s, m, d in zip(sets, maps, dirs, strict=True):
        img = _read_rgb(d / "restored.png") if d is not None else None
        restored.append(ExamplePanel(s.label, s.color, img, _caption(m[key]) if key in m else ""))
    title = (
        f"{key}   ({simg.get('category', '?')} / {simg.get('defect_type', '?')}, {mask.sum()} defect pixels)"
    )
    plot_example(ExampleImages(title, clean, mask, degraded, restored), out)
    return f"<img class='fig' src='{e(out.parent.name)}/{e(out.name)}' alt='{e('example ' + key)}'>"


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
        raise ApirError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not _is_report(out_dir):
        raise ApirError(
            f"{out_dir}: folder is not empty and holds no apir report; choose a new or empty folder"
        )
    for s in sets:
        if is_relative_to(s.path, out_dir):
            raise ApirError(
                f"{out_dir}: the report would replace the results folder {s.path}; choose another"
            )


def _write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _unique_labels(sets: list[ResultSet]) -> None:
    seen: dict[str, int] = {}
    for s in sets:
        base = str(s.data.get("label") or s.data.get("method") or s.path.name)
        seen[base] = seen.get(base, 0) + 1
        s.label = base if seen[base] == 1 else f"{base} ({seen[base]})"


def _build(folder: Path, sets: list[ResultSet], title: str | None, max_examples: int) -> None:
    (folder / "figures").mkdir()
    (folder / "examples").mkdir()
    (folder / "data").mkdir()
    warnings: list[str] = []
    for key, what in (("dataset", "datasets"), ("degradation", "degradations"), ("split", "splits")):
        vals = {str(s.data.get(key)) for s in sets}
        if len(vals) > 1:
            warnings.append(
                f"The result sets use different {what} ({e(', '.join(sorted(vals)))}): their numbers are not "
                "directly comparable. The degraded-input row and the example inputs come from the first set."
            )
    if len({json.dumps(s.data.get("conventions"), sort_keys=True) for s in sets}) > 1:
        warnings.append("The result sets state different metric conventions (see their metrics.json).")

    key_sets = [set(s.images) for s in sets]
    common_set = set.intersection(*key_sets)
    same = all(k == key_sets[0] for k in key_sets)
    common = [k for k in sets[0].images if k in common_set]
    if same:
        subset_note = ""
    else:
        counts = ", ".join(f"{e(s.label)}: {len(k)}" for s, k in zip(sets, key_sets, strict=True))
        subset_note = (
            f"Computed as means of per-image values over the {len(common)} images common to all result sets "
            f"(images per set: {counts})."
        )
        warnings.append(f"The result sets hold different images. {subset_note}")
    stats = [_stats(s, None if same else common_set) for s in sets]

    json_names = []
    for i, s in enumerate(sets, 1):
        name = f"data/{i}-{_slug(s.label)}.metrics.json"
        atomic_write_bytes(folder / name, s.raw)
        json_names.append(name)

    categories = sorted({c for st in stats for c in st.categories})
    if not same:
        categories = sorted({str(sets[0].images[k].get("category", "?")) for k in common})
    ic = stats[0].categories

    def series(metric: str) -> list[Series]:
        out = [
            Series(
                "degraded input",
                INPUT_COLOR,
                [_num(ic.get(c, {}).get(f"input_{metric}")) for c in categories],
                True,
            )
        ]
        out += [
            Series(s.label, s.color, [_num(st.categories.get(c, {}).get(metric)) for c in categories])
            for s, st in zip(sets, stats, strict=True)
        ]
        return out

    figs = folder / "figures"
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

    def point(d: dict[str, Any], prefix: str = "") -> tuple[float | None, float | None]:
        return _num(d.get(f"{prefix}psnr_background")), _num(d.get(f"{prefix}psnr_defect"))

    surv = [
        SurvivalSeries(
            "degraded input",
            INPUT_COLOR,
            point(stats[0].overall, "input_"),
            [point(ic.get(c, {}), "input_") for c in categories],
            True,
        )
    ]
    surv += [
        SurvivalSeries(
            s.label, s.color, point(st.overall), [point(st.categories.get(c, {})) for c in categories]
        )
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

    examples_html = []
    for n, key in enumerate(_pick_examples(sets, common, max_examples), 1):
        try:
            examples_html.append(_example(sets, key, folder / "examples" / f"example_{n:02d}.png"))
        except ApirError as err:
            examples_html.append(f"<p class='warn'>Example {e(key)} skipped: {e(str(err))}</p>")
    if not examples_html:
        examples_html.append(
            "<p class='note'>No examples: no defective image in common has saved pictures "
            "(run <code>apir evaluate</code> with image saving on).</p>"
        )

    detection_html = detection_section(
        [DetectionSet(s.label, s.color, s.path, s.data.get("detection")) for s in sets],
        folder,
        "5. Anomaly detection after restoration",
    )
    page = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        _GENERATOR_META,
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{e(title or _default_title(sets))}</title><style>{_CSS}</style></head><body>",
        _header(title or _default_title(sets), sets, warnings, json_names),
        "<h2>1. Overall</h2>",
        _overall_table(sets, stats, subset_note),
        "<h2>2. Per category</h2>",
        "<p class='small'>Grouped bars: one group per category, one bar per result set; the hatched grey "
        "bar is the degraded input. Compare the defect PSNR chart with the PSNR chart: a method whose "
        "defect PSNR falls behind its overall PSNR is smoothing the defects away.</p>",
        "<div class='figs'>",
        "<img class='fig' src='figures/category_psnr.png' alt='PSNR per category'>",
        "<img class='fig' src='figures/category_psnr_defect.png' alt='defect PSNR per category'>",
        "<img class='fig' src='figures/category_ssim.png' alt='SSIM per category'>",
        "</div>",
        _category_table(categories, sets, stats),
        "<h2>3. Defect survival</h2>",
        "<p class='small'>First chart: each large marker is a result set (small markers: its categories). "
        "On the dashed diagonal the defect is restored as well as the background; below it, worse. Up is "
        "better; moving left means denoising less. Second chart: retention, the share of the defect's "
        "signal left after restoration (1 = fully kept; n/a where the dataset has no defect-free "
        "originals).</p>",
        "<div class='figs'>",
        "<img class='fig' src='figures/defect_survival.png' alt='defect PSNR against background PSNR'>",
        "<img class='fig' src='figures/category_retention.png' alt='defect retention per category'>",
        "</div>",
        "<h2>4. Examples</h2>",
        "<p class='small'>Columns: clean, degraded, then each result set (frame colour = its colour in the "
        "charts). Rows: the full image (cyan box: the zoomed area), a nearest-neighbour zoom on the defect "
        "(cyan: the defect outline), and the error |result − clean| on one colour scale shared by all "
        "methods: a bright defect in the error map means the method altered or erased it.</p>",
        *examples_html,
        detection_html,
        f"<h2>{6 if detection_html else 5}. Per image</h2>",
        _image_table(sets),
        f"<p class='small'>Written by apir {e(__version__)}. The numbers come from the copied "
        "<code>data/*.metrics.json</code> files.</p>",
        "</body></html>",
    ]
    _write_text(folder / "index.html", "\n".join(page) + "\n")


def _default_title(sets: list[ResultSet]) -> str:
    d = sets[0].data
    return f"apir report: {d.get('dataset', '?')} · {d.get('degradation', '?')}"


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
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.{token}.old"
            os.replace(out_dir, old)
            try:
                os.replace(tmp, out_dir)
            except BaseException:
                os.replace(old, out_dir)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir / "index.html"
