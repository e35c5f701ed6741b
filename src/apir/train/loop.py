"""The training loop: plain and direct (after KAIR), one function from config to run directory.

A run directory holds everything about a run: ``config.yaml`` (resolved), ``train.log``, ``log.csv``
(one row per epoch), ``curves.png``, ``last.safetensors`` (weights + optimizer, written every epoch, for
``--resume``) and ``best.safetensors`` (weights of the epoch with the best validation PSNR).
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from apir.data.datasets import EvalImageDataset, TrainPatchDataset
from apir.data.degradations import get_degradation
from apir.data.mvtec import Sample, load_dataset, split_train_val
from apir.device import select_device
from apir.errors import ApirError
from apir.evaluate.metrics import masked_psnr, psnr, ssim
from apir.fsutil import atomic_write_bytes, check_free_space, os_error_reason
from apir.locking import LOCK_NAME, RunLock
from apir.losses import AnomalyWeightedLoss, defect_response_loss
from apir.models import create_model
from apir.models.checkpoint import (
    BEST,
    LAST,
    check_finite,
    init_from_checkpoint,
    load_optimizer,
    load_weights,
    read_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from apir.precision import amp_dtype
from apir.restore.loading import shipped_weights
from apir.train.config import RunConfig, dump_config
from apir.train.distributed import DistContext, any_rank, barrier, cleanup, init_distributed, mean_over_ranks

log = logging.getLogger("apir.train")

RUN_FILES = ("config.yaml", "train.log", "log.csv", "curves.png", BEST, LAST)
CSV_FIELDS = (
    "epoch",
    "steps",
    "train_loss",
    "val_psnr",
    "val_ssim",
    "val_psnr_defect",
    "val_psnr_background",
    "input_psnr",
    "lr",
    "minutes",
)


@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int
    best_psnr: float
    input_psnr: float
    last_metrics: dict[str, float]
    model: nn.Module
    stopped_early: bool


def _never_started(run_dir: Path) -> bool:
    """True if ``run_dir`` holds no finished epoch: a run that failed at its start (bad data path,
    unknown degradation, ...) leaves only ``train.log``/``config.yaml``, which must not block a rerun."""
    names = {p.name for p in run_dir.iterdir() if not p.name.startswith(".")}
    return names <= {"train.log", "config.yaml"}


def prepare_run_dir(run_dir: Path, resume: bool, force: bool) -> None:
    """Create the run directory; refuse to clobber an existing run unless ``force``.

    A run directory whose run never finished an epoch is reused without ``force`` (its
    ``train.log`` is appended to); apir's own hidden files (the lock) do not count.
    """
    if resume:
        if not (run_dir / LAST).is_file():
            hint = (
                " (the run never finished an epoch: run it again without --resume)"
                if run_dir.is_dir()
                else ""
            )
            raise ApirError(f"{run_dir}: nothing to resume (no {LAST} here){hint}")
        return
    contents = [p for p in run_dir.iterdir() if not p.name.startswith(".")] if run_dir.is_dir() else []
    if contents and not _never_started(run_dir):
        if not force:
            raise ApirError(
                f"{run_dir}: run directory exists and is not empty (use --resume to continue it, "
                "--force to start over)"
            )
        for name in RUN_FILES:
            target = run_dir / name
            if target.is_file():
                target.unlink()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ApirError(f"{run_dir}: run directory is not writable ({err.strerror or err})") from None


def build_splits(config: RunConfig) -> tuple[list[Sample], list[Sample]]:
    """Training and validation samples, following ``data.train_on`` (see the config docs)."""
    if not config.data.root:
        raise ApirError("no dataset given (pass --data ROOT or set data.root in the config)")
    cats = load_dataset(config.data.root, config.data.categories, config.data.follow_symlinks)
    seed = config.train.seed
    if config.data.train_on == "good":
        pool = [s for c in cats for s in c.train]
    else:
        pool = [s for c in cats for s in [*c.train, *c.test]]
        unlabelled = [s for s in pool if not s.is_good and s.mask is None]
        if unlabelled:
            raise ApirError(
                f"{unlabelled[0].image}: defective image without a mask "
                f"({len(unlabelled)} in all; run `apir data check {config.data.root}`)"
            )
    if not pool:
        raise ApirError(f"{config.data.root}: no training images found")
    has_masks = any(s.mask is not None for s in pool)
    if not has_masks and config.data.defect_prob == 0:
        raise ApirError(
            f"{config.data.root}: the dataset has no defect masks and synthetic defects are off "
            "(data.defect_prob = 0), so the anomaly-weighted loss has nothing to weigh"
        )
    train, val = split_train_val(pool, config.data.val_fraction, seed)
    if config.data.val_max_images and len(val) > config.data.val_max_images:
        # Spread the cap over categories rather than taking the first category's images only.
        step = len(val) / config.data.val_max_images
        val = [val[int(i * step)] for i in range(config.data.val_max_images)]
    return train, val


def _write_csv_row(path: Path, row: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({k: row.get(k, "") for k in CSV_FIELDS})


def model_input(model: nn.Module, degraded: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """What the network sees: the degraded image, and for noise-level-aware models its σ map too."""
    return torch.cat([degraded, level], dim=1) if getattr(model, "level_input", False) else degraded


def _init_path(spec: str) -> Path:
    if spec == "default":
        return shipped_weights()
    return resolve_checkpoint(spec)


@torch.no_grad()
def validate(
    model: nn.Module, dataset: EvalImageDataset, device: torch.device, amp: torch.dtype | None
) -> dict[str, float]:
    """Mean PSNR/SSIM of restored images, overall and inside/outside the defect, and of the input."""
    model.eval()
    rows: dict[str, list[float]] = {
        k: [] for k in ("psnr", "ssim", "psnr_defect", "psnr_background", "input_psnr")
    }
    for i in range(len(dataset)):
        item = dataset[i]
        x = item["degraded"][None].to(device)
        clean = item["clean"][None].to(device)
        mask = item["mask"][None].to(device)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out = model(model_input(model, x, item["level"][None].to(device)))
        out = out.float().clamp(0, 1)
        rows["psnr"].append(psnr(out, clean).item())
        rows["ssim"].append(ssim(out, clean).item())
        rows["psnr_defect"].append(masked_psnr(out, clean, mask).item())
        rows["psnr_background"].append(masked_psnr(out, clean, 1 - mask).item())
        rows["input_psnr"].append(psnr(x, clean).item())
    model.train()
    return {k: float(np.nanmean(v)) if not np.all(np.isnan(v)) else float("nan") for k, v in rows.items()}


def _make_scheduler(optimizer, config: RunConfig, total_steps: int):
    """Cosine decay from ``optim.lr`` to ``optim.min_lr`` over the run's steps, or None."""
    if config.optim.scheduler == "none":
        return None
    return torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(total_steps, 1), eta_min=config.optim.min_lr
    )


def _resume_scheduler(scheduler, state: dict, total_steps: int, min_lr: float) -> None:
    """Continue a saved schedule, re-timed to end at this run's ``total_steps`` (``--epochs N``).

    The learning rate moves to where the new length puts the step reached (the cosine's closed
    form), and torch's step-by-step update continues on that curve to ``min_lr`` at the new end; so
    a finished run resumed with more epochs restarts warm instead of staying at ``min_lr``. States
    written before the scheduler was torch's ``CosineAnnealingLR`` (a ``LambdaLR`` over the same
    cosine: its ``lr_lambdas`` entry is dropped) load the same way.
    """
    scheduler.load_state_dict({k: v for k, v in state.items() if k != "lr_lambdas"})
    scheduler.T_max, scheduler.eta_min = max(total_steps, 1), min_lr
    progress = min(scheduler.last_epoch / scheduler.T_max, 1.0)
    lrs = [min_lr + (base - min_lr) * 0.5 * (1 + math.cos(math.pi * progress)) for base in scheduler.base_lrs]
    for group, lr in zip(scheduler.optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr
    scheduler._last_lr = lrs  # what get_last_lr() reports (torch keeps it in this attribute)


class _LogFile(logging.FileHandler):
    """A log file that never prints a traceback: a full disk is reported by the checkpoint save."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        pass


def _setup_logging(run_dir: Path, is_main: bool) -> None:
    log.setLevel(logging.INFO)
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    if is_main:
        handler = _LogFile(run_dir / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
    log.propagate = False


def train(
    config: RunConfig,
    run_dir: str | Path,
    resume: bool = False,
    force: bool = False,
    show_progress: bool = True,
) -> TrainResult:
    """Train ``config.model`` on ``config.data`` into ``run_dir``. Runs under torchrun as well."""
    run_dir = Path(run_dir)
    device = select_device(config.train.device)
    ctx = init_distributed(device.type)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    try:
        return _train(config, run_dir, resume, force, show_progress, device, ctx)
    finally:
        cleanup(ctx)


def _train(
    config: RunConfig,
    run_dir: Path,
    resume: bool,
    force: bool,
    show_progress: bool,
    device: torch.device,
    ctx: DistContext,
) -> TrainResult:
    # Everything that can be checked without writing comes first, so a bad data path, degradation
    # or model config fails before the run directory is touched.
    degradation = get_degradation(config.data.degradation)
    train_samples, val_samples = build_splits(config)
    if not val_samples:
        raise ApirError("no validation images (set data.val_fraction > 0 or add images)")
    n_params = check_model_config(config)
    init = None
    if config.model.init and not resume:  # read and checked (NaN weights refused) before any write
        path = _init_path(config.model.init)
        init = (path, read_checkpoint(path)[0])
        check_finite(init[1], path)
    with contextlib.ExitStack() as stack:
        if ctx.is_main:
            stack.enter_context(RunLock(run_dir / LOCK_NAME, f"run directory {run_dir}"))
            prepare_run_dir(run_dir, resume, force)
            # best (weights) + last (weights and two Adam moments), float32, plus one being replaced.
            check_free_space(run_dir, 4 * n_params * 6, "the checkpoints")
        barrier(ctx)
        _setup_logging(run_dir, ctx.is_main)
        return _train_locked(
            config, run_dir, resume, show_progress, device, ctx, degradation, train_samples, val_samples, init
        )


def check_model_config(config: RunConfig) -> int:
    """Build the configured model on the meta device (no memory), check it takes RGB; return its
    parameter count.

    Training data is RGB, so ``model.kwargs.in_channels: 1`` would die at the first step with a
    RuntimeError about channels; this says so in one line instead, before anything is written.
    """
    with torch.device("meta"):
        try:
            probe = create_model(config.model.name, **config.model.kwargs)
        except ApirError:
            raise
        except Exception as err:  # a constructor given a wrong type or value
            raise ApirError(f"model.kwargs: invalid arguments for {config.model.name} ({err})") from None
    for attr in ("in_channels", "out_channels"):
        value = getattr(probe, attr, 3)
        if value != 3:
            raise ApirError(
                f"model.kwargs.{attr}: {value} is not supported for training: apir trains on RGB images "
                f"(3 channels); remove {attr} from the config"
            )
    return sum(p.numel() for p in probe.parameters())


def _train_locked(
    config: RunConfig,
    run_dir: Path,
    resume: bool,
    show_progress: bool,
    device: torch.device,
    ctx: DistContext,
    degradation,
    train_samples: list[Sample],
    val_samples: list[Sample],
    init: tuple[Path, dict[str, torch.Tensor]] | None,
) -> TrainResult:
    seed = config.train.seed
    train_ds = TrainPatchDataset(
        train_samples,
        degradation,
        patch_size=config.data.patch_size,
        length=config.data.patches_per_image * len(train_samples),
        defect_prob=config.data.defect_prob,
        defect_ratio=config.data.defect_ratio,
        seed=seed,
        paired=config.loss.pair_weight > 0,
    )
    val_ds = EvalImageDataset(
        val_samples, degradation, seed=seed, synthetic_defects=True, crop=config.data.val_crop
    )
    # DistributedSampler also serves a single process: its order depends only on (seed, epoch).
    sampler = DistributedSampler(
        train_ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed
    )
    loader = DataLoader(
        train_ds,
        batch_size=config.data.batch_size,
        sampler=sampler,
        num_workers=config.data.num_workers,
        pin_memory=device.type == "cuda",
        drop_last=len(sampler) >= config.data.batch_size,
    )

    torch.manual_seed(seed)
    model = create_model(config.model.name, **config.model.kwargs).to(device)
    if init is not None:
        widened = init_from_checkpoint(model, init[1], init[0])
        log.info("initialised from %s%s", init[0], f" (widened: {', '.join(widened)})" if widened else "")
    amp = amp_dtype(config.train.amp, device, training=True)
    use_cl = config.train.channels_last == "on" or (
        config.train.channels_last == "auto" and device.type == "cuda"
    )
    if use_cl:
        model = model.to(memory_format=torch.channels_last)
    opt_cls = torch.optim.AdamW if config.optim.name == "adamw" else torch.optim.Adam
    optimizer = opt_cls(
        model.parameters(),
        lr=config.optim.lr,
        betas=config.optim.betas,
        weight_decay=config.optim.weight_decay,
    )
    steps_per_epoch = len(loader)
    scheduler = _make_scheduler(optimizer, config, steps_per_epoch * config.train.epochs)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    criterion = AnomalyWeightedLoss(
        alpha=config.loss.alpha, normalize=config.loss.normalize, base=config.loss.base
    )

    start_epoch, best_psnr, global_step, minutes_before = 0, -math.inf, 0, 0.0
    if resume:
        tensors, header = read_checkpoint(run_dir / LAST)
        if header["model"].get("name") != config.model.name:
            raise ApirError(
                f"{run_dir / LAST}: checkpoint is a {header['model'].get('name')} model, "
                f"config says {config.model.name}"
            )
        load_weights(model, tensors, run_dir / LAST)
        load_optimizer(optimizer, tensors, header, run_dir / LAST)
        start_epoch = int(header.get("epoch", 0))
        best_psnr = float(header.get("best_psnr", -math.inf))
        global_step = int(header.get("global_step", 0))
        minutes_before = float(header.get("minutes", 0.0))
        if scheduler is not None and header.get("scheduler"):
            total = steps_per_epoch * config.train.epochs
            _resume_scheduler(scheduler, header["scheduler"], total, config.optim.min_lr)
        log.info("resumed from %s at epoch %d", run_dir / LAST, start_epoch)
    if ctx.is_main:
        # Also on resume: command-line overrides (--epochs, --num-workers, ...) become part of the
        # run's record, and the next --resume continues with them.
        saved = run_dir / "config.yaml"
        text = dump_config(config)
        if resume and saved.is_file() and saved.read_text() != text:
            # The config the earlier epochs ran with stays on record beside the new one.
            before = run_dir / f"config.before-epoch-{start_epoch + 1}.yaml"
            atomic_write_bytes(before, saved.read_bytes())
            log.info(
                "config changed on resume at epoch %d; the previous one is %s", start_epoch + 1, before.name
            )
        atomic_write_bytes(saved, text.encode())

    net: nn.Module = model
    if ctx.enabled:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    started = time.monotonic()
    limit_s = config.train.max_minutes * 60 if config.train.max_minutes else math.inf
    last_metrics: dict[str, float] = {}
    input_psnr = math.nan
    stopped_early = False
    epoch = start_epoch
    log.info(
        "training %s on %d images (%d val), %d steps/epoch, device %s, world %d",
        config.model.name,
        len(train_samples),
        len(val_samples),
        steps_per_epoch,
        device,
        ctx.world_size,
    )
    for epoch in range(start_epoch, config.train.epochs):
        sampler.set_epoch(epoch)
        train_ds.set_epoch(epoch)
        net.train()
        losses: list[float] = []
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{config.train.epochs}",
            unit="step",
            disable=not (show_progress and ctx.is_main),
            leave=False,
            dynamic_ncols=True,
        )
        for batch in bar:
            x, y, m = (batch[k].to(device, non_blocking=True) for k in ("degraded", "clean", "mask"))
            x = model_input(model, x, batch["level"].to(device, non_blocking=True))
            if use_cl:
                x = x.contiguous(memory_format=torch.channels_last)
            pair = config.loss.pair_weight > 0
            if pair:  # one forward pass over the patches with and without their defects
                x0 = model_input(model, batch["degraded_original"].to(device), batch["level"].to(device))
                x = torch.cat([x, x0.contiguous(memory_format=torch.channels_last) if use_cl else x0])
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                out = net(x)
            out = out.float()
            if pair:
                out, out0 = out.chunk(2)
                loss = criterion(out, y, m) + config.loss.pair_weight * defect_response_loss(
                    out, out0, y, batch["original"].to(device), m, config.loss.pair_rim
                )
            else:
                loss = criterion(out, y, m)
            if any_rank(ctx, not torch.isfinite(loss).item(), device):
                raise ApirError(
                    f"loss became {loss.item()} at epoch {epoch + 1}, step {global_step + 1}: training "
                    f"stopped; the last good checkpoint is {run_dir / LAST} (try a lower optim.lr)"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.optim.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None:
                scheduler.step()
            global_step += 1
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4g}")
            if any_rank(ctx, time.monotonic() - started > limit_s, device):
                stopped_early = True
                break
        bar.close()
        train_loss = mean_over_ranks(ctx, float(np.mean(losses)) if losses else math.nan, device)
        done = epoch + 1
        is_last = done == config.train.epochs or stopped_early
        if ctx.is_main and (done % config.train.val_every == 0 or is_last):
            last_metrics = validate(model, val_ds, device, amp)
            input_psnr = last_metrics["input_psnr"]
            improved = last_metrics["psnr"] > best_psnr
            best_psnr = max(best_psnr, last_metrics["psnr"])
            minutes = minutes_before + (time.monotonic() - started) / 60
            meta = {
                "epoch": done,
                "global_step": global_step,
                "best_psnr": best_psnr,
                "minutes": minutes,
                "metrics": last_metrics,
                "config": config.model_dump(mode="json"),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
            }
            if improved:
                save_checkpoint(run_dir / BEST, model, meta)
            save_checkpoint(run_dir / LAST, model, meta, optimizer=optimizer)
            row = {
                "epoch": done,
                "steps": global_step,
                "train_loss": f"{train_loss:.6g}",
                "lr": f"{optimizer.param_groups[0]['lr']:.3g}",
                "minutes": f"{minutes:.2f}",
                **{f"val_{k}": f"{v:.4f}" for k, v in last_metrics.items() if k != "input_psnr"},
                "input_psnr": f"{input_psnr:.4f}",
            }
            try:
                _write_csv_row(run_dir / "log.csv", row)
                _plot_curves(run_dir)
            except OSError as err:
                raise ApirError(
                    f"{run_dir}: cannot write the epoch log ({os_error_reason(err)}); "
                    f"{LAST} holds epoch {done}, continue with --resume once there is space"
                ) from None
            message = (
                f"epoch {done}/{config.train.epochs}  loss {train_loss:.4g}  val PSNR "
                f"{last_metrics['psnr']:.2f} dB (input {input_psnr:.2f}, defect "
                f"{last_metrics['psnr_defect']:.2f})  SSIM {last_metrics['ssim']:.4f}"
            )
            log.info(message)
            if show_progress:
                tqdm.write(message)
        barrier(ctx)
        if stopped_early:
            log.info("time limit of %.1f min reached after epoch %d", config.train.max_minutes, done)
            break
    return TrainResult(
        run_dir=run_dir,
        epochs_done=epoch + 1 if config.train.epochs > start_epoch else start_epoch,
        best_psnr=best_psnr,
        input_psnr=input_psnr,
        last_metrics=last_metrics,
        model=model,
        stopped_early=stopped_early,
    )


def _plot_curves(run_dir: Path) -> None:
    # Imported here: only the main rank plots, and the other ranks of a torchrun job (processes of
    # their own) should not load matplotlib for nothing.
    from apir.report.curves import plot_training_curves

    plot_training_curves(run_dir / "log.csv", run_dir / "curves.png")
