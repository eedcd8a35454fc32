"""Reading kernel files into napari.

``.mat`` files are read when they hold a ``Kernel`` variable (or a single
variable), as the DIV2KRK / KernelGAN files do. ``.npy`` and ``.tif`` files
are claimed only when their content looks like a kernel (small, 2-D,
odd-sized, finite, non-negative); anything else is left to napari's image
readers. The manifest offers this reader only for ``.mat`` files and
``.npy``/``.tif`` files with ``kernel`` in their name, so opening ordinary
images never asks which reader to use.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .io import MAT_KEY, read_kernel
from .layers import KERNEL_COLORMAP, LayerDataTuple
from .physics.conventions import CENTRING, ORIENTATION

MAX_KERNEL_SIDE = 75
"""Largest side accepted as a kernel (×4 analytic kernels from 13×13 ×2 kernels are 37×37)."""

ReaderFunction = Callable[[Any], list[LayerDataTuple]]


def _shape_is_kernel(shape: tuple[int, ...]) -> bool:
    shape = tuple(n for n in shape if n != 1) if len(shape) > 2 else tuple(shape)
    return len(shape) == 2 and all(n % 2 == 1 and 3 <= n <= MAX_KERNEL_SIDE for n in shape)


def _values_are_kernel(arr: np.ndarray) -> bool:
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        return False
    a = np.asarray(arr, dtype=np.float64)
    return bool(np.all(np.isfinite(a)) and a.min() >= -1e-3 * max(a.max(), 1e-12) and a.sum() > 0)


def looks_like_kernel(path: str | os.PathLike) -> bool:
    """Whether ``path`` (.mat, .npy, .tif) holds something this package reads as a kernel.

    Only the header is read for ``.npy`` and ``.tif`` files unless the shape fits.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        return False
    try:
        if suffix == ".mat":
            from scipy.io import whosmat

            found = [(name, shape) for name, shape, _ in whosmat(path)]
            chosen = [s for n, s in found if n == MAT_KEY] or ([found[0][1]] if len(found) == 1 else [])
            return bool(chosen) and _shape_is_kernel(tuple(chosen[0]))
        if suffix == ".npy":
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            return _shape_is_kernel(arr.shape) and _values_are_kernel(np.asarray(arr))
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                if len(tif.series) != 1 or not _shape_is_kernel(tuple(tif.series[0].shape)):
                    return False
                return _values_are_kernel(tif.series[0].asarray())
    except Exception:
        # Unreadable or foreign content: not ours to claim.
        return False
    return False


def kernel_layer_data(path: str | os.PathLike) -> LayerDataTuple:
    """Read one kernel file (via :func:`napari_kernelgan.io.read_kernel`) as an image layer tuple."""
    path = Path(path)
    k = read_kernel(path)
    meta = {"kernel": k.tolist(), "orientation": ORIENTATION, "centring": CENTRING, "source_file": str(path)}
    return (k.astype(np.float32), {"name": path.stem, "colormap": KERNEL_COLORMAP, "metadata": meta,
                                   "interpolation2d": "nearest",
                                   "contrast_limits": [0.0, float(max(k.max(), 1e-12))]}, "image")


def get_reader(path: str | list[str]) -> ReaderFunction | None:
    """npe2 reader hook: a reader for kernel files, or ``None`` for anything else."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or not all(looks_like_kernel(p) for p in paths):
        return None
    return read_kernels


def read_kernels(path: str | list[str]) -> list[LayerDataTuple]:
    """Read one or several kernel files, one layer each."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    return [kernel_layer_data(p) for p in paths]
