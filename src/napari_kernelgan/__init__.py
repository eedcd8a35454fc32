"""Blind SR-kernel estimation (KernelGAN) and kernel-aware super-resolution, for napari and scripts.

``import napari_kernelgan`` loads no Qt, napari or magicgui; the widgets are
imported only when napari asks for them.
"""
from .api import (blind_super_resolve, drive, estimate_kernel, iter_blind_super_resolve, iter_estimate_kernel,
                  iter_super_resolve, super_resolve)
from .io import read_image, read_kernel, write_image, write_kernel
from .physics import analytic_x4, degrade
from .types import Cancelled, KernelEstimate, Progress, SRResult

__version__ = "0.1.0"

__all__ = [
    "__version__", "estimate_kernel", "iter_estimate_kernel", "super_resolve", "iter_super_resolve",
    "blind_super_resolve", "iter_blind_super_resolve", "drive", "read_kernel", "write_kernel", "read_image",
    "write_image", "degrade", "analytic_x4", "KernelEstimate", "SRResult", "Progress", "Cancelled",
]
