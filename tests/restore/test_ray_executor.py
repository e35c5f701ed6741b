"""``--executor ray``: the same bytes and manifest as a local run, retries after a killed actor, resume.

One 2-CPU Ray instance serves the whole module (starting one takes seconds); each test runs one or
two small jobs on the tiny demo dataset.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest

from apir import cli
from apir.errors import ApirError
from apir.restore.dataset import restore_dataset
from apir.restore.files import restore_paths
from apir.restore.ray_executor import RayOptions, check_executor

HERE = Path(__file__).resolve().parent
# A Ray job that cannot get its actors scheduled waits forever; fail instead (CI has 90 minutes).
pytestmark = pytest.mark.timeout(300)


def _files(root: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every file apir writes as output (its hidden markers excepted)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith("."):
                p = Path(dirpath) / name
                out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    mp = pytest.MonkeyPatch()
    # Workers import the helpers module by name; they inherit the environment Ray starts with.
    mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p))
    # The machine's 2 CPUs: a job that left actors behind would starve the next one, and the
    # ``ray_instance`` fixture fails the test that left them.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()
    mp.undo()


@pytest.fixture
def ray_instance(ray_cluster):
    """The module's Ray instance; after the test, every CPU of it must be free again within seconds.

    A job that ended (finished, failed, or stopped at a fatal outcome) must not leave actors holding
    CPUs: the next job's actor pool would wait for them forever (seen in CI before jobs were stopped
    explicitly).
    """
    yield ray_cluster
    total = ray_cluster.cluster_resources().get("CPU", 0)
    deadline = time.monotonic() + 20
    while ray_cluster.available_resources().get("CPU", 0) < total and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray_cluster.available_resources().get("CPU", 0) == total, "a finished Ray job still holds CPUs"


@pytest.fixture(scope="module")
def local_blurred(tiny_demo, tmp_path_factory) -> Path:
    from ray_helpers import blur

    out = tmp_path_factory.mktemp("local") / "out"
    return restore_dataset(tiny_demo, out, restore_fn=blur, degradation="noise25", show_progress=False)


def test_missing_extra_is_one_line_before_any_work(monkeypatch, tmp_path, capsys, tiny_demo):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "ray" else object())
    with pytest.raises(ApirError, match=r"pip install 'apir\[ray\]'"):
        check_executor("ray")
    out = tmp_path / "out"
    code = cli.main(
        ["restore-dataset", str(tiny_demo), "-o", str(out), "--degrade-only", "--executor", "ray"]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "pip install 'apir[ray]'" in err
    assert not out.exists() and not (tmp_path / ".out.building").exists()  # nothing done


def test_ray_flags_need_ray_executor(tmp_path, capsys, tiny_demo):
    code = cli.main(["restore-dataset", str(tiny_demo), "-o", str(tmp_path / "o"), "--workers", "2"])
    assert code == 2 and "--workers applies to --executor ray" in capsys.readouterr().err


def test_dataset_on_ray_is_byte_identical_even_when_an_actor_is_killed(
    ray_instance, tiny_demo, local_blurred, tmp_path
):
    from ray_helpers import KillOnce

    marks = tmp_path / "marks"
    marks.mkdir()
    out = restore_dataset(
        tiny_demo, tmp_path / "out", restore_fn=KillOnce(marks), degradation="noise25",
        show_progress=False, executor="ray", ray=RayOptions(workers=2),
    )  # fmt: skip
    assert (marks / "killed").is_file()  # one actor process really died (SIGKILL), and Ray retried
    assert len(list(marks.glob("pid-*"))) >= 2  # the work was spread over more than one process
    assert _files(out) == _files(local_blurred)  # every image, mask, original and manifest.json
    assert (out / "manifest.json").read_bytes() == (local_blurred / "manifest.json").read_bytes()


@pytest.mark.slow
def test_resume_after_a_killed_actor_completes_the_dataset(ray_instance, tiny_demo, local_blurred, tmp_path):
    from ray_helpers import KillOnce, blur

    marks = tmp_path / "marks"
    marks.mkdir()
    out = tmp_path / "out"
    no_retry = RayOptions(workers=2, retries=False)
    with pytest.raises(ApirError, match="Ray job failed.*rerun with --resume"):
        restore_dataset(
            tiny_demo, out, restore_fn=KillOnce(marks), degradation="noise25", show_progress=False,
            executor="ray", ray=no_retry,
        )  # fmt: skip
    assert (marks / "killed").is_file() and not out.exists()
    assert (tmp_path / ".out.building").is_dir()  # the finished part is kept
    restore_dataset(
        tiny_demo, out, restore_fn=blur, degradation="noise25", show_progress=False, resume=True,
        executor="ray", ray=RayOptions(workers=2),
    )  # fmt: skip
    assert _files(out) == _files(local_blurred)


def test_a_worker_error_names_the_file(ray_instance, tiny_demo, tmp_path):
    from ray_helpers import boom

    with pytest.raises(ApirError) as info:
        restore_dataset(
            tiny_demo, tmp_path / "out", restore_fn=boom, degradation="noise25", show_progress=False,
            executor="ray", ray=RayOptions(workers=1),
        )  # fmt: skip
    message = info.value.message
    assert "\n" not in message and "RuntimeError: boom in the restore function" in message
    assert str(tiny_demo) in message and ".png" in message  # the file it failed on


@pytest.mark.slow
def test_cli_restore_on_ray_matches_local_and_reports_bad_files(ray_instance, tiny_demo, tmp_path, capsys):
    src = tmp_path / "in"
    shutil.copytree(tiny_demo / "coffee" / "test", src)
    (src / "good" / "broken.png").write_bytes(b"not a png at all")
    local = restore_paths([src], tmp_path / "local", tile=32, overlap=8, show_progress=False)
    local_err = capsys.readouterr().err
    argv = ["restore", str(src), "-o", str(tmp_path / "ray"), "--tile", "32", "--overlap", "8"]
    code = cli.main([*argv, "--executor", "ray", "--workers", "2"])
    captured = capsys.readouterr()
    assert code == 1  # one file skipped, as in the local run
    assert len(local.skipped) == 1 and "broken.png" in local_err
    assert captured.err.count("warning: skipped") == 1 and "broken.png" in captured.err
    assert f"restored {len(local.written)} images" in captured.out
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")  # images and manifest.json


@pytest.mark.slow
def test_restore_resumes_after_a_killed_actor(ray_instance, tiny_demo, tmp_path):
    from ray_helpers import KillingModel

    src = tiny_demo / "brick" / "train" / "good"
    opts = {"tile": 0, "show_progress": False}
    restore_paths([src], tmp_path / "local", KillingModel(None), **opts)
    out = tmp_path / "ray"
    flag = tmp_path / "killed"
    with pytest.raises(ApirError, match="Ray job failed.*rerun with --resume"):
        restore_paths(
            [src], out, KillingModel(flag), executor="ray", ray=RayOptions(workers=2, retries=False), **opts
        )
    assert flag.is_file()  # an actor process was SIGKILLed
    summary = restore_paths([src], out, KillingModel(None), resume=True, executor="ray", **opts)
    assert summary.ok and len(summary.written) + len(summary.verified) == 6
    assert _files(out) == _files(tmp_path / "local")  # same images, same manifest.json


def test_an_unreachable_cluster_is_one_line_in_seconds():
    import socket

    from apir.restore.ray_executor import _check_reachable

    with socket.socket() as s:  # a port nobody listens on once this socket is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ApirError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"):
        _check_reachable(f"127.0.0.1:{port}")
    _check_reachable("auto")  # left to Ray
