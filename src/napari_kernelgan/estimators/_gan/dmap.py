"""The discriminator map: a patch discriminator's verdict on every pixel of the input (KernelGAN and meta)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["discriminator_map"]


@torch.no_grad()
def discriminator_map(d: nn.Module, frames: np.ndarray, device: torch.device, *, signed: bool,
                      strip: int = 256) -> np.ndarray:
    """D's verdict at every pixel of ``frames`` (N, C, H, W) in [0, 1]: (N, H, W).

    ``d`` is fully convolutional with ``d.receptive_field``; it runs in evaluation mode (BatchNorm's
    running statistics, no power iteration) on strips of ``strip`` rows with reflected margins, so a
    large image never holds D's features all at once. ``signed``: D was trained on images in [-1, 1].
    """
    was_training = d.training
    d.eval()
    pad = d.receptive_field // 2
    out = []
    for frame in frames:
        t = torch.from_numpy(np.ascontiguousarray(frame))[None]
        if signed:
            t = t * 2 - 1
        h = t.shape[-2]
        rows = []
        for r0 in range(0, h, strip):
            r1 = min(h, r0 + strip)
            lo, hi = max(0, r0 - pad), min(h, r1 + pad)
            piece = F.pad(t[..., lo:hi, :], (pad, pad, pad - (r0 - lo), pad - (hi - r1)), mode="reflect")
            rows.append(d(piece.to(device))[0, 0].cpu())
        out.append(torch.cat(rows, 0).numpy())
    d.train(was_training)
    return np.stack(out)
