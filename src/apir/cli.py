"""The ``apir`` command line. It only parses arguments and calls the library.

Every user error surfaces as one line on stderr and exit code 2 (see :mod:`apir.errors`).

Why each command imports its library module inside its ``_cmd_*`` function: start-up time. The
library pulls in PyTorch, OpenCV, scikit-image and matplotlib (seconds on a small machine); ``apir
--help``, ``apir data check`` or a one-line usage error should not pay for all of them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from apir.errors import ApirError
from apir.fsutil import os_error_reason, printable
from apir.version import __version__

MANIFEST_FILE = "manifest.json"  # apir.restore.manifest.MANIFEST_FILE, without importing torch


def _cmd_data_demo(args: argparse.Namespace) -> int:
    from apir.data.demo import build_demo_dataset

    out = build_demo_dataset(
        args.out, size=args.size, seed=args.seed, categories=args.categories, force=args.force
    )
    print(f"demo dataset written to {out}")
    return 0


def _cmd_data_corpus(args: argparse.Namespace) -> int:
    from apir.data.corpus import build_training_corpus

    debian = [] if args.bundled_only else args.debian
    out = build_training_corpus(
        args.out,
        tile=args.tile,
        force=args.force,
        debian=debian,
        cache=args.cache,
        offline=args.offline,
        unseen=args.unseen,
        holdout=args.holdout,
        seed=args.seed,
        warn=lambda msg: print(msg, file=sys.stderr),
    )
    print(f"training corpus written to {out}")
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from apir.data.check import check_dataset, format_report

    has_manifest = (args.root / MANIFEST_FILE).is_file()
    bad = False
    try:
        reports = check_dataset(args.root, follow_symlinks=args.follow_symlinks)
    except ApirError:
        if not has_manifest:
            raise
        reports = None  # not a dataset (e.g. an `apir restore` OUT_DIR): check its manifest only
    if reports is not None:
        print(format_report(reports))
        bad = any(r.problems for r in reports)
    if has_manifest:
        from apir.restore.manifest import load_manifest, verify

        problems = verify(args.root)
        n = len(load_manifest(args.root).entries)
        if problems:
            print(f"\n{len(problems)} file(s) do not match {printable(args.root / MANIFEST_FILE)}:")
            print("\n".join(f"  {printable(p)}: {what}" for p, what in problems))
            bad = True
        else:
            print(f"all {n} files match {printable(args.root / MANIFEST_FILE)} (SHA-256)")
    return 1 if bad else 0


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
    if args.weights:
        from apir.restore.loading import shipped_names

        print("\n".join(shipped_names()))
        return 0
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
            hint = (
                "; the run never finished an epoch: run it again without --resume"
                if args.out.is_dir()
                else ""
            )
            raise ApirError(f"{args.out}: nothing to resume (no config.yaml here{hint})")
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
            "data.num_workers": args.num_workers,
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


def _cmd_adapt(args: argparse.Namespace) -> int:
    from apir.train.adapt import adapt

    result = adapt(
        args.data, args.category, args.out, minutes=args.minutes, base=args.model, force=args.force
    )
    m = result.last_metrics
    if m:
        print(
            f"validation PSNR on {args.category}'s held-out good images: input {result.input_psnr:.2f} dB -> "
            f"{m['psnr']:.2f} dB; inside synthetic defects {m['psnr_defect']:.2f} dB"
        )
    print(f"adapted model: {result.run_dir} (use it with --model {result.run_dir})")
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from apir.restore.files import restore_paths

    summary = restore_paths(
        args.inputs,
        args.output,
        args.model,
        tile=args.tile,
        overlap=args.overlap,
        device=args.device,
        batch=args.batch,
        overwrite=args.overwrite,
        keep_input=args.keep_input,
        noise_level=args.noise_level,
        strength=args.strength,
        engine=args.engine,
        guard_dir=args.guard,
        guard_floor=args.guard_floor,
        resume=args.resume,
        follow_symlinks=args.follow_symlinks,
        **_executor_options(args),
    )
    print(summary.describe())
    return 0 if summary.ok else 1


def _cmd_export(args: argparse.Namespace) -> int:
    from apir.restore.export import check_onnx_parity, export_onnx
    from apir.restore.loading import resolve_model

    model, _ = resolve_model(args.model, "cpu")
    path = export_onnx(model, args.output, opset=args.opset)
    diff = check_onnx_parity(model, path)
    print(f"exported {path} (onnxruntime vs PyTorch max difference {diff:.2e} at two sizes)")
    if diff > 1e-3:
        raise ApirError(f"{path}: ONNX output differs from PyTorch by {diff:.2e}; do not use this export")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from apir.evaluate.methods import resolve_method
    from apir.evaluate.runner import evaluate

    method = resolve_method(
        args.model,
        args.method,
        device=args.device,
        tile=args.tile,
        overlap=args.overlap,
        label=args.label,
        keep_input=args.keep_input,
        noise_level=args.noise_level,
        strength=args.strength,
        engine=args.engine,
        guard_floor=args.guard_floor if args.guard else None,
    )
    result = evaluate(
        args.data,
        args.output,
        method=method.method,
        restore_fn=method.restore_fn,
        degradation=args.degradation,
        seed=args.seed,
        categories=args.categories,
        crop=args.crop,
        label=method.label,
        model_info=method.model_info,
        max_per_category=args.max_per_category,
        detector=args.detector,
        detector_fit=args.detector_fit,
        follow_symlinks=args.follow_symlinks,
        for_category=method.for_category,
    )
    print(format_overall(result))
    if "detection" in result:
        print(format_detection(result["detection"]))
    print(f"results written to {printable(args.output)}")
    return 0


def format_overall(result: dict) -> str:
    """One-line summary of an evaluation: defect PSNR always beside overall PSNR."""
    o = result["overall"]

    def f(key: str, digits: int = 2) -> str:
        value = o.get(key)
        return "n/a" if value is None else f"{value:.{digits}f}"

    return (
        f"{result['label']}: PSNR {f('psnr')} dB (input {f('input_psnr')}), in defect {f('psnr_defect')} "
        f"(input {f('input_psnr_defect')}), background {f('psnr_background')}, SSIM {f('ssim', 4)}, "
        f"retention {f('retention', 3)}, contrast ratio {f('contrast_ratio', 3)}, "
        f"{f('megapixels_per_second', 3)} MP/s on {o['n_images']} images"
    )


def format_detection(detection: dict) -> str:
    """One line: the reference detector's pixel AUROC on clean, degraded and restored images."""
    o = detection["overall"]

    def f(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    aurocs = ", ".join(
        f"{v} {f((o.get(v) or {}).get('pixel_auroc'))}" for v in ("clean", "degraded", "restored")
    )
    return f"detector pixel AUROC: {aurocs} (preservation {f(o.get('auroc_preservation'))})"


def _cmd_restore_dataset(args: argparse.Namespace) -> int:
    from apir.evaluate.methods import resolve_method
    from apir.restore.dataset import restore_dataset

    if args.degrade_only and args.keep_input:
        raise ApirError("--keep-input applies to restoration; --degrade-only restores nothing")
    executor = _executor_options(args)  # Ray missing: one line, before the model is loaded
    spec = {"device": args.device, "keep_input": args.keep_input}
    method = None if args.degrade_only else resolve_method(args.model, args.method, **spec)
    if method is not None and args.executor == "ray":
        from functools import partial

        from apir.evaluate.methods import method_restore_fn

        # Each Ray actor loads the model itself, once: a restore function is not shipped.
        executor["restore_factory"] = partial(method_restore_fn, args.model, args.method, **spec)
    out = restore_dataset(
        args.root,
        args.output,
        restore_fn=method.restore_fn if method else None,
        degradation=args.degradation,
        seed=args.seed,
        categories=args.categories,
        overwrite=args.overwrite,
        label=method.label if method else None,
        originals=not args.no_originals,
        resume=args.resume,
        follow_symlinks=args.follow_symlinks,
        model_info=method.model_info if method else None,
        **executor,
    )
    print(f"{'degraded' if method is None else 'restored'} dataset written to {printable(out)}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from apir.evaluate.results import load_results
    from apir.report.html import write_report

    index = write_report(args.results, args.output, title=args.title, max_examples=args.examples)
    for results_dir in args.results:
        print(format_overall(load_results(results_dir).to_dict()))
    print(f"report written to {index}")
    return 0


def _add_guard_floor(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--guard-floor",
        type=float,
        default=0.3,
        metavar="F",
        help="with --guard: the strength at a sure anomaly (0-1, default 0.3; 1 = no guard)",
    )


def _add_keep_input(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--keep-input",
        type=float,
        default=0.0,
        metavar="K",
        help="add back this share (0-1) of (input - restored): keeps more of faint defects, leaves some "
        "noise; 0 = full restoration (default). Models only; see docs/restore.md for the measured trade-off",
    )


def _evaluate_noise_level(text: str) -> float | str:
    if text == "true":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a σ (0-255) or 'true', got {text!r}") from None


def _add_level_options(p: argparse.ArgumentParser, evaluate: bool = False) -> None:
    p.add_argument(
        "--noise-level",
        type=_evaluate_noise_level if evaluate else float,
        metavar="SIGMA",
        help="noise σ on the 0-255 scale for noise-level-aware models (default: estimated from each "
        "image)" + ("; 'true' = each degradation's own σ, as CBM3D gets it" if evaluate else ""),
    )
    p.add_argument(
        "--strength",
        type=float,
        default=1.0,
        metavar="S",
        help="multiplies the noise level: < 1 keeps more of the input (and of faint defects), > 1 "
        "smooths more (default 1)",
    )
    p.add_argument(
        "--engine",
        choices=["auto", "torch", "onnx"],
        default="auto",
        help="auto (default): ONNX Runtime on the CPU where installed (about 2x faster), else PyTorch",
    )


def _executor_options(args: argparse.Namespace) -> dict:
    """``executor`` and ``ray`` keyword arguments from the flags; Ray's presence is checked here."""
    ray_flags = [f for f, v in (("--ray-address", args.ray_address), ("--workers", args.workers)) if v]
    if args.gpus_per_worker:
        ray_flags.append("--gpus-per-worker")
    if args.ray_batch != 1:
        ray_flags.append("--ray-batch")
    if args.executor == "local":
        if ray_flags:
            raise ApirError(f"{ray_flags[0]} applies to --executor ray")
        return {"executor": "local"}
    if args.device == "cuda" and not args.gpus_per_worker:
        raise ApirError("--device cuda with --executor ray needs --gpus-per-worker (e.g. 1)")
    from apir.restore.ray_executor import RayOptions, check_executor

    options = RayOptions(
        address=args.ray_address,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        batch=args.ray_batch,
    )
    return {"executor": "ray", "ray": check_executor("ray", options)}


def _add_executor_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="local (default): this process; ray: an actor pool on a local Ray instance or a cluster, "
        "same outputs and manifest (docs/scaling.md; needs pip install 'apir[ray]')",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="join this Ray cluster (e.g. ray://head:10001 or auto); default: start a local instance",
    )
    p.add_argument("--workers", type=int, metavar="N", help="Ray actors (default: one per CPU, or per GPU)")
    p.add_argument(
        "--gpus-per-worker", type=float, default=0.0, metavar="G", help="GPUs per Ray actor (default 0)"
    )
    p.add_argument("--ray-batch", type=int, default=1, metavar="N", help="files per Ray task (default 1)")


def _add_follow_symlinks(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--follow-symlinks",
        action="store_true",
        help=f"follow symbolic links that lead out of {what} (default: skip them, one warning each)",
    )


def baseline_names() -> list[str]:
    from apir.evaluate.baselines import BASELINES

    return BASELINES.names()


def _parents() -> dict[str, argparse.ArgumentParser]:
    """Option groups several commands share, declared once (argparse ``parents``)."""

    def parent() -> argparse.ArgumentParser:
        return argparse.ArgumentParser(add_help=False)

    degrade = parent()  # which images, degraded how
    degrade.add_argument("--degradation", default="blind", help="preset name or YAML file (default: blind)")
    degrade.add_argument("--categories", nargs="+", metavar="NAME")
    degrade.add_argument("--seed", type=int, default=0)
    restorer = parent()  # what restores them
    restorer.add_argument(
        "--model", help="checkpoint file, run directory or shipped model name (default: default)"
    )
    restorer.add_argument(
        "--method", help=f"a classical baseline instead of a model: {', '.join(baseline_names())}"
    )
    device = parent()
    device.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    tiling = parent()
    tiling.add_argument(
        "--tile", type=int, default=512, help="tile side in px, 0 = whole image (default 512)"
    )
    tiling.add_argument("--overlap", type=int, default=32, help="tile overlap in px (default 32)")
    return {"degrade": degrade, "restorer": restorer, "device": device, "tiling": tiling}


def build_parser() -> argparse.ArgumentParser:
    shared = _parents()
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

    p = data_sub.add_parser(
        "corpus",
        help="build the default model's training corpus (bundled + Debian pictures) and the unseen set",
    )
    p.add_argument("out", type=Path, help="folder to create")
    p.add_argument("--tile", type=int, default=256, help="bundled pictures' tile side (default 256)")
    p.add_argument(
        "--debian",
        nargs="+",
        metavar="PKG",
        help="Debian packages to take pictures from (default: all known; see docs/data.md)",
    )
    p.add_argument("--bundled-only", action="store_true", help="only the pictures bundled in PyPI packages")
    p.add_argument("--cache", type=Path, help="package cache (default $APIR_CACHE or ~/.cache/apir)")
    p.add_argument("--offline", action="store_true", help="use only packages already in the cache")
    p.add_argument("--unseen", type=Path, help="where the held-out benchmark set goes (default OUT_unseen)")
    p.add_argument("--holdout", type=float, default=0.12, help="share of pictures held out (default 0.12)")
    p.add_argument("--seed", type=int, default=0, help="seed of the hold-out split and unseen defects")
    p.add_argument("--force", action="store_true", help="replace a corpus (and unseen set) apir built")
    p.set_defaults(func=_cmd_data_corpus)

    p = data_sub.add_parser(
        "check",
        help="report counts and every problem in an MVTec-layout dataset; a restored one is also "
        "verified against its manifest.json (SHA-256 of every file)",
    )
    p.add_argument("root", type=Path, help="dataset root or a single category folder")
    _add_follow_symlinks(p, "the dataset")
    p.set_defaults(func=_cmd_data_check)

    p = data_sub.add_parser(
        "sheet", help="contact sheet of clean/degraded/mask triplets (PNG)", parents=[shared["degrade"]]
    )
    p.add_argument("root", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
    p.add_argument("--per-category", type=int, default=1)
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
    p.add_argument(
        "--num-workers",
        type=int,
        metavar="N",
        help="data-loading processes (a GPU config's 12 would starve a 2-core CPU); overrides the config",
    )
    p.add_argument("--resume", action="store_true", help="continue RUN_DIR from its last checkpoint")
    p.add_argument("--force", action="store_true", help="start over in an existing RUN_DIR")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "adapt", help="fine-tune the default (or --model) on one category's train/good for a few minutes"
    )
    p.add_argument("--data", type=Path, required=True, help="MVTec-layout dataset root")
    p.add_argument("--category", required=True, help="the category (part) to adapt to")
    p.add_argument("-o", "--out", type=Path, required=True, help="run directory to create")
    p.add_argument("--minutes", type=float, default=10.0, help="training time budget (default 10)")
    p.add_argument("--model", help="base checkpoint or run directory (default: the shipped model)")
    p.add_argument(
        "--survival",
        type=float,
        default=0.0,
        metavar="W",
        help="weight of the paired defect-response term (output change = the defect; 0 = off, try 0.2)",
    )
    p.add_argument("--force", action="store_true", help="start over in an existing run directory")
    p.set_defaults(func=_cmd_adapt)

    p = sub.add_parser(
        "restore",
        help="restore image files and folders (same names, modes and depths)",
        parents=[shared["tiling"], shared["device"]],
    )
    p.add_argument("inputs", type=Path, nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT_DIR")
    p.add_argument(
        "--model",
        help="checkpoint file, training run directory or shipped model name "
        "(default: the shipped default model)",
    )
    p.add_argument("--batch", type=int, default=1, help="tiles per forward pass (default 1)")
    _add_keep_input(p)
    _add_level_options(p)
    p.add_argument(
        "--guard",
        type=Path,
        metavar="GOOD_DIR",
        help="good images of the same part: restore again with lower strength where a detector fitted on "
        "them finds the first restoration anomalous (docs/restore.md)",
    )
    _add_guard_floor(p)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing outputs; allow OUT_DIR inside an input folder (inputs are never written)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="finish an interrupted run into OUT_DIR: keep outputs its manifest/journal verifies "
        "(SHA-256), redo the rest, remove stale temporary files",
    )
    _add_follow_symlinks(p, "an input folder")
    _add_executor_options(p)
    p.set_defaults(func=_cmd_restore)

    p = sub.add_parser("export", help="export a model to ONNX (dynamic batch, height and width)")
    p.add_argument("--model", help="checkpoint file, run directory or shipped model name (default: default)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=17)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "evaluate",
        help="degrade the test split, restore, and measure (overall and in defects)",
        parents=[shared["restorer"], shared["degrade"], shared["device"], shared["tiling"]],
    )
    p.add_argument("--data", type=Path, required=True, help="MVTec-layout dataset root")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="RESULTS_DIR")
    p.add_argument("--max-per-category", type=int, help="evaluate this many images per category")
    p.add_argument("--crop", type=int, help="centre crop of each image, in px")
    p.add_argument("--label", help="name shown in reports")
    _add_follow_symlinks(p, "the dataset")
    p.add_argument(
        "--detector",
        action="store_true",
        help="also run the reference anomaly detector on clean, degraded and restored images",
    )
    p.add_argument(
        "--detector-fit",
        choices=["clean", "both"],
        default="both",
        help="clean: fit the detector on clean train/good only; both (default): also fit it on train/good "
        "degraded / restored the same way and score degraded / restored test images (as users do)",
    )
    _add_keep_input(p)
    _add_level_options(p, evaluate=True)
    p.add_argument(
        "--guard",
        action="store_true",
        help="detector-guided restoration, the detector fitted on each category's train/good degraded and "
        "restored the same way (docs/restore.md)",
    )
    _add_guard_floor(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "restore-dataset",
        help="an MVTec-layout copy with degraded-then-restored images",
        parents=[shared["restorer"], shared["degrade"], shared["device"]],
    )
    p.add_argument("root", type=Path, help="MVTec-layout dataset root")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT_ROOT")
    p.add_argument("--degrade-only", action="store_true", help="write the degraded images, unrestored")
    p.add_argument("--no-originals", action="store_true", help="do not copy apir's original/ folders")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier restore-dataset output")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run into OUT_ROOT (same settings): verified outputs are kept, the "
        "rest redone; the result is identical to an uninterrupted run",
    )
    _add_follow_symlinks(p, "the dataset")
    _add_keep_input(p)
    _add_executor_options(p)
    p.set_defaults(func=_cmd_restore_dataset)

    p = sub.add_parser("report", help="HTML report comparing evaluation results side by side")
    p.add_argument("results", type=Path, nargs="+", metavar="RESULTS_DIR")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="REPORT_DIR")
    p.add_argument("--title")
    p.add_argument("--examples", type=int, default=6, help="example images to show (default 6)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("models", help="list the available architectures")
    p.add_argument(
        "--weights",
        action="store_true",
        help="list the weights shipped with apir instead (each a --model name: default, survival, ...)",
    )
    p.set_defaults(func=_cmd_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ApirError as err:
        print(f"apir: error: {printable(err)}", file=sys.stderr)
        return err.exit_code
    except OSError as err:  # a disk error no command turned into an ApirError: still one line
        where = f"{printable(err.filename)}: " if err.filename else ""
        print(f"apir: error: {where}{printable(os_error_reason(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("apir: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
