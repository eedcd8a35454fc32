"""Kernel generators: anisotropic Gaussians and the DIV2KRK random protocol."""
from __future__ import annotations

import math

import numpy as np

from .conventions import analytic_x4, centre_kernel


def gaussian_kernel(size: int, sigma1: float, sigma2: float | None = None, theta: float = 0.0) -> np.ndarray:
    """Centred anisotropic Gaussian, ``size`` odd, standard deviations along rotated axes.

    ``theta`` rotates the first axis counter-clockwise from the column axis.
    """
    if size % 2 == 0:
        raise ValueError("kernel size must be odd")
    sigma2 = sigma1 if sigma2 is None else sigma2
    c, s = np.cos(theta), np.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    cov = rot @ np.diag([sigma1 ** 2, sigma2 ** 2]) @ rot.T
    inv = np.linalg.inv(cov)
    r = np.arange(size) - size // 2
    yy, xx = np.meshgrid(r, r, indexing="ij")
    pts = np.stack([xx, yy], axis=-1)
    k = np.exp(-0.5 * np.einsum("...i,ij,...j->...", pts, inv, pts))
    return k / k.sum()


def gaussian_from_covariance(cov: np.ndarray, size: int = 13) -> np.ndarray:
    """Centred anisotropic Gaussian with covariance ``cov`` ((row, col) order, pixels²); variances
    below 0.04 px² are raised to it so the kernel stays resolvable on the grid."""
    vals, vecs = np.linalg.eigh(np.asarray(cov, dtype=np.float64))
    vals = np.clip(vals, 0.04, None)
    # eigh gives (row, col) axes; gaussian_kernel takes σ along axes rotated by θ from the column axis
    theta = math.atan2(vecs[0, 1], vecs[1, 1])
    return gaussian_kernel(size, math.sqrt(vals[1]), math.sqrt(vals[0]), theta)


def random_div2krk_kernel(rng: np.random.Generator, scale: int = 2, size: int = 11,
                          noise: float = 0.25) -> np.ndarray:
    """A random kernel by the DIV2KRK protocol (Bell-Kligler et al. 2019).

    Axis variances λ1, λ2 ~ U(0.6, 5) (pixels², so σ from 0.77 to 2.24),
    rotation θ ~ U(−π, π), then uniform multiplicative noise ``1 + U(0, noise)``
    per tap, normalised and centred.
    ×4 kernels come from the ×2 one analytically (31×31 for an 11×11 ``k2``).
    """
    lam1, lam2 = rng.uniform(0.6, 5.0, size=2)
    theta = rng.uniform(-np.pi, np.pi)
    k = gaussian_kernel(size, np.sqrt(lam1), np.sqrt(lam2), theta)
    k = k * (1 + rng.uniform(0, noise, size=k.shape))
    k = centre_kernel(np.clip(k, 0, None) / k.sum())
    k = k / k.sum()
    if scale == 2:
        return k
    if scale == 4:
        return analytic_x4(k, 3 * size - 2)
    raise ValueError(f"scale must be 2 or 4, got {scale}")


def constant_gaussian(scale: int) -> np.ndarray:
    """The fixed baseline kernel: isotropic σ = 1.6 on 13×13 at ×2, σ = 3.5 on 31×31 at ×4."""
    if scale == 2:
        return gaussian_kernel(13, 1.6)
    if scale == 4:
        return gaussian_kernel(31, 3.5)
    raise ValueError(f"scale must be 2 or 4, got {scale}")


def log_spd(cov: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """Matrix logarithm of a symmetric positive-definite 2×2 matrix (eigenvalues below ``floor`` raised
    to it): the log-Euclidean coordinates in which kernel covariances are averaged and regressed."""
    vals, vecs = np.linalg.eigh(np.asarray(cov, dtype=np.float64))
    return vecs @ np.diag(np.log(np.clip(vals, floor, None))) @ vecs.T


def exp_sym(m: np.ndarray) -> np.ndarray:
    """Matrix exponential of a symmetric 2×2 matrix (the inverse of :func:`log_spd`)."""
    vals, vecs = np.linalg.eigh(np.asarray(m, dtype=np.float64))
    return vecs @ np.diag(np.exp(vals)) @ vecs.T
