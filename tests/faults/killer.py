"""Runs a restore in this process and ``kill -9``s it at a chosen point (used by the fault tests).

``python killer.py MODE HOOK N ARGS...``: MODE is ``restore`` (ARGS: checkpoint, input folder,
OUT_DIR) or ``dataset`` (ARGS: dataset root, OUT_ROOT); HOOK says where to die, at its Nth call:

* ``fsync``: a temporary file is fully written but not yet renamed into place;
* ``journal``: just before a journal line is written (so an output may be in place, unrecorded);
* ``torn``: halfway through writing a journal line.

The parent test then resumes and compares with an uninterrupted run. The same ``run_*`` functions
make the reference run, so both use identical settings.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import cv2
import numpy as np
import torch


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), 1.0)


def run_restore(checkpoint: str, inputs: str, out: str, **kw) -> object:
    from apir.restore.files import restore_paths

    return restore_paths(
        [Path(inputs)], Path(out), checkpoint, tile=0, device="cpu", show_progress=False, **kw
    )


def run_dataset(root: str, out: str, **kw) -> object:
    from apir.restore.dataset import restore_dataset

    return restore_dataset(
        root, out, restore_fn=blur, degradation="noise25", show_progress=False, label="blur", **kw
    )


def _die_at(n: int, torn: bool = False):
    calls = {"n": 0}

    def hook(original):
        def wrapped(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] >= n:
                if torn:  # half a journal line, then death
                    journal = args[0]
                    journal._f.write('{"op": "done", "entr')
                    journal._f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)

        return wrapped

    return hook


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    mode, where, n, *args = argv
    import apir.fsutil as fsutil
    import apir.restore.manifest as manifest

    hook = _die_at(int(n), torn=where == "torn")
    if where == "fsync":
        fsutil._fsync_file = hook(fsutil._fsync_file)
    else:
        manifest.Journal._append = hook(manifest.Journal._append)
    if mode == "restore":
        run_restore(*args)
    else:
        run_dataset(*args)
    sys.exit(3)  # not killed: the hook was never reached


if __name__ == "__main__":
    main(sys.argv[1:])
