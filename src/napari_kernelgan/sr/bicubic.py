"""The ``bicubic`` SR baseline: MATLAB-compatible bicubic interpolation.

The resize itself (:func:`imresize`, :func:`resize_weights`, :func:`cubic`)
lives in :mod:`napari_kernelgan.physics.resize` and is re-exported here.
"""
from __future__ import annotations

import time
from collections.abc import Generator

import numpy as np
import torch

from ..physics.resize import cubic, imresize, resize_weights
from ..registry import register
from ..types import Progress
from ..vocabulary import Stage

__all__ = ["cubic", "resize_weights", "imresize", "bicubic"]


@register("bicubic", kind="sr_method", summary="Bicubic interpolation (MATLAB imresize): the baseline; "
          "ignores the kernel", seeded=False, uses_kernel=False)
def bicubic(frames: np.ndarray, kernel: np.ndarray, scale: int, *, device: torch.device | None = None,
            seed: int = 0) -> Generator[Progress, None, np.ndarray]:
    """Bicubic interpolation (MATLAB ``imresize``): the customary baseline; ``kernel`` is ignored.

    Takes no options.
    """
    start = time.perf_counter()
    n = frames.shape[0]
    out = np.empty(frames.shape[:2] + (frames.shape[2] * scale, frames.shape[3] * scale), dtype=np.float32)
    for i in range(n):
        out[i] = imresize(np.asarray(frames[i], dtype=np.float32), scale, axes=(-2, -1))
        yield Progress(i + 1, n, time.perf_counter() - start, stage=Stage.SR, message=f"frame {i + 1}/{n}")
    return out
