"""Random numbers fixed by names, identical in every process, machine and run.

Why one module: the train/val split, the fixed degradation of an evaluation image and the synthetic
defect of a validation image must be the same in every DataLoader worker and every later run, and
Python's ``hash()`` is salted per process. SHA-256 of the parts is not; the formats below are part
of apir's results (changing one changes which images are validation images, and every degradation)
and stay as they are.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["stable_fraction", "stable_rng", "stable_seed"]


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts`` (joined by "/")."""
    return int.from_bytes(_digest("/".join(map(str, parts)))[:8], "big") >> 1


def stable_fraction(*parts: object) -> float:
    """A number in [0, 1) from ``parts`` (joined by "/"), e.g. to order samples for a split."""
    return int.from_bytes(_digest("/".join(map(str, parts)))[:8], "big") / 2**64


def stable_rng(key: str | int, seed: int = 0) -> np.random.Generator:
    """The generator of the degradation of image ``key``: ``key`` 3 and ``"3"`` give the same one."""
    return np.random.default_rng(int.from_bytes(_digest(f"apir-degradation\0{seed}\0{key}")[:16], "little"))
