"""The degradation and its adjoint on numpy images: thin wrappers of :class:`~.operators.Degradation`.

See :mod:`napari_kernelgan.physics.conventions` for orientation, centring and
subsampling phase, and :mod:`napari_kernelgan.physics.operators` for the
boundary names (``mode`` here; scipy.ndimage's names are accepted). Images are
(H, W) or (H, W, C); results are float64. torch is imported on the first call,
so importing this module stays cheap.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BadInputError

__all__ = ["blur", "degrade", "degrade_adjoint"]


def _run(image: np.ndarray, k: np.ndarray, scale: int, mode: str, method: str, **kwargs: Any) -> np.ndarray:
    import torch

    from .operators import Degradation

    img = np.asarray(image, dtype=np.float64)
    if img.ndim not in (2, 3):
        raise BadInputError(f"expected an (H, W) or (H, W, C) image, got shape {img.shape}")
    op = Degradation(k, scale, mode)
    # Channels become a leading (batched) axis.
    x = torch.from_numpy(np.moveaxis(img, -1, 0) if img.ndim == 3 else img)
    out = getattr(op, method)(x, **kwargs).numpy()
    return np.ascontiguousarray(np.moveaxis(out, 0, -1) if img.ndim == 3 else out)


def blur(image: np.ndarray, k: np.ndarray, scale: int = 1, mode: str = "reflect") -> np.ndarray:
    """Correlate a (H, W) or (H, W, C) image with a centred kernel, shifted for ``scale``."""
    return _run(image, k, scale, mode, "blur")


def degrade(hr: np.ndarray, k: np.ndarray, scale: int, mode: str = "reflect") -> np.ndarray:
    """Blur ``hr`` with the centred kernel ``k`` and keep every ``scale``-th pixel (float64)."""
    return _run(hr, k, scale, mode, "A")


def degrade_adjoint(lr: np.ndarray, k: np.ndarray, scale: int, hr_shape: tuple[int, ...],
                    mode: str = "constant") -> np.ndarray:
    """Adjoint of :func:`degrade` (zero boundary by default) onto an HR image of ``hr_shape[:2]``.

    ``<degrade(x, mode=m), y> == <x, degrade_adjoint(y, mode=m)>``.
    """
    return _run(lr, k, scale, mode, "A_adjoint", hr_shape=tuple(hr_shape[:2]))
