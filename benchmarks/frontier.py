"""The survival frontier on unseen pictures: every method as a curve over its knob, and who dominates.

Keeping the defect trades against overall quality: denoising less keeps more of a faint defect and
more noise. A knob (``--strength``, ``--keep-input``, CBM3D's σ) slides a method *along* the trade-off;
a better method moves the whole curve. So each method is scored at several knob values on the same
images and degradations, and the results say, per preset, which method *dominates* which: at equal
overall PSNR — the baseline's curve interpolated linearly at the method's overall PSNR — higher PSNR
inside the defect **and** higher retention (:func:`dominance`).

Curves (``--curves``):

* ``cbm3d``: CBM3D given the true σ times s, s ∈ {0.5, 0.75, 1, 1.25, 1.5};
* ``strength``: the default with ``--strength s`` (its σ map times s);
* ``keep_input``: the default with ``--keep-input k``;
* ``guard``: the default with ``--guard`` at floor f ∈ {1 (no guard), 0.6, 0.3, 0.1}, the guard
  fitted per category on that category's ``train/good`` degraded and restored the same way.

Every point is scored per category and the per-image rows pooled: PSNR over all images, defect PSNR
and retention over the defective ones.

    python benchmarks/frontier.py --max-per-category 2 --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    REPO_ROOT,
    fmt,
    git_info,
    markdown_table,
    provenance,
    provenance_markdown,
    set_threads,
    utc_now,
    write_results,
)

from apir.evaluate.frontier import (  # noqa: E402
    MILESTONE_DEFECT_GAIN,
    MILESTONE_RETENTION,
    dominance,
    milestone,
)

PRESETS = ["noise25", "blur1_noise15"]
KNOBS: dict[str, tuple[str, list[float]]] = {
    "cbm3d": ("CBM3D, true σ × s", [0.5, 0.75, 1.0, 1.25, 1.5]),
    "strength": ("apir default, --strength s", [0.5, 0.75, 1.0, 1.25, 1.5]),
    "keep_input": ("apir default, --keep-input k", [0.0, 0.1, 0.2, 0.3, 0.5]),
    "guard": ("apir default + --guard, floor f", [1.0, 0.6, 0.3, 0.1]),
}
BASELINE = "strength"  # the default's own curve: the thing to beat, with CBM3D beside it

#: Settings that must match for a curve of another run to be compared with this run's (same images,
#: same degradations): see :func:`reuse_curves`.
SAME_IMAGES = ("max_per_category", "categories", "seed")
SAME_POINT = {"psnr": 0.005, "psnr_defect": 0.005, "retention": 5e-5}


def knob_label(curve: str) -> str:
    """A curve's legend: ``strength@NAME`` is the ``--strength`` curve of the model ``--models`` named."""
    base, _, model = curve.partition("@")
    return f"{model}, --strength s" if model else KNOBS[base][0]


def knob_values(curve: str) -> list[float]:
    return KNOBS[curve.partition("@")[0]][1]


RestoreFn = Callable[[np.ndarray, float], np.ndarray]


# ------------------------------------------------------------------------------------- scoring


def pooled(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Overall PSNR over all images; defect PSNR and retention over the defective ones."""

    def mean(key: str) -> float | None:
        vals = [r[key] for r in rows if r.get(key) is not None]
        return float(np.mean(vals)) if vals else None

    return {
        "psnr": mean("psnr"),
        "psnr_defect": mean("psnr_defect"),
        "retention": mean("retention"),
        "n_images": len(rows),
    }


def score_point(
    cats: list[Path],
    restore_for: Callable[[Path], RestoreFn],
    preset: str,
    work: Path,
    *,
    seed: int,
    max_per_category: int | None,
    detector: bool = False,
    method: str = "model",
    label: str | None = None,
) -> dict[str, Any]:
    """One point of a curve: ``apir evaluate`` of every category (restorer ``restore_for(category)``)
    at ``preset``, the rows :func:`pooled`, with the detector's mean AUROCs when ``detector``."""
    from apir.evaluate.runner import evaluate

    rows: list[dict[str, Any]] = []
    detections: list[dict[str, Any]] = []
    for cat in cats:
        res = evaluate(
            cat, work / cat.name, method=method, restore_fn=restore_for(cat), degradation=preset, seed=seed,
            save_images=0, label=label, show_progress=False, max_per_category=max_per_category,
            detector=detector, detector_maps=0, detector_fit="clean",
        )  # fmt: skip
        rows += res["images"]
        if detector:
            detections.append(res["detection"]["categories"].get(cat.name, {}))
    return {**pooled(rows), **(detection_means(detections) if detector else {})}


def detection_means(per_category: list[dict[str, Any]]) -> dict[str, float | None]:
    """Mean pixel AUROC over categories of the reference detector (fitted on clean train/good) on the
    restored and on the degraded test images."""

    def mean(variant: str) -> float | None:
        vals = [
            c[variant]["pixel_auroc"]
            for c in per_category
            if (c.get(variant) or {}).get("pixel_auroc") is not None
        ]
        return float(np.mean(vals)) if vals else None

    return {
        "pixel_auroc": mean("restored"),
        "pixel_auroc_degraded": mean("degraded"),
        "pixel_auroc_clean": mean("clean"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO_ROOT / "runs" / "corpus_unseen")
    ap.add_argument("--presets", nargs="+", default=PRESETS)
    ap.add_argument("--curves", nargs="+", default=list(KNOBS), choices=list(KNOBS))
    ap.add_argument("--max-per-category", type=int, default=2)
    ap.add_argument("--categories", nargs="+")
    ap.add_argument("--default-model", help="checkpoint or run dir instead of the shipped default")
    ap.add_argument(
        "--models",
        nargs="+",
        default=[],
        metavar="NAME=MODEL",
        help="also the --strength curve of each of these models (checkpoint or run dir), named NAME",
    )
    ap.add_argument(
        "--reuse",
        type=Path,
        metavar="JSON",
        help="take the curves this run does not measure from a frontier results file of the same images "
        "(same data, seed, categories, images per category; checked on the shipped default's curve)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--detector",
        action="store_true",
        help="also the reference detector's pixel AUROC per point (fitted on clean train/good)",
    )
    ap.add_argument("--threads", type=int)
    ap.add_argument("--work", type=Path, default=REPO_ROOT / "runs" / "bench_frontier")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "frontier_unseen")
    ap.add_argument(
        "--rescore",
        type=Path,
        metavar="JSON",
        help="recompute the verdicts of a results file from its curves (no restoring)",
    )
    args = ap.parse_args(argv)
    if args.rescore:
        return rescore(args.rescore)
    set_threads(args.threads)
    from apir.data.degradations import get_degradation
    from apir.data.mvtec import find_category_dirs, load_category
    from apir.evaluate.baselines import get_baseline
    from apir.evaluate.methods import model_method

    prov = provenance("cpu")
    started = time.time()
    cats = [d for d in find_category_dirs(args.data) if not args.categories or d.name in args.categories]
    cbm3d = get_baseline("cbm3d") if "cbm3d" in args.curves else None
    models = dict(_name_and_model(spec) for spec in args.models)
    curve_names = list(args.curves) + [f"strength@{name}" for name in models]

    def method_fn(curve: str, knob: float, category: Path, preset: str) -> RestoreFn:
        if curve == "cbm3d":
            return lambda image, sigma: cbm3d(image, sigma * knob)
        if curve.startswith("strength"):
            model = models[curve.partition("@")[2]] if "@" in curve else args.default_model
            return model_method(model, strength=knob, engine="torch").restore_fn
        if curve == "keep_input":
            return model_method(args.default_model, keep_input=knob, engine="torch").restore_fn
        # The guard as `apir evaluate --guard` runs it: fitted on the category's train/good.
        if knob >= 1.0:
            return model_method(args.default_model, engine="torch").restore_fn
        guarded = model_method(args.default_model, engine="torch", guard_floor=knob)
        return guarded.for_category(load_category(category), get_degradation(preset), args.seed)

    curves: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for preset in args.presets:
        curves[preset] = {}
        for curve in curve_names:
            points = []
            for knob in knob_values(curve):
                t0 = time.time()
                point = {
                    "knob": knob,
                    **score_point(
                        cats,
                        lambda cat, c=curve, k=knob, p=preset: method_fn(c, k, cat, p),
                        preset,
                        args.work / preset / curve / f"{knob:g}",
                        seed=args.seed,
                        max_per_category=args.max_per_category,
                        detector=args.detector,
                        method=curve,
                        label=f"{knob_label(curve)} = {knob:g}",
                    ),
                }
                points.append(point)
                print(
                    f"[frontier] {preset} {curve} {knob:g}: PSNR {fmt(point['psnr'])} defect "
                    f"{fmt(point['psnr_defect'])} retention {fmt(point['retention'], 3)} "
                    f"({point['n_images']} images, {time.time() - t0:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
            curves[preset][curve] = points

    if args.reuse:
        reused = reuse_curves(args.reuse, curves, vars(args))
        print(f"[frontier] reused from {args.reuse}: {', '.join(reused)}", file=sys.stderr)
    data = {
        "schema": "apir.bench.frontier/1",
        **prov,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "wall_minutes": (time.time() - started) / 60,
        "n_categories": len(cats),
        "curves": curves,
    }
    return _score_and_write(data, args.out)


def _name_and_model(spec: str) -> tuple[str, str]:
    name, sep, model = spec.partition("=")
    if not sep or not name or not model or "@" in name:
        raise SystemExit(f"--models: expected NAME=MODEL (a checkpoint or run dir), got {spec!r}")
    return name, model


def reuse_curves(path: Path, curves: dict[str, dict[str, list[dict[str, Any]]]], settings: dict) -> list[str]:
    """Add to ``curves`` (in place) the curves of the results file ``path`` that this run did not measure.

    Only valid for the same degraded images, so the settings that choose them must be equal, the data
    folder must have the same name, and the shipped default's ``strength`` curve, which this run must
    measure, must agree point by point with the file's to :data:`SAME_POINT` (another thread count
    changes float rounding, ~1e-5 dB; other images or code change the figures by far more).
    Returns the names of the reused curves.
    """
    other = json.loads(Path(path).read_text(encoding="utf-8"))
    theirs = other["settings"]
    for key in SAME_IMAGES:
        if theirs.get(key) != settings.get(key):
            raise SystemExit(
                f"--reuse {path}: {key} differs ({theirs.get(key)!r} there, {settings.get(key)!r} here)"
            )
    if Path(theirs["data"]).name != Path(settings["data"]).name or settings.get("default_model"):
        raise SystemExit(f"--reuse {path}: measured on {theirs['data']}, not {settings['data']}")
    reused = []
    for preset, by in curves.items():
        if BASELINE not in by or preset not in other["curves"]:
            raise SystemExit(f"--reuse needs the {BASELINE!r} curve at {preset} in both runs to check them")
        for mine, old in zip(by[BASELINE], other["curves"][preset][BASELINE], strict=True):
            for key, tolerance in SAME_POINT.items():
                if abs(mine[key] - old[key]) > tolerance:
                    raise SystemExit(
                        f"--reuse {path}: {preset} {BASELINE} {mine['knob']:g} {key} is {mine[key]:.6f} "
                        f"here but {old[key]:.6f} there: not the same images or code"
                    )
        for name, points in other["curves"][preset].items():
            if name not in by:
                by[name] = points
                reused.append(f"{preset}/{name}")
    return reused


def _score_and_write(data: dict[str, Any], out: Path) -> int:
    """Dominance and milestones from ``data["curves"]``; write the markdown, JSON and figure."""
    curves = data["curves"]
    data["dominance"] = {
        preset: {f"{a} vs {b}": dominance(by[a], by[b]) for a in by for b in by if a != b}
        for preset, by in curves.items()
    }
    milestones = {}
    for preset, by in curves.items():
        ref = next((p for p in by.get(BASELINE, []) if p["knob"] == 1.0), None)
        if ref is not None:
            milestones[preset] = {c: milestone(pts, ref) for c, pts in by.items() if c != BASELINE}
    data["milestones"] = milestones
    plot = plot_frontier(curves, Path(f"{out}.png"))
    markdown = render(data, plot)
    md, js = write_results(out, markdown, data)
    print(markdown)
    print(f"\nwrote {md}, {js} and {plot}", file=sys.stderr)
    return 0


def rescore(results: Path) -> int:
    """Recompute dominance and milestones of a committed results file from its measured curves.

    Nothing is restored again: the curves (and the provenance of the run that measured them) stay as
    they are; a ``rescored`` entry records the code that recomputed the verdicts.
    """
    data = json.loads(Path(results).read_text(encoding="utf-8"))
    data["rescored"] = {
        "date": utc_now(),
        "commit": git_info().get("commit"),
        "command": "python benchmarks/frontier.py --rescore " + str(results),
    }
    return _score_and_write(data, Path(results).with_suffix(""))


def plot_frontier(curves: dict[str, dict[str, list[dict[str, Any]]]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    presets = list(curves)
    panels = [("psnr_defect", "PSNR inside the defect (dB)"), ("retention", "retention")]
    if any(p.get("pixel_auroc") is not None for by in curves.values() for pts in by.values() for p in pts):
        panels.append(("pixel_auroc", "detector pixel AUROC (fit on clean good)"))
    fig, axes = plt.subplots(
        len(panels), len(presets), figsize=(5.5 * len(presets), 4 * len(panels)), squeeze=False
    )
    for j, preset in enumerate(presets):
        if len(panels) == 3:  # the degraded input's AUROC: restoring should lie above it
            degraded = [p.get("pixel_auroc_degraded") for pts in curves[preset].values() for p in pts]
            degraded = [d for d in degraded if d is not None]
            if degraded:
                axes[2][j].axhline(degraded[0], color="gray", linestyle="--", label="degraded input")
        for row, (key, label) in enumerate(panels):
            ax = axes[row][j]
            for curve, points in curves[preset].items():
                # In knob order: a knob that first raises then lowers overall PSNR (CBM3D's σ scale,
                # --strength) draws as the path it is, not as a zigzag sorted by PSNR.
                pts = [(p["psnr"], p.get(key), p["knob"]) for p in sorted(points, key=lambda q: q["knob"])]
                pts = [q for q in pts if q[1] is not None]
                if not pts:
                    continue
                xs, ys, ks = zip(*pts, strict=True)
                ax.plot(xs, ys, marker="o", label=knob_label(curve))
                for x, y, k in zip(xs, ys, ks, strict=True):
                    ax.annotate(f"{k:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            ax.set_xlabel("overall PSNR (dB)")
            ax.set_ylabel(label)
            ax.set_title(preset)
            ax.grid(alpha=0.3)
        axes[0][j].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def render(data: dict[str, Any], plot: Path) -> str:
    settings, curves = data["settings"], data["curves"]
    verdicts, milestones = data["dominance"], data["milestones"]
    lines = [
        "# Survival frontier on unseen pictures",
        "",
        *provenance_markdown(data),
    ]
    if "rescored" in data:
        r = data["rescored"]
        lines.append(
            f"- Verdicts recomputed from the measured curves on {r['date']} at commit `{r['commit']}`: "
            f"`{r['command']}`"
        )
    lines += [
        "",
        f"Data: `{settings['data']}` ({data.get('n_categories', 'all the')} categories, at most "
        f"{settings['max_per_category']} test images each, round-robin over good and defect types), "
        f"degradation seed {settings['seed']}; every point of every curve restores the same degraded "
        "images. PSNR over all images; PSNR inside the defect and retention over the defective ones. "
        "A method is compared with a baseline curve at equal overall PSNR, against the baseline's best "
        "setting there (where a knob passes the same PSNR twice, the better branch).",
        "",
        f"![frontier]({plot.name})",
        "",
    ]
    for preset, by in curves.items():
        lines += [f"## {preset}", ""]
        auroc = any(p.get("pixel_auroc") is not None for pts in by.values() for p in pts)
        rows = [
            [knob_label(c), f"{p['knob']:g}", fmt(p["psnr"]), fmt(p["psnr_defect"]), fmt(p["retention"], 3)]
            + ([fmt(p.get("pixel_auroc"), 3)] if auroc else [])
            for c, pts in by.items()
            for p in pts
        ]
        headers = ["curve", "knob", "PSNR", "PSNR defect", "retention"] + (["pixel AUROC"] if auroc else [])
        lines += [markdown_table(headers, rows), ""]
        if auroc:
            first = next(p for pts in by.values() for p in pts if p.get("pixel_auroc") is not None)
            restored = [
                p["pixel_auroc"] for pts in by.values() for p in pts if p.get("pixel_auroc") is not None
            ]
            lines += [
                "Reference detector fitted on clean `train/good` (mean over categories): clean test "
                f"images {fmt(first.get('pixel_auroc_clean'), 3)}, degraded input "
                f"{fmt(first.get('pixel_auroc_degraded'), 3)}; restored {fmt(min(restored), 3)}–"
                f"{fmt(max(restored), 3)} over every point above.",
                "",
            ]
        vrows = []
        for pair, v in verdicts[preset].items():
            verdict = "dominates" if v["dominates"] else ("somewhere" if v["somewhere"] else "no")
            vrows.append(
                [
                    pair,
                    v["points_compared"],
                    verdict,
                    fmt(v["mean_defect_margin"]),
                    fmt(v["mean_retention_margin"], 3),
                ]  # fmt: skip
            )
        lines += [
            "Dominance (method vs baseline curve, at equal overall PSNR; *somewhere* = at some knob "
            "value both margins are positive):",
            "",
            markdown_table(
                ["method vs baseline", "points", "dominates", "mean Δ defect", "mean Δ retention"], vrows
            ),  # fmt: skip
            "",
        ]
        ms = milestones.get(preset, {})
        if ms:
            mrows = [
                [
                    knob_label(c),
                    fmt(m["defect_gain"]) if m else "–",
                    fmt(m["retention"], 3) if m else "–",
                    ("pass" if m["passed"] else "fail") if m else "out of range",
                ]  # fmt: skip
                for c, m in ms.items()
            ]
            lines += [
                "Milestone at the default's overall PSNR (strength 1): defect PSNR "
                f"+ {MILESTONE_DEFECT_GAIN:.1f} dB and retention ≥ {MILESTONE_RETENTION:.2f}:",
                "",
                markdown_table(["curve", "defect gain (dB)", "retention", "milestone"], mrows),
                "",
            ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
