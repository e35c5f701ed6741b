"""Restoration networks, built by name through a registry.

``create_model("nafnet", width=32)`` builds a network; ``model_config(model)`` says how to rebuild it
(stored in checkpoints); ``list_models()`` lists the names. Registered architectures:

- ``unet``: the reference paper's small auto-encoder baseline (Section II), exactly.
- ``rcan``: the reference paper's RCAN-like network (Section III-A), exactly.
- ``nafnet`` (= ``nafnet_w16``), ``nafnet_w32``, ``nafnet_deep``: NAFNet-style U-Net, the efficient
  default.

Every model maps B×C×H×W images in [0, 1] to restored images of the same size, for any H and W, and
exposes ``size_multiple``, ``in_channels``, ``config`` and ``set_local_pool(train_size)``.
"""

from __future__ import annotations

# Importing the architecture modules registers them.
from apir.models import nafnet, rcan, unet  # noqa: F401
from apir.models.registry import create_model, list_models, model_config, register_model

__all__ = ["create_model", "list_models", "model_config", "register_model"]
