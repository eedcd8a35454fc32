"""Noise models of an image: white Gaussian σ, Poisson–Gaussian (a, b), and the generalised Anscombe pair.

* :func:`estimate_noise_sigma` — σ of additive white Gaussian noise, from the
  response to Immerkær's (1996) 3×3 mask (which cancels any locally quadratic
  signal), normalised to unit noise gain and summarised by the median absolute
  value over the flattest half of the image (flatness measured on a smoothed
  copy, so the selection does not bias the residual's statistics).
* :func:`estimate_poisson_gaussian` — ``var(z) = a·E[z] + b`` in the spirit of
  Foi et al. (IEEE TIP 2008): a smooth/residual split, level sets of the local
  mean, a robust variance per level set from flat pixels only, and a
  reweighted line fit.
* :func:`anscombe` / :func:`inverse_anscombe` — the generalised Anscombe
  transform (unit noise variance out) and the closed-form approximation of its
  exact unbiased inverse (Mäkitalo & Foi, IEEE TIP 2011 / 2013).

All work in the image's own units (ADU, photons, [0, 1]...).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..errors import BadInputError

__all__ = ["estimate_noise_sigma", "estimate_poisson_gaussian", "photon_limited", "anscombe", "inverse_anscombe"]

# Immerkær's mask: zero response to planes and to the quadratic x², y² terms; Σ w² = 36.
_MASK = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]]) / 6.0
_MAD_TO_SIGMA = 1.482602218505602  # 1 / Φ⁻¹(3/4)
_MIN_SIDE = 8


def _as_float_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise BadInputError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim not in (2, 3):
        raise BadInputError(f"{name} must be 2-D (H, W) or (C, H, W), got shape {arr.shape}")
    if min(arr.shape[-2:]) < _MIN_SIDE:
        raise BadInputError(f"{name} of {arr.shape[-2]}×{arr.shape[-1]} is too small to measure noise "
                            f"(at least {_MIN_SIDE}×{_MIN_SIDE} pixels)")
    if not np.all(np.isfinite(arr)):
        raise BadInputError(f"{name} contains NaN or infinite values")
    return arr


def _residual(plane: np.ndarray) -> np.ndarray:
    """Unit-gain high-pass residual (interior only: no boundary extension enters it)."""
    return ndimage.correlate(plane, _MASK, mode="reflect")[1:-1, 1:-1]


def _flatness(plane: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Structure of a smoothed copy: gradient magnitude plus Hessian norm (interior, aligned with
    :func:`_residual`). The Hessian term catches the tops of spots and ridges, where the gradient vanishes."""
    smooth = ndimage.gaussian_filter(plane, sigma, mode="reflect")
    gy, gx = np.gradient(smooth)
    gyy, gyx = np.gradient(gy)
    _, gxx = np.gradient(gx)
    structure = np.hypot(gx, gy) + np.sqrt(gyy ** 2 + 2 * gyx ** 2 + gxx ** 2)
    return structure[1:-1, 1:-1]


def _sigma_plane(plane: np.ndarray, flat_fraction: float) -> float:
    r = _residual(plane)
    g = _flatness(plane)
    keep = g <= np.quantile(g, flat_fraction)
    vals = r[keep]
    if vals.size < 16:
        vals = r.ravel()
    sigma = float(_MAD_TO_SIGMA * np.median(np.abs(vals)))
    # Refine: where even the flattest pixels carry texture, keep only those whose structure noise of
    # this σ could explain (the first σ is an over-estimate there, so this never keeps too few).
    for _ in range(3):
        strict = g <= 2.5 * _structure_of_unit_noise() * sigma
        if strict.sum() < max(64, 0.02 * g.size):
            break
        refined = float(_MAD_TO_SIGMA * np.median(np.abs(r[strict])))
        if refined >= sigma:
            break
        sigma = refined
    return sigma


def estimate_noise_sigma(image: np.ndarray, *, flat_fraction: float = 0.25) -> float:
    """Standard deviation of additive white Gaussian noise, in the image's units.

    ``image`` is (H, W) or (C, H, W) (per-channel estimates, median returned).
    Robust to edges and texture: the Immerkær residual is summarised by its
    median absolute value over the ``flat_fraction`` flattest pixels, then over
    the pixels whose structure that σ can explain. Exact for
    white noise on a piecewise-smooth image; a strongly textured image (texture
    at the pixel scale) reads as a little more noise. For signal-dependent noise
    it is a typical σ; use :func:`estimate_poisson_gaussian` for the model.
    """
    arr = _as_float_image(image)
    if not 0 < flat_fraction <= 1:
        raise BadInputError(f"flat_fraction must be in (0, 1], got {flat_fraction}")
    planes = arr[None] if arr.ndim == 2 else arr
    return float(np.median([_sigma_plane(p, flat_fraction) for p in planes]))


def _robust_line(x: np.ndarray, y: np.ndarray, w: np.ndarray, iters: int = 20) -> tuple[float, float]:
    """Weighted line ``y = a x + b`` with Tukey-bisquare reweighting (outlying level sets lose their say)."""
    rw = np.ones_like(x)
    a = b = 0.0
    for _ in range(iters):
        ww = w * rw
        if np.count_nonzero(ww > 0) < 2:
            break
        design = np.stack([x, np.ones_like(x)], 1) * np.sqrt(ww)[:, None]
        a, b = np.linalg.lstsq(design, y * np.sqrt(ww), rcond=None)[0]
        res = (y - (a * x + b)) * np.sqrt(w)
        scale = _MAD_TO_SIGMA * np.median(np.abs(res)) + 1e-300
        u = np.clip(res / (4.685 * scale), -1, 1)
        rw = np.where(np.abs(u) < 1, (1 - u ** 2) ** 2, 0.0)
    return float(a), float(b)


_STRUCTURE_OF_NOISE: float | None = None


def _structure_of_unit_noise() -> float:
    """Median of :func:`_flatness` over unit white noise: what noise alone reads as structure."""
    global _STRUCTURE_OF_NOISE
    if _STRUCTURE_OF_NOISE is None:
        noise = np.random.default_rng(0).standard_normal((256, 256))
        _STRUCTURE_OF_NOISE = float(np.median(_flatness(noise)))
    return _STRUCTURE_OF_NOISE


def level_set_statistics(image: np.ndarray, *, n_levels: int = 40, min_pixels: int = 200,
                         flat_fraction: float = 0.5, model: tuple[float, float] | None = None,
                         max_structure: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per level set of the local mean: (mean, robust residual variance, pixel count).

    The local mean is a 5×5 box average; level sets are equal-width bins of it
    between its 0.5 % and 99.9 % quantiles; in each, only the ``flat_fraction``
    flattest pixels (smoothed gradient) are used, and the residual's variance
    is ``(1.4826·MAD)²`` so that edges and isolated bright spots do not count.
    With a first ``model`` (a, b), pixels whose structure exceeds ``max_structure``
    times what noise of that model alone gives are dropped first, so level sets
    made only of the flanks of spots or ridges disappear instead of reading
    their curvature as noise.
    """
    arr = _as_float_image(image)
    if arr.ndim == 3:
        arr = arr.reshape(-1, *arr.shape[-2:])
        stats = [level_set_statistics(p, n_levels=n_levels, min_pixels=min_pixels, flat_fraction=flat_fraction,
                                      model=model, max_structure=max_structure) for p in arr]
        return tuple(np.concatenate(s) for s in zip(*stats))  # type: ignore[return-value]
    r = _residual(arr)
    mu = ndimage.uniform_filter(arr, 5, mode="reflect")[1:-1, 1:-1]
    g = _flatness(arr)
    lo, hi = np.quantile(mu, [0.005, 0.999])
    if not hi > lo:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    edges = np.linspace(lo, hi, n_levels + 1)
    idx = np.clip(np.searchsorted(edges, mu.ravel(), side="right") - 1, 0, n_levels - 1)
    inside = (mu.ravel() >= lo) & (mu.ravel() <= hi)
    if model is not None:
        noise_std = np.sqrt(np.maximum(model[0] * mu + model[1], 1e-12))
        inside &= (g <= max_structure * _structure_of_unit_noise() * noise_std).ravel()
    means, variances, counts = [], [], []
    r_flat, g_flat, mu_flat = r.ravel(), g.ravel(), mu.ravel()
    order = np.argsort(idx[inside], kind="stable")
    sel_idx = np.nonzero(inside)[0][order]
    bounds = np.searchsorted(idx[sel_idx], np.arange(n_levels + 1))
    for level in range(n_levels):
        members = sel_idx[bounds[level]:bounds[level + 1]]
        if members.size < min_pixels:
            continue
        gm = g_flat[members]
        members = members[gm <= np.quantile(gm, flat_fraction)]
        if members.size < min_pixels // 2:
            continue
        res = r_flat[members]
        mad = np.median(np.abs(res - np.median(res)))
        means.append(mu_flat[members].mean())
        variances.append((_MAD_TO_SIGMA * mad) ** 2)
        counts.append(members.size)
    return np.asarray(means), np.asarray(variances), np.asarray(counts, dtype=np.float64)


def estimate_poisson_gaussian(image: np.ndarray, *, n_levels: int | None = None) -> tuple[float, float]:
    """``(a, b)`` of the Poisson–Gaussian model ``var(z) = a·E[z] + b``, in the image's units.

    For a camera with gain ``g`` (ADU per electron), read noise ``σ_r`` (e⁻) and
    offset ``o`` (ADU): ``a = g`` and ``b = g²σ_r² − g·o``. ``a`` is clipped at
    0 (a purely Gaussian image gives ``a ≈ 0, b ≈ σ²``). Needs a range of
    intensities over flat regions (a flat, constant image cannot separate ``a``
    from ``b`` and is refused). ``n_levels`` (level sets of the local mean)
    defaults to one per ~1500 pixels, between 8 and 40.
    """
    arr = _as_float_image(image)
    npix = arr.shape[-1] * arr.shape[-2]
    if n_levels is None:
        # About 1500 pixels per level set on average: enough for a MAD, many levels on large images.
        n_levels = int(np.clip(npix // 1500, 8, 40))
    min_pixels = int(np.clip(npix // 400, 40, 200))
    means, variances, counts = level_set_statistics(arr, n_levels=n_levels, min_pixels=min_pixels)
    if means.size < 2 or np.ptp(means) <= 0:
        if means.size == 1 or (arr.ndim == 2 and np.ptp(arr) > 0):
            # One intensity level only: no slope can be told apart from the offset.
            raise BadInputError("the image has too narrow a range of flat intensities to separate the "
                                "Poisson and Gaussian noise terms; use estimate_noise_sigma instead")
        raise BadInputError("the image is constant: there is no noise to measure")
    # var of a variance estimate from n samples ∝ var² / n: weight accordingly (variance floor keeps
    # the darkest level, near zero variance, from dominating).
    return _fit_levels(means, variances, counts)


SHOT_NOISE_MIN = 0.005
"""Shot noise (at the signal-weighted mean level) below this fraction of the image's range is not
photon-limited imaging: a clean 8-bit photograph's faint signal-dependent noise stays near 0.2 %."""


def photon_limited(image: np.ndarray) -> tuple[float, float] | None:
    """``(a, b)`` of :func:`estimate_poisson_gaussian` where signal-dependent (shot) noise dominates at
    the image's mean level (``a·mean > b``) and is large enough to matter (at least
    :data:`SHOT_NOISE_MIN` of the 1st–99th percentile range at the signal-weighted mean level
    ``E[z²]/E[z]``), as in a photon-limited fluorescence image; else ``None`` (also where the fit is
    impossible)."""
    try:
        a, b = estimate_poisson_gaussian(image)
    except BadInputError:
        return None
    arr = np.asarray(image, dtype=np.float64)
    mean = float(arr.mean())
    if not (a > 0 and a * mean > max(b, 0.0)):
        return None
    lo, hi = np.percentile(arr, [1, 99])
    z = np.clip(arr - lo, 0.0, None)
    level = lo + float((z ** 2).sum() / max(float(z.sum()), 1e-12))
    return (a, b) if np.sqrt(a * level) >= SHOT_NOISE_MIN * max(hi - lo, 1e-12) else None


def _fit_levels(means: np.ndarray, variances: np.ndarray, counts: np.ndarray) -> tuple[float, float]:
    floor = max(np.median(variances) * 1e-2, 1e-12)
    w = counts / np.maximum(variances, floor) ** 2
    a, b = _robust_line(means, variances, w)
    if a < 0:
        a = 0.0
        b = float(np.average(variances, weights=w))
    return a, b


def anscombe(image: np.ndarray, a: float, b: float) -> np.ndarray:
    """Generalised Anscombe transform: ``(2/a)·sqrt(max(a·z + 3a²/8 + b, 0))``.

    Noise of variance ``a·E[z] + b`` becomes approximately unit-variance Gaussian
    (good from about 2–3 expected counts up). ``a`` must be positive.
    """
    if not a > 0 or not math.isfinite(a) or not math.isfinite(b):
        raise BadInputError(f"anscombe needs a > 0 and a finite b, got a={a}, b={b}")
    z = np.asarray(image, dtype=np.float64)
    return (2.0 / a) * np.sqrt(np.maximum(a * z + 0.375 * a * a + b, 0.0))


def inverse_anscombe(image: np.ndarray, a: float, b: float) -> np.ndarray:
    """Closed-form approximation of the exact unbiased inverse of :func:`anscombe` (Mäkitalo & Foi).

    Maps ``E[anscombe(z)]`` (e.g. a denoised transformed image) back to ``E[z]``:
    unlike the algebraic inverse, it removes the bias that the square root puts
    on low counts. With ``s² = b / a²`` (Gaussian variance in count units):
    ``E[z] ≈ a·(D²/4 + √(3/2)/(4D) − 11/(8D²) + 5√(3/2)/(8D³) − 1/8 − s²)``,
    clipped below at ``max(0, −b/a)`` (zero counts).
    """
    if not a > 0 or not math.isfinite(a) or not math.isfinite(b):
        raise BadInputError(f"inverse_anscombe needs a > 0 and a finite b, got a={a}, b={b}")
    d = np.asarray(image, dtype=np.float64)
    s2 = b / (a * a)
    c = math.sqrt(1.5)
    dd = np.maximum(d, 1e-3)
    counts = 0.25 * dd ** 2 + 0.25 * c / dd - 1.375 / dd ** 2 + 0.625 * c / dd ** 3 - 0.125 - s2
    # Below D = 2·sqrt(3/8) (the transform of zero counts) the series diverges: that is zero counts.
    counts = np.where(d < 2 * math.sqrt(0.375), -s2 if s2 < 0 else 0.0, counts)
    return np.maximum(a * counts, max(0.0, -b / a))
