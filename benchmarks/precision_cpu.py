"""CPU bf16 autocast against float32 for the shipped default: speed of training steps and of
restoration, and what bf16 costs in quality.

Why: this CPU has AVX512-BF16; autocast could make CPU training and restoration faster, but apir
restores 8- and 16-bit images and bf16 keeps 8 bits of mantissa. One run measures, for the default
architecture on this machine: training steps per second (batch 16 × 128², forward + backward + Adam)
and restoration megapixels per second (whole 512² images) in float32 and under bf16 autocast, and on
unseen test pictures (σ 25) the PSNR of the bf16 restoration against the float32 one and against
the clean image.

    python benchmarks/precision_cpu.py --threads 2   # -> benchmarks/results/precision_cpu.{md,json}
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, fmt, markdown_table, provenance, provenance_markdown, publish_results  # noqa: E402


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (oneDNN picks its kernels on the first call)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO_ROOT / "runs" / "corpus_unseen")
    ap.add_argument("--images", type=int, default=12, help="unseen test images for the quality rows")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "precision_cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from apir.data.cases import iter_cases
    from apir.data.degradations import get_degradation
    from apir.data.mvtec import load_dataset
    from apir.evaluate.metrics import psnr
    from apir.losses import AnomalyWeightedLoss
    from apir.models import create_model
    from apir.restore.api import restore_rgb
    from apir.restore.loading import resolve_model

    prov = provenance("cpu")
    model, header = resolve_model(None, "cpu")
    rows, data = [], {}
    # Training steps: the default's architecture, fresh weights (speed does not depend on them).
    kwargs = {k: v for k, v in header["model"].items() if k != "name"}
    for name, dtype in (("float32", None), ("bf16 autocast", torch.bfloat16)):
        net = create_model(header["model"]["name"], **kwargs)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        loss_fn = AnomalyWeightedLoss(alpha=0.3)
        channels = 4 if kwargs.get("level_input") else 3
        x = torch.rand(16, channels, 128, 128)
        y, m = torch.rand(16, 3, 128, 128), (torch.rand(16, 1, 128, 128) > 0.9).float()

        def step(net=net, opt=opt, dtype=dtype, x=x, y=y, m=m, loss_fn=loss_fn):
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                out = net(x)
            loss = loss_fn(out.float(), y, m)
            opt.zero_grad()
            loss.backward()
            opt.step()

        data[f"train_{name}"] = 1.0 / _time(step, args.repeats)
    image = np.random.default_rng(0).random((512, 512, 3), dtype=np.float32)
    for name, amp in (("float32", False), ("bf16 autocast", torch.bfloat16)):
        seconds = _time(lambda amp=amp: restore_rgb(model, image, tile=0, amp=amp), args.repeats)
        data[f"restore_{name}"] = 512 * 512 / 1e6 / seconds
    measured = (("training steps/s (16 × 128²)", "train"), ("restoration MP/s (512², whole)", "restore"))
    for what, key in measured:
        fp32, bf16 = data[f"{key}_float32"], data[f"{key}_bf16 autocast"]
        rows.append([what, fmt(fp32, 3), fmt(bf16, 3), fmt(bf16 / fp32, 2)])
    # Quality: unseen pictures at σ 25, bf16 against float32 and against the clean image.
    samples = [s for cat in load_dataset(args.data) for s in cat.test][:: max(1, 166 // args.images)]
    samples = samples[: args.images]
    vs_fp32, fp32_clean, bf16_clean, worst8 = [], [], [], 0.0
    for case in iter_cases(samples, get_degradation("noise25"), 0):
        a = np.clip(restore_rgb(model, case.degraded, tile=0, amp=False), 0, 1)
        b = np.clip(restore_rgb(model, case.degraded, tile=0, amp=torch.bfloat16), 0, 1)

        def t(v):
            return torch.from_numpy(np.ascontiguousarray(v.transpose(2, 0, 1)))[None]

        vs_fp32.append(float(psnr(t(b), t(a))[0]))
        fp32_clean.append(float(psnr(t(a), t(case.clean))[0]))
        bf16_clean.append(float(psnr(t(b), t(case.clean))[0]))
        worst8 = max(worst8, float(np.abs(np.round(a * 255) - np.round(b * 255)).max()))
    data.update(
        psnr_bf16_vs_fp32=float(np.mean(vs_fp32)),
        psnr_fp32=float(np.mean(fp32_clean)),
        psnr_bf16=float(np.mean(bf16_clean)),
        max_8bit_difference=worst8,
        n_images=len(vs_fp32),
    )
    md = [
        "# CPU bf16 autocast vs float32 (apir's default)",
        "",
        *provenance_markdown(prov),
        "",
        f"Model: the shipped default ({header['model']}). Speed: mean of {args.repeats} runs after a "
        f"warm-up, {args.threads} threads. One run: read the ratios.",
        "",
        markdown_table(["", "float32", "bf16 autocast", "bf16 / float32"], rows),
        "",
        f"Quality on {len(vs_fp32)} unseen test pictures (σ 25, seed 0): PSNR against the clean image "
        f"{fmt(data['psnr_fp32'])} dB in float32, {fmt(data['psnr_bf16'])} dB under bf16; the bf16 "
        f"restoration against the float32 one: {fmt(data['psnr_bf16_vs_fp32'])} dB, at most "
        f"{fmt(worst8, 0)} 8-bit levels apart.",
        "",
    ]
    settings = {k: str(v) for k, v in vars(args).items()}
    js = {"schema": "apir.bench.precision_cpu/1", **prov, "settings": settings, "results": data}
    publish_results(args.out, "\n".join(md), js)
    return 0


if __name__ == "__main__":
    sys.exit(main())
