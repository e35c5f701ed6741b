"""Which noise estimator makes the noise-level-aware default blind best: apir's or scikit-image's?

The default model is told a σ map; without ``--noise-level`` it comes from an estimator. This measures
both candidates on pictures held out of every training set (the unseen set's test images, clean),
under the presets the quality benchmark uses: each image is degraded with its fixed parameters (the
same as every apir evaluation with that seed) and both estimators read the degraded image; the truth
is the degradation's own effective σ. Reported per preset: mean signed error (bias) and mean absolute
error in σ units (0-255), and the share of images read within 20 % of the truth.

    python benchmarks/noise_estimator.py            # -> benchmarks/results/noise_estimator_unseen.{md,json}
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, fmt, markdown_table, provenance, provenance_markdown, publish_results  # noqa: E402

PRESETS = ["noise15", "noise25", "noise50", "blur1_noise15", "motion9_noise10"]


def _skimage(image: np.ndarray) -> float:
    from skimage.restoration import estimate_sigma

    return float(estimate_sigma(image, channel_axis=-1, average_sigmas=True)) * 255.0


def _apir(image: np.ndarray) -> float:
    from apir.restore.noise_level import estimate_noise_sigma

    return estimate_noise_sigma(image)


ESTIMATORS = {"apir (Haar MAD, saturated blocks left out)": _apir, "scikit-image estimate_sigma": _skimage}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO_ROOT / "runs" / "corpus_unseen")
    ap.add_argument("--presets", nargs="+", default=PRESETS)
    ap.add_argument("--seed", type=int, default=0)
    default_out = REPO_ROOT / "benchmarks" / "results" / "noise_estimator_unseen"
    ap.add_argument("--out", type=Path, default=default_out)
    args = ap.parse_args(argv)
    from apir.data.cases import iter_cases
    from apir.data.degradations import get_degradation
    from apir.data.mvtec import load_dataset

    prov = provenance("cpu")
    started = time.time()
    samples = [s for cat in load_dataset(args.data) for s in cat.test]
    rows: dict[str, dict[str, Any]] = {}
    for preset in args.presets:
        truth, reads = [], {name: [] for name in ESTIMATORS}
        for case in iter_cases(samples, get_degradation(preset), args.seed):
            truth.append(case.sigma)
            for name, fn in ESTIMATORS.items():
                reads[name].append(fn(case.degraded))
        t = np.asarray(truth)
        rows[preset] = {"n_images": len(t), "true_sigma_mean": float(t.mean())}
        for name, values in reads.items():
            err = np.asarray(values) - t
            rows[preset][name] = {
                "bias": float(err.mean()),
                "mae": float(np.abs(err).mean()),
                "within_20pct": float(np.mean(np.abs(err) <= 0.2 * t)),
            }
        print(f"[noise] {preset}: {len(t)} images", file=sys.stderr, flush=True)

    better = {
        p: min(ESTIMATORS, key=lambda n, p=p: rows[p][n]["mae"]) for p in rows
    }  # lowest mean absolute error per preset
    md = [
        "# Noise estimators on unseen pictures",
        "",
        *provenance_markdown(prov),
        "",
        f"Data: `{args.data}`, every test image ({len(samples)}; pictures held out of every training set), "
        f"degraded with its fixed parameters (seed {args.seed}); truth = the degradation's effective σ "
        "(0-255). *bias* = mean(estimate − truth), *MAE* = mean |estimate − truth|, *±20 %* = share of "
        "images read within 20 % of the truth.",
        "",
        markdown_table(
            ["preset", "true σ (mean)", *(f"{n}: bias / MAE / ±20 %" for n in ESTIMATORS), "lower MAE"],
            [
                [
                    p,
                    fmt(r["true_sigma_mean"], 1),
                    *(
                        f"{fmt(r[n]['bias'])} / {fmt(r[n]['mae'])} / {fmt(100 * r[n]['within_20pct'], 0)} %"
                        for n in ESTIMATORS
                    ),
                    better[p],
                ]
                for p, r in rows.items()
            ],
        ),
        "",
    ]
    data = {"schema": "apir.bench.noise_estimator/1", **prov, "settings": {"data": str(args.data),
            "presets": args.presets, "seed": args.seed}, "wall_minutes": (time.time() - started) / 60,
            "n_images": len(samples), "presets": rows, "lower_mae": better}  # fmt: skip
    publish_results(args.out, "\n".join(md), data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
