"""Run a restore's per-file work on a Ray actor pool (``--executor ray``): many cores, nodes or GPUs.

Why Ray Data and an actor pool: the model is loaded once per actor (``__init__``), not once per
file, and ``Dataset.map_batches(..., concurrency=N, num_gpus=G)`` gives placement on CPUs or GPUs,
back-pressure and, by default, actor restarts with task retries: a worker killed mid-run
(``kill -9``, a lost node) is replaced and its files are done again. This module only distributes
work. What happens to one file is :mod:`apir.restore.work`, the same function the local loop calls,
so outputs are byte-identical; the driver (the process that ran ``apir``) keeps the lock on the
output folder, the journal and the manifest, and applies each :class:`~apir.restore.work.Outcome`
as the local loop does. A file is written by at most one worker at a time, atomically; a retried
file is simply written again with the same bytes.

``import ray`` happens only here, after :func:`require_ray` (called before any work) has given the
one-line install hint when the extra is missing.

Why the flag is ``--executor`` and not ``--engine``: ``--engine auto|torch|onnx`` already picks the
inference engine that runs the model's forward pass, which is independent of where files run.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import logging
import math
import os
import pickle
import socket
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from apir.errors import ApirError
from apir.restore.work import Outcome

__all__ = ["EXECUTORS", "RayOptions", "check_executor", "ray_session", "require_ray", "run_on_ray"]

EXECUTORS = ("local", "ray")
INSTALL_HINT = "--executor ray needs Ray, an optional extra: pip install 'apir[ray]'"


def require_ray() -> None:
    """One line, before any work, when Ray is not installed."""
    if importlib.util.find_spec("ray") is None:
        raise ApirError(INSTALL_HINT)
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as err:
        raise ApirError(f"{INSTALL_HINT} (import failed: {err})") from None


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run: ``address`` None starts a local Ray instance sized to the machine.

    ``workers`` is the number of actors (None: one per CPU, or per ``gpus_per_worker`` GPUs, of the
    cluster, at most one per file); ``batch`` files per Ray task (1: the finest retry and balance).
    ``retries`` False stops the job at the first dead worker instead of restarting it (for tests,
    and for clusters where a dying worker means a bad node).
    """

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0
    batch: int = 1
    retries: bool = True

    def check(self) -> RayOptions:
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise ApirError(f"--workers must be a positive whole number, got {self.workers!r}")
        if not (isinstance(self.gpus_per_worker, int | float) and self.gpus_per_worker >= 0):
            raise ApirError(f"--gpus-per-worker must be 0 or more, got {self.gpus_per_worker!r}")
        if not isinstance(self.batch, int) or self.batch < 1:
            raise ApirError(f"--ray-batch must be a positive whole number, got {self.batch!r}")
        return self


def check_executor(executor: str, options: RayOptions | None = None) -> RayOptions | None:
    """Validate ``executor`` (and Ray's presence and options) before any work."""
    if executor not in EXECUTORS:
        raise ApirError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if executor == "local":
        return None
    require_ray()
    return (options or RayOptions()).check()


class _Worker:
    """One actor: builds its per-file function once (the model), then maps task batches to outcomes."""

    def __init__(self, setup: Callable[[], Callable[[Any], Outcome]], threads: int) -> None:
        torch.set_num_threads(max(1, threads))  # this actor's share of the node's CPUs
        self.error: str | None = None
        try:
            self.fn = setup()
        except ApirError as err:
            self.error = err.message
        except Exception as err:
            self.error = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outcomes = []
        for i, raw in zip(batch["i"], batch["task"], strict=True):
            task = pickle.loads(raw)
            if self.error is not None:
                outcome = Outcome(index=int(i), fatal=f"{task.src}: worker could not start ({self.error})")
            else:
                outcome = self.fn(task)
            outcomes.append(outcome.model_dump_json())
        return {"i": np.asarray(batch["i"]), "outcome": np.asarray(outcomes, dtype=object)}


def _connect(options: RayOptions) -> bool:
    """Join ``options.address``, reuse an initialised Ray, or start a local one; True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    if options.address:
        _check_reachable(options.address)
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    try:
        if options.address:
            ray.init(address=options.address, **kwargs)
        else:
            ray.init(**kwargs)
    except Exception as err:  # ConnectionError, RuntimeError, ...: one line, no traceback
        where = f"the Ray cluster at {options.address}" if options.address else "a local Ray instance"
        first = (str(err).splitlines() or [""])[0]
        raise ApirError(f"cannot start or join {where} ({type(err).__name__}: {first})") from None
    return True


@contextlib.contextmanager
def ray_session(options: RayOptions | None) -> Iterator[None]:
    """Join or start Ray on entry (``None``: the local executor, nothing to do), stop it on exit if
    this started it. Callers enter it before they lock or write anything, so a wrong
    ``--ray-address`` fails (after Ray's own connection timeout) before any work."""
    if options is None:
        yield
        return
    import ray

    started = _connect(options)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A ``HOST:PORT`` (or ``ray://HOST:PORT``) nobody listens on fails here in seconds, in one line;
    ``ray.init`` itself keeps retrying for minutes. Other forms (``auto``) are left to Ray."""
    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ApirError(
            f"cannot reach the Ray cluster at {address} ({reason}); start it with `ray start --head` "
            "there, or leave out --ray-address to run on this machine"
        ) from None


def _plan(options: RayOptions, n_tasks: int) -> tuple[int, int]:
    """(actors, CPU threads per actor) from the cluster's resources."""
    import ray

    res = ray.cluster_resources()
    cpus = max(1, int(res.get("CPU", os.cpu_count() or 1)))
    gpus = float(res.get("GPU", 0))
    if options.gpus_per_worker > 0 and gpus < options.gpus_per_worker:
        raise ApirError(f"--gpus-per-worker {options.gpus_per_worker:g}: the Ray cluster has {gpus:g} GPU(s)")
    if options.workers is not None:
        workers = options.workers
    elif options.gpus_per_worker > 0:
        workers = max(1, int(gpus // options.gpus_per_worker))
    else:
        workers = cpus
    workers = max(1, min(workers, n_tasks))
    node_cpus = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    smallest = int(min([c for c in node_cpus if c > 0], default=cpus))
    threads = max(1, min(cpus // workers, smallest))
    return workers, threads


def _stop_job(ds: Any, rows: Iterator[Any]) -> None:
    """Stop a finished, failed or abandoned job now, so its actors free their CPUs and GPUs at once.

    Ray Data releases a stopped job's actors by dropping their handles, and some of those handles
    sit in reference cycles: an actor that outlived a failed job (seen: one of two after a SIGKILL
    with retries off) held its CPUs until the next garbage collection, and the next job's actor
    pool waited for them, in CI forever. Ray Data has no public call that stops a streaming job
    and kills its actors, so this closes the iterator, shuts the dataset's executor down with
    ``force=True`` through its private attribute (guarded: a Ray without it skips the step; a job
    that already stopped itself ignores it); the caller then drops its references and collects
    the cycles.
    """
    close = getattr(rows, "close", None)
    if close is not None:
        close()
    shutdown = getattr(getattr(ds, "_current_executor", None), "shutdown", None)
    if shutdown is not None:
        with contextlib.suppress(Exception):
            shutdown(force=True)


def run_on_ray(
    tasks: Sequence[Any],
    setup: Callable[[], Callable[[Any], Outcome]],
    options: RayOptions,
) -> Iterator[Outcome]:
    """Yield one :class:`Outcome` per task, in completion order, from an actor pool.

    ``setup`` is a picklable zero-argument callable run once in each actor; it returns the per-file
    function (tasks are pickled to the workers). The driver applies the outcomes; stopping the
    iteration (a fatal outcome) shuts down a Ray instance this call started.
    """
    if not tasks:
        return
    import ray

    started = _connect(options)
    try:
        workers, threads = _plan(options, len(tasks))
        # One progress bar and apir's own one-line errors, not Ray's log. CRITICAL, not ERROR: Ray
        # Data logs a failed task's exception with its traceback, and a log record that a handler
        # keeps (pytest's capture, an application's memory handler) keeps the job's actors alive
        # through that traceback, holding their CPUs (seen: the next job waited for them forever).
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the driver shows one bar for the whole job
        ctx.verbose_progress = False
        rows = [{"i": i, "task": pickle.dumps(t)} for i, t in enumerate(tasks)]
        blocks = max(1, math.ceil(len(rows) / options.batch))
        try:
            ds = ray.data.from_items(rows, override_num_blocks=blocks)
        except TypeError:  # Ray < 2.10 calls it parallelism
            ds = ray.data.from_items(rows, parallelism=blocks)
        extra: dict[str, Any] = {"num_gpus": options.gpus_per_worker} if options.gpus_per_worker > 0 else {}
        if not options.retries:
            extra["max_restarts"] = 0
        with warnings.catch_warnings():  # max_restarts goes through ray_remote_args (deprecated in 2.60)
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = ds.map_batches(
                _Worker,
                fn_constructor_args=(setup, threads),
                batch_size=options.batch,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=threads,
                **extra,
            )
        rows = iter(ds.iter_rows())
        failure = None
        try:
            for row in rows:
                yield Outcome.model_validate_json(row["outcome"])
        except ApirError:
            raise
        except Exception as err:  # a worker lost beyond its retries, a node gone: one line, no traceback
            first = (str(err).strip().splitlines() or [""])[0]
            failure = f"the Ray job failed ({type(err).__name__}: {first[:300]})"
        finally:
            _stop_job(ds, rows)
            del ds, rows  # the job's last references from here: collected below
            gc.collect()
        if failure is not None:
            # Raised outside the ``except`` block on purpose: an exception raised inside it keeps
            # Ray's error (and through its traceback the job's executor and actors) as its context.
            raise ApirError(failure)
    finally:
        if started:
            ray.shutdown()
