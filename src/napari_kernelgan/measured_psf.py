"""Measured PSF files (bead images and bead stacks with their pixel size) as SR kernels.

A bead imaged at the camera's pixel size is a PSF, not yet an SR kernel: the kernel lives on the SR grid
(pixel = the image's pixel / scale). :func:`read_psf` reads a PSF file with its pixel size (ImageJ calibration
or OME ``PhysicalSize``, converted to µm); :func:`kernel_from_psf_file` makes the kernel with
:func:`napari_kernelgan.physics.measured.measure_psf`, the pixel sizes from the files' metadata or given.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BadInputError, Param
from .physics.measured import MASS, MeasuredKernel, measure_psf
from .vocabulary import MAX_KERNEL_SIDE

__all__ = ["PSFFile", "read_psf", "image_pixel_size", "kernel_from_psf_file", "to_um", "is_psf_file"]

_UM_PER = {"µm": 1.0, "um": 1.0, "μm": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
           "micrometre": 1.0, "\\u00B5m": 1.0, "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3, "mm": 1e3,
           "millimeter": 1e3, "millimetre": 1e3, "m": 1e6, "cm": 1e4}


def to_um(value: float, unit: str | None) -> float | None:
    """``value`` in ``unit`` as µm (``None`` for a unit that is not a length: ImageJ's ``pixel``...)."""
    if unit is None or unit == "":
        return float(value)  # OME's default unit, and what a calibrated ImageJ file without a unit means
    factor = _UM_PER.get(str(unit).strip().lower())
    return None if factor is None else float(value) * factor


@dataclass(frozen=True)
class PSFFile:
    """A PSF read from a file: ``data`` (y, x) or (z, y, x), ``pixel_um`` its lateral pixel in µm (``None`` when
    the file does not say)."""

    path: Path
    data: np.ndarray
    pixel_um: float | None


def _lateral_um(sizes: dict[str, float], units: dict[str, str], name: str) -> float | None:
    if "X" not in sizes:
        return None
    x = to_um(sizes["X"], units.get("X"))
    y = to_um(sizes.get("Y", sizes["X"]), units.get("Y", units.get("X")))
    if x is None or y is None:
        return None
    if abs(x - y) > 1e-3 * max(x, y):
        raise BadInputError(f"{name} has rectangular pixels ({y:.4g} × {x:.4g} µm); resample it to square "
                            "pixels first")
    return x


def read_psf(path: str | os.PathLike) -> PSFFile:
    """Read a bead image or (z, y, x) bead stack with its lateral pixel size in µm, when the file has one.

    TIFF: the first series, its pixel size from ImageJ or OME metadata (as the image reader takes it); a
    channel or time axis is refused (save one bead stack). ``.npy`` / ``.mat``: the array alone (no size).
    """
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff") and path.is_file():
        from .stacks import open_image, tiff_kind

        if tiff_kind(path) not in ("ome", "imagej"):  # no axes, no pixel size: the array as it is
            from .io import read_kernel_array

            return PSFFile(path, read_kernel_array(path), None)
        src = open_image(path, lazy=False)
        axes = src.meta.axes
        data = np.asarray(src.data)
        extra = [a for a in axes if a not in "ZYX" and data.shape[axes.index(a)] > 1]
        if extra:
            raise BadInputError(f"{path.name} has {', '.join(extra)} axes ({axes}, shape {data.shape}): a PSF "
                                "file holds one bead image or one (z, y, x) bead stack; save one channel")
        keep = [i for i, a in enumerate(axes) if a in "ZYX" or data.shape[i] > 1]
        data = data.reshape([data.shape[i] for i in keep])
        pixel = _lateral_um(src.meta.pixel_size, src.meta.unit, path.name)
        return PSFFile(path, data, pixel)
    from .io import read_kernel_array

    return PSFFile(path, read_kernel_array(path), None)


def image_pixel_size(path: str | os.PathLike) -> float | None:
    """The lateral pixel size of an image file in µm from its ImageJ / OME metadata (``None`` without one)."""
    from .stacks import open_image, tiff_kind

    if Path(path).suffix.lower() not in (".tif", ".tiff") or tiff_kind(path) not in ("ome", "imagej"):
        return None  # plain TIFFs, PNG and JPEG carry no pixel size
    src = open_image(path, lazy=True)
    return _lateral_um(src.meta.pixel_size, src.meta.unit, Path(path).name)


def is_psf_file(path: str | os.PathLike, kernel_pixel_size: float | None = None) -> bool:
    """Whether a ``--kernel`` file is a measured PSF to resample rather than a kernel on the SR grid: a pixel size
    was given for it, or its metadata has one, or it is a 3-D stack."""
    if kernel_pixel_size is not None:
        return True
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return False
    psf = read_psf(path)
    return psf.pixel_um is not None or psf.data.ndim == 3


def kernel_from_psf_file(path: str | os.PathLike, scale: int, *, pixel_size: float | None,
                         kernel_pixel_size: float | None = None, mass: float = MASS,
                         max_side: int = MAX_KERNEL_SIDE) -> MeasuredKernel:
    """The SR kernel for ×``scale`` from a PSF file (:func:`read_psf`, :func:`~.physics.measured.measure_psf`).

    ``pixel_size``: the image's pixel in µm; ``kernel_pixel_size``: the PSF's, in µm, instead of its file's.
    A size neither given nor in the file is a :class:`~napari_kernelgan.errors.BadInputError` naming the
    parameter to give.
    """
    psf = read_psf(path)
    size = kernel_pixel_size if kernel_pixel_size is not None else psf.pixel_um
    if size is None:
        raise BadInputError("the PSF file does not say its pixel size (no ImageJ calibration or OME PhysicalSize): "
                            "give it in µm with ", Param("kernel_pixel_size", bare=True))
    if pixel_size is None:
        raise BadInputError(f"the image's pixel size is needed to put the PSF on the ×{scale} grid and the image "
                            "does not say it: give it in µm with ", Param("pixel_size", bare=True))
    # Messages name "the PSF": the command line puts the file's name before them.
    return measure_psf(psf.data, float(size), float(pixel_size), int(scale), mass=mass, max_side=max_side)
