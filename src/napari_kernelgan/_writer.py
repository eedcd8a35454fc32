"""Saving kernel layers as ``.mat`` (key ``Kernel``), ``.npy`` or ``.tif``.

Files are written atomically by :func:`napari_kernelgan.io.write_kernel`.
napari may route any image layer saved as ``.tif`` or ``.npy`` here; layers
that are not kernels (by :func:`napari_kernelgan.layers.is_kernel`) are then
written as plain images (TIFF through napari's own image writer, ``.npy`` with
numpy), unchanged.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import BadInputError
from .io import atomic_path, write_kernel
from .layers import is_kernel


def is_kernel_layer(data: Any, meta: dict[str, Any]) -> bool:
    """Whether a layer data tuple (``data``, napari's ``meta``) is a kernel (:func:`.layers.is_kernel`)."""
    return is_kernel(data, meta.get("metadata"), rgb=bool(meta.get("rgb")), multiscale=bool(meta.get("multiscale")))


def write_kernel_layer(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: a kernel layer → ``path`` (.mat, .npy, .tif/.tiff)."""
    suffix = Path(path).suffix.lower()
    if is_kernel_layer(data, meta):
        return [str(write_kernel(path, np.asarray(data)))]
    if suffix == ".mat":
        raise BadInputError(f"layer {meta.get('name', '')!r} is not a 2-D kernel; only kernels are saved as .mat")
    if suffix == ".npy":
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.asarray(data[0] if meta.get("multiscale") else data))
        return [str(path)]
    from napari_builtins.io import napari_write_image

    written = napari_write_image(path, data, meta)
    return [written] if written else []
