"""Shared fixtures of the fault tests (helpers live in ``faultkit``)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest
import torch
from faultkit import identity_model, save_model


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors gain nothing from threads; on a busy 2-core machine OpenMP waits make them slow."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def checkpoint(tmp_path) -> Path:
    """A valid checkpoint of :func:`identity_model`."""
    return save_model(tmp_path / "good.safetensors", identity_model())


def _can_mount() -> str | None:
    """None if this process may mount a tmpfs, else why not (the reason a test skips with)."""
    if os.name != "posix" or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "mounting a tiny tmpfs needs root (the in-process fault tests cover this case too)"
    return None


@pytest.fixture()
def tiny_fs(tmp_path):
    """``tiny_fs(kib, read_only=False)``: a real, tiny tmpfs at a new folder, unmounted afterwards.

    A full disk and a read-only file system are then real (ENOSPC, EROFS), which root ignores for
    ``chmod`` but not for these. Skips, with the reason, where mounting is not allowed.
    """
    mounted: list[Path] = []

    def mount(kib: int, read_only: bool = False) -> Path:
        if (reason := _can_mount()) is not None:
            pytest.skip(reason)
        point = tmp_path / f"fs{len(mounted)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")
        mounted.append(point)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
        return point

    yield mount
    for point in reversed(mounted):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["umount", "-l", str(point)], check=False, timeout=30)
