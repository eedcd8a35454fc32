"""Synthetic test scenes with known ground truth: dead leaves (natural-image statistics) and fluorescence.

* :func:`dead_leaves` — occluding disks with power-law radii: the scale-invariant
  statistics (1/f² power spectrum, sharp occlusion edges) of natural images
  (Lee, Mumford & Huang 2001), with optional texture inside each leaf.
* :func:`microscopy_scene` — a clean high-resolution fluorescence object
  (nuclei, puncta, filaments, beads), before any blur or noise.
* :func:`degrade_microscopy` — the camera: the project's degradation
  (:func:`napari_kernelgan.physics.degrade`, conventions of
  :mod:`napari_kernelgan.physics.conventions`), photon scaling, Poisson shot
  noise, Gaussian read noise, offset and integer ADU.
* :func:`microscopy_case` — one benchmark case with a DIV2KRK-distribution kernel.

Every generator takes a ``seed``; the same seed gives the same array.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .errors import BadInputError, BadOptionError
from .physics.degrade import degrade
from .physics.kernels import random_div2krk_kernel

__all__ = ["dead_leaves", "microscopy_scene", "degrade_microscopy", "microscopy_case", "MicroscopyCase",
           "SCENE_KINDS", "PHOTON_RANGE"]

SCENE_KINDS = ("mixed", "nuclei", "puncta", "filaments", "beads")
PHOTON_RANGE = (20.0, 1500.0)
"""Photons at the brightest LR pixel drawn by :func:`microscopy_case` (log-uniform)."""
READ_NOISE_RANGE = (0.8, 3.0)
"""Read noise (electrons, r.m.s.) drawn by :func:`microscopy_case`: sCMOS to older CCDs."""

# Relative brightness of the scene's parts, per HR pixel. Puncta and beads are single-pixel points, so their
# integrated intensity is what counts: ~1 per point against ~0.08 per pixel of nucleus keeps both visible
# after a kernel of σ ≈ 1.5 px spreads a point over ~2πσ² ≈ 14 pixels.
_NUCLEUS_LEVEL = (0.05, 0.11)
_FILAMENT_LEVEL = (0.12, 0.25)
_PUNCTUM_LEVEL = (0.3, 1.0)
_BACKGROUND = 0.004


def _shape2(shape: tuple[int, int], minimum: int = 16) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise BadInputError(f"shape must be (height, width), got {shape!r}") from None
    if h < minimum or w < minimum:
        raise BadInputError(f"shape {h}×{w} is too small (at least {minimum}×{minimum})")
    return h, w


# ---------------------------------------------------------------------------------------------- dead leaves


def dead_leaves(shape: tuple[int, int], seed: int, *, r_min: float = 2.0, r_max: float | None = None,
                alpha: float = 3.0, texture: float = 0.0, coverage: float = 0.999,
                supersample: int = 2) -> np.ndarray:
    """Dead-leaves image (H, W), float64 in [0, 1].

    Disks are laid front to back (each new one only where nothing covers yet)
    until ``coverage`` of the image is covered; radii follow ``p(r) ∝ r^-alpha``
    on ``[r_min, r_max]`` (``alpha = 3``: scale invariance), grey levels are
    uniform. ``texture`` (0–1) adds an oriented sinusoidal pattern of random
    period inside each leaf, of that relative amplitude. Edges are anti-aliased
    by drawing at ``supersample``× and averaging blocks.
    """
    h, w = _shape2(shape, 4)
    if r_max is None:
        r_max = max(h, w) / 4
    if not 0 < r_min < r_max:
        raise BadOptionError(f"need 0 < r_min < r_max, got r_min={r_min}, r_max={r_max}")
    if not 0 <= texture <= 1:
        raise BadOptionError(f"texture must be between 0 and 1, got {texture}")
    if not 0 < coverage <= 1:
        raise BadOptionError(f"coverage must be in (0, 1], got {coverage}")
    rng = np.random.default_rng(seed)
    ss = max(1, int(supersample))
    hh, ww = h * ss, w * ss
    img = np.zeros((hh, ww))
    free = np.ones((hh, ww), dtype=bool)
    remaining = free.size
    target = (1 - coverage) * free.size
    # Inverse CDF of the truncated power law.
    if abs(alpha - 1) < 1e-9:
        def radius(u: np.ndarray) -> np.ndarray:
            return r_min * (r_max / r_min) ** u
    else:
        e = 1 - alpha

        def radius(u: np.ndarray) -> np.ndarray:
            return (r_min ** e + u * (r_max ** e - r_min ** e)) ** (1 / e)
    max_disks = 200_000
    drawn = 0
    while remaining > target and drawn < max_disks:
        batch = 256
        radii = radius(rng.uniform(size=batch)) * ss
        cy = rng.uniform(-0.05, 1.05, batch) * hh
        cx = rng.uniform(-0.05, 1.05, batch) * ww
        grey = rng.uniform(0, 1, batch)
        periods = rng.uniform(3, 12, batch) * ss
        phases = rng.uniform(0, 2 * np.pi, batch)
        angles = rng.uniform(0, np.pi, batch)
        for i in range(batch):
            r = radii[i]
            r0, r1 = max(0, int(cy[i] - r)), min(hh, int(cy[i] + r) + 2)
            c0, c1 = max(0, int(cx[i] - r)), min(ww, int(cx[i] + r) + 2)
            if r0 >= r1 or c0 >= c1:
                continue
            yy, xx = np.ogrid[r0:r1, c0:c1]
            disk = ((yy + 0.5 - cy[i]) ** 2 + (xx + 0.5 - cx[i]) ** 2 <= r * r) & free[r0:r1, c0:c1]
            if not disk.any():
                continue
            value = np.full(disk.shape, grey[i])
            if texture > 0:
                proj = (yy * math.sin(angles[i]) + xx * math.cos(angles[i])) * (2 * np.pi / periods[i])
                value = grey[i] * (1 + texture * np.sin(proj + phases[i])) / (1 + texture)
            img[r0:r1, c0:c1][disk] = value[disk]
            free[r0:r1, c0:c1][disk] = False
            remaining -= int(disk.sum())
        drawn += batch
    if ss > 1:
        img = img.reshape(h, ss, w, ss).mean(axis=(1, 3))
    return np.clip(img, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------- microscopy


def _smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    n = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return n / (n.std() + 1e-12)


def _nuclei(shape: tuple[int, int], rng: np.random.Generator, count: int) -> np.ndarray:
    h, w = shape
    out = np.zeros(shape)
    texture = _smooth_noise(shape, 2.0, rng)
    size = min(h, w)
    for _ in range(count):
        a = rng.uniform(0.05, 0.09) * size
        b = a * rng.uniform(0.6, 1.0)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        t = rng.uniform(0, np.pi)
        level = rng.uniform(*_NUCLEUS_LEVEL)
        # Only the ellipse's bounding box (plus the rim) is computed.
        reach = a + 12
        r0, r1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 1)
        c0, c1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 1)
        if r0 >= r1 or c0 >= c1:
            continue
        dy, dx = np.mgrid[r0:r1, c0:c1].astype(np.float64)
        dy -= cy
        dx -= cx
        u = (dx * math.cos(t) + dy * math.sin(t)) / a
        v = (-dx * math.sin(t) + dy * math.cos(t)) / b
        rho = np.sqrt(u * u + v * v)
        # Smooth rim about one pixel wide; chromatin texture inside.
        mask = 1.0 / (1.0 + np.exp(np.clip((rho - 1.0) * min(a, b) / 0.8, -50, 50)))
        patch = level * mask * np.clip(1 + 0.25 * texture[r0:r1, c0:c1], 0.3, None)
        out[r0:r1, c0:c1] = np.maximum(out[r0:r1, c0:c1], patch)
    return out


def _points(shape: tuple[int, int], rng: np.random.Generator, count: int, min_distance: float = 0.0,
            margin: int = 0) -> np.ndarray:
    """``count`` single-pixel points (sub-resolution: each is a delta on the HR grid)."""
    h, w = shape
    out = np.zeros(shape)
    placed: list[tuple[int, int]] = []
    tries = 0
    while len(placed) < count and tries < 50 * count:
        tries += 1
        r = int(rng.integers(margin, h - margin))
        c = int(rng.integers(margin, w - margin))
        if min_distance > 0 and placed:
            d = np.hypot(*(np.asarray(placed) - (r, c)).T)
            if d.min() < min_distance:
                continue
        placed.append((r, c))
        out[r, c] += rng.uniform(*_PUNCTUM_LEVEL)
    return out


def _filaments(shape: tuple[int, int], rng: np.random.Generator, count: int) -> np.ndarray:
    """Thin random curves: smooth random walks splatted bilinearly at quarter-pixel steps."""
    h, w = shape
    out = np.zeros((h + 2, w + 2))
    for _ in range(count):
        n = int(rng.uniform(0.5, 1.5) * max(h, w) * 4)
        heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.02, n))
        y = rng.uniform(0, h) + 0.25 * np.cumsum(np.sin(heading))
        x = rng.uniform(0, w) + 0.25 * np.cumsum(np.cos(heading))
        keep = (y >= 0) & (y < h - 1) & (x >= 0) & (x < w - 1)
        y, x = y[keep], x[keep]
        level = rng.uniform(*_FILAMENT_LEVEL) * 0.25  # per quarter-pixel step
        iy, ix = np.floor(y).astype(int), np.floor(x).astype(int)
        fy, fx = y - iy, x - ix
        for dy, dx, wgt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)),
                            (1, 1, fy * fx)):
            np.add.at(out, (iy + dy, ix + dx), level * wgt)
    return out[:h, :w]


def microscopy_scene(shape: tuple[int, int], seed: int, *, kind: str = "mixed",
                     photons: float | None = None) -> np.ndarray:
    """A clean HR fluorescence object (H, W), float64 in [0, 1] (no blur, no noise).

    ``kind``: ``"nuclei"`` (smooth textured ellipses), ``"puncta"`` (crowded
    single-pixel points, some on nuclei), ``"filaments"`` (thin random curves),
    ``"beads"`` (isolated single-pixel points, ≥ 12 px apart, away from the
    border: a bead slide), ``"mixed"`` (nuclei + puncta + filaments + a few
    beads). Points are deltas on the HR grid, so after the degradation each is
    the kernel itself, sampled. The brightest pixel is 1 (with ``photons``, the
    object is scaled so it is ``photons`` instead).
    """
    h, w = _shape2(shape)
    if kind not in SCENE_KINDS:
        raise BadOptionError(f"unknown scene kind {kind!r}; choose one of: {', '.join(SCENE_KINDS)}")
    rng = np.random.default_rng(seed)
    area = h * w / 256 ** 2  # counts are given per 256×256 field
    img = np.full((h, w), _BACKGROUND)
    if kind in ("nuclei", "mixed"):
        img += _nuclei((h, w), rng, max(1, round((12 if kind == "nuclei" else 6) * area)))
    if kind in ("filaments", "mixed"):
        img += _filaments((h, w), rng, max(1, round((14 if kind == "filaments" else 6) * area)))
    if kind in ("puncta", "mixed"):
        img += _points((h, w), rng, max(1, round((250 if kind == "puncta" else 80) * area)))
    if kind in ("beads", "mixed"):
        img += _points((h, w), rng, max(1, round((60 if kind == "beads" else 10) * area)), min_distance=12,
                       margin=8)
    img /= img.max()
    if photons is not None:
        if not photons > 0:
            raise BadOptionError(f"photons must be positive, got {photons}")
        img *= float(photons)
    return img


def _photon_factor(clean_lr: np.ndarray, photons: float) -> float:
    peak = float(clean_lr.max())
    if not peak > 0:
        raise BadInputError("the HR image is dark everywhere: nothing to scale to photons")
    return photons / peak


def _camera(expected: np.ndarray, rng: np.random.Generator, read_noise: float, offset: float,
            dtype: np.dtype) -> np.ndarray:
    electrons = rng.poisson(np.clip(expected, 0, None)).astype(np.float64)
    adu = np.round(electrons + rng.normal(0.0, read_noise, expected.shape) + offset)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        adu = np.clip(adu, info.min, info.max)
    return adu.astype(dtype)


def degrade_microscopy(hr: np.ndarray, kernel: np.ndarray, scale: int, seed: int, *, photons: float,
                       read_noise: float, offset: float = 100, dtype: np.dtype = np.uint16) -> np.ndarray:
    """Blur + subsample ``hr`` (:func:`~napari_kernelgan.physics.degrade`), then image it with a camera.

    The noise-free LR image is scaled so its brightest pixel holds ``photons``
    expected photo-electrons; then Poisson shot noise, Gaussian read noise of
    ``read_noise`` electrons r.m.s., ``offset`` ADU and rounding (gain 1 ADU per
    electron, clipped to ``dtype``'s range). The noise model in ADU is thus
    ``var = 1·(E[z] − offset) + read_noise²``.
    """
    if not photons > 0:
        raise BadOptionError(f"photons must be positive, got {photons}")
    if not read_noise >= 0:
        raise BadOptionError(f"read_noise must be non-negative, got {read_noise}")
    arr = np.asarray(hr, dtype=np.float64)
    if arr.ndim != 2:
        raise BadInputError(f"hr must be a 2-D image, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise BadInputError("hr contains NaN or infinite values")
    clean = degrade(arr, kernel, scale)
    expected = clean * _photon_factor(clean, photons)
    return _camera(expected, np.random.default_rng(seed), read_noise, offset, np.dtype(dtype))


@dataclass(frozen=True)
class MicroscopyCase:
    """One generated fluorescence case.

    ``lr``: the camera image (uint16, ADU = electrons + ``offset``); ``hr``: the
    noise-free object in the same photon units (so ``degrade(hr, kernel, scale)``
    is the expected LR signal above the offset) — the ground truth for SR PSNR;
    ``kernel``: the true kernel at ``scale`` (centred, correlation orientation;
    11×11 at ×2, 31×31 at ×4); ``kernel_x2``: the ×2 kernel it derives from.
    """

    lr: np.ndarray
    hr: np.ndarray
    kernel: np.ndarray
    kernel_x2: np.ndarray
    scale: int
    photons: float
    read_noise: float
    offset: float
    kind: str
    seed: int


def microscopy_case(seed: int, *, shape: tuple[int, int] = (256, 256), scale: int = 2,
                    photons: float | None = None, kind: str = "mixed", read_noise: float | None = None,
                    offset: float = 100.0) -> MicroscopyCase:
    """A generated noisy fluorescence case with a DIV2KRK-distribution kernel (``shape`` is the HR size).

    ``photons`` (at the brightest LR pixel) is drawn log-uniformly in
    :data:`PHOTON_RANGE` when ``None``; ``read_noise`` uniformly in
    :data:`READ_NOISE_RANGE`.
    """
    if scale not in (2, 4):
        raise BadOptionError(f"scale must be 2 or 4, got {scale}")
    rng = np.random.default_rng([int(seed), 7919])
    k2 = random_div2krk_kernel(rng, 2)
    kernel = k2 if scale == 2 else random_div2krk_kernel(np.random.default_rng([int(seed), 7919]), 4)
    if photons is None:
        photons = float(math.exp(rng.uniform(math.log(PHOTON_RANGE[0]), math.log(PHOTON_RANGE[1]))))
    if read_noise is None:
        read_noise = float(rng.uniform(*READ_NOISE_RANGE))
    hr = microscopy_scene(shape, int(rng.integers(2 ** 31)), kind=kind)
    clean = degrade(hr, kernel, scale)
    factor = _photon_factor(clean, photons)
    lr = _camera(clean * factor, np.random.default_rng(int(rng.integers(2 ** 31))), read_noise, offset,
                 np.dtype(np.uint16))
    return MicroscopyCase(lr=lr, hr=hr * factor, kernel=kernel, kernel_x2=k2, scale=scale, photons=float(photons),
                          read_noise=float(read_noise), offset=float(offset), kind=kind, seed=int(seed))
