"""Spatially varying blur as a product-convolution operator.

``A x = Σ_t ((w_t ⊙ x) ⋆ k_t)[::s, ::s]``: the image is split by smooth weights
``w_t`` that sum to one at every pixel (a partition of unity), each part is
blurred by its own kernel and the parts are added (Nagy & O'Leary 1998; as
deepinv's ``SpaceVaryingBlur``). Between two tile centres the blur is the
linear blend of their kernels; with one kernel everywhere it is exactly the
uniform :class:`~napari_kernelgan.physics.operators.Degradation`.

Geometry: kernels sit on a grid of tile centres given in **LR (input) pixels**,
``centres_y`` (gy,) and ``centres_x`` (gx,), increasing. An LR pixel ``u`` covers
HR pixels centred at ``s·u + (s − 1)/2`` (the subsampling convention of
:mod:`~napari_kernelgan.physics.conventions`), which is where its weights are
evaluated on the HR grid. The weights are separable tents (bilinear
interpolation between centres, constant beyond the outer ones).

All parts are blurred in one grouped convolution (one group per tile), not a
loop over tiles.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BadInputError
from .conventions import kernel_for_subsampling
from .grid import hr_coordinates, tent_weights
from .operators import Degradation, _check_image

__all__ = ["SpaceVaryingDegradation", "degrade_varying"]


class SpaceVaryingDegradation:
    """``A x = Σ_t ((w_t ⊙ x) ⋆ k_t)↓s`` for stored kernels ``(gy, gx, kh, kw)`` on a grid of tile centres.

    ``centres_y`` / ``centres_x`` in LR pixels; ``padding`` as
    :class:`~napari_kernelgan.physics.operators.Degradation`. Tensors are
    (..., H, W) at HR resolution; leading axes are batched.
    """

    def __init__(self, kernels: np.ndarray, centres_y: np.ndarray, centres_x: np.ndarray, scale: int,
                 padding: str = "reflect") -> None:
        k = np.asarray(kernels, dtype=np.float64)
        if k.ndim != 4:
            raise BadInputError(f"kernels must be (gy, gx, kh, kw), got shape {k.shape}")
        self.centres_y = np.asarray(centres_y, dtype=np.float64).ravel()
        self.centres_x = np.asarray(centres_x, dtype=np.float64).ravel()
        if k.shape[:2] != (self.centres_y.size, self.centres_x.size):
            raise BadInputError(f"{k.shape[0]}×{k.shape[1]} kernels do not match {self.centres_y.size}×"
                                f"{self.centres_x.size} tile centres")
        self.grid = k.shape[:2]
        self._pad_op = Degradation(k[0, 0], scale, padding)  # the boundary handling, shared with the uniform operator
        self.scale = self._pad_op.scale
        if k.shape[2] != k.shape[3] or k.shape[2] % 2 == 0:
            raise BadInputError(f"tile kernels must be square with an odd side, got {k.shape[2]}×{k.shape[3]}")
        flat = k.reshape(-1, *k.shape[2:])
        # (T, side, side) in the applied phase; every tile the same size, so one grouped convolution does all.
        self._kernels = np.stack([kernel_for_subsampling(kk, self.scale) if self.scale > 1 else kk for kk in flat])
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _tensors(self, hr_shape: tuple[int, int], like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (tuple(hr_shape), like.dtype, like.device)
        if key not in self._cache:
            wy = tent_weights(self.centres_y, hr_coordinates(hr_shape[0], self.scale))
            wx = tent_weights(self.centres_x, hr_coordinates(hr_shape[1], self.scale))
            w = (wy[:, None, :, None] * wx[None, :, None, :]).reshape(-1, hr_shape[0], hr_shape[1])
            self._cache[key] = (torch.as_tensor(w, dtype=like.dtype, device=like.device),
                                torch.as_tensor(self._kernels[:, None], dtype=like.dtype, device=like.device))
        return self._cache[key]

    def weights(self, hr_shape: tuple[int, int]) -> np.ndarray:
        """(gy, gx, H, W) partition-of-unity weights on an HR grid of ``hr_shape``."""
        w, _ = self._tensors(hr_shape, torch.zeros(1, dtype=torch.float64))
        return w.numpy().reshape(self.grid + tuple(hr_shape))

    def _apply(self, x: torch.Tensor, stride: int) -> torch.Tensor:
        x = _check_image(x)
        w, kern = self._tensors(tuple(x.shape[-2:]), x)
        t, side = kern.shape[0], kern.shape[-1]
        lead = x.shape[:-2]
        parts = x.reshape((-1, 1) + x.shape[-2:]) * w[None]                 # (B, T, H, W)
        padded = self._pad_op._pad(parts, side, side)
        out = F.conv2d(padded, kern, stride=stride, groups=t).sum(1)       # one group per tile
        return out.reshape(lead + out.shape[-2:])

    def blur(self, x: torch.Tensor) -> torch.Tensor:
        """The spatially varying blur at full resolution (``A`` before the subsampling)."""
        return self._apply(x, 1)

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802 - the operator's usual name
        """``Σ_t ((w_t ⊙ x) ⋆ k_t)[::s, ::s]``."""
        return self._apply(x, self.scale)

    def A_adjoint(self, y: torch.Tensor, hr_shape: tuple[int, int] | None = None) -> torch.Tensor:  # noqa: N802
        """Adjoint of :meth:`A` onto an HR image of ``hr_shape`` (default ``(s·h, s·w)``)."""
        y = _check_image(y, "LR image")
        s = self.scale
        hr = tuple(int(v) for v in (hr_shape if hr_shape is not None else (y.shape[-2] * s, y.shape[-1] * s)))
        if (-(-hr[0] // s), -(-hr[1] // s)) != tuple(y.shape[-2:]):
            raise BadInputError(f"an LR image of {tuple(y.shape[-2:])} is not the ×{s} degradation of an HR "
                                f"image of {hr}")
        w, kern = self._tensors(hr, y)
        t, side = kern.shape[0], kern.shape[-1]
        top, bottom, left, right = self._pad_op._margins(side, side)
        padded = (hr[0] + top + bottom, hr[1] + left + right)
        lead = y.shape[:-2]
        yy = y.reshape((-1, 1) + y.shape[-2:]).expand(-1, t, -1, -1)
        g = F.conv_transpose2d(yy, kern, stride=s, groups=t)
        g = F.pad(g, (0, padded[1] - g.shape[-1], 0, padded[0] - g.shape[-2]))
        g = self._pad_op._pad_adjoint(g, hr, side, side)
        out = (g * w[None]).sum(1)
        return out.reshape(lead + hr)


def degrade_varying(hr: np.ndarray, kernels: np.ndarray, centres_y: np.ndarray, centres_x: np.ndarray, scale: int,
                    mode: str = "reflect") -> np.ndarray:
    """Degrade a (H, W) or (H, W, C) image with a spatially varying blur (see the module).

    Computed in float32 (PyTorch's CPU convolution has no fast float64 path; the rounding, ~1e-7
    relative, is far below any image's noise) and returned as float64.
    """
    img = np.asarray(hr, dtype=np.float64)
    if img.ndim not in (2, 3):
        raise BadInputError(f"expected an (H, W) or (H, W, C) image, got shape {img.shape}")
    op = SpaceVaryingDegradation(kernels, centres_y, centres_x, scale, mode)
    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(img, -1, 0) if img.ndim == 3 else img, dtype=np.float32))
    out = op.A(x).numpy().astype(np.float64)
    return np.ascontiguousarray(np.moveaxis(out, 0, -1) if img.ndim == 3 else out)
