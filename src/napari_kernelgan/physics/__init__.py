"""Physics of the degradation: conventions, the forward model, kernels and metrics (numpy only)."""
from .conventions import (CENTRING, ORIENTATION, SUBSAMPLING, analytic_x4, centre_kernel, centre_of_mass,
                          kernel_for_subsampling, pad_to, to_convolution, validate_kernel)
from .degrade import blur, degrade, degrade_adjoint
from .kernels import constant_gaussian, gaussian_from_covariance, gaussian_kernel, random_div2krk_kernel
from .metrics import (image_psnr, image_ssim, kernel_kcov, kernel_l1, kernel_psnr, rgb_to_y)

__all__ = [
    "ORIENTATION", "CENTRING", "SUBSAMPLING", "analytic_x4", "centre_kernel", "centre_of_mass",
    "kernel_for_subsampling", "pad_to", "to_convolution", "validate_kernel", "blur", "degrade",
    "degrade_adjoint", "constant_gaussian", "gaussian_from_covariance", "gaussian_kernel", "random_div2krk_kernel", "image_psnr",
    "image_ssim", "kernel_kcov", "kernel_l1", "kernel_psnr", "rgb_to_y",
]
