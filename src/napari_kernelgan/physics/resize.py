"""MATLAB-compatible bicubic resizing, for numpy arrays and torch tensors.

:func:`imresize` follows MATLAB's ``imresize(..., 'bicubic')``: Keys' cubic
with ``a = -0.5`` (:func:`cubic`), output length ``ceil(n · scale)``, output
pixel ``x`` (1-based) sampled at input position
``u = x / scale + 0.5 · (1 − 1 / scale)``, symmetric boundary, and, when
shrinking, the kernel widened by ``1 / scale`` (antialiasing). That
centre-to-centre mapping is the field-of-view convention of
:mod:`napari_kernelgan.physics.conventions`. :func:`resize_tensor` is the same
resize on a tensor; both use the taps of :func:`resize_weights`.

numpy only at import time: torch is imported by :func:`resize_tensor` when called.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["cubic", "resize_weights", "imresize", "resize_tensor"]


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with ``a = -0.5`` (MATLAB's ``cubic``)."""
    ax = np.abs(np.asarray(x, dtype=np.float64))
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


def resize_weights(in_length: int, out_length: int, scale: float,
                   antialiasing: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Taps of MATLAB's 1-D bicubic resize: ``(weights, indices)``, both (out_length, P).

    ``indices`` are 0-based input positions, already reflected symmetrically
    at the borders; each weight row sums to 1.
    """
    width = 4.0
    if scale < 1 and antialiasing:
        def kernel(t: np.ndarray) -> np.ndarray:
            return scale * cubic(scale * t)
        width = width / scale
    else:
        kernel = cubic
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    weights = kernel(u[:, None] - idx)
    weights /= weights.sum(axis=1, keepdims=True)
    # ``idx`` is 1-based here, as in MATLAB; map it through the symmetric
    # extension [1..n, n..1] and to 0-based positions.
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    idx = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_length)]
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], idx[:, keep]


def _resize_order(scales: Sequence[float]) -> list[int]:
    """MATLAB resizes the axis with the smaller scale first (rows on a tie)."""
    return sorted(range(2), key=lambda i: scales[i])


def _resize_axis(x: np.ndarray, axis: int, out_length: int, scale: float, antialiasing: bool) -> np.ndarray:
    weights, idx = resize_weights(x.shape[axis], out_length, scale, antialiasing)
    # Resized axis first: each tap then gathers whole contiguous slabs.
    moved = np.ascontiguousarray(np.moveaxis(x, axis, 0))
    wdt = moved.dtype if np.issubdtype(moved.dtype, np.floating) else np.float64
    w = weights.astype(wdt).reshape(weights.shape + (1,) * (moved.ndim - 1))
    out = moved[idx[:, 0]] * w[:, 0]
    for p in range(1, idx.shape[1]):
        out += moved[idx[:, p]] * w[:, p]
    return np.moveaxis(out, 0, axis)


def imresize(image: np.ndarray, scale: float | None = None, *, output_shape: Sequence[int] | None = None,
             axes: tuple[int, int] = (0, 1), antialiasing: bool = True) -> np.ndarray:
    """Bicubic resize as MATLAB's ``imresize(image, scale)`` (float in, float out).

    ``image``: any array whose ``axes`` (default the first two, i.e. ``(H, W)``
    or ``(H, W, C)``; use ``axes=(-2, -1)`` for ``(..., H, W)``) are resized.
    Give ``scale`` (e.g. ``2`` or ``0.5``; output ``ceil(n · scale)``) or
    ``output_shape`` (per-axis scale ``out / in``). Integer input is
    computed in float64 and returned as float64, unrounded.
    """
    x = np.asarray(image)
    if not (np.issubdtype(x.dtype, np.floating)):
        x = x.astype(np.float64)
    axes = tuple(a % x.ndim for a in axes)
    if len(axes) != 2 or axes[0] == axes[1]:
        raise ValueError(f"axes must name two different axes, got {axes}")
    in_shape = [x.shape[a] for a in axes]
    if output_shape is None:
        if scale is None or not scale > 0:
            raise ValueError(f"give a positive scale or an output_shape, got scale={scale!r}")
        scales = [float(scale)] * 2
        out_shape = [int(math.ceil(n * float(scale) - 1e-9)) for n in in_shape]
    else:
        out_shape = [int(v) for v in output_shape]
        if len(out_shape) != 2 or min(out_shape) < 1:
            raise ValueError(f"output_shape must be two positive lengths, got {output_shape!r}")
        scales = [o / n for o, n in zip(out_shape, in_shape)]
    out = x
    for i in _resize_order(scales):
        out = _resize_axis(out, axes[i], out_shape[i], scales[i], antialiasing)
    return out


def resize_tensor(x: torch.Tensor, shape: tuple[int, int], *, antialiasing: bool = True) -> torch.Tensor:
    """:func:`imresize` of a (..., H, W) tensor to ``shape`` (its dtype and device; differentiable)."""
    import torch

    out = x
    scales = [shape[0] / x.shape[-2], shape[1] / x.shape[-1]]
    for i in _resize_order(scales):
        axis = x.dim() - 2 + i
        weights, idx = resize_weights(out.shape[axis], shape[i], scales[i], antialiasing)
        w = torch.as_tensor(weights, dtype=x.dtype, device=x.device)
        view = [1] * out.dim()
        view[axis] = shape[i]
        acc = None
        for p in range(idx.shape[1]):
            term = out.index_select(axis, torch.as_tensor(idx[:, p], device=x.device)) * w[:, p].view(view)
            acc = term if acc is None else acc + term
        out = acc
    return out
