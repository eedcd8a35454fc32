"""Linear operators along one axis and the stack measurements shared by the axial SR methods.

* :func:`cubic_matrix` — the one cubic interpolation in z (Keys' cubic convolution, ``a = -1/2``,
  mirror boundary) from ``n`` samples to ``(n - 1) F + 1``; every input sample is kept exactly. The
  baseline, the fallback and the degraded training lines all use it.
* :func:`degrade_matrix` — ``S_F(h ⋆ x)`` on the fine grid (mirror boundary folded in): samples 0, F, 2F...
* :class:`NoiseModel` — the stack's Poisson–Gaussian noise ``var = a·E[z] + b`` in its own units.
* :func:`lateral_pairs` — the stack's own lateral planes degraded as its z lines are: the training and
  validation data of the axial SR.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import BadInputError
from ..physics.noise import estimate_noise_sigma, estimate_poisson_gaussian, photon_limited

__all__ = ["cubic_matrix", "apply_along", "degrade_matrix", "NoiseModel", "measure_stack_noise", "Normaliser",
           "lateral_pairs", "psnr"]


def _keys(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    t = np.abs(t)
    return np.where(t <= 1, (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1,
                    np.where(t < 2, a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a, 0.0))


def _mirror(idx: np.ndarray, n: int) -> np.ndarray:
    """Indices reflected about the first and last sample (whole-sample symmetry), any distance."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.mod(idx, period)
    return np.where(idx > n - 1, period - idx, idx)


def cubic_matrix(n: int, factor: int) -> np.ndarray:
    """``((n-1)F+1, n)`` float64: cubic interpolation of ``n`` samples at ``F`` times the density; row ``iF``
    is sample ``i`` exactly."""
    n_out = (n - 1) * factor + 1
    m = np.zeros((n_out, n))
    pos = np.arange(n_out) / factor
    base = np.floor(pos).astype(int)
    frac = pos - base
    for off in (-1, 0, 1, 2):
        w = _keys(frac - off)
        np.add.at(m, (np.arange(n_out), _mirror(base + off, n)), w)
    m[::factor] = np.eye(n)  # exact, whatever the rounding of the weights
    return m


def apply_along(matrix: np.ndarray, data: np.ndarray, axis: int) -> np.ndarray:
    """``matrix`` applied to ``data`` along ``axis`` (float32 result, float64 sums)."""
    moved = np.moveaxis(np.asarray(data, dtype=np.float64), axis, 0)
    out = np.tensordot(matrix, moved, axes=(1, 0))
    return np.moveaxis(out, 0, axis).astype(np.float32)


def degrade_matrix(n_fine: int, kernel: np.ndarray, factor: int) -> np.ndarray:
    """``(n_lr, n_fine)``: correlate with the centred ``kernel`` (mirror boundary), keep samples 0, F, 2F...
    where ``n_lr = (n_fine - 1) // F + 1``."""
    k = np.asarray(kernel, dtype=np.float64)
    c = k.size // 2
    rows = np.arange(0, n_fine, factor)
    m = np.zeros((rows.size, n_fine))
    for i, w in enumerate(k):
        np.add.at(m, (np.arange(rows.size), _mirror(rows + i - c, n_fine)), w)
    return m


@dataclass(frozen=True)
class NoiseModel:
    """Noise of the stack in its own units: ``var(z) = a·E[z] + b`` (``a = 0``: Gaussian)."""

    a: float
    b: float
    photon_limited: bool

    def variance(self, level: np.ndarray) -> np.ndarray:
        return np.maximum(self.a * np.asarray(level, dtype=np.float64) + self.b, 0.0)

    def sigma_at(self, level: float) -> float:
        return float(math.sqrt(max(self.a * level + self.b, 0.0)))


def measure_stack_noise(plane: np.ndarray, *, crop: int | None = 512, shot_only: bool = True) -> NoiseModel:
    """The noise of one lateral plane (a centre crop of at most ``crop``², the whole plane with ``None``): the
    Poisson–Gaussian fit ``var = a·I + b`` (:func:`~napari_kernelgan.physics.noise.estimate_poisson_gaussian`),
    else Gaussian, ``b`` the square of :func:`~napari_kernelgan.physics.noise.estimate_noise_sigma`.

    ``shot_only=True`` (the SR's rule) keeps the fit only where shot noise dominates
    (:func:`~napari_kernelgan.physics.noise.photon_limited`): the SR treats the noise as counts only there.
    ``shot_only=False`` (the PSF estimate's noise floor) keeps it, ``a`` clipped at 0, wherever it gives a
    positive variance at the plane's mean; ``photon_limited`` then says whether ``a·mean`` exceeds ``b``."""
    p = np.asarray(plane, dtype=np.float64)
    if crop is not None:
        cy, cx = max(0, (p.shape[0] - crop) // 2), max(0, (p.shape[1] - crop) // 2)
        p = p[cy:cy + crop, cx:cx + crop]
    if shot_only:
        shot = photon_limited(p)
        if shot is not None:
            return NoiseModel(float(shot[0]), float(shot[1]), True)
    else:
        try:
            a, b = estimate_poisson_gaussian(p)
        except BadInputError:  # too narrow a range of flat intensities for the fit: Gaussian
            pass
        else:
            mean = float(p.mean())
            if a * mean + b > 0:
                return NoiseModel(max(a, 0.0), b, bool(a * mean > max(b, 0.0)))
    return NoiseModel(0.0, float(estimate_noise_sigma(p)) ** 2, False)


@dataclass(frozen=True)
class Normaliser:
    """Maps the stack's units to about 0..1 (its 0.1st and 99.9th percentiles) and back."""

    low: float
    scale: float

    @classmethod
    def of(cls, sample: np.ndarray) -> Normaliser:
        lo, hi = np.percentile(np.asarray(sample, dtype=np.float64), [0.1, 99.9])
        return cls(float(lo), float(max(hi - lo, 1e-6 * max(abs(hi), 1.0), 1e-12)))

    def forward(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float32) - np.float32(self.low)) / np.float32(self.scale)).astype(np.float32)

    def back(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float32) * np.float32(self.scale) + np.float32(self.low)).astype(np.float32)


def _to_fine(plane: np.ndarray, ratio: float) -> np.ndarray:
    """Lines along the last axis resampled from the pixel size to the fine z step (``ratio`` = pixel / fine)."""
    if abs(ratio - 1.0) < 0.02:
        return plane
    return ndimage.zoom(plane, (1.0, ratio), order=3, mode="mirror", grid_mode=False)


def lateral_pairs(plane: np.ndarray, kernel: np.ndarray, factor: int, noise: NoiseModel, ratio: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One lateral plane (raw units) degraded along its last axis as the z lines are.

    Lines resampled to the fine z step (``ratio`` = pixel / fine step), correlated with ``kernel`` (the
    relative axial blur on the fine grid), sampled every ``factor`` (0, F, 2F...), plus white noise that
    restores what the blur took off the lines' own noise (``var · (1 − Σh²)`` at the blurred level), so the
    samples carry the noise of a real z line. Returns ``(lr, cubic, target)``: the degraded samples
    ``(rows, n_lr)``, their cubic interpolation and the original ``(rows, (n_lr-1)F+1)``.
    """
    fine = _to_fine(np.asarray(plane, dtype=np.float64), ratio)
    d = degrade_matrix(fine.shape[-1], kernel, factor)
    lr = fine @ d.T
    restore = max(0.0, 1.0 - float(np.sum(np.square(kernel))))
    lr = lr + rng.standard_normal(lr.shape) * np.sqrt(noise.variance(lr) * restore)
    n_hr = (lr.shape[-1] - 1) * factor + 1
    up = lr @ cubic_matrix(lr.shape[-1], factor).T
    return lr, up, fine[:, :n_hr]


def psnr(x: np.ndarray, ref: np.ndarray, peak: float) -> float:
    """PSNR (dB) of ``x`` against ``ref`` for a signal of range ``peak``."""
    mse = float(np.mean((np.asarray(x, np.float64) - np.asarray(ref, np.float64)) ** 2))
    return float(10.0 * math.log10(peak ** 2 / max(mse, 1e-30)))
