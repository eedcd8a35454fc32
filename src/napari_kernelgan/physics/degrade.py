"""The degradation ``LR = (HR ⋆ shift(k))[::s, ::s]`` and its adjoint.

See :mod:`napari_kernelgan.physics.conventions` for orientation, centring and
subsampling phase.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .conventions import kernel_for_subsampling


def _per_channel(fn, image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return fn(image)
    return np.stack([fn(image[..., c]) for c in range(image.shape[-1])], axis=-1)


def blur(image: np.ndarray, k: np.ndarray, scale: int = 1, mode: str = "reflect") -> np.ndarray:
    """Correlate a (H, W) or (H, W, C) image with a centred kernel, shifted for ``scale``."""
    kk = kernel_for_subsampling(k, scale) if scale > 1 else np.asarray(k, dtype=np.float64)
    img = np.asarray(image, dtype=np.float64)
    return _per_channel(lambda ch: ndimage.correlate(ch, kk, mode=mode), img)


def degrade(hr: np.ndarray, k: np.ndarray, scale: int, mode: str = "reflect") -> np.ndarray:
    """Blur ``hr`` with the centred kernel ``k`` and keep every ``scale``-th pixel (float64)."""
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    return blur(hr, k, scale, mode=mode)[::scale, ::scale]


def degrade_adjoint(lr: np.ndarray, k: np.ndarray, scale: int, hr_shape: tuple[int, int]) -> np.ndarray:
    """Adjoint of :func:`degrade` with zero boundary (``mode='constant'``).

    Zero-fill upsampling followed by convolution (the flipped correlation).
    ``<degrade(x, mode='constant'), y> == <x, degrade_adjoint(y)>``.
    """
    kk = kernel_for_subsampling(k, scale)

    def one(ch: np.ndarray) -> np.ndarray:
        up = np.zeros(hr_shape[:2])
        up[::scale, ::scale] = ch
        return ndimage.convolve(up, kk, mode="constant")

    return _per_channel(one, np.asarray(lr, dtype=np.float64))
