"""Where KernelGAN's crops come from: positions drawn by gradient, crop sizes, tiles side by side."""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from .config import Config

__all__ = ["gradient_probability", "CropSampler", "crop_sizes", "draw_crops"]


def gradient_probability(frames: np.ndarray, crop: int) -> np.ndarray:
    """Probability of each top-left crop position ∝ mean gradient magnitude inside the crop.

    ``frames`` is (N, C, H, W); returns (N, H − crop + 1, W − crop + 1), summing to 1.
    """
    gray = frames.mean(axis=1)
    out = []
    for g in gray:
        mag = np.hypot(ndimage.sobel(g, 0), ndimage.sobel(g, 1))
        mean = ndimage.uniform_filter(mag, crop, mode="constant")
        # uniform_filter centres the window; shift to top-left indexing
        lo = crop // 2
        valid = mean[lo:lo + g.shape[0] - crop + 1, lo:lo + g.shape[1] - crop + 1]
        out.append(valid)
    prob = np.stack(out)
    # A floor keeps flat regions reachable, as the reference does.
    prob = prob + 0.05 * prob.mean() + 1e-12
    return prob / prob.sum()


class CropSampler:
    """Draws crop batches by gradient-weighted position from (N, C, H, W) frames."""

    def __init__(self, frames: np.ndarray, crop: int, rng: np.random.Generator) -> None:
        self.frames = frames
        self.crop = crop
        self.rng = rng
        prob = gradient_probability(frames, crop)
        self.shape = prob.shape
        self.cdf = np.cumsum(prob.ravel())

    def sample(self, n: int) -> np.ndarray:
        """(n, C, crop, crop) crops."""
        idx = np.searchsorted(self.cdf, self.rng.random(n) * self.cdf[-1])
        idx = np.minimum(idx, self.cdf.size - 1)
        f, r, c = np.unravel_index(idx, self.shape)
        cs = self.crop
        return np.stack([self.frames[fi, :, ri:ri + cs, ci:ci + cs] for fi, ri, ci in zip(f, r, c)])


def crop_sizes(cfg: Config, shape: tuple[int, ...], ksize: int) -> tuple[int, int]:
    """(G's input crop, D's real crop = G's output size) for frames of ``shape`` (…, H, W)."""
    crop = min(cfg.crop, shape[-2], shape[-1])
    crop -= crop % 2
    return crop, (crop - ksize) // 2 + 1


def draw_crops(samplers: list[CropSampler], n: int, device: torch.device) -> torch.Tensor:
    """(n, T·C, c, c) in [-1, 1]: ``n`` crops of each tile, tiles side by side along the channels."""
    # The reference works on images in [-1, 1]; the anchor threshold assumes it.
    return torch.from_numpy(np.concatenate([s.sample(n) for s in samplers], axis=1)).to(device) * 2 - 1
