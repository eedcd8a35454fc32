"""The discriminator map: a patch discriminator's verdict on every pixel of the input (KernelGAN and meta)."""
from __future__ import annotations

from collections.abc import Generator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["iter_discriminator_map", "discriminator_map"]


def iter_discriminator_map(d: nn.Module, frames: np.ndarray, device: torch.device, *, signed: bool,
                           strip: int = 256) -> Generator[tuple[int, int], None, np.ndarray]:
    """D's verdict at every pixel of ``frames`` (N, C, H, W) in [0, 1]: returns (N, H, W); yields
    (strips done, strips in all) after each strip.

    ``d`` is fully convolutional with ``d.receptive_field``; it runs in evaluation mode (BatchNorm's
    running statistics, no power iteration) on strips of ``strip`` rows with reflected margins, so a
    large image never holds D's features all at once. ``signed``: D was trained on images in [-1, 1].
    """
    was_training = d.training
    d.eval()
    pad = d.receptive_field // 2
    h = frames.shape[-2]
    starts = range(0, h, strip)
    total, done = len(frames) * len(starts), 0
    out = []
    try:
        for frame in frames:
            t = torch.from_numpy(np.ascontiguousarray(frame))[None]
            if signed:
                t = t * 2 - 1
            rows = []
            for r0 in starts:
                r1 = min(h, r0 + strip)
                lo, hi = max(0, r0 - pad), min(h, r1 + pad)
                piece = F.pad(t[..., lo:hi, :], (pad, pad, pad - (r0 - lo), pad - (hi - r1)), mode="reflect")
                with torch.no_grad():
                    rows.append(d(piece.to(device))[0, 0].cpu())
                done += 1
                yield done, total
            out.append(torch.cat(rows, 0).numpy())
    finally:
        d.train(was_training)
    return np.stack(out)


def discriminator_map(d: nn.Module, frames: np.ndarray, device: torch.device, *, signed: bool,
                      strip: int = 256) -> np.ndarray:
    """:func:`iter_discriminator_map` run to the end."""
    gen = iter_discriminator_map(d, frames, device, signed=signed, strip=strip)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
