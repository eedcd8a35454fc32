"""Data for the lazy-input tests: a stack with a known blur, and a Dask array of it that counts the slices it
computes. Dask is imported only when a counted array is made (the test skips, with a message, without it)."""
from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from napari_kernelgan.physics import degrade, gaussian_kernel

TRUE_K = gaussian_kernel(13, 1.6, 0.9, 0.5)
SIDE = 128


def blurred_stack() -> np.ndarray:
    """Six 128×128 uint8 crops of one blurred, ×2-downsampled image: one kernel for all."""
    lr = degrade(data.camera().astype(np.float64), TRUE_K, 2)  # 256×256
    crops = [lr[y:y + SIDE, x:x + SIDE] for y, x in ((0, 0), (0, 128), (128, 0), (128, 128), (64, 64), (32, 96))]
    return np.clip(np.round(np.stack(crops)), 0, 255).astype(np.uint8)


class Counted:
    """A Dask array of ``arr`` with one chunk per slice that records each slice it computes (``reads``)."""

    def __init__(self, arr: np.ndarray) -> None:
        da = pytest.importorskip("dask.array", reason="dask is not installed (the 'dask' extra)")
        self.reads: list[int] = []

        def load(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
            if block_info is not None and None in block_info:  # not Dask's probe of the output type
                self.reads.append(block_info[None]["chunk-location"][0])
            return block

        self.array = da.from_array(arr, chunks=(1,) + arr.shape[1:]).map_blocks(load, dtype=arr.dtype)
