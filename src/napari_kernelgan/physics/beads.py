"""Bead measurements: the registered average of many point-source images, and bead-style PSF quality control.

A sub-resolution bead imaged at scale ``s`` is the point image (the PSF as the optics convolve with it) sampled
at LR pixels ``i``, i.e. at offsets ``s·(i − μ)`` HR pixels from the bead's centre ``μ`` (LR pixels): each bead
samples the point image at its own sub-pixel phase. :func:`register_average` solves for the point image on the
HR grid that explains all beads' samples at once (least squares; the point image is a cubic B-spline on the
grid, as :func:`~napari_kernelgan.physics.conventions.shift_kernel` interpolates kernels, evaluated at every
sample's offset; a light smoothness penalty), so phases that one bead misses another fills.
Far from the core the point image is noise-dominated and nearly rotationally symmetric: there it is replaced by
its azimuthal mean (:func:`radial_wings`), as bead-averaging software does.

:func:`bead_qc` reads what a bead report gives from any PSF or kernel on a pixel grid: the FWHM along x and y
(:func:`~napari_kernelgan.physics.metrics.profile_fwhm` of the rows and columns through the centre), the
ellipticity of the core, its orientation and its asymmetry (the share of the PSF that is not point-symmetric:
coma and tilt show there).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import linalg as splinalg

from .conventions import centre_kernel, centre_of_mass
from .metrics import covariance_axes, profile_fwhm

__all__ = ["register_average", "point_image_at", "radial_wings", "bead_qc", "qc_line", "FWHM_PER_SIGMA", "CORE_LEVEL"]

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
CORE_LEVEL = 0.1      # the core of a PSF: pixels above this fraction of its peak (ellipticity, orientation)
SMOOTHNESS = 1e-3     # weight of the Laplacian penalty, relative to the data's mean weight per grid node
WING_LEVEL = 0.05     # the azimuthal mean replaces the measured point image below this fraction of its peak


def _bspline(t: np.ndarray) -> np.ndarray:
    """Cubic B-spline weights of the four coefficients ``floor(t) − 1 … floor(t) + 2`` at positions ``t``."""
    f = t - np.floor(t)
    g = 1.0 - f
    return np.stack([g ** 3, (3 * f ** 3 - 6 * f ** 2 + 4), (3 * g ** 3 - 6 * g ** 2 + 4), f ** 3], axis=-1) / 6.0


def _to_samples(coef: np.ndarray) -> np.ndarray:
    """Grid values of a cubic B-spline from its coefficients (the interpolant at the nodes: [1, 4, 1] / 6)."""
    taps = np.array([1.0, 4.0, 1.0]) / 6.0
    return ndimage.correlate1d(ndimage.correlate1d(coef, taps, 0, mode="constant"), taps, 1, mode="constant")


def _interpolation_matrix(dy: np.ndarray, dx: np.ndarray, half: int) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Rows evaluating a cubic B-spline with ``(2·half + 1)²`` coefficients (offset 0 in the middle) at the offsets
    ``(dy, dx)``; and which samples have their whole 4×4 stencil on the grid (the others are left out)."""
    n = 2 * half + 1
    y, x = dy + half, dx + half
    y0, x0 = np.floor(y).astype(int) - 1, np.floor(x).astype(int) - 1
    inside = (y0 >= 0) & (x0 >= 0) & (y0 + 3 < n) & (x0 + 3 < n)
    y, x, y0, x0 = y[inside], x[inside], y0[inside], x0[inside]
    wy, wx = _bspline(y), _bspline(x)
    rows = np.repeat(np.arange(y.size), 16)
    cols = ((y0[:, None, None] + np.arange(4)[None, :, None]) * n
            + (x0[:, None, None] + np.arange(4)[None, None, :])).ravel()
    vals = (wy[:, :, None] * wx[:, None, :]).ravel()
    return sparse.csr_matrix((vals, (rows, cols)), shape=(y.size, n * n)), inside


def point_image_at(psf: np.ndarray, dy: np.ndarray, dx: np.ndarray, *, prefiltered: bool = False) -> np.ndarray:
    """``psf`` (odd square grid, offset 0 in the middle) interpolated at the offsets ``(dy, dx)`` (cubic
    B-spline, as :func:`register_average` models it); 0 where the stencil leaves the grid. ``prefiltered``:
    ``psf`` is already the spline's coefficients (``scipy.ndimage.spline_filter(psf, 3, mode="constant")``)."""
    half = psf.shape[0] // 2
    mat, inside = _interpolation_matrix(np.ravel(dy), np.ravel(dx), half)
    coef = psf if prefiltered else ndimage.spline_filter(np.asarray(psf, dtype=np.float64), order=3, mode="constant")
    out = np.zeros(np.size(dy))
    out[inside] = mat @ np.ravel(coef)
    return out.reshape(np.shape(dy))


def _laplacian(n: int) -> sparse.csr_matrix:
    d = sparse.diags([np.ones(n - 1), -2 * np.ones(n), np.ones(n - 1)], [-1, 0, 1])
    eye = sparse.identity(n)
    return sparse.csr_matrix(sparse.kron(d, eye) + sparse.kron(eye, d))


def register_average(samples: list[dict[str, Any]], half: int) -> np.ndarray:
    """The point image on a ``(2·half + 1)²`` HR grid (peak near the middle, sum 1, not clipped) from beads.

    Each item of ``samples``: ``values`` (background removed, divided by the bead's brightness: the point
    image's samples), ``dy``, ``dx`` (their offsets from the bead's centre, HR pixels) and ``weight`` (the
    inverse noise variance of each value), arrays of one shape. Least squares over all of them at once.
    """
    mats, rhs, w = [], [], []
    for s in samples:
        mat, inside = _interpolation_matrix(np.ravel(s["dy"]), np.ravel(s["dx"]), half)
        sw = np.sqrt(np.ravel(s["weight"])[inside])
        mats.append(sparse.diags(sw) @ mat)
        rhs.append(np.ravel(s["values"])[inside] * sw)
        w.append(sw ** 2)
    a = sparse.vstack(mats).tocsr()
    b = np.concatenate(rhs)
    n = 2 * half + 1
    # The penalty only steadies nodes the data leave loose; its weight follows the data's so that it means
    # the same with 5 faint beads as with 300 bright ones.
    per_node = float(np.concatenate(w).sum()) / (n * n)
    lap = _laplacian(n) * math.sqrt(SMOOTHNESS * per_node)
    normal = (a.T @ a + lap.T @ lap).tocsc()
    sol = splinalg.spsolve(normal, a.T @ b)
    psf = _to_samples(sol.reshape(n, n))
    total = psf.sum()
    return psf / total if abs(total) > 1e-12 else psf


def radial_wings(psf: np.ndarray, level: float = WING_LEVEL, significance: float = 2.0) -> np.ndarray:
    """``psf`` less its pedestal (the median of its outermost whole rings), with every pixel outside the core
    (the pixels above ``level`` of its peak, grown by one) replaced by the mean of its ring (one-pixel-wide
    rings about the centre of mass), and rings whose mean is within ``significance`` standard errors of 0 set
    to 0: noise does not become light. Negatives are set to 0."""
    p = np.asarray(psf, dtype=np.float64)
    cy, cx = centre_of_mass(np.clip(p, 0, None))
    yy, xx = np.indices(p.shape)
    r = np.hypot(yy - cy, xx - cx)
    # A background left in every spot (faint neighbours, a plane fitted a little low) is a pedestal over the
    # whole grid, which the outermost whole rings measure: it is not the PSF's light.
    reach = 0.5 * min(p.shape) - 1
    outer = (r >= 0.8 * reach) & (r <= reach)
    if outer.sum() >= 8:
        p = p - float(np.median(p[outer]))
    # the core is the bright region around the peak (connected to it), not noise above the level elsewhere
    labels, _ = ndimage.label(p >= level * float(p.max()))
    core = ndimage.binary_dilation(labels == labels.flat[int(np.argmax(p))], iterations=1)
    r0 = float(r[core].max()) if core.any() else 0.0
    ring = np.rint(r).astype(int).ravel()
    count = np.maximum(np.bincount(ring), 1)
    mean = np.bincount(ring, p.ravel()) / count
    sq = np.bincount(ring, p.ravel() ** 2) / count
    stderr = np.sqrt(np.clip(sq - mean ** 2, 0, None) / count)
    mean = np.where(mean > significance * stderr, mean, 0.0)
    out = p.copy()
    wing = r > r0
    out[wing] = mean[ring.reshape(p.shape)[wing]]
    return np.clip(out, 0, None)


def bead_qc(psf: np.ndarray, *, pixel_um: float | None = None) -> dict[str, float]:
    """Bead-style quality figures of a PSF or kernel (2-D, any odd size, any scale of values).

    ``fwhm_x`` / ``fwhm_y``: widths at half maximum of the column and row profiles through the centre, in the
    grid's pixels (and ``fwhm_x_um`` / ``fwhm_y_um`` where ``pixel_um``, the grid's pixel size, is given);
    ``ellipticity``: ``1 − minor/major`` of the core's second moments (pixels above :data:`CORE_LEVEL` of the
    peak), ``angle_deg`` its major axis from x towards +y; ``asymmetry``: the share of the PSF's light that
    is not point-symmetric about its centre of mass (``½·Σ|k − flip(k)|``; 0 for a symmetric PSF).
    """
    k = np.asarray(psf, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0 or min(k.shape) < 3:
        raise ValueError(f"bead_qc needs a 2-D PSF of odd sides, at least 3, got shape {k.shape}")
    k = np.clip(k, 0, None)
    if k.sum() <= 0:
        raise ValueError("bead_qc: the PSF holds no light (it is zero or negative everywhere)")
    k = centre_kernel(k / k.sum())
    c0, c1 = k.shape[0] // 2, k.shape[1] // 2
    out: dict[str, float] = {"fwhm_x": profile_fwhm(k[c0, :]), "fwhm_y": profile_fwhm(k[:, c1])}
    core = np.where(k >= CORE_LEVEL * k.max(), k, 0.0)
    yy, xx = np.indices(k.shape)
    my, mx = (core * yy).sum() / core.sum(), (core * xx).sum() / core.sum()
    dy, dx = yy - my, xx - mx
    cov = np.array([[(core * dy * dy).sum(), (core * dy * dx).sum()],
                    [(core * dy * dx).sum(), (core * dx * dx).sum()]]) / core.sum()
    major, minor, angle = covariance_axes(cov)
    out["ellipticity"] = float(1.0 - minor / max(float(major), 1e-12))
    out["angle_deg"] = float(angle)
    out["asymmetry"] = float(0.5 * np.abs(k - k[::-1, ::-1]).sum())
    if pixel_um is not None:
        out["fwhm_x_um"] = out["fwhm_x"] * float(pixel_um)
        out["fwhm_y_um"] = out["fwhm_y"] * float(pixel_um)
    return out


def qc_line(qc: dict[str, Any]) -> str:
    """One human line of a bead QC (``bead_qc``'s keys, and the counts of ``spots_qc`` where present)."""
    parts = []
    if "used" in qc:
        rejected = ", ".join(f"{v} {k}" for k, v in qc.get("rejected", {}).items() if v)
        parts.append(f"{qc['used']} spots used" + (f" (rejected: {rejected})" if rejected else ""))
    width = f"FWHM x {qc['fwhm_x']:.2f}, y {qc['fwhm_y']:.2f} px"
    if "fwhm_x_um" in qc:
        width += f" ({qc['fwhm_x_um']:.3f}, {qc['fwhm_y_um']:.3f} µm)"
    parts.append(width)
    parts.append(f"ellipticity {qc['ellipticity']:.2f}, asymmetry {qc['asymmetry']:.2f}")
    if "fwhm_spread" in qc:
        parts.append(f"FWHM spread across spots {100 * qc['fwhm_spread']:.0f} %")
    return "; ".join(parts)
