"""Building blocks shared by the SR methods.

The periodic forward model and its exact data step are
:class:`napari_kernelgan.physics.Degradation` (``padding="circular"``) and its ``prox_l2``.

* :func:`reflect_pad_lr` / :func:`crop_hr` / :func:`fast_lr_length` — padding
  an LR image (to FFT-friendly sizes) so the periodic boundary of the FFT
  model falls outside the region that is kept, and cropping the HR result.
* :func:`iter_tiled` / :func:`tile_windows` — run a per-tile routine over all
  frames of an ``(N, C, H, W)`` stack with overlapping tiles, yielding
  :class:`~napari_kernelgan.types.Progress` once per tile, and assemble the
  ``(N, C, sH, sW)`` result.

Arrays are (..., rows, columns) with leading axes (frames, channels) batched.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import TypeVar

import numpy as np
import torch
from scipy import fft as sp_fft

from ..types import Progress

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

__all__ = [
    "fast_lr_length", "reflect_pad_lr", "crop_hr", "tile_windows", "iter_tiled",
]


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
