"""Training-free sharp-gradient prediction for the KernelNet-style closed-form kernel (private helper).

The least-squares kernel of :mod:`.kernelnet` needs the gradients of a sharp
version of the image. They are predicted here as in the fast deblurring of Cho
& Lee (SIGGRAPH Asia 2009) and Xu & Jia (ECCV 2010): pre-smooth (more when the
image is noisy), run an Osher-Rudin shock filter so that blurred edges become
steps again, then keep only the gradients that can be trusted - strong ones,
well above the noise, in regions where the gradient direction is coherent
(isolated texture and noise cancel in the coherence measure ``r``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..imaging import centre_crop
from ..physics.noise import estimate_noise_sigma

NOISE_CROP = 512     # side of the central crop the noise is measured on
NOISE_SMOOTH = 30.0  # pre-smoothing σ (px) per unit of noise σ: 10/255 RGB noise (6.7/255 in luminance) gives 0.8 px

__all__ = ["SharpGradients", "estimate_noise", "shock_filter", "sharp_gradients", "forward_gradients"]


def estimate_noise(gray: np.ndarray, max_side: int = NOISE_CROP) -> float:
    """Standard deviation of white Gaussian noise in ``gray`` (same units as the image), by
    :func:`napari_kernelgan.physics.noise.estimate_noise_sigma`. White noise is stationary, so a
    central crop of at most ``max_side`` pixels a side is enough (and keeps this step cheap on
    large images).
    """
    return float(estimate_noise_sigma(centre_crop(gray, max_side)))


def forward_gradients(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(d/dx, d/dy) by forward differences, zero on the last column / row (no wrap-around edge)."""
    gx = np.zeros_like(img)
    gy = np.zeros_like(img)
    gx[:, :-1] = img[:, 1:] - img[:, :-1]
    gy[:-1, :] = img[1:, :] - img[:-1, :]
    return gx, gy


def shock_filter(img: np.ndarray, iterations: int = 3, dt: float = 0.5) -> np.ndarray:
    """Osher-Rudin shock filter ``I_t = -sign(ΔI) |∇I|`` (minmod upwind gradient).

    Pushes each side of a blurred edge towards its plateau, restoring a step;
    flat regions and extrema do not move, so it creates no new oscillations.
    """
    out = np.array(img, copy=True)
    for _ in range(int(iterations)):
        p = np.pad(out, 1, mode="edge")
        c = p[1:-1, 1:-1]
        dxf, dxb = p[1:-1, 2:] - c, c - p[1:-1, :-2]
        dyf, dyb = p[2:, 1:-1] - c, c - p[:-2, 1:-1]
        # minmod(a, b)² = min(a², b²) where a and b agree in sign, else 0
        gx2 = np.minimum(dxf * dxf, dxb * dxb) * (dxf * dxb > 0)
        gy2 = np.minimum(dyf * dyf, dyb * dyb) * (dyf * dyb > 0)
        lap = (dxf - dxb) + (dyf - dyb)
        out = c - dt * np.sign(lap) * np.sqrt(gx2 + gy2)
    return out


@dataclass
class SharpGradients:
    """Predicted sharp gradients (zero where untrusted) and the mask that keeps them."""

    gx: np.ndarray
    gy: np.ndarray
    mask: np.ndarray
    noise: float
    threshold: float

    @property
    def support(self) -> float:
        """Fraction of the image's pixels whose sharp gradient is kept."""
        return float(self.mask.mean())


def sharp_gradients(gray: np.ndarray, noise: float, *, presmooth: float = 0.5, shock_iterations: int = 3,
                    keep: float = 0.3, coherence: float = 0.5, coherence_radius: int = 2,
                    margin: int = 8) -> SharpGradients:
    """Shock-filtered gradients of ``gray``, masked to strong, coherent edges.

    ``presmooth``: Gaussian σ (pixels) before shock filtering, raised with the
    noise level ``noise`` (image units). ``keep``: fraction of the candidate pixels
    kept per orientation quadrant (Cho & Lee keep the strongest gradients of each
    orientation so that no direction of the kernel is left unconstrained).
    ``coherence``: minimum ``r = |Σ∇B| / (Σ|∇B| + c)`` over a window (Xu & Jia).
    ``margin``: border pixels never used (FFTs wrap around there).
    """
    img = np.asarray(gray, dtype=np.float32)
    sigma = math.hypot(presmooth, NOISE_SMOOTH * noise)
    smooth = ndimage.gaussian_filter(img, sigma, mode="reflect") if sigma > 0 else img
    shocked = shock_filter(smooth, shock_iterations)
    gx, gy = forward_gradients(shocked)
    mag = np.hypot(gx, gy)

    # Coherence of the (smoothed) input's gradients over a small window.
    bx, by = forward_gradients(smooth)
    size = 2 * coherence_radius + 1
    sx = ndimage.uniform_filter(bx, size, mode="reflect")
    sy = ndimage.uniform_filter(by, size, mode="reflect")
    sm = ndimage.uniform_filter(np.hypot(bx, by), size, mode="reflect")
    r = np.hypot(sx, sy) / (sm + np.float32(0.5 / 255.0 + 2.0 * noise))

    inner = np.zeros(img.shape, dtype=bool)
    inner[margin:-margin, margin:-margin] = True
    # Absolute floor: a kept step must stand well above the noise left after pre-smoothing.
    floor = max(3.0 * noise, 2.0 / 255.0)
    cand = inner & (r > coherence) & (mag > floor)
    mask = np.zeros_like(cand)
    # Orientation quadrants of the gradient angle mod π: [0, 45°), [45°, 90°), [90°, 135°), [135°, 180°).
    steep = np.abs(gy) >= np.abs(gx)
    same = gx * gy >= 0
    threshold = floor
    for sel in (cand & ~steep & same, cand & steep & same, cand & steep & ~same, cand & ~steep & ~same):
        vals = mag[sel]
        if vals.size == 0:
            continue
        t = float(np.partition(vals, int((1.0 - keep) * (vals.size - 1)))[int((1.0 - keep) * (vals.size - 1))]) \
            if vals.size > 20 else 0.0
        mask |= sel & (mag >= t)
        threshold = max(threshold, t)
    return SharpGradients(gx * mask, gy * mask, mask, float(noise), threshold)
