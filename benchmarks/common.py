"""Helpers shared by the benchmark scripts: provenance (machine, versions, commit, command) and output.

Why a module of its own: a benchmark number is only worth something next to where it was measured and
from which code, so every results file carries the same provenance block, produced in one place
rather than re-typed (and drifting) per script. Imported as ``common`` by the scripts in this folder,
which put the folder on ``sys.path`` when run as ``python benchmarks/<script>.py``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

#: The repository root (this file lives in ``<root>/benchmarks/``).
REPO_ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(module: str) -> str | None:
    """A package's version without importing it (importing torch or onnxruntime is slow)."""
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """Where the numbers were measured: CPU, cores usable by this process, OS, library versions, load.

    The load average is recorded because this kind of machine is often shared: a busy neighbour
    slows every method, and a reader should be able to tell.
    """
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            name: _version(name)
            for name in ("apir", "torch", "onnxruntime", "onnx", "numpy", "bm3d", "opencv-python-headless")
        },
        "load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(torch.device(device))
            info["cuda"] = torch.version.cuda
    return info


def git_info(root: Path = REPO_ROOT) -> dict[str, Any]:
    """Commit (short hash) and whether the working tree differs from it.

    A dirty tree means the numbers come from code that is not exactly that commit; the list of
    modified tracked files says where (untracked files are counted, not listed).
    """

    def run(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.rstrip("\n")  # not strip(): porcelain lines start with a status column

    commit = (run("rev-parse", "--short", "HEAD") or "").strip() or None
    status = run("status", "--porcelain")
    if status is None:
        return {"commit": commit, "dirty": None, "modified": [], "untracked": 0}
    lines = [line for line in status.splitlines() if line.strip()]
    modified = sorted(line[3:] for line in lines if not line.startswith("??"))
    untracked = sum(1 for line in lines if line.startswith("??"))
    return {"commit": commit, "dirty": bool(modified), "modified": modified, "untracked": untracked}


def command_line() -> str:
    """The command as a user would retype it from the repository root."""
    script = Path(sys.argv[0])
    with contextlib.suppress(ValueError):
        script = script.resolve().relative_to(REPO_ROOT)
    return shlex.join(["python", str(script), *sys.argv[1:]])


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def provenance(device: str = "cpu") -> dict[str, Any]:
    """The block every results JSON starts with."""
    return {
        "date": utc_now(),
        "command": command_line(),
        "git": git_info(),
        "machine": machine_info(device),
    }


def provenance_markdown(prov: dict[str, Any]) -> list[str]:
    """Markdown lines saying when, where, and from which code a results file was produced."""
    git = prov["git"]
    m = prov["machine"]
    if git.get("dirty"):
        shown = ", ".join(git["modified"][:8]) + (" ..." if len(git["modified"]) > 8 else "")
        state = f" (working tree dirty: {len(git['modified'])} modified tracked file(s): {shown})"
    elif git.get("dirty") is None:
        state = " (tree state unknown)"
    else:
        state = " (clean tree)"
    v = m["versions"]
    hw = f"{m['cpu']}, {m['usable_cpus']} usable of {m['logical_cpus']} logical CPUs"
    if m.get("gpu"):
        hw += f"; GPU {m['gpu']} (CUDA {m.get('cuda')})"
    load = m.get("load_average_1_5_15")
    lines = [
        f"- Date: {prov['date']}",
        f"- Commit: `{git.get('commit')}`{state}",
        f"- Command: `{prov['command']}`",
        f"- Machine: {hw}; {m['platform']}; Python {m['python']}",
        f"- Versions: torch {v.get('torch')}, onnxruntime {v.get('onnxruntime')}, numpy {v.get('numpy')}, "
        f"bm3d {v.get('bm3d')}, apir {v.get('apir')}",
    ]
    if load:
        lines.append(f"- Load average at start (1/5/15 min): {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
    return lines


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table; cells are str()-ed, so format numbers before passing them."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def fmt(value: Any, digits: int = 2, missing: str = "–") -> str:
    """A number with ``digits`` decimals; None/NaN as ``missing`` (undefined is not zero)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    if isinstance(value, int | float):
        return f"{value:.{digits}f}"
    return str(value)


def _json_safe(value: Any) -> Any:
    """JSON has no NaN/inf: they become null, as in apir's own results files."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_results(stem: Path, markdown: str, data: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``stem.md`` and ``stem.json`` (folders created); return both paths."""
    stem = Path(stem)
    if stem.suffix in (".md", ".json"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    # Appended, not with_suffix: a stem may hold dots of its own ("adapt_unseen_survival0.3").
    md, js = stem.parent / f"{stem.name}.md", stem.parent / f"{stem.name}.json"
    md.write_text(markdown.rstrip() + "\n", encoding="utf-8")
    js.write_text(json.dumps(_json_safe(data), indent=1, allow_nan=False, ensure_ascii=False) + "\n")
    return md, js


def publish_results(stem: Path, markdown: str, data: dict[str, Any]) -> tuple[Path, Path]:
    """:func:`write_results`, then the markdown on stdout and where it went on stderr."""
    md, js = write_results(stem, markdown, data)
    print(markdown)
    print(f"wrote {md} and {js}", file=sys.stderr)
    return md, js


def set_threads(threads: int | None) -> None:
    """Limit PyTorch's and OpenCV's thread pools (``--threads``); None leaves their defaults."""
    if threads:
        import cv2
        import torch

        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
