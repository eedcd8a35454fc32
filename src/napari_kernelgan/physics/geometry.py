"""The 8 dihedral transforms of an image's last two axes, for numpy arrays and torch tensors.

Degrading ``T(x)`` with ``T(k)`` is ``T`` of degrading ``x`` with ``k`` (square
grids, see :mod:`napari_kernelgan.physics.conventions`), which is what
self-ensembles and augmentations rely on. numpy only at import time.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, "torch.Tensor")

__all__ = ["dihedral", "undo_dihedral"]


def dihedral(x: ArrayOrTensor, t: int) -> ArrayOrTensor:
    """Transform ``t`` in 0..7 of the last two axes: rotate by ``t % 4`` quarter turns, then
    mirror left-right when ``t >= 4``. numpy input gives a view."""
    if isinstance(x, np.ndarray):
        y = np.rot90(x, t % 4, axes=(-2, -1))
        return y[..., ::-1] if t >= 4 else y
    import torch

    y = torch.rot90(x, t % 4, dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if t >= 4 else y


def undo_dihedral(x: ArrayOrTensor, t: int) -> ArrayOrTensor:
    """Inverse of :func:`dihedral`."""
    if isinstance(x, np.ndarray):
        y = x[..., ::-1] if t >= 4 else x
        return np.rot90(y, -(t % 4), axes=(-2, -1))
    import torch

    y = torch.flip(x, dims=(-1,)) if t >= 4 else x
    return torch.rot90(y, -(t % 4), dims=(-2, -1))
