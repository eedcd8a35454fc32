"""Saving kernel layers as ``.mat`` (key ``Kernel``), ``.npy`` or ``.tif``.

Files are written atomically by :func:`napari_kernelgan.io.write_kernel`.
napari may route any image layer saved as ``.tif`` or ``.npy`` here; layers
that are not kernels are then written as plain images (TIFF through napari's
own image writer, ``.npy`` with numpy), unchanged.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .io import atomic_path, write_kernel


def is_kernel_layer(data: Any, meta: dict[str, Any]) -> bool:
    """A 2-D, odd-sized, non-negative layer, or one whose metadata names a kernel orientation."""
    if meta.get("multiscale") or meta.get("rgb"):
        return False
    arr = np.asarray(data)
    if arr.ndim != 2:
        return False
    if "orientation" in (meta.get("metadata") or {}):
        return True
    return arr.shape[0] % 2 == 1 and arr.shape[1] % 2 == 1 and max(arr.shape) <= 75 and float(arr.min()) >= 0


def write_kernel_layer(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: a kernel layer → ``path`` (.mat, .npy, .tif/.tiff)."""
    suffix = Path(path).suffix.lower()
    if is_kernel_layer(data, meta):
        return [str(write_kernel(path, np.asarray(data)))]
    if suffix == ".mat":
        raise ValueError(f"layer {meta.get('name', '')!r} is not a 2-D kernel; only kernels are saved as .mat")
    if suffix == ".npy":
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.asarray(data[0] if meta.get("multiscale") else data))
        return [str(path)]
    from napari_builtins.io import napari_write_image

    written = napari_write_image(path, data, meta)
    return [written] if written else []
