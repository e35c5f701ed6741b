"""``apir restore`` under faults: cases 8, 10, 12, 13 of issue 14, resume, lock, manifest, progress."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from faultkit import blur_model, identity_model, save_model, tree, write_images
from killer import run_restore

import apir.fsutil as fsutil
from apir.cli import main
from apir.data.imageio import write_image
from apir.errors import ApirError
from apir.locking import LOCK_NAME, RunLock
from apir.restore import manifest
from apir.restore.files import restore_paths

HERE = Path(__file__).resolve().parent


def _run(inputs, out, model=None, **kw):
    kw.setdefault("tile", 0)
    kw.setdefault("show_progress", False)
    return restore_paths(
        [Path(p) for p in inputs], Path(out), identity_model() if model is None else model, **kw
    )


# ------------------------------------------------------------------------------ case 8


class _CreatesFile(torch.nn.Module):
    """Identity, which on its first call creates ``path`` as another program would."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_bytes(b"someone else's file")
        return x * self.scale


def test_a_file_appearing_mid_run_is_not_overwritten(tmp_path, capsys):
    images = write_images(tmp_path / "in", n=3)
    out = tmp_path / "out"
    late = out / images[2].name
    summary = _run([tmp_path / "in"], out, model=_CreatesFile(late))
    assert late.read_bytes() == b"someone else's file"
    assert not summary.ok and [p for p, _ in summary.skipped] == [images[2]]
    assert "appeared while apir was running" in capsys.readouterr().err
    assert [p.name for p in summary.written] == [images[0].name, images[1].name]
    entries = {e.output for e in manifest.load_manifest(out).entries}
    assert entries == {images[0].name, images[1].name}  # the foreign file is not claimed


# ------------------------------------------------------------------------------ case 10 + resume


@pytest.fixture()
def restore_setup(tmp_path):
    ckpt = save_model(tmp_path / "model.safetensors", blur_model())
    write_images(tmp_path / "in", n=4, size=20)
    reference = tmp_path / "reference"
    run_restore(str(ckpt), str(tmp_path / "in"), str(reference))
    return ckpt, tmp_path / "in", reference


def _kill_child(mode, where, n, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(HERE / "killer.py"), mode, where, str(n), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]


# Journal lines: 1 = the run's settings, then begin/done per image: 5 = "done" of the second image.
@pytest.mark.parametrize(("where", "n"), [("fsync", 3), ("journal", 5), ("torn", 7)])
def test_kill_9_then_resume_is_byte_identical(restore_setup, tmp_path, where, n):
    """kill -9 with a temp file written but not renamed / an output in place but not recorded as
    done / a torn journal line; a plain rerun refuses, ``--resume`` finishes byte-identically."""
    ckpt, inputs, reference = restore_setup
    out = tmp_path / "out"
    _kill_child("restore", where, n, ckpt, inputs, out)
    left = sorted(p.name for p in out.iterdir())
    if where == "fsync":
        assert any(name.endswith(".tmp.png") for name in left), left  # the partial temp file
    else:  # killed at the "done" line of the 2nd (3rd when torn) image: it is in place, unrecorded
        last = 2 if where == "journal" else 3
        assert {f"img{i}.png" for i in range(last)} <= set(left) and f"img{last}.png" not in left, left
    assert LOCK_NAME in left  # the dead run's lock: stale, taken over by the resume
    journal = (out / manifest.JOURNAL_FILE).read_text()
    assert journal.count('"op": "done"') == {"fsync": 1, "journal": 1, "torn": 3}[where]
    with pytest.raises(ApirError, match="already exist"):  # a plain rerun refuses, as before
        run_restore(str(ckpt), str(inputs), str(out))
    summary = run_restore(str(ckpt), str(inputs), str(out), resume=True)
    assert summary.ok
    assert tree(out) == tree(reference)  # images and manifest.json, byte for byte
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temp, journal, lock
    assert len(summary.verified) + len(summary.written) == 4 and summary.verified  # finished ones kept


def test_resume_keeps_verified_outputs_and_redoes_the_rest(restore_setup, tmp_path):
    ckpt, inputs, reference = restore_setup
    out = tmp_path / "out"
    run_restore(str(ckpt), str(inputs), str(out))
    (out / "img1.png").write_bytes(b"damaged")  # a changed output is not "complete"
    (out / "img2.png").unlink()  # a missing one is redone
    stale = out / ".img3.png.0123abcd.tmp.png"
    stale.write_bytes(b"partial")  # what kill -9 during a write leaves
    stat_before = (out / "img0.png").stat().st_mtime_ns
    summary = run_restore(str(ckpt), str(inputs), str(out), resume=True)
    assert sorted(p.name for p in summary.written) == ["img1.png", "img2.png"]
    assert sorted(p.name for p in summary.verified) == ["img0.png", "img3.png"]
    assert (out / "img0.png").stat().st_mtime_ns == stat_before  # verified: not rewritten
    assert not stale.exists()
    assert tree(out) == tree(reference)


def test_resume_redoes_outputs_made_with_other_settings(restore_setup, tmp_path, capsys):
    ckpt, inputs, reference = restore_setup
    out = tmp_path / "out"
    run_restore(str(ckpt), str(inputs), str(out), keep_input=0.5)
    summary = run_restore(str(ckpt), str(inputs), str(out), resume=True)
    assert len(summary.written) == 4 and not summary.verified
    assert tree(out) == tree(reference)


def test_resume_never_replaces_a_file_apir_did_not_write(restore_setup, tmp_path):
    ckpt, inputs, _ = restore_setup
    out = tmp_path / "out"
    out.mkdir()
    (out / "img0.png").write_bytes(b"mine")
    with pytest.raises(ApirError, match="not an output of an earlier apir run"):
        run_restore(str(ckpt), str(inputs), str(out), resume=True)
    assert (out / "img0.png").read_bytes() == b"mine"


# ------------------------------------------------------------------------------ case 12, disk errors


def _refuse_writes_under(monkeypatch, folder: Path, code: int):
    real = fsutil._create_temp

    def create_temp(target):
        if fsutil.is_relative_to(target, folder):
            raise OSError(code, os.strerror(code), str(target))
        return real(target)

    monkeypatch.setattr(fsutil, "_create_temp", create_temp)


class _Counting(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        self.calls += 1
        return x * self.scale


def test_read_only_out_dir_is_refused_before_any_image(tmp_path, monkeypatch):
    """As root, chmod cannot make a folder read-only; the write itself is made to fail (EROFS)."""
    write_images(tmp_path / "in", n=3)
    out = tmp_path / "out"
    out.mkdir()
    _refuse_writes_under(monkeypatch, out, errno.EROFS)
    model = _Counting()
    with pytest.raises(ApirError, match="output folder is not writable .Read-only file system"):
        _run([tmp_path / "in"], out, model=model)
    assert model.calls == 0 and list(out.iterdir()) == []


def test_disk_full_during_restore_stops_with_one_line(tmp_path, monkeypatch, capsys):
    """The disk fills after the first image: one line, the finished image kept, no temp files left."""
    write_images(tmp_path / "in", n=3)
    out = tmp_path / "out"
    ckpt = save_model(tmp_path / "m.safetensors", identity_model())
    real = fsutil._create_temp
    created = []

    def create_temp(target):
        if fsutil.is_relative_to(target, out) and target.suffix == ".png":
            created.append(target)
            if len(created) > 2:  # each image: the no-clobber temp, then the image writer's own temp
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
        return real(target)

    monkeypatch.setattr(fsutil, "_create_temp", create_temp)
    code = main(["restore", str(tmp_path / "in"), "-o", str(out), "--tile", "0", "--model", str(ckpt)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("apir: error")]
    assert "No space left on device" in line and "--resume" in line
    assert err.count("warning:") <= 1  # not one warning per remaining image
    assert (out / "img0.png").is_file() and not (out / "img1.png").exists()
    assert [p.name for p in out.iterdir() if p.name.startswith(".") and ".tmp" in p.name] == []
    monkeypatch.setattr(fsutil, "_create_temp", real)
    assert (
        main(
            ["restore", str(tmp_path / "in"), "-o", str(out), "--tile", "0", "--model", str(ckpt), "--resume"]
        )
        == 0
    )
    assert "1 already complete" in capsys.readouterr().out


def test_data_check_verifies_a_restore_out_dir(tmp_path, capsys):
    write_images(tmp_path / "in", n=2)
    out = tmp_path / "out"
    _run([tmp_path / "in"], out)
    assert main(["data", "check", str(out)]) == 0
    assert "all 2 files match" in capsys.readouterr().out
    (out / "img1.png").write_bytes(b"x")
    assert main(["data", "check", str(out)]) == 1
    assert "img1.png: differs from the manifest" in capsys.readouterr().out


def test_not_enough_free_space_is_refused_up_front(tmp_path, monkeypatch):
    import shutil

    write_images(tmp_path / "in", n=2)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(fsutil.shutil, "disk_usage", lambda p: usage._replace(free=100))
    model = _Counting()
    with pytest.raises(ApirError, match="not enough free space"):
        _run([tmp_path / "in"], tmp_path / "out", model=model)
    assert model.calls == 0


# ------------------------------------------------------------------------------ case 13


def test_control_characters_in_names_are_escaped(tmp_path, capsys):
    folder = tmp_path / "in"
    write_images(folder, n=1)
    hostile = folder / "evil\nname\x1b[31m.png"
    hostile.write_bytes(b"not a png")
    assert (
        main(
            [
                "restore",
                str(folder),
                "-o",
                str(tmp_path / "out"),
                "--tile",
                "0",
                "--model",
                str(save_model(tmp_path / "m.safetensors", identity_model())),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "evil\\nname\\x1b[31m.png" in warnings[0]
    assert "\x1b" not in err


def test_printable():
    raw = b"a\xff.png".decode("utf-8", "surrogateescape")
    assert fsutil.printable(raw) == "a\\xff.png"
    assert fsutil.printable("x\u202eg.png") == "x\\u202eg.png"  # a right-to-left override
    assert fsutil.printable("tab\there") == "tab\\there"
    assert fsutil.printable("défaut ✓.png") == "défaut ✓.png"


def test_error_messages_are_one_line(tmp_path, capsys):
    assert main(["restore", str(tmp_path / "no\nsuch.png"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no\\nsuch.png" in err


# ------------------------------------------------------------------------------ lock


def test_a_second_run_into_the_same_out_dir_is_refused(tmp_path):
    write_images(tmp_path / "in", n=1)
    out = tmp_path / "out"
    held = RunLock(out / LOCK_NAME, f"output folder {out}")
    with held, pytest.raises(ApirError, match=f"in use by another apir run .PID {os.getpid()}"):
        _run([tmp_path / "in"], out)
    assert not (out / "img0.png").exists()
    assert _run([tmp_path / "in"], out).ok  # released: the next run works


def test_a_lock_held_by_another_process_names_it(tmp_path):
    lock = tmp_path / "out" / LOCK_NAME
    code = (
        "import sys, time; from apir.locking import RunLock\n"
        f"l = RunLock({str(lock)!r}, 'x').acquire(); print('locked', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(ApirError, match=f"PID {proc.pid}"):
            RunLock(lock, "output folder out").acquire()
    finally:
        proc.kill()
        proc.wait()
    RunLock(lock, "x").acquire().release()  # the holder died (kill -9): its lock is stale, taken over
    assert not lock.exists()


def test_stale_lock_files_without_flock(tmp_path, monkeypatch):
    """Where flock is unavailable, a lock file is stale when its PID no longer runs."""
    import apir.locking as locking

    monkeypatch.setattr(locking, "fcntl", None)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    lock = tmp_path / LOCK_NAME
    lock.write_text(dead.stdout)
    held = RunLock(lock, "x").acquire()  # the dead PID's lock is taken over
    assert lock.read_text().strip() == str(os.getpid())
    lock.write_text("1\n")  # PID 1 is alive
    with pytest.raises(ApirError, match="PID 1"):
        RunLock(lock, "x").acquire()
    held._fd and os.close(held._fd)


# ------------------------------------------------------------------------------ manifest


def test_restore_writes_a_manifest(tmp_path):
    images = write_images(tmp_path / "in", n=2)
    ckpt = save_model(tmp_path / "m.safetensors", identity_model())
    out = tmp_path / "out"
    run_restore(str(ckpt), str(tmp_path / "in"), str(out))
    data = json.loads((out / "manifest.json").read_text())
    assert data["schema"] == "apir.manifest/1"
    (run,) = data["runs"].values()
    assert run["model"] == {"name": "nafnet", "source": str(ckpt), "sha256": manifest.sha256_file(ckpt)}
    assert run["apir_version"] and run["settings"]["tile"] == 0
    by_output = {e["output"]: e for e in data["entries"]}
    assert set(by_output) == {p.name for p in images}
    for p in images:
        e = by_output[p.name]
        assert e["sha256"] == manifest.sha256_file(out / p.name)
        assert e["source"] == str(p.absolute()) and e["source_sha256"] == manifest.sha256_file(p)
    assert manifest.verify(out) == []


def test_manifest_merges_runs_into_one_out_dir(tmp_path):
    write_images(tmp_path / "a", n=1, seed=1)
    (tmp_path / "b").mkdir()
    write_image(tmp_path / "b" / "other.png", np.zeros((8, 8, 3), np.uint8))
    out = tmp_path / "out"
    _run([tmp_path / "a"], out)
    _run([tmp_path / "b"], out, keep_input=0.5)
    m = manifest.load_manifest(out)
    assert {e.output for e in m.entries} == {"img0.png", "other.png"}
    assert len(m.runs) == 2 and manifest.verify(out) == []


# ------------------------------------------------------------------------------ progress in large images


def test_large_images_show_tile_progress(tmp_path, capsys):
    write_image(tmp_path / "big.png", np.zeros((96, 96, 3), np.uint8))
    restore_paths([tmp_path / "big.png"], tmp_path / "out", identity_model(), tile=16, overlap=4)
    err = capsys.readouterr().err
    assert "tiles" in err and "/25" in err  # 5×5 tiles of 16 px (aligned to the model's 16-px grid)


def test_a_foreign_manifest_json_in_out_dir_is_never_replaced(tmp_path):
    write_images(tmp_path / "in", n=1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("my shipping list")
    model = _Counting()
    with pytest.raises(ApirError, match="not an apir manifest|cannot read the manifest"):
        _run([tmp_path / "in"], out, model=model)
    assert (out / "manifest.json").read_text() == "my shipping list" and model.calls == 0
