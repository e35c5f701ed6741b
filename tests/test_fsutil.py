"""Atomic writes: a failure leaves neither a half-written target nor a temporary file."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from apir import fsutil
from apir.fsutil import atomic_path, atomic_write_bytes, is_relative_to


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_atomic_write_bytes_creates_and_replaces(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"first")
    assert target.read_bytes() == b"first"
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert _leftovers(tmp_path) == ["out.bin"]


def test_atomic_write_bytes_failure_keeps_old_target_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fsutil.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == ["out.bin"]


def test_atomic_path_yields_hidden_sibling_with_same_suffix(tmp_path):
    target = tmp_path / "plot.png"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(".") and tmp.suffix == ".png" and ".tmp" in tmp.name
        assert tmp.exists() and not target.exists()
        tmp.write_bytes(b"png bytes")
    assert target.read_bytes() == b"png bytes"
    assert _leftovers(tmp_path) == ["plot.png"]


def test_atomic_path_failure_leaves_nothing(tmp_path):
    target = tmp_path / "model.safetensors"
    with pytest.raises(RuntimeError, match="crash"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("simulated crash while writing")
    assert not target.exists()
    assert _leftovers(tmp_path) == []


def test_atomic_path_replaces_existing_only_on_success(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == ["report.json"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert _leftovers(tmp_path) == ["report.json"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_permissions_follow_umask_and_existing_file(tmp_path):
    old = os.umask(0o027)
    try:
        fresh = tmp_path / "fresh.bin"
        atomic_write_bytes(fresh, b"x")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o640  # not tempfile's 0600
        kept = tmp_path / "kept.bin"
        kept.write_bytes(b"x")
        kept.chmod(0o604)
        with atomic_path(kept) as tmp:
            tmp.write_bytes(b"y")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o604
    finally:
        os.umask(old)


def test_is_relative_to(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "c").mkdir()
    assert is_relative_to(tmp_path / "a" / "b", tmp_path / "a")
    assert is_relative_to(tmp_path / "a", tmp_path / "a")
    assert not is_relative_to(tmp_path / "c", tmp_path / "a")
    assert not is_relative_to(tmp_path / "ab", tmp_path / "a")  # a prefix of the name is not a parent
    assert not is_relative_to(tmp_path / "a" / ".." / "c", tmp_path / "a")
    assert is_relative_to(str(tmp_path / "a" / "b" / "new.png"), str(tmp_path))


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
def test_is_relative_to_resolves_symlinks(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    assert is_relative_to(tmp_path / "link" / "x.png", tmp_path / "real")
