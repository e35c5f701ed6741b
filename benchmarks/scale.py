"""Dataset restoration throughput: the local executor against Ray with 1 and 2 workers, and a projection.

What it measures, on the demo dataset (``apir data demo``, 256 px by default), for ``restore-dataset
--degrade-only`` (I/O and degradation only) and a restoration with the shipped default model:

* **images per second** of one run each of local, Ray with 1 worker and Ray with 2 workers, on the
  full set (and their ratio to local);
* **Ray's overhead**, split into a fixed part (starting the actor pool and loading the model in each
  actor, per job) and a per-image part, from runs on two set sizes (the full set and one category):
  a run takes ``T(n) = a + b·n``, so ``b_ray − b_local`` is what Ray adds per image;
* **the driver's ceiling**: the driver journals every finished file (one fsync'd line), so it
  cannot take more than ``1 / journal time`` images per second whatever the cluster;
* **a projection, on paper**, for N nodes like this one: ``n / (a + n·b₁ / N)`` images per second
  for a job of n images, with b₁ the measured per-image time of one Ray worker using all of this
  machine's CPUs, and a the measured fixed cost. It assumes nodes as fast as this one, no
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


def _run(data: Path, out: Path, mode: str, executor: str, workers: int | None, device: str) -> float:
    """Seconds for one restore-dataset run (the model already resolved, as the CLI does first)."""
    from functools import partial

    from apir.evaluate.methods import method_restore_fn, resolve_method
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
        kw.update(executor="ray", ray=RayOptions(workers=workers, gpus_per_worker=gpus))
    start = time.perf_counter()
    restore_dataset(data, out, **kw)
    return time.perf_counter() - start


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
        subset = full / CATEGORIES[0]  # one category: the smaller set of the a + b·n fit
        from apir.data.mvtec import load_dataset

        n_full = sum(len(c.train) + len(c.test) for c in load_dataset(full))
        n_sub = sum(len(c.train) + len(c.test) for c in load_dataset(subset))
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        runs: list[dict] = []
        for mode in ("degrade", "restore"):
            _run(subset, tmp / "out", mode, "local", None, "cpu")  # warm-up: imports, ONNX export cache
            for executor, workers in (("local", None), ("ray", 1), ("ray", 2)):
                sets = [("full", full, n_full)] + ([("subset", subset, n_sub)] if workers != 2 else [])
                for which, data, n in sets:
                    label = f"{mode}/{executor}{workers or ''}/{which}"
                    seconds = _run(data, tmp / "out", mode, executor, workers, "cpu")
                    print(f"{label}: {n} images in {seconds:.2f} s", file=sys.stderr)
                    runs.append({"mode": mode, "executor": executor, "workers": workers, "set": which,
                                 "images": n, "seconds": seconds})  # fmt: skip
        gpu = None
        if args.device == "cuda":
            seconds = _run(full, tmp / "out", "restore", "ray", 1, "cuda")
            gpu = {"images": n_full, "seconds": seconds, "images_per_s": n_full / seconds}
        ray.shutdown()
        journal_s = _journal_seconds(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def find(mode: str, executor: str, workers: int | None, which: str) -> dict:
        return next(
            r
            for r in runs
            if (r["mode"], r["executor"], r["workers"], r["set"]) == (mode, executor, workers, which)
        )

    summary = {}
    for mode in ("degrade", "restore"):
        fits = {}
        for executor, workers in (("local", None), ("ray", 1)):
            f, s = find(mode, executor, workers, "full"), find(mode, executor, workers, "subset")
            b = (f["seconds"] - s["seconds"]) / (f["images"] - s["images"])
            fits[executor] = {"a": f["seconds"] - b * f["images"], "b": b}
        local = find(mode, "local", None, "full")
        ray1, ray2 = find(mode, "ray", 1, "full"), find(mode, "ray", 2, "full")
        rates = {
            name: r["images"] / r["seconds"] for name, r in (("local", local), ("ray1", ray1), ("ray2", ray2))
        }
        ceiling = 1.0 / journal_s
        summary[mode] = {
            "images_per_s": rates,
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
        f"Demo dataset at {args.size} px: {n_full} images ({', '.join(CATEGORIES)}), and {n_sub} "
        f"({CATEGORIES[0]}) for the overhead fit. `restore-dataset`, degradation `blind`, seed 0. One run "
        f"per configuration; a Ray instance with {cpus} CPUs started once, outside the timings. "
        "**This machine is shared with a training job** (see the load average above): absolute "
        "rates move with it, so read the ratios.",
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
                ["executor", "images/s", "vs local"],
                [
                    ["local (1 process)", fmt(s["images_per_s"]["local"]), "1.00"],
                    ["Ray, 1 worker", fmt(s["images_per_s"]["ray1"]), fmt(s["ratio_to_local"]["ray1"])],
                    ["Ray, 2 workers", fmt(s["images_per_s"]["ray2"]), fmt(s["ratio_to_local"]["ray2"])],
                ],
            ),
            "",
            f"Ray adds **{s['ray_overhead_per_image_s'] * 1000:.1f} ms per image** (per-image time "
            f"{s['fit']['local']['b'] * 1000:.1f} ms local, {s['fit']['ray']['b'] * 1000:.1f} ms on one Ray "
            f"worker) and **{s['ray_fixed_overhead_s']:.1f} s per job** (starting the actor pool"
            f"{', loading the model in each actor' if mode == 'restore' else ''}).",
            "",
            f"Projection for a {args.projection_images:,}-image job on N nodes like this one, one "
            f"{cpus}-thread worker each (on paper, from the 1-worker per-image time and the fixed "
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
            "images_full": n_full,
            "images_subset": n_sub,
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
