"""Dataset restoration throughput: the local executor against Ray with 1 and 2 workers, and a projection.

What it measures, on the demo dataset (``apir data demo``, 256 px by default), for ``restore-dataset
--degrade-only`` (I/O and degradation only) and a restoration with the shipped default model:

* **images per second** of one run each of local, Ray with 1 worker and Ray with 2 workers, on the
  full set (and their ratio to local);
* **Ray's overhead**, split into a fixed part and a per-image part, from when the driver receives
  each image's result: the time to the first image (checks, and for Ray starting the actor pool
  and loading the model in each actor) and the steady time per image after it,
  ``(t_last − t_first) / (n − 1)``; Ray's fixed and per-image overheads are the differences from
  the local run's;
* **the driver's ceiling**: the driver journals every finished file (one fsync'd line), so it
  cannot take more than ``1 / journal time`` images per second whatever the cluster;
* **a projection, on paper**, for N nodes like this one: ``n / (a + n·b₁ / N)`` images per second
  for a job of n images, with b₁ the measured steady per-image time of one Ray worker using all of
  this machine's CPUs, and a its measured time to the first image. It assumes nodes as fast as this one, no
  shared-storage bottleneck, and stays under the driver's ceiling.

One run per configuration (a ratio, not a distribution). The Ray instance is started once, outside
the timings, with ``num_cpus`` = the CPUs this process may use. With ``--device cuda`` (a GPU
machine), one Ray actor with one GPU restores the set too and its rate is reported.

    python benchmarks/scale.py                      # writes benchmarks/results/scale_cpu.{md,json}
    python benchmarks/scale.py --size 128 --train 6 # quicker
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, fmt, markdown_table, provenance, provenance_markdown, write_results  # noqa: E402

CATEGORIES = ["brick", "coffee"]


def _stamped(fn: Any, stamps: list[float]) -> Any:
    """``fn`` (an executor's outcome source), noting when each result reaches the driver."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        if hasattr(result, "__next__"):  # Ray: a generator of outcomes

            def stream() -> Any:
                for item in result:
                    stamps.append(time.perf_counter())
                    yield item

            return _Closing(stream(), result)
        stamps.append(time.perf_counter())  # local: one outcome per call
        return result

    return wrapper


class _Closing:
    """An iterator that also closes the wrapped generator (the dataset loop calls ``close``)."""

    def __init__(self, it: Any, inner: Any) -> None:
        self.it, self.inner = it, inner

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        return next(self.it)

    def close(self) -> None:
        self.it.close()
        self.inner.close()


def _run(
    data: Path, out: Path, mode: str, executor: str, workers: int | None, device: str, batch: int = 1
) -> dict:
    """One restore-dataset run (the model already resolved, as the CLI does first): total seconds,
    time to the first image and steady seconds per image after it, as the driver sees them."""
    from functools import partial

    from apir.evaluate.methods import method_restore_fn, resolve_method
    from apir.restore import dataset as dataset_mod
    from apir.restore.dataset import restore_dataset
    from apir.restore.ray_executor import RayOptions

    if out.exists():
        shutil.rmtree(out)
    kw: dict[str, Any] = {"degradation": "blind", "seed": 0, "show_progress": False}
    if mode == "restore":
        spec = {"device": device}
        method = resolve_method(None, None, **spec)
        kw.update(restore_fn=method.restore_fn, model_info=method.model_info)
        kw["restore_factory"] = partial(method_restore_fn, None, None, **spec)
    else:
        kw["restore_fn"] = None
    if executor == "ray":
        gpus = 1.0 if device == "cuda" else 0.0
        kw.update(executor="ray", ray=RayOptions(workers=workers, gpus_per_worker=gpus, batch=batch))
    stamps: list[float] = []
    name = "run_on_ray" if executor == "ray" else "degrade_image"
    original = getattr(dataset_mod, name)
    setattr(dataset_mod, name, _stamped(original, stamps))
    try:
        start = time.perf_counter()
        restore_dataset(data, out, **kw)
        seconds = time.perf_counter() - start
    finally:
        setattr(dataset_mod, name, original)
    n = len(stamps)
    return {
        "seconds": seconds,
        "first_image_s": stamps[0] - start,
        "steady_per_image_s": (stamps[-1] - stamps[0]) / (n - 1),
        "images_timed": n,
    }


def _journal_seconds(folder: Path, n: int = 200) -> float:
    """Seconds per journaled file on the driver (one fsync'd JSON line, as a run writes)."""
    from apir.restore import manifest

    entry = manifest.Entry(output="a/b.png", sha256="0" * 64, size=1, source="/x", kind="restored", run="r")
    journal = manifest.Journal(folder / "journal.jsonl")
    journal.start({}, fresh=True)
    start = time.perf_counter()
    for _ in range(n):
        journal.done(entry)
    elapsed = time.perf_counter() - start
    journal.close(remove=True)
    return elapsed / n


def _projection(a: float, b_node: float, n: int, ceiling: float) -> list[dict]:
    """Images per second of an ``n``-image job on N nodes like this one: ``n / (a + n·b_node / N)``."""
    rows = []
    for nodes in (1, 2, 4, 8, 16, 64):
        rate = n / (a + n * b_node / nodes)
        rows.append({"nodes": nodes, "images_per_s": min(rate, ceiling), "capped": rate > ceiling})
    return rows


def _overhead_line(s: dict, mode: str) -> str:
    per = s["ray_overhead_per_image_s"] * 1000
    times = (
        f"per-image time {s['fit']['local']['b'] * 1000:.1f} ms local, {s['fit']['ray']['b'] * 1000:.1f} ms "
        "on one Ray worker, after the first image"
    )
    fixed = (
        f"**{s['ray_fixed_overhead_s']:.1f} s per job** (to the first image: starting the actor pool"
        f"{', loading the model in each actor' if mode == 'restore' else ''})"
    )
    if per <= 0:
        return (
            f"Ray adds no measurable per-image time here ({times}: a difference of {per:.1f} ms, within "
            "the noise of single runs on a shared machine; the driver's bookkeeping overlaps the "
            f"worker's work) but {fixed}."
        )
    return f"Ray adds **{per:.1f} ms per image** ({times}) and {fixed}."


def _load_note(prov: dict) -> str:
    """What the load at the start says about the absolute rates (read from the machine, not assumed)."""
    load = prov["machine"].get("load_average_1_5_15")
    cpus = prov["machine"].get("usable_cpus") or 1
    if load and load[0] > 0.5 * cpus:
        return (
            f"**Other work was running** (load average {load[0]:.2f} on {cpus} CPUs at the start): "
            "absolute rates move with it, so read the ratios."
        )
    return "The machine was otherwise idle at the start (load average above); one run each: read the ratios."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256, help="demo image side (default 256)")
    parser.add_argument("--train", type=int, default=12, help="train/good images per category (default 12)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--projection-images", type=int, default=100_000, help="job size for the projection")
    parser.add_argument("--out", type=Path, help="results stem (default benchmarks/results/scale_<device>)")
    args = parser.parse_args(argv)
    out_stem = args.out or REPO_ROOT / "benchmarks" / "results" / f"scale_{args.device}"

    import ray

    from apir.data.demo import DemoCounts, build_demo_dataset

    prov = provenance(args.device)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    tmp = Path(tempfile.mkdtemp(prefix="apir-scale-"))
    try:
        counts = DemoCounts(args.train, 4, 4)
        full = build_demo_dataset(tmp / "data", size=args.size, seed=0, categories=CATEGORIES, counts=counts,
                                  show_progress=False)  # fmt: skip
        subset = full / CATEGORIES[0]  # one category, for the warm-up
        from apir.data.mvtec import load_dataset

        n_full = sum(len(c.train) + len(c.test) for c in load_dataset(full))
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        runs: list[dict] = []
        for mode in ("degrade", "restore"):
            _run(subset, tmp / "out", mode, "local", None, "cpu")  # warm-up: imports, ONNX export cache
            for executor, workers, batch in (("local", None, 1), ("ray", 1, 1), ("ray", 2, 1), ("ray", 2, 8)):
                label = f"{mode}/{executor}{workers or ''}/batch {batch}"
                timing = _run(full, tmp / "out", mode, executor, workers, "cpu", batch)
                print(f"{label}: {n_full} images, {timing}", file=sys.stderr)
                runs.append({"mode": mode, "executor": executor, "workers": workers, "batch": batch,
                             "images": n_full, **timing})  # fmt: skip
        gpu = None
        if args.device == "cuda":
            timing = _run(full, tmp / "out", "restore", "ray", 1, "cuda")
            gpu = {"images": n_full, **timing, "images_per_s": 1 / timing["steady_per_image_s"]}
        ray.shutdown()
        journal_s = _journal_seconds(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def find(mode: str, executor: str, workers: int | None, batch: int = 1) -> dict:
        key = (mode, executor, workers, batch)
        return next(r for r in runs if (r["mode"], r["executor"], r["workers"], r["batch"]) == key)

    summary = {}
    for mode in ("degrade", "restore"):
        local = find(mode, "local", None)
        ray1, ray2, ray2b = (find(mode, "ray", w, b) for w, b in ((1, 1), (2, 1), (2, 8)))
        pairs = (("local", local), ("ray1", ray1), ("ray2", ray2), ("ray2_batch8", ray2b))
        rates = {name: r["images"] / r["seconds"] for name, r in pairs}
        # Results of --ray-batch 8 arrive 8 at a time: a rate "after the first image" means nothing there.
        steady = {name: 1.0 / r["steady_per_image_s"] if r["batch"] == 1 else None for name, r in pairs}
        fits = {
            "local": {"a": local["first_image_s"], "b": local["steady_per_image_s"]},
            "ray": {"a": ray1["first_image_s"], "b": ray1["steady_per_image_s"]},
        }
        ceiling = 1.0 / journal_s
        summary[mode] = {
            "images_per_s": rates,
            "steady_images_per_s": steady,
            "ratio_to_local": {k: v / rates["local"] for k, v in rates.items()},
            "fit": fits,
            "ray_overhead_per_image_s": fits["ray"]["b"] - fits["local"]["b"],
            "ray_fixed_overhead_s": fits["ray"]["a"] - fits["local"]["a"],
            "projection": _projection(fits["ray"]["a"], fits["ray"]["b"], args.projection_images, ceiling),
        }

    md = [
        f"# Dataset restoration: local vs Ray ({args.device})",
        "",
        *provenance_markdown(prov),
        "",
        f"Demo dataset at {args.size} px: {n_full} images ({', '.join(CATEGORIES)}). `restore-dataset`, "
        "degradation `blind`, seed 0. One run "
        f"per configuration; a Ray instance with {cpus} CPUs started once, outside the timings. "
        + _load_note(prov),
        "",
    ]
    titles = {
        "degrade": "`--degrade-only` (read, degrade, write)",
        "restore": "restore, shipped default model",
    }
    for mode, title in titles.items():
        s = summary[mode]
        md += [
            f"## {title}",
            "",
            markdown_table(
                ["executor", "images/s (whole job)", "vs local", "images/s after the first image"],
                [
                    [
                        label,
                        fmt(s["images_per_s"][key]),
                        fmt(s["ratio_to_local"][key]),
                        fmt(s["steady_images_per_s"][key]),
                    ]
                    for key, label in (
                        ("local", "local (1 process)"),
                        ("ray1", "Ray, 1 worker"),
                        ("ray2", "Ray, 2 workers"),
                        ("ray2_batch8", "Ray, 2 workers, `--ray-batch 8`"),
                    )
                ],
            ),
            "",
            _overhead_line(s, mode),
            "",
            f"Projection for a {args.projection_images:,}-image job on N nodes like this one, one "
            f"{cpus}-thread worker each (on paper, from the 1-worker steady per-image time and the fixed "
            "overhead above, capped by the driver's journal ceiling below):",
            "",
            markdown_table(
                ["nodes", "images/s (projected)"],
                [
                    [p["nodes"], fmt(p["images_per_s"], 1) + (" (driver ceiling)" if p["capped"] else "")]
                    for p in s["projection"]
                ],
            ),
            "",
        ]
    md += [
        "Reading the numbers: a whole job's rate includes Ray's start-up (the actor pool, and one model "
        "load per actor), which dominates a set this small; the rate after the first image is what a "
        "large job approaches. On a loaded machine one process with several OpenMP threads can be "
        "slower than as many 1-thread processes (its threads wait for each other whenever other work "
        "holds a core), so a Ray worker's steady rate can exceed the local one: compare executors "
        "on your own machine before choosing.",
        "",
        f"The driver journals each finished file in {journal_s * 1000:.2f} ms (an fsync'd line): a "
        f"ceiling of about {1 / journal_s:,.0f} images/s for one job, whatever the cluster.",
        "",
    ]
    if gpu:
        md += [
            f"One Ray actor with one GPU: {gpu['images_per_s']:.2f} images/s ({gpu['images']} images).",
            "",
        ]
    else:
        md += ["No GPU on this machine: the one-GPU-actor rate is not measured here (`--device cuda`).", ""]
    data = {
        "schema": "apir.bench.scale/1",
        "provenance": prov,
        "dataset": {
            "size": args.size,
            "images": n_full,
            "categories": CATEGORIES,
        },
        "cpus": cpus,
        "runs": runs,
        "summary": summary,
        "journal_seconds_per_file": journal_s,
        "gpu_actor": gpu,
    }
    md_path, js_path = write_results(out_stem, "\n".join(md), data)
    print(f"wrote {md_path} and {js_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
