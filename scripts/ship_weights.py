"""Turn a training checkpoint into shipped weights: the model and its record, no optimizer state.

A ``last.safetensors`` holds AdamW's moments (3× the model's size) for ``--resume``; shipped weights
need only the model, its config and where it came from.

    python scripts/ship_weights.py runs/survival_sweep/w1/last.safetensors \
        src/apir/weights/survival.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from apir.models.checkpoint import load_model, read_header, save_checkpoint


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    model, _ = load_model(args.checkpoint)
    header, _ = read_header(args.checkpoint)
    meta = {k: v for k, v in header.items() if k not in ("model", "optimizer", "scheduler")}
    save_checkpoint(args.out, model, {**meta, "shipped_from": args.checkpoint.as_posix()})
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
