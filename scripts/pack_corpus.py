"""Copy a training corpus as JPEG quality 97, 4:4:4 (about a quarter of its PNG size) for a transfer.

Why: the GPU machine apir's default was trained on receives the working tree with a 64 MiB limit and
cannot fetch Debian packages itself; the corpus' PNG tiles are ~93 MB. JPEG q97 without chroma
subsampling differs from the PNG by about 1/255 RMS, far below the training noise levels.
    python scripts/pack_corpus.py runs/corpus .gpu/corpus
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import cv2


def main(src: Path, dst: Path) -> None:
    params = [
        cv2.IMWRITE_JPEG_QUALITY,
        97,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
    ]
    for png in sorted(src.glob("*/train/good/*.png")):
        out = dst / png.relative_to(src).with_suffix(".jpg")
        out.parent.mkdir(parents=True, exist_ok=True)
        image = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        if image is None or image.dtype != "uint8":
            raise SystemExit(f"{png}: not an 8-bit image")
        cv2.imwrite(str(out), image, params)
    shutil.copy2(src / "corpus_info.json", dst / "corpus_info.json")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
