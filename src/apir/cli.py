"""The ``apir`` command line. It only parses arguments and calls the library.

Every user error surfaces as one line on stderr and exit code 2 (see :mod:`apir.errors`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from apir import __version__
from apir.errors import ApirError


def _cmd_data_demo(args: argparse.Namespace) -> int:
    from apir.data.demo import build_demo_dataset

    out = build_demo_dataset(
        args.out, size=args.size, seed=args.seed, categories=args.categories, force=args.force
    )
    print(f"demo dataset written to {out}")
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from apir.data.check import check_dataset, format_report

    reports = check_dataset(args.root)
    print(format_report(reports))
    return 1 if any(r.problems for r in reports) else 0


def _cmd_data_sheet(args: argparse.Namespace) -> int:
    from apir.data.degradations import get_degradation
    from apir.data.mvtec import load_dataset
    from apir.report.contact_sheet import write_contact_sheet

    degradation = get_degradation(args.degradation)
    cats = load_dataset(args.root, args.categories)
    out = write_contact_sheet(cats, degradation, args.output, per_category=args.per_category, seed=args.seed)
    print(f"contact sheet written to {out}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from apir.models import list_models

    print("\n".join(list_models()))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from apir.train.config import load_config, override
    from apir.train.loop import train

    if args.resume:
        if args.config is not None:
            raise ApirError("--config cannot be combined with --resume (the run's own config.yaml is used)")
        saved = args.out / "config.yaml"
        if not saved.is_file():
            raise ApirError(f"{args.out}: nothing to resume (no config.yaml here)")
        config = load_config(saved)
        if args.model is not None and args.model != config.model.name:
            raise ApirError(f"--model {args.model} differs from the run's model {config.model.name}")
    else:
        config = load_config(args.config)
    config = override(
        config,
        **{
            "data.root": str(args.data) if args.data else None,
            "model.name": args.model,
            "train.epochs": args.epochs,
            "train.max_minutes": args.max_minutes,
            "train.device": args.device,
            "train.seed": args.seed,
        },
    )
    result = train(config, args.out, resume=args.resume, force=args.force)
    m = result.last_metrics
    if m:
        print(
            f"validation PSNR: degraded input {result.input_psnr:.2f} dB -> restored {m['psnr']:.2f} dB "
            f"(best {result.best_psnr:.2f}); inside defects {m['psnr_defect']:.2f} dB; SSIM {m['ssim']:.4f}"
        )
    print(
        f"run directory: {result.run_dir} ({result.epochs_done} epochs"
        f"{', stopped at the time limit' if result.stopped_early else ''})"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apir",
        description="Anomaly-preserving image restoration: denoise and deblur images, keep the defects.",
    )
    parser.add_argument("--version", action="version", version=f"apir {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="build, check and preview MVTec-layout datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    p = data_sub.add_parser("demo", help="build the offline demo dataset (MVTec AD layout)")
    p.add_argument("out", type=Path, help="folder to create")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--categories", nargs="+", metavar="NAME", help="only these categories")
    p.add_argument("--force", action="store_true", help="replace an existing demo dataset at OUT")
    p.set_defaults(func=_cmd_data_demo)

    p = data_sub.add_parser("check", help="report counts and every problem in an MVTec-layout dataset")
    p.add_argument("root", type=Path, help="dataset root or a single category folder")
    p.set_defaults(func=_cmd_data_check)

    p = data_sub.add_parser("sheet", help="contact sheet of clean/degraded/mask triplets (PNG)")
    p.add_argument("root", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
    p.add_argument("--degradation", default="blind", help="preset name or YAML file (default: blind)")
    p.add_argument("--categories", nargs="+", metavar="NAME")
    p.add_argument("--per-category", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_data_sheet)

    p = sub.add_parser("train", help="train a restoration model (also under torchrun for many GPUs)")
    p.add_argument("--data", type=Path, help="MVTec-layout dataset root (or set data.root in the config)")
    p.add_argument("--model", help="architecture name (see `apir models`); overrides the config")
    p.add_argument("--out", type=Path, required=True, metavar="RUN_DIR", help="run directory")
    p.add_argument("--config", type=Path, help="YAML config (see configs/)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-minutes", type=float, help="stop cleanly after this many minutes")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true", help="continue RUN_DIR from its last checkpoint")
    p.add_argument("--force", action="store_true", help="start over in an existing RUN_DIR")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("models", help="list the available architectures")
    p.set_defaults(func=_cmd_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ApirError as err:
        print(f"apir: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("apir: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
