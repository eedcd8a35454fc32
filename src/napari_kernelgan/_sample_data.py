"""Sample images degraded ×2 with a known anisotropic Gaussian kernel.

Each sample gives the low-resolution image (the true kernel in its metadata)
and the true kernel as its own layer, drawn beside the image where the
estimated kernels will appear, so the two can be compared at a glance.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from .layers import KERNEL_COLORMAP, LayerDataTuple, kernel_panel_transform, true_kernel_layer_name
from .physics.conventions import CENTRING, ORIENTATION, SUBSAMPLING
from .physics.degrade import degrade
from .physics.kernels import gaussian_kernel

SCALE = 2
KERNEL_SIZE = 13

# (σ along the rotated first axis, σ along the second, rotation θ in degrees)
TISSUE_KERNEL = (2.2, 0.9, 30.0)
ASTRONAUT_KERNEL = (2.4, 1.1, -50.0)
FLUORESCENCE_KERNEL = (1.9, 1.0, 75.0)


def true_kernel(params: tuple[float, float, float]) -> np.ndarray:
    """The 13×13 ×2 kernel of a sample: an anisotropic Gaussian ``(σ1, σ2, θ°)``."""
    s1, s2, theta = params
    return gaussian_kernel(KERNEL_SIZE, s1, s2, np.deg2rad(theta))


def _degrade_to(hr: np.ndarray, k: np.ndarray, dtype: np.dtype, high: float) -> np.ndarray:
    lr = degrade(hr.astype(np.float64), k, SCALE)
    return np.clip(np.round(lr), 0, high).astype(dtype)


def _sample(name: str, lr: np.ndarray, k: np.ndarray, params: tuple[float, float, float], source: str,
            rgb: bool, extra: dict[str, Any] | None = None) -> list[LayerDataTuple]:
    s1, s2, theta = params
    kernel_meta = {"kernel": k.tolist(), "scale": SCALE, "orientation": ORIENTATION, "centring": CENTRING,
                   "subsampling": SUBSAMPLING, "sigma": [s1, s2], "theta_deg": theta, "source": name,
                   "method": "ground truth", "role": "true kernel"}
    image_meta = {"true_kernel": kernel_meta, "sample": source}
    image_kwargs: dict[str, Any] = {"name": name, "rgb": rgb, "metadata": image_meta, **(extra or {})}
    # The panel placement needs the image layer's geometry; the sample layer has unit scale.
    lead = lr.ndim - (3 if rgb else 2)
    geometry = SimpleNamespace(data=lr, rgb=rgb, scale=[1.0] * (lead + 2), translate=[0.0] * (lead + 2),
                               multiscale=False)
    k_scale, k_translate = kernel_panel_transform(geometry, k.shape[0], slot=2)
    kernel_kwargs = {"name": true_kernel_layer_name(name, SCALE), "scale": k_scale, "translate": k_translate,
                     "colormap": KERNEL_COLORMAP, "contrast_limits": [0.0, float(k.max())],
                     "interpolation2d": "nearest", "metadata": kernel_meta}
    return [(lr, image_kwargs, "image"), (k.astype(np.float32), kernel_kwargs, "image")]


def tissue() -> list[LayerDataTuple]:
    """Brightfield immunohistochemistry micrograph (scikit-image), blurred with a known kernel and
    downscaled ×2, RGB uint8."""
    from skimage import data

    k = true_kernel(TISSUE_KERNEL)
    lr = _degrade_to(data.immunohistochemistry(), k, np.uint8, 255)
    return _sample("tissue LR", lr, k, TISSUE_KERNEL, "skimage.data.immunohistochemistry", rgb=True)


def astronaut() -> list[LayerDataTuple]:
    """The astronaut photograph (scikit-image), blurred with a known kernel and downscaled ×2, RGB uint8."""
    from skimage import data

    k = true_kernel(ASTRONAUT_KERNEL)
    lr = _degrade_to(data.astronaut(), k, np.uint8, 255)
    return _sample("astronaut LR", lr, k, ASTRONAUT_KERNEL, "skimage.data.astronaut", rgb=True)


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


def fluorescence_stack() -> list[LayerDataTuple]:
    """A synthetic fluorescence z-stack (8 slices), each slice blurred with one known kernel and
    downscaled ×2, uint16."""
    k = true_kernel(FLUORESCENCE_KERNEL)
    hr = fluorescence_volume()
    lr = np.stack([_degrade_to(plane, k, np.uint16, 65535) for plane in hr])
    return _sample("fluorescence LR", lr, k, FLUORESCENCE_KERNEL, "synthetic", rgb=False,
                   extra={"colormap": "green"})
