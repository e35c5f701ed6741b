"""Training curves (loss and validation PSNR per epoch) from a run's ``log.csv``."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from apir.fsutil import atomic_path  # noqa: E402


def _floats(rows: list[dict], key: str) -> list[float]:
    return [float(r[key]) if r.get(key) not in (None, "", "nan") else float("nan") for r in rows]


def plot_training_curves(csv_path: str | Path, out: str | Path) -> Path:
    """Two panels: training loss (log scale), and validation PSNR overall / in the defect / input."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax1.plot(epochs, _floats(rows, "train_loss"), marker=".")
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_title("training loss")
    ax2.plot(epochs, _floats(rows, "val_psnr"), marker=".", label="restored (overall)")
    ax2.plot(epochs, _floats(rows, "val_psnr_defect"), marker=".", label="restored (inside defect)")
    ax2.plot(epochs, _floats(rows, "input_psnr"), linestyle="--", color="gray", label="degraded input")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("PSNR (dB)")
    ax2.set_title("validation")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return out
