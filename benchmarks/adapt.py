"""``apir adapt`` measured per category on unseen pictures: the default before and after fine-tuning
on the category's ``train/good``, scored on its test images (never seen by either).

Per category: overall PSNR, PSNR inside the defect, retention and the reference detector's pixel
AUROC (fitted on clean ``train/good``) for the shipped default and for the default adapted for
``--minutes`` CPU minutes (``apir adapt``, synthetic defects and degradations on the fly; with
``--survival W`` also the paired defect-response term at weight W), all on the same degraded images.

    python benchmarks/adapt.py --minutes 3 --threads 2   # -> benchmarks/results/adapt_unseen.{md,json}
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    REPO_ROOT,
    fmt,
    markdown_table,
    provenance,
    provenance_markdown,
    publish_results,
    set_threads,
)

#: Unseen categories with 16 train/good and 16 test images (textures from three packages).
CATEGORIES = ["nexuiz_01", "nexuiz_04", "redeclipse_01", "supertuxkart_01"]


def _score(result: dict[str, Any], category: str) -> dict[str, Any]:
    o = result["overall"]
    det = result.get("detection", {}).get("categories", {}).get(category, {})
    return {
        "psnr": o["psnr"],
        "psnr_defect": o["psnr_defect"],
        "retention": o["retention"],
        "pixel_auroc": (det.get("restored") or {}).get("pixel_auroc"),
        "pixel_auroc_degraded": (det.get("degraded") or {}).get("pixel_auroc"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO_ROOT / "runs" / "corpus_unseen")
    ap.add_argument("--categories", nargs="+", default=CATEGORIES)
    ap.add_argument("--minutes", type=float, default=3.0, help="CPU minutes of adaptation per category")
    ap.add_argument("--survival", type=float, default=0.0, help="paired defect-response weight (0: off)")
    ap.add_argument("--preset", default="noise25")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--work", type=Path, default=REPO_ROOT / "runs" / "bench_adapt")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "adapt_unseen")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    from apir.evaluate.methods import model_method
    from apir.evaluate.runner import evaluate
    from apir.train.adapt import adapt

    prov = provenance("cpu")
    started = time.time()
    rows: dict[str, dict[str, Any]] = {}
    for cat in args.categories:
        scores = {}
        run = args.work / f"adapt_{cat}"
        adapt(
            args.data, cat, run, minutes=args.minutes, force=True, show_progress=False, survival=args.survival
        )
        for name, spec in (("default", None), ("adapted", run)):
            method = model_method(spec, engine="torch")
            result = evaluate(
                args.data / cat, args.work / f"{name}_{cat}", method="model", restore_fn=method.restore_fn,
                degradation=args.preset, seed=args.seed, save_images=0, show_progress=False,
                detector=True, detector_maps=0, detector_fit="clean",
            )  # fmt: skip
            scores[name] = _score(result, cat)
        rows[cat] = scores
        d, a = scores["default"], scores["adapted"]
        print(f"[adapt] {cat}: PSNR {fmt(d['psnr'])} -> {fmt(a['psnr'])}, defect {fmt(d['psnr_defect'])} -> "
              f"{fmt(a['psnr_defect'])}", file=sys.stderr, flush=True)  # fmt: skip

    def delta(key: str) -> list[float]:
        return [r["adapted"][key] - r["default"][key] for r in rows.values()
                if r["adapted"][key] is not None and r["default"][key] is not None]  # fmt: skip

    means = {
        k: (float(np.mean(delta(k))) if delta(k) else None)
        for k in ("psnr", "psnr_defect", "retention", "pixel_auroc")
    }

    def pair(d: dict, a: dict, key: str, digits: int = 2) -> str:
        return f"{fmt(d[key], digits)} → {fmt(a[key], digits)}"

    table = []
    for cat, r in rows.items():
        d, a = r["default"], r["adapted"]
        auroc = f"{pair(d, a, 'pixel_auroc', 3)} (degraded {fmt(d['pixel_auroc_degraded'], 3)})"
        table.append([cat, pair(d, a, "psnr"), pair(d, a, "psnr_defect"), pair(d, a, "retention", 3), auroc])
    changes = [
        fmt(means["psnr"]),
        fmt(means["psnr_defect"]),
        fmt(means["retention"], 3),
        fmt(means["pixel_auroc"], 3),
    ]
    table.append(["mean change", *changes])
    term = f", paired defect-response weight {args.survival:g}" if args.survival else ""
    md = [
        "# `apir adapt` per category on unseen pictures",
        "",
        *provenance_markdown(prov),
        "",
        f"Data: `{args.data}`, categories {', '.join(args.categories)}: every test image, degradation "
        f"`{args.preset}`, seed {args.seed}. Adapted: the shipped default fine-tuned {args.minutes:g} CPU "
        f"minutes on the category's `train/good`{term}. Detector: the reference detector fitted on clean "
        "`train/good`. Each cell: default → adapted.",
        "",
        markdown_table(["category", "PSNR", "PSNR defect", "retention", "pixel AUROC"], table),
        "",
    ]
    settings = {k: str(v) for k, v in vars(args).items()}
    minutes = (time.time() - started) / 60
    data = {"schema": "apir.bench.adapt/1", **prov, "settings": settings, "wall_minutes": minutes,
            "categories": rows, "mean_change": means}  # fmt: skip
    publish_results(args.out, "\n".join(md), data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
