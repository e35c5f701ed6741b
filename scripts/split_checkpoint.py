"""Split a safetensors checkpoint into parts under a size limit, or join the parts back.

Used to move resume checkpoints of long trainings between machines whose file transfers are capped;
the metadata (model config, epoch, optimizer hyper-parameters) travels in every part.

    python scripts/split_checkpoint.py split last.safetensors OUTDIR --max-mb 15
    python scripts/split_checkpoint.py join OUTDIR/last.part*.safetensors -o last.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file, save_file


def split(path: Path, out: Path, max_mb: float) -> None:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    out.mkdir(parents=True, exist_ok=True)
    part: dict = {}
    size, index = 0, 0
    for key in sorted(tensors):
        t = tensors[key]
        nbytes = t.numel() * t.element_size()
        if part and size + nbytes > max_mb * 2**20:
            save_file(part, str(out / f"{path.stem}.part{index}.safetensors"), metadata=meta)
            part, size, index = {}, 0, index + 1
        part[key] = t
        size += nbytes
    save_file(part, str(out / f"{path.stem}.part{index}.safetensors"), metadata=meta)


def join(parts: list[Path], output: Path) -> None:
    tensors: dict = {}
    with safe_open(str(parts[0]), framework="pt") as f:
        meta = f.metadata()
    for p in parts:
        tensors.update(load_file(str(p)))
    save_file(tensors, str(output), metadata=meta)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split")
    s.add_argument("path", type=Path)
    s.add_argument("out", type=Path)
    s.add_argument("--max-mb", type=float, default=15)
    j = sub.add_parser("join")
    j.add_argument("parts", type=Path, nargs="+")
    j.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args()
    if args.cmd == "split":
        split(args.path, args.out, args.max_mb)
    else:
        join(args.parts, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
