"""The 3-D PSF as a file deconvolution tools read: an ImageJ hyperstack TIFF, float32 ``(z, y, x)``.

The voxel size travels in the file the way Fiji and tifffile read it: the lateral pixel size as the TIFF
resolution (pixels per µm), the z step as ImageJ's ``spacing``, ``unit=um``.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..errors import BadInputError, MissingFileError, Param
from ..io import atomic_path
from .psf import AxialPSF

__all__ = ["write_psf3d", "read_psf3d"]


def write_psf3d(path: str | os.PathLike, psf: AxialPSF, *, z_step_um: float | None = None) -> Path:
    """Write ``psf.volume(z_step_um)`` (default: the stack's z step) as an ImageJ TIFF, float32 ``(z, y, x)``,
    with its pixel size and z spacing in µm; atomically (no partial file on failure). Returns the path."""
    import tifffile

    step = psf.z_step_um if z_step_um is None else float(z_step_um)
    if not math.isfinite(step) or step <= 0:
        raise BadInputError(Param("z_step_um", z_step_um), " must be a positive z step in µm")
    volume = np.ascontiguousarray(psf.volume(step), dtype=np.float32)
    path = Path(path)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, volume, imagej=True, resolution=(1.0 / psf.pixel_um, 1.0 / psf.pixel_um),
                         metadata={"axes": "ZYX", "spacing": step, "unit": "um"})
    return path


def read_psf3d(path: str | os.PathLike) -> tuple[np.ndarray, float, float]:
    """Read a 3-D PSF TIFF: ``(array float32 (z, y, x), pixel_um, z_step_um)``.

    A file that does not state its voxel size (lateral resolution in µm and the ImageJ z ``spacing``) is
    refused: a PSF without its voxel size cannot be matched to a stack.
    """
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"no PSF file at {path}")
    with tifffile.TiffFile(path) as tif:
        array = np.asarray(tif.asarray(), dtype=np.float32)
        meta = tif.imagej_metadata or {}
        tags = tif.pages[0].tags
        res = tags.get("XResolution")
        unit = str(meta.get("unit", "")).replace("\\u00B5", "µ").lower()
    if array.ndim != 3:
        raise BadInputError(f"{path.name} holds an array of shape {array.shape}; a 3-D PSF is (z, y, x)")
    spacing = meta.get("spacing")
    pixel = None
    if res is not None:
        num, den = res.value
        pixel = den / num if num else None
    if unit not in ("um", "µm", "micron", "microns") or pixel is None or spacing is None:
        raise BadInputError(f"{path.name} does not state its voxel size (lateral pixel size and z spacing in µm, "
                            "as ImageJ writes them); a PSF cannot be matched to a stack without it")
    pixel, spacing = float(pixel), float(spacing)
    if not (math.isfinite(pixel) and pixel > 0 and math.isfinite(spacing) and spacing > 0):
        raise BadInputError(f"{path.name} states a voxel size that is not positive "
                            f"({pixel:g} × {spacing:g} µm)")
    return array, pixel, spacing
