"""One mixed-precision policy for training and restoration.

``amp`` is ``"auto"`` (or None), ``"bf16"``, ``"fp16"``, ``"off"`` (or False), True ("on") or a dtype:

* auto: bf16 on CUDA where the GPU supports it; on CUDA without bf16, fp16 for *training* (with a
  gradient scaler) but not for restoration, where fp16 can overflow in an untested model; never on
  the CPU, where autocast is a choice to make knowingly (below);
* bf16: bf16 on any device, the CPU included. Measured for the default model
  (``benchmarks/results/precision_cpu.md``, an Intel Xeon with AVX512-BF16 and AMX, 2 threads):
  training steps 1.18× faster, whole-image restoration 0.88× (slower), the bf16 restoration within
  2 8-bit levels of float32 (62 dB apart). So ``train.amp: bf16`` pays on such a CPU and restoration
  stays float32 there (an earlier AMD EPYC measured 1.57× for inference: measure your own machine);
  fp16: fp16 on CUDA, off on the CPU;
* True: on, with the best type the device has (bf16 on the CPU; bf16 or fp16 on CUDA).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch


def amp_dtype(amp: object, device: torch.device, *, training: bool = False) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (None = full float32)."""
    if isinstance(amp, torch.dtype):
        return amp
    cuda = device.type == "cuda"
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    if amp is False or amp == "off":
        return None
    if amp is None or amp == "auto":
        if not cuda:
            return None
        return torch.bfloat16 if bf16_ok else (torch.float16 if training else None)
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16 if cuda else None
    if amp is True:
        return torch.bfloat16 if (bf16_ok or not cuda) else torch.float16
    raise ValueError(f"unknown mixed-precision setting {amp!r}")


def autocast(amp: object, device: torch.device, *, training: bool = False) -> AbstractContextManager:
    """The autocast context for ``amp`` on ``device`` (a no-op context when off)."""
    dtype = amp_dtype(amp, device, training=training)
    return nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)
