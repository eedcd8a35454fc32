"""Building blocks shared by the SR methods.

* FFT forward model on a periodic grid, consistent with
  :func:`napari_kernelgan.physics.degrade` (``mode='wrap'``):
  :func:`kernel_otf`, :func:`fft_blur`, :func:`fft_degrade`,
  :func:`fft_degrade_adjoint`.
* :class:`DataStep` — the exact per-frequency solution of
  ``min_z ‖(z ⋆ k)↓s − y‖² + α‖z − x‖²`` (USRNet's data module, Zhang et al.
  CVPR 2020, eq. 7).
* :func:`reflect_pad_lr` / :func:`crop_hr` / :func:`fast_lr_length` — padding
  an LR image (to FFT-friendly sizes) so the periodic boundary of the FFT
  model falls outside the region that is kept, and cropping the HR result.
* :func:`iter_tiled` / :func:`tile_windows` — run a per-tile routine over all
  frames of an ``(N, C, H, W)`` stack with overlapping tiles, yielding
  :class:`~napari_kernelgan.types.Progress` once per tile, and assemble the
  ``(N, C, sH, sW)`` result.

All FFT helpers take torch tensors whose last two axes are (rows, columns);
leading axes (frames, channels) are batched. Transfer functions are half
spectra (``torch.fft.rfft2`` layout). The real dtype of the input (float32 or
float64) sets the precision.
"""
from __future__ import annotations

import time
from typing import Callable, Generator, TypeVar

import numpy as np
import torch
from scipy import fft as sp_fft

from ..physics.conventions import kernel_for_subsampling
from ..types import Progress

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

__all__ = [
    "kernel_otf", "fft_blur", "fft_degrade", "fft_degrade_adjoint", "DataStep",
    "fast_lr_length", "reflect_pad_lr", "crop_hr", "tile_windows", "iter_tiled",
]


# --------------------------------------------------------------------------- FFT forward model

def kernel_otf(kernel: np.ndarray, scale: int, shape: tuple[int, int], *,
               device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Transfer function of a stored (centred, correlation) kernel on a periodic ``shape`` grid.

    The kernel is first shifted for ``scale`` with
    :func:`~napari_kernelgan.physics.conventions.kernel_for_subsampling`
    (unshifted when ``scale == 1``), so that :func:`fft_degrade` equals
    ``physics.degrade(x, kernel, s, mode='wrap')``. Returns the half spectrum
    (``torch.fft.rfft2`` layout, complex, shape ``(H, W // 2 + 1)``) used by
    every helper here; ``dtype`` is the real precision.
    """
    kk = kernel_for_subsampling(kernel, scale) if scale > 1 else np.asarray(kernel, dtype=np.float64)
    kh, kw = kk.shape
    h, w = shape
    # Correlation with k is circular convolution with flip(k): tap (u, v) of the
    # flipped kernel goes to (u - kh//2, v - kw//2) modulo the grid (folded when
    # the kernel is larger than the grid, as periodic correlation does).
    rows = (np.arange(kh) - kh // 2) % h
    cols = (np.arange(kw) - kw // 2) % w
    psf = np.zeros((h, w))
    np.add.at(psf, (rows[:, None], cols[None, :]), kk[::-1, ::-1])
    return torch.fft.rfft2(torch.as_tensor(psf, dtype=dtype, device=device))


def fft_blur(x: torch.Tensor, otf: torch.Tensor) -> torch.Tensor:
    """Periodic correlation of ``x`` (..., H, W) with the kernel behind ``otf``."""
    return torch.fft.irfft2(torch.fft.rfft2(x) * otf, s=x.shape[-2:])


def fft_degrade(x: torch.Tensor, otf: torch.Tensor, scale: int) -> torch.Tensor:
    """``(x ⋆ k)[::s, ::s]`` on a periodic grid; ``otf`` from :func:`kernel_otf` with the same ``scale``."""
    return fft_blur(x, otf)[..., ::scale, ::scale]


def fft_degrade_adjoint(y: torch.Tensor, otf: torch.Tensor, scale: int) -> torch.Tensor:
    """Adjoint of :func:`fft_degrade`: zero-fill upsampling, then correlation with the flipped kernel."""
    shape = (y.shape[-2] * scale, y.shape[-1] * scale)
    up = torch.zeros(y.shape[:-2] + shape, dtype=y.dtype, device=y.device)
    up[..., ::scale, ::scale] = y
    return torch.fft.irfft2(torch.fft.rfft2(up) * otf.conj(), s=shape)


def _neg_index(n: int, device: torch.device) -> torch.Tensor:
    return (-torch.arange(n, device=device)) % n


class DataStep:
    """Exact solver of ``z = argmin_z ‖(z ⋆ k)↓s − y‖² + α‖z − x‖²`` on a periodic grid.

    With ``A = S·H`` (blur, then ``[::s, ::s]``), the minimiser is
    ``z = x + Aᵀ (A Aᵀ + α)⁻¹ (y − A x)``, and ``A Aᵀ`` is diagonal in the LR
    Fourier domain: the mean of the ``s × s`` aliased copies of ``|K|²``. This
    is the same solution as USRNet's data module (Zhang et al., CVPR 2020,
    eq. 7), written with real FFTs: one forward and one inverse HR transform
    per call.

    ``y``: (..., h, w) LR tensor; ``otf`` from :func:`kernel_otf` on the
    (s·h, s·w) grid. ``alpha`` (> 0) may be a float or a tensor broadcastable
    to (..., 1, 1), e.g. one weight per batch item.
    """

    def __init__(self, y: torch.Tensor, otf: torch.Tensor, scale: int) -> None:
        s = self.scale = int(scale)
        h, w = y.shape[-2:]
        self.lr_shape = (h, w)
        self.hr_shape = (h * s, w * s)
        if otf.shape[-2:] != (h * s, w * s // 2 + 1):
            raise ValueError(f"OTF of shape {tuple(otf.shape[-2:])} is not the half spectrum of the "
                             f"{s}× grid {self.hr_shape} of an LR image of {(h, w)}")
        dev = otf.device
        self.otf = otf
        self._neg_rows = _neg_index(h, dev)
        big_w, half_w, small_half_w = w * s, w * s // 2 + 1, w // 2 + 1
        # Columns of the HR half spectrum that alias onto LR column c' (< w//2+1):
        # c' + j·w, taken directly when in the half spectrum, else by Hermitian symmetry.
        self._alias_cols = []
        for j in range(s):
            cols = np.arange(small_half_w) + j * w
            direct = cols < half_w
            self._alias_cols.append((
                torch.as_tensor(np.nonzero(direct)[0], device=dev), torch.as_tensor(cols[direct], device=dev),
                torch.as_tensor(np.nonzero(~direct)[0], device=dev),
                torch.as_tensor(big_w - cols[~direct], device=dev)))
        # HR half-spectrum column c takes LR column c mod w of the full LR spectrum.
        self._expand_cols = torch.as_tensor(np.arange(half_w) % w, device=dev)
        self.power = self.alias(otf.real ** 2 + otf.imag ** 2).real
        self.y_hat = torch.fft.rfft2(y)

    def alias(self, a: torch.Tensor) -> torch.Tensor:
        """HR half spectrum (..., H, W//2+1) of a real image → LR half spectrum (..., h, w//2+1)
        of its ``[::s, ::s]`` subsampling (the mean of the aliased copies)."""
        s = self.scale
        h, w = self.lr_shape
        rows = a.reshape(a.shape[:-2] + (s, h, a.shape[-1])).sum(dim=-3)
        out = torch.zeros(a.shape[:-2] + (h, w // 2 + 1), dtype=a.dtype, device=a.device)
        mirrored = None
        for dst, src, dst_m, src_m in self._alias_cols:
            out[..., dst] += rows.index_select(-1, src)
            if dst_m.numel():
                if mirrored is None:
                    mirrored = rows.index_select(-2, self._neg_rows).conj()
                out[..., dst_m] += mirrored.index_select(-1, src_m)
        return out / (s * s)

    def expand(self, g: torch.Tensor) -> torch.Tensor:
        """LR half spectrum (..., h, w//2+1) → HR half spectrum of its zero-filled upsampling
        (the LR spectrum tiled ``s × s`` times), (..., H, W//2+1)."""
        h, w = self.lr_shape
        tail = g[..., 1:w - w // 2].index_select(-2, self._neg_rows).conj().flip(-1)
        full = torch.cat([g, tail], dim=-1)
        cols = full.index_select(-1, self._expand_cols)
        return cols.repeat((1,) * (cols.dim() - 2) + (self.scale, 1))

    def __call__(self, x: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
        """The minimiser ``z`` for the proximal centre ``x`` (..., s·h, s·w) and weight ``alpha > 0``."""
        if isinstance(alpha, torch.Tensor):
            alpha = alpha.to(device=x.device)
        xh = torch.fft.rfft2(x)
        resid = (self.y_hat - self.alias(self.otf * xh)) / (self.power + alpha)
        return torch.fft.irfft2(xh + self.otf.conj() * self.expand(resid), s=self.hr_shape)


# --------------------------------------------------------------------------- padding

def fast_lr_length(n: int, scale: int) -> int:
    """Smallest ``m >= n`` such that an FFT of length ``s·m`` is fast (only factors 2, 3, 5, 7)."""
    m = n
    while sp_fft.next_fast_len(scale * m, real=False) != scale * m:
        m += 1
    return m


def reflect_pad_lr(lr: np.ndarray, pad: int, scale: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Pad an (..., h, w) LR array by symmetric reflection, at least ``pad`` each side,
    up to FFT-friendly sizes.

    Returns the padded array and ``(top, bottom, left, right)`` in LR pixels;
    crop the HR result with :func:`crop_hr`.
    """
    h, w = lr.shape[-2:]
    ph = fast_lr_length(h + 2 * pad, scale) - h
    pw = fast_lr_length(w + 2 * pad, scale) - w
    top, left = ph // 2, pw // 2
    bottom, right = ph - top, pw - left
    # Symmetric reflection cannot reach further than the image is long; repeat it.
    out = lr
    while any(v > 0 for v in (top, bottom, left, right)):
        ch, cw = out.shape[-2:]
        t, b, l, r = (min(top, ch), min(bottom, ch), min(left, cw), min(right, cw))
        widths = [(0, 0)] * (lr.ndim - 2) + [(t, b), (l, r)]
        out = np.pad(out, widths, mode="symmetric")
        top, bottom, left, right = top - t, bottom - b, left - l, right - r
    return out, (ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)


def crop_hr(hr: ArrayT, pads: tuple[int, int, int, int], scale: int) -> ArrayT:
    """Undo :func:`reflect_pad_lr` on the (..., s·h', s·w') HR result."""
    top, bottom, left, right = (p * scale for p in pads)
    h, w = hr.shape[-2:]
    return hr[..., top:h - bottom, left:w - right]


# --------------------------------------------------------------------------- tiling

def tile_windows(length: int, tile: int) -> list[tuple[int, int]]:
    """Split ``range(length)`` into near-equal cores ``(start, stop)`` of at most ``tile``
    (one core when ``tile <= 0``)."""
    if tile <= 0 or tile >= length:
        return [(0, length)]
    count = -(-length // tile)
    bounds = np.linspace(0, length, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def iter_tiled(frames: np.ndarray, scale: int, process: Callable[[np.ndarray], np.ndarray], *,
               tile: int = 0, overlap: int = 16, start: float | None = None,
               stage: str = "sr") -> Generator[Progress, None, np.ndarray]:
    """Apply ``process`` to every frame of ``frames`` (N, C, H, W), tile by tile.

    ``process`` maps an LR array (C, h, w) to its HR array (C, s·h, s·w).
    Each frame is first extended by ``overlap`` LR pixels of symmetric
    reflection on every side; it is then cut into cores of at most ``tile``
    LR pixels per side (``tile <= 0``: one core, the whole frame), and each core
    is processed together with ``overlap`` pixels of context on every side
    (real image inside, reflection at the frame's border). Only the cores'
    HR pixels are kept, so memory is bounded by the tile size and the result
    does not depend on where the frame's border is.

    Yields one :class:`Progress` after each tile (``iteration`` counts tiles
    over all frames) and returns float32 (N, C, s·H, s·W).
    """
    start = time.perf_counter() if start is None else start
    n, c, h, w = frames.shape
    ov = max(0, int(overlap))
    rows = tile_windows(h, tile)
    cols = tile_windows(w, tile)
    per_frame = len(rows) * len(cols)
    total = n * per_frame
    out = np.empty((n, c, h * scale, w * scale), dtype=np.float32)
    done = 0
    for i in range(n):
        padded = np.pad(np.asarray(frames[i], dtype=np.float32), ((0, 0), (ov, ov), (ov, ov)), mode="symmetric")
        for r0, r1 in rows:
            for c0, c1 in cols:
                hr = np.asarray(process(np.ascontiguousarray(padded[:, r0:r1 + 2 * ov, c0:c1 + 2 * ov])))
                expected = (c, (r1 - r0 + 2 * ov) * scale, (c1 - c0 + 2 * ov) * scale)
                if hr.shape != expected:
                    raise RuntimeError(f"SR tile routine returned shape {hr.shape}, expected {expected}")
                m = ov * scale
                out[i, :, r0 * scale:r1 * scale, c0 * scale:c1 * scale] = hr[
                    :, m:m + (r1 - r0) * scale, m:m + (c1 - c0) * scale]
                done += 1
                yield Progress(done, total, time.perf_counter() - start, stage=stage,
                               message=f"frame {i + 1}/{n}, tile {done - i * per_frame}/{per_frame}")
    return out
