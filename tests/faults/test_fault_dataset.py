"""``apir restore-dataset`` under faults: cases 6, 7, 9 of issue 14, resume, lock, manifest, checks."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from faultkit import tree
from killer import blur, run_dataset

import apir.fsutil as fsutil
from apir.cli import main
from apir.errors import ApirError
from apir.locking import LOCK_NAME, RunLock
from apir.restore import manifest
from apir.restore.dataset import MARKER_FILE, restore_dataset

HERE = Path(__file__).resolve().parent


@pytest.fixture()
def brick(tiny_demo, tmp_path) -> Path:
    """A one-category copy of the tiny demo (a dataset root), to change freely."""
    root = tmp_path / "data"
    shutil.copytree(tiny_demo / "brick", root / "brick")
    return root


@pytest.fixture()
def reference(brick, tmp_path) -> Path:
    out = tmp_path / "reference"
    run_dataset(str(brick), str(out))
    return out


def _kw(**kw):
    return {"restore_fn": blur, "degradation": "noise25", "show_progress": False, "label": "blur", **kw}


# ------------------------------------------------------------------------------ case 6: symlinks


def test_links_out_of_the_dataset_are_not_followed(brick, tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("system file")
    (brick / "brick" / "ground_truth" / "x.txt").symlink_to(secret)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(brick / "brick" / "test" / "good", elsewhere)
    (brick / "brick" / "test" / "linked_type").symlink_to(elsewhere, target_is_directory=True)
    inside = brick / "brick" / "notes.txt"
    inside.write_text("notes")
    (brick / "brick" / "notes-link.txt").symlink_to(inside)  # a link inside the dataset is fine

    out = restore_dataset(brick, tmp_path / "out", **_kw())
    err = capsys.readouterr().err
    assert not (out / "brick/ground_truth/x.txt").exists()
    assert not (out / "brick/test/linked_type").exists()
    assert (out / "brick/notes-link.txt").read_text() == "notes"
    lines = [line for line in err.splitlines() if "symbolic link" in line]
    assert any("x.txt" in line for line in lines) and any("linked_type" in line for line in lines)
    assert all("--follow-symlinks" in line for line in lines)

    followed = restore_dataset(brick, tmp_path / "out2", follow_symlinks=True, check=False, **_kw())
    assert (followed / "brick/ground_truth/x.txt").read_text() == "system file"
    assert (followed / "brick/test/linked_type").is_dir()


def test_restore_skips_links_out_of_an_input_folder(tmp_path, capsys):
    from faultkit import identity_model, write_images

    from apir.restore.files import restore_paths

    outside = write_images(tmp_path / "outside", n=1)[0]
    write_images(tmp_path / "in", n=1)
    (tmp_path / "in" / "link.png").symlink_to(outside)
    summary = restore_paths(
        [tmp_path / "in"], tmp_path / "out", identity_model(), tile=0, show_progress=False
    )
    assert [p.name for p in summary.written] == ["img0.png"] and summary.links_skipped == 1
    assert "symbolic link" in capsys.readouterr().err
    summary = restore_paths(
        [tmp_path / "in"],
        tmp_path / "out2",
        identity_model(),
        tile=0,
        show_progress=False,
        follow_symlinks=True,
    )
    assert sorted(p.name for p in summary.written) == ["img0.png", "link.png"]


# ------------------------------------------------------------------------------ case 7: data loss


def test_a_folder_created_at_the_output_mid_run_is_left_alone(brick, reference, tmp_path):
    out = tmp_path / "out"

    def restore_and_interfere(image, sigma):
        if not out.exists():
            out.mkdir()
            (out / "precious.txt").write_text("mine")
        return blur(image, sigma)

    with pytest.raises(ApirError, match="appeared there while restore-dataset ran"):
        restore_dataset(brick, out, **_kw(restore_fn=restore_and_interfere))
    assert tree(out) == {"precious.txt": b"mine"}  # not renamed, not deleted
    staging = tmp_path / ".out.building"
    assert staging.is_dir()  # the finished work is kept...
    shutil.move(out, tmp_path / "moved")
    calls = []
    resumed = _kw(restore_fn=lambda x, s: calls.append(1) or blur(x, s))
    restore_dataset(brick, out, resume=True, **resumed)  # ...and put in place by --resume
    assert calls == []  # verified by checksum, not restored again
    assert tree(out) == tree(reference) and not staging.exists()


def test_a_second_concurrent_run_is_refused(brick, tmp_path):
    out = tmp_path / "out"
    held = RunLock(tmp_path / f".out{LOCK_NAME}", "x")
    with held, pytest.raises(ApirError, match=f"in use by another apir run .PID {os.getpid()}"):
        restore_dataset(brick, out, **_kw())
    assert not out.exists()


def test_a_second_run_into_a_finished_output_is_refused(brick, tmp_path):
    out = tmp_path / "out"
    restore_dataset(brick, out, **_kw())
    with pytest.raises(ApirError, match="not empty"):
        restore_dataset(brick, out, **_kw(degradation="noise15"))
    assert manifest.verify(out) == []


# ------------------------------------------------------------------------------ case 9: disk errors


def test_read_only_target_is_one_line(brick, tmp_path, monkeypatch, capsys):
    target = tmp_path / "ro"
    target.mkdir()
    real = fsutil._create_temp

    def create_temp(path):
        if fsutil.is_relative_to(path, target):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real(path)

    monkeypatch.setattr(fsutil, "_create_temp", create_temp)
    argv = [
        "restore-dataset",
        str(brick),
        "-o",
        str(target / "out"),
        "--degrade-only",
        "--degradation",
        "none",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "not writable (Read-only file system)" in err and err.count("\n") == 1
    assert list(target.iterdir()) == []


def test_disk_full_while_copying_other_files(brick, tmp_path, monkeypatch, capsys):
    (brick / "brick" / "readme.txt").write_text("hello")
    import apir.restore.dataset as dataset

    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    monkeypatch.setattr(dataset.shutil, "copyfile", full)
    argv = ["restore-dataset", str(brick), "-o", str(tmp_path / "out"), "--method", "identity"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    (line,) = [x for x in err.split("\n") if "apir: error" in x]  # one line (after the progress bar)
    assert "No space left on device" in line and "cannot copy" in line and "--resume" in line
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_not_enough_free_space_is_refused_up_front(brick, tmp_path, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(fsutil.shutil, "disk_usage", lambda p: usage._replace(free=1000))
    calls = []
    with pytest.raises(ApirError, match="not enough free space"):
        restore_dataset(brick, tmp_path / "out", **_kw(restore_fn=lambda x, s: calls.append(1) or x))
    assert calls == []


def test_the_dataset_is_checked_before_work(brick, tmp_path):
    mask = next((brick / "brick" / "ground_truth").rglob("*_mask.png"))
    mask.unlink()
    calls = []
    with pytest.raises(ApirError, match="missing mask .*apir data check"):
        restore_dataset(brick, tmp_path / "out", **_kw(restore_fn=lambda x, s: calls.append(1) or x))
    assert calls == [] and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ resume


def _kill_child(where, n, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(HERE / "killer.py"), "dataset", where, str(n), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]


# fsync 4: the 2nd image's temp file written, not renamed; journal 8: before the 4th image's "begin";
# torn 13: halfway through the 6th image's "done"; fsync 20: copying the masks (14 images come first);
# fsync 28: writing manifest.json, the last file before the rename.
@pytest.mark.parametrize(
    ("where", "n"), [("fsync", 4), ("journal", 8), ("torn", 13), ("fsync", 20), ("fsync", 28)]
)
def test_kill_9_then_resume_is_byte_identical(brick, reference, tmp_path, where, n):
    out = tmp_path / "out"
    _kill_child(where, n, brick, out)
    staging = tmp_path / ".out.building"
    assert staging.is_dir() and not out.exists()
    restore_dataset(brick, out, resume=True, **_kw())
    assert tree(out) == tree(reference)  # every image, mask, copied file and manifest.json
    assert sorted(p.name for p in out.rglob(".*")) == [MARKER_FILE]  # no temp or journal left
    assert not staging.exists() and not (tmp_path / f".out{LOCK_NAME}").exists()
    assert manifest.verify(out) == []


def test_resume_after_an_interruption_keeps_finished_images(brick, reference, tmp_path):
    out = tmp_path / "out"
    calls = []

    def interrupted(image, sigma):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(1)
        return blur(image, sigma)

    with pytest.raises(KeyboardInterrupt):
        restore_dataset(brick, out, **_kw(restore_fn=interrupted))
    calls.clear()
    counted = []
    restore_dataset(brick, out, resume=True, **_kw(restore_fn=lambda x, s: counted.append(1) or blur(x, s)))
    total = (
        sum(1 for _ in (reference / "brick").rglob("*.png"))
        - sum(1 for _ in (reference / "brick" / "ground_truth").rglob("*.png"))
        - sum(1 for _ in (reference / "brick" / "original").rglob("*.png"))
    )
    assert len(counted) == total - 3  # the three finished images were not restored again
    assert tree(out) == tree(reference)


def test_resume_with_other_settings_is_refused(brick, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        restore_dataset(brick, out, **_kw(restore_fn=lambda x, s: (_ for _ in ()).throw(KeyboardInterrupt)))
    # nothing finished yet: the staging folder is there, its journal names the settings
    with pytest.raises(ApirError, match="other settings"):
        restore_dataset(brick, out, resume=True, **_kw(seed=7))


def test_resume_of_a_finished_dataset_verifies_it(brick, tmp_path):
    out = tmp_path / "out"
    restore_dataset(brick, out, **_kw())
    restore_dataset(brick, out, resume=True, **_kw())  # nothing to do
    with pytest.raises(ApirError, match="finished with other settings"):
        restore_dataset(brick, out, resume=True, **_kw(seed=3))
    victim = next((out / "brick" / "test").rglob("*.png"))
    victim.write_bytes(b"edited")
    with pytest.raises(ApirError, match="has changed since"):
        restore_dataset(brick, out, resume=True, **_kw())


# ------------------------------------------------------------------------------ manifest + data check


def test_manifest_records_every_output(brick, reference):
    m = manifest.load_manifest(reference)
    (run,) = m.runs.values()
    assert run.degradation == "noise25" and run.seed == 0 and run.label == "blur"
    listed = {e.output for e in m.entries}
    on_disk = set(tree(reference)) - {"manifest.json"}
    assert listed == on_disk
    kinds = {e.kind for e in m.entries}
    assert kinds == {"restored", "copied"}
    for e in m.entries:
        assert Path(e.source).is_file() and e.source_sha256 == manifest.sha256_file(e.source)


def test_manifest_has_the_model_checksum(brick, tmp_path):
    from faultkit import identity_model, save_model

    ckpt = save_model(tmp_path / "m.safetensors", identity_model())
    out = tmp_path / "out"
    argv = ["restore-dataset", str(brick), "-o", str(out), "--model", str(ckpt), "--device", "cpu"]
    assert main([*argv, "--degradation", "none"]) == 0
    (run,) = manifest.load_manifest(out).runs.values()
    assert run.model.sha256 == manifest.sha256_file(ckpt) and run.model.name == "nafnet"
    assert run.apir_version and run.degradation == "none"


def test_data_check_verifies_against_the_manifest(brick, reference, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    assert main(["data", "check", str(out)]) == 0
    assert "match" in capsys.readouterr().out
    victim = next((out / "brick" / "test").rglob("*.png"))
    victim.write_bytes(victim.read_bytes()[:-1] + b"\x00")
    (out / "brick" / "extra.txt").write_text("new")
    assert main(["data", "check", str(out)]) == 1
    text = capsys.readouterr().out
    assert "differs from the manifest" in text and "not listed in the manifest" in text
    (out / "manifest.json").write_text('{"schema": "apir.manifest/1", "runs": 5}')
    assert main(["data", "check", str(out)]) == 2
    assert "invalid manifest" in capsys.readouterr().err


def test_marker_is_written(reference):
    assert (reference / MARKER_FILE).is_file()
