"""Sample images degraded ×2 with a known anisotropic Gaussian kernel.

One definition per sample, used by the demo, the napari sample menu and the
tests: the high-resolution original, the true ×2 kernel and the degraded
low-resolution image (``physics.degrade``, rounded to the original's dtype).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .physics.degrade import degrade
from .physics.kernels import gaussian_kernel
from .vocabulary import KERNEL_SIZE

SCALE = 2

__all__ = ["SampleCase", "SAMPLES", "TISSUE", "ASTRONAUT", "FLUORESCENCE", "fluorescence_volume", "SCALE"]


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return getattr(data, name)()
    return load


def fluorescence_volume(shape: tuple[int, int, int] = (8, 512, 512), seed: int = 0) -> np.ndarray:
    """A synthetic fluorescence z-stack (uint16): nuclei, puncta and filaments on a dim background."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    z, h, w = shape
    vol = np.zeros((z + 8, h, w), dtype=np.float32)  # margin in z so the blur has neighbours
    for count, sigma, level in ((40, (3.0, 14.0, 14.0), 60.0), (400, (1.0, 1.2, 1.2), 8.0)):
        idx = (rng.integers(0, z + 8, count), rng.integers(0, h, count), rng.integers(0, w, count))
        spots = np.zeros_like(vol)
        np.add.at(spots, idx, rng.uniform(0.5, 1.0, count).astype(np.float32))
        blob = ndimage.gaussian_filter(spots, sigma)
        vol += level * blob / max(float(blob.max()), 1e-12)
    lines = np.zeros_like(vol)
    for _ in range(25):
        # Filaments: smooth random walks drawn one pixel wide, then blurred.
        angle = rng.uniform(0, 2 * np.pi) + rng.normal(0, 0.15, 600).cumsum()
        r = np.clip(rng.uniform(0, h) + np.cumsum(np.sin(angle)), 0, h - 1).astype(int)
        c = np.clip(rng.uniform(0, w) + np.cumsum(np.cos(angle)), 0, w - 1).astype(int)
        lines[rng.integers(0, z + 8), r, c] = 1.0
    lines = ndimage.gaussian_filter(lines, (2.0, 1.0, 1.0))
    vol += 30.0 * lines / max(float(lines.max()), 1e-12)
    vol = vol[4:4 + z]
    vol = vol / float(vol.max())
    return np.round(200 + 3800 * vol).astype(np.uint16)


@dataclass(frozen=True)
class SampleCase:
    """A sample: ``load()`` gives the HR original; the true kernel is the anisotropic Gaussian
    with standard deviations ``sigma`` (pixels, along the rotated axes) rotated by ``theta_deg`` degrees."""

    key: str
    name: str                       # the napari layer name of the LR image
    title: str
    sigma: tuple[float, float]
    theta_deg: float
    source: str
    load: Callable[[], np.ndarray]
    rgb: bool
    stacked: bool = False           # the first axis holds slices, each degraded on its own

    def kernel(self) -> np.ndarray:
        """The true ×2 kernel (13×13, centred, correlation orientation)."""
        return gaussian_kernel(KERNEL_SIZE, self.sigma[0], self.sigma[1], np.deg2rad(self.theta_deg))

    def hr(self) -> np.ndarray:
        return self.load()

    def lr(self, hr: np.ndarray | None = None) -> np.ndarray:
        """The degraded ×2 image in the original's dtype (rounded and clipped)."""
        hr = self.hr() if hr is None else hr
        k = self.kernel()
        high = float(np.iinfo(hr.dtype).max)

        def one(plane: np.ndarray) -> np.ndarray:
            lr = degrade(plane.astype(np.float64), k, SCALE)
            return np.clip(np.round(lr), 0, high).astype(hr.dtype)

        return np.stack([one(p) for p in hr]) if self.stacked else one(hr)


TISSUE = SampleCase("tissue", "tissue LR", "Tissue micrograph, blurred ×2 with a known kernel (microscopy)",
                    (2.2, 0.9), 30.0, "skimage.data.immunohistochemistry", _skimage("immunohistochemistry"), rgb=True)
ASTRONAUT = SampleCase("astronaut", "astronaut LR", "Astronaut, blurred ×2 with a known kernel (natural RGB)",
                       (2.4, 1.1), -50.0, "skimage.data.astronaut", _skimage("astronaut"), rgb=True)
FLUORESCENCE = SampleCase("fluorescence", "fluorescence LR",
                          "Fluorescence z-stack, blurred ×2 with a known kernel (synthetic)", (1.9, 1.0), 75.0,
                          "synthetic", fluorescence_volume, rgb=False, stacked=True)
SAMPLES = {case.key: case for case in (TISSUE, FLUORESCENCE, ASTRONAUT)}
