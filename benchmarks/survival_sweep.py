"""Survival fine-tuning swept over its weight, scored on the survival frontier of unseen pictures.

The paired defect-response term (``loss.pair_weight``: the same blur and noise with and without the
defect; the output difference must equal the defect on the mask and a thin rim, inverse-size weighted)
is added at each weight W to a short fine-tune of the converged default (``configs/survival_finetune.yaml``:
warm start from the shipped weights, low learning rate, the same corpus, seed and steps for every W).
W = 0 is the control: the same extra training without the term, so a gain that comes from training
longer is not credited to the term.

Each fine-tuned model then becomes a ``--strength`` curve on the frontier (``benchmarks/frontier.py
--models``) beside the shipped default's; the curves that do not depend on these models (CBM3D, ...) can
be taken from a committed frontier run on the same images (``--reuse``, checked point by point against
the shipped default's curve measured again in this run).

    apir data corpus runs/corpus
    python benchmarks/survival_sweep.py --weights 0 0.3 1 --threads 2 \
        --reuse benchmarks/results/frontier_unseen.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import frontier  # noqa: E402
from common import REPO_ROOT, set_threads  # noqa: E402

CONFIG = REPO_ROOT / "configs" / "survival_finetune.yaml"


def train_weight(weight: float, corpus: Path, run_dir: Path, config_path: Path, seed: int | None) -> Path:
    """Fine-tune at ``weight`` into ``run_dir``; a finished run is kept, an interrupted one resumed.

    Returns the weights at the end of the schedule (the same number of steps for every weight), not
    those of the best validation PSNR: selecting on overall PSNR would select against the term.
    """
    from apir.models.checkpoint import LAST, read_header
    from apir.train.config import load_config, override
    from apir.train.loop import train

    config = override(
        load_config(config_path), **{"loss.pair_weight": weight, "data.root": str(corpus), "train.seed": seed}
    )
    last = run_dir / LAST
    if last.is_file():
        if int(read_header(last)[0].get("epoch", 0)) >= config.train.epochs:
            print(f"[sweep] {run_dir} is finished; kept", file=sys.stderr, flush=True)
            return run_dir / LAST
        train(config, run_dir, resume=True)
    else:
        train(config, run_dir, force=run_dir.exists())
    return run_dir / LAST


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", nargs="+", type=float, default=[0.0, 0.3, 1.0])
    ap.add_argument("--corpus", type=Path, default=REPO_ROOT / "runs" / "corpus")
    ap.add_argument("--config", type=Path, default=CONFIG)
    ap.add_argument("--runs", type=Path, default=REPO_ROOT / "runs" / "survival_sweep")
    ap.add_argument(
        "--seed", type=int, help="training seed instead of the config's (another draw of the same run)"
    )
    ap.add_argument("--train-only", action="store_true", help="fine-tune, do not score")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "frontier_survival")
    args, frontier_args = ap.parse_known_args(argv)
    set_threads(args.threads)
    models = []
    for weight in args.weights:
        name = f"w{weight:g}" + (f"_seed{args.seed}" if args.seed is not None else "")
        weights = train_weight(weight, args.corpus, args.runs / name, args.config, args.seed)
        models.append(f"finetune_{name}={weights}")
    if args.train_only:
        return 0
    threads = ["--threads", str(args.threads)] if args.threads else []
    return frontier.main(
        ["--curves", "strength", "--models", *models, "--out", str(args.out), *threads, *frontier_args]
    )


if __name__ == "__main__":
    sys.exit(main())
