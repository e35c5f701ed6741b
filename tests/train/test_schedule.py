"""The learning-rate schedule: torch's cosine annealing, re-timed on resume, old states still load."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from apir.models.checkpoint import read_header
from apir.train.config import config_from_dict
from apir.train.loop import _make_scheduler, _resume_scheduler

LR, MIN_LR = 3e-4, 1e-6


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=LR)


def _config():
    return config_from_dict(
        {"model": {"name": "unet"}, "optim": {"lr": LR, "min_lr": MIN_LR, "scheduler": "cosine"}},
        source="test",
    )


def _cosine(step: int, total: int) -> float:
    return MIN_LR + (LR - MIN_LR) * 0.5 * (1 + math.cos(math.pi * step / total))


def test_the_schedule_is_a_cosine_from_lr_to_min_lr():
    opt = _optimizer()
    sched = _make_scheduler(opt, _config(), 100)
    seen = [opt.param_groups[0]["lr"]]
    for _ in range(100):
        opt.step()
        sched.step()
        seen.append(opt.param_groups[0]["lr"])
    for step in (0, 25, 50, 99, 100):
        assert seen[step] == pytest.approx(_cosine(step, 100), rel=1e-6, abs=1e-12)


def test_resuming_a_saved_lambda_schedule_re_timed_to_a_longer_run():
    # The state an earlier apir saved: a LambdaLR over the closed-form cosine, 40 of 100 steps done.
    opt = _optimizer()
    old = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine(min(s, 100), 100) / LR)
    for _ in range(40):
        opt.step()
        old.step()
    opt2 = _optimizer()
    sched = _make_scheduler(opt2, _config(), 200)
    opt2.load_state_dict(opt.state_dict())  # the trainer restores the optimizer (its lr) first
    _resume_scheduler(sched, old.state_dict(), 200, MIN_LR)
    # the rate moves to where 200 steps put step 40, then follows that cosine to min_lr
    assert opt2.param_groups[0]["lr"] == pytest.approx(_cosine(40, 200), rel=1e-9)
    for step in range(41, 201):
        opt2.step()
        sched.step()
        assert opt2.param_groups[0]["lr"] == pytest.approx(_cosine(step, 200), rel=1e-6, abs=1e-12)


def test_a_finished_schedule_resumed_with_more_epochs_restarts_warm():
    opt = _optimizer()
    sched = _make_scheduler(opt, _config(), 50)
    for _ in range(50):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(MIN_LR)
    opt2 = _optimizer()
    again = _make_scheduler(opt2, _config(), 100)
    opt2.load_state_dict(opt.state_dict())
    _resume_scheduler(again, sched.state_dict(), 100, MIN_LR)
    assert opt2.param_groups[0]["lr"] == pytest.approx(_cosine(50, 100)) and again.get_last_lr()[0] > 1e-4


def test_the_committed_resume_checkpoint_schedule_loads():
    header, _ = read_header(Path(__file__).parents[2] / "resume" / "default" / "last.safetensors")
    opt = _optimizer()
    sched = _make_scheduler(opt, _config(), 10_000)
    _resume_scheduler(sched, header["scheduler"], 10_000, MIN_LR)
    assert sched.last_epoch == header["global_step"] and sched.T_max == 10_000
