"""Physics of the degradation: conventions, the forward model, resizing, kernels, metrics and optical PSFs.

Importing this package loads numpy and scipy only. The torch operator
(:class:`~.operators.Degradation`, :class:`~.operators.ProxL2`) is loaded on
first access, and the numpy wrappers import torch when first called.
"""
from __future__ import annotations

from typing import Any

from .conventions import (
    CENTRING,
    ORIENTATION,
    SUBSAMPLING,
    analytic_x4,
    centre_kernel,
    centre_of_mass,
    kernel_for_scale,
    kernel_for_subsampling,
    pad_to,
    support_side,
    to_convolution,
    validate_kernel,
)
from .degrade import blur, degrade, degrade_adjoint
from .geometry import dihedral, undo_dihedral
from .kernels import constant_gaussian, gaussian_from_covariance, gaussian_kernel, random_div2krk_kernel
from .metrics import image_psnr, image_ssim, kernel_kcov, kernel_l1, kernel_psnr, rgb_to_y
from .optics import Optics, psf_2d, psf_3d, support_for
from .resize import cubic, imresize, resize_tensor, resize_weights

_TORCH_NAMES = {"Degradation", "ProxL2", "PADDINGS"}

__all__ = [
    "ORIENTATION", "CENTRING", "SUBSAMPLING", "analytic_x4", "centre_kernel", "centre_of_mass",
    "kernel_for_subsampling", "kernel_for_scale", "pad_to", "to_convolution", "validate_kernel", "blur", "degrade",
    "degrade_adjoint", "dihedral", "undo_dihedral", "cubic", "imresize", "resize_tensor", "resize_weights",
    "constant_gaussian", "gaussian_from_covariance", "gaussian_kernel", "random_div2krk_kernel", "image_psnr",
    "image_ssim", "kernel_kcov", "kernel_l1", "kernel_psnr", "rgb_to_y", "Optics", "psf_2d", "psf_3d",
    "support_for", "support_side", *sorted(_TORCH_NAMES),
]


def __getattr__(name: str) -> Any:
    # The operator needs torch; keep ``import napari_kernelgan.physics`` free of it.
    if name in _TORCH_NAMES:
        from . import operators

        return getattr(operators, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
