"""Blind SR-kernel estimation (KernelGAN) and kernel-aware super-resolution, for napari and scripts.

``import napari_kernelgan`` is cheap: it loads no Qt, napari or magicgui, and
no PyTorch until a function that computes is first used (the names below are
resolved on first access).
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "estimate_kernel": "api", "iter_estimate_kernel": "api", "super_resolve": "api", "iter_super_resolve": "api",
    "blind_super_resolve": "api", "iter_blind_super_resolve": "api", "drive": "api",
    "estimate_kernel_map": "kernel_map", "iter_estimate_kernel_map": "kernel_map", "KernelField": "fields",
    "read_kernel": "io", "write_kernel": "io", "read_image": "io", "write_image": "io",
    "degrade": "physics", "analytic_x4": "physics", "degrade_varying": "physics.varying",
    "Optics": "physics", "psf_2d": "physics", "psf_3d": "physics", "psf_to_kernel": "physics.measured",
    "read_psf": "measured_psf",
    "KernelEstimate": "types", "SRResult": "types", "Progress": "types",
    "Cancelled": "errors", "KernelGANError": "errors", "BadInputError": "errors", "BadOptionError": "errors",
    "WeightsMissingError": "errors",
    "ESTIMATORS": "registry", "SR_METHODS": "registry", "register": "registry",
    "estimate_psf3d": "api", "iter_estimate_psf3d": "api", "super_resolve_axial": "api",
    "iter_super_resolve_axial": "api", "AxialPSF": "api", "AxialResult": "api", "write_psf3d": "api",
    "read_psf3d": "api",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_kernelgan' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
