"""Where a grid of tile centres puts its weight: numpy only, shared by kernel fields and the varying blur.

Tile centres are in **LR (input) pixels**. An LR pixel ``u`` covers HR pixels
centred at ``s·u + (s − 1)/2`` (the subsampling convention of
:mod:`~napari_kernelgan.physics.conventions`), so an HR pixel ``p`` sits at LR
coordinate ``(p − (s − 1)/2) / s`` (:func:`hr_coordinates`).
"""
from __future__ import annotations

import numpy as np

from ..errors import BadInputError

__all__ = ["tent_weights", "hr_coordinates"]


def tent_weights(centres: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """(n, len(coords)) linear-interpolation weights of ``coords`` between increasing ``centres``.

    Each column sums to one; beyond the first or last centre the nearest one takes all.
    """
    c = np.asarray(centres, dtype=np.float64).ravel()
    x = np.asarray(coords, dtype=np.float64).ravel()
    if c.size == 0 or np.any(np.diff(c) <= 0):
        raise BadInputError(f"tile centres must be a non-empty increasing sequence, got {c.tolist()}")
    out = np.zeros((c.size, x.size))
    if c.size == 1:
        out[0] = 1.0
        return out
    xc = np.clip(x, c[0], c[-1])
    i = np.clip(np.searchsorted(c, xc, side="right") - 1, 0, c.size - 2)
    t = (xc - c[i]) / (c[i + 1] - c[i])
    cols = np.arange(x.size)
    out[i, cols] = 1.0 - t
    out[i + 1, cols] += t
    return out


def hr_coordinates(n_hr: int, scale: int) -> np.ndarray:
    """The LR coordinate of each of ``n_hr`` HR pixels (the inverse of ``hr = s·u + (s − 1)/2``)."""
    return (np.arange(n_hr, dtype=np.float64) - (scale - 1) / 2.0) / scale
