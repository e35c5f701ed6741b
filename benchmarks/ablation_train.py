"""Architecture ablation for the default model: equal training time per variant, then validation PSNR.

Every variant is trained with the same config (blind degradations, synthetic defects, equation (1))
for the same wall-clock budget on the same machine, one after the other, and scored on the same
fixed validation images (held-out corpus tiles, each with a fixed synthetic defect and degradation).
Prints a markdown table and writes JSON; CPU speed is measured separately (benchmarks/speed.py).

    python benchmarks/ablation_train.py --minutes 2 --out benchmarks/results/ablation_gpu
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from apir.data.corpus import build_training_corpus
from apir.models import create_model
from apir.train.config import config_from_dict
from apir.train.loop import train

VARIANTS = {
    "nafnet w16": {"width": 16},
    "nafnet w16 unshuffle2": {"width": 16, "unshuffle": 2},
    "nafnet w24 unshuffle2": {"width": 24, "unshuffle": 2},
    "nafnet w32 unshuffle2": {"width": 32, "unshuffle": 2},
}


def gmacs_at_256(kwargs: dict) -> float:
    model = create_model("nafnet", **kwargs).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 256, 256))
    return counter.get_total_flops() / 2e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--corpus", type=Path, default=Path("runs/corpus"))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = ap.parse_args()
    if not args.corpus.exists():
        build_training_corpus(args.corpus, show_progress=False)
    rows = []
    for name in args.variants:
        kwargs = VARIANTS[name]
        config = config_from_dict(
            {
                "model": {"name": "nafnet", "kwargs": kwargs},
                "data": {
                    "root": str(args.corpus),
                    "degradation": "blind",
                    "patch_size": args.patch,
                    "batch_size": args.batch,
                    "patches_per_image": 16,
                    "val_crop": 256,
                    "num_workers": args.workers,
                },
                "optim": {"name": "adamw", "lr": 5e-4},
                "train": {"epochs": 10_000, "max_minutes": args.minutes, "seed": 0},
            }
        )
        run_dir = args.out / "runs" / name.replace(" ", "_")
        start = time.time()
        result = train(config, run_dir, force=True, show_progress=False)
        m = result.last_metrics
        row = {
            "variant": name,
            "kwargs": kwargs,
            "params_m": sum(p.numel() for p in result.model.parameters()) / 1e6,
            "gmacs_256": gmacs_at_256(kwargs),
            "val_psnr": m["psnr"],
            "val_psnr_defect": m["psnr_defect"],
            "val_ssim": m["ssim"],
            "input_psnr": m["input_psnr"],
            "epochs": result.epochs_done,
            "minutes": (time.time() - start) / 60,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    lines = [
        f"Equal training time per variant ({args.minutes} min each, batch {args.batch}, patch {args.patch}, "
        f"blind degradations, synthetic defects, equation (1)); device: {device}; torch {torch.__version__}.",
        f"Command: `python {' '.join(sys.argv)}`",
        "",
        "| variant | params (M) | GMACs @256² | epochs | val PSNR | val PSNR in defect | val SSIM "
        "| input PSNR |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['params_m']:.2f} | {r['gmacs_256']:.2f} | {r['epochs']} | "
            f"{r['val_psnr']:.2f} | {r['val_psnr_defect']:.2f} | {r['val_ssim']:.4f} | "
            f"{r['input_psnr']:.2f} |"
        )
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.md").write_text(text + "\n")
    (args.out / "ablation.json").write_text(json.dumps({"device": device, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
