"""Show that a restructuring changed no result: run the same ``apir evaluate`` at two revisions.

Each revision is checked out into a temporary git worktree and run with this environment's Python
on the same dataset, checkpoint and arguments; then every number of the two ``metrics.json`` files
(per image, per category, overall, detection; timings aside) and every image the runs wrote are
compared. Exit status 0 when all are identical, 1 otherwise (each difference is printed).

    python scripts/compare_revisions.py bc09193 HEAD --data demo_out/data \\
        --model benchmarks/reference/default_v1_blind.safetensors -- --degradation paper --detector

Options a revision does not know are left out for it: ``--engine torch`` (ONNX Runtime would differ
from PyTorch by ~1e-6) and ``--detector-fit clean`` (the protocol older revisions ran) are added only
where ``apir evaluate --help`` lists them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: Fields that measure time or the moment of the run, not the result.
TIMING = {"seconds", "megapixels_per_second", "created", "fit_seconds", "score_seconds", "restore_seconds"}


def _run_revision(rev: str, work: Path, data: Path, model: Path, extra: list[str]) -> Path:
    tree = work / f"tree-{rev}"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), rev], check=True,
                   capture_output=True)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    cli = [sys.executable, "-m", "apir.cli", "evaluate"]
    helptext = subprocess.run([*cli, "--help"], env=env, capture_output=True, text=True, check=True).stdout
    args = list(extra)
    if "--engine" in helptext:
        args += ["--engine", "torch"]
    if "--detector-fit" in helptext and "--detector" in args and "--detector-fit" not in args:
        args += ["--detector-fit", "clean"]
    out = work / f"results-{rev}"
    print(f"[{rev}] apir evaluate {' '.join(args)}", file=sys.stderr)
    subprocess.run([*cli, "--data", str(data), "--model", str(model), "-o", str(out), *args],
                   env=env, check=True, cwd=tree)  # fmt: skip
    return out


def _numbers(node, path: str = "") -> dict[str, float]:
    """Every numeric leaf of a JSON tree by its path; timings, and per-run paths, left out."""
    out: dict[str, float] = {}
    if isinstance(node, dict):
        for k, v in node.items():
            if k not in TIMING:
                out.update(_numbers(v, f"{path}/{k}"))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            key = v.get("key", i) if isinstance(v, dict) else i
            out.update(_numbers(v, f"{path}[{key}]"))
    elif isinstance(node, int | float):  # bool included
        out[path] = float(node)
    elif node is None:
        out[path] = math.nan
    return out


def _files(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.png"))
    }


def compare(a: Path, b: Path) -> list[str]:
    na = _numbers(json.loads((a / "metrics.json").read_text()))
    nb = _numbers(json.loads((b / "metrics.json").read_text()))
    diffs = []
    for key in sorted(set(na) & set(nb)):
        x, y = na[key], nb[key]
        if not (x == y or (math.isnan(x) and math.isnan(y))):
            diffs.append(f"{key}: {x!r} != {y!r}")
    fa, fb = _files(a), _files(b)
    diffs += [f"{name}: only in one run" for name in sorted(set(fa) ^ set(fb))]
    diffs += [f"{name}: bytes differ" for name in sorted(set(fa) & set(fb)) if fa[name] != fb[name]]
    print(f"compared {len(set(na) & set(nb))} numbers ({len(set(na) ^ set(nb))} present in one run only) "
          f"and {len(set(fa) & set(fb))} images", file=sys.stderr)  # fmt: skip
    return diffs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rev_a")
    ap.add_argument("rev_b")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", type=Path, required=True, help="a fixed checkpoint both revisions load")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = ap.parse_args(argv[:cut])
    extra = argv[cut + 1 :]  # after "--": more `apir evaluate` arguments, the same for both
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        try:
            a = _run_revision(args.rev_a, work, args.data.resolve(), args.model.resolve(), extra)
            b = _run_revision(args.rev_b, work, args.data.resolve(), args.model.resolve(), extra)
            diffs = compare(a, b)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], check=False)
            for tree in work.glob("tree-*"):
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False
                )
    for line in diffs:
        print(line)
    print("identical" if not diffs else f"{len(diffs)} difference(s)")
    return 0 if not diffs else 1


if __name__ == "__main__":
    sys.exit(main())
