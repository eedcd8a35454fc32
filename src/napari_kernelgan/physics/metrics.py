"""Kernel and image quality metrics, as customary in the blind-SR literature."""
from __future__ import annotations

import numpy as np

from .conventions import centre_kernel, pad_to

MAX_ALIGN_SHIFT = 3


def _common_size(a: np.ndarray, b: np.ndarray) -> int:
    size = max(a.shape + b.shape)
    return size if size % 2 else size + 1


def align_kernels(estimate: np.ndarray, truth: np.ndarray,
                  max_shift: int = MAX_ALIGN_SHIFT) -> tuple[np.ndarray, np.ndarray]:
    """Pad both kernels to a common odd size, centre both, then move the estimate
    by the integer shift in ``[-max_shift, max_shift]²`` that minimises the L1 sum.

    Returns ``(aligned_estimate, truth)`` on the common grid (with ``max_shift``
    margin so no tap falls off).
    """
    size = _common_size(np.asarray(estimate), np.asarray(truth)) + 2 * max_shift
    est = centre_kernel(pad_to(np.asarray(estimate, dtype=np.float64), size))
    tru = centre_kernel(pad_to(np.asarray(truth, dtype=np.float64), size))
    est = est / est.sum()
    tru = tru / tru.sum()
    best, best_err = est, np.inf
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            moved = np.roll(est, (dy, dx), axis=(0, 1))
            err = np.abs(moved - tru).sum()
            if err < best_err:
                best, best_err = moved, err
    return best, tru


def kernel_l1(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Sum of absolute differences after alignment (0 = identical, 2 = disjoint)."""
    est, tru = align_kernels(estimate, truth)
    return float(np.abs(est - tru).sum())


def kernel_psnr(estimate: np.ndarray, truth: np.ndarray) -> float:
    """10·log10(1 / MSE) between the aligned kernels on the truth's own grid."""
    est, tru = align_kernels(estimate, truth)
    size = np.asarray(truth).shape[0]
    mse = np.mean((pad_to(est, size) - pad_to(tru, size)) ** 2)
    return float(10 * np.log10(1.0 / max(mse, 1e-20)))


def second_moments(k: np.ndarray) -> np.ndarray:
    """2×2 central second-moment (covariance) matrix of a kernel, in pixels²."""
    k = np.asarray(k, dtype=np.float64)
    k = k / k.sum()
    r = np.arange(k.shape[0])
    c = np.arange(k.shape[1])
    rr, cc = np.meshgrid(r, c, indexing="ij")
    mr, mc = (k * rr).sum(), (k * cc).sum()
    dr, dc = rr - mr, cc - mc
    return np.array([[(k * dr * dr).sum(), (k * dr * dc).sum()],
                     [(k * dr * dc).sum(), (k * dc * dc).sum()]])


def covariance_axes(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """σ along the major and minor axes and the major axis' angle of (..., 2, 2) covariances ((row, col)
    order): the angle in degrees in [0, 180), from the column (x) axis towards increasing rows (+y)."""
    vals, vecs = np.linalg.eigh(np.asarray(cov, dtype=np.float64))
    major = np.sqrt(np.clip(vals[..., 1], 0.0, None))
    minor = np.sqrt(np.clip(vals[..., 0], 0.0, None))
    theta = np.degrees(np.arctan2(vecs[..., 0, 1], vecs[..., 1, 1])) % 180.0
    return major, minor, theta


def kernel_kcov(estimate: np.ndarray, truth: np.ndarray) -> float:
    """K-COV (MetaKernelGAN): Σ|Σ̂ − Σ| over the 2×2 second-moment matrices."""
    return float(np.abs(second_moments(estimate) - second_moments(truth)).sum())


def rgb_to_y(image: np.ndarray, data_range: float = 255.0) -> np.ndarray:
    """BT.601 luma (MATLAB ``rgb2ycbcr``) on the 16-235 scale; grayscale passes through."""
    img = np.asarray(image, dtype=np.float64) / data_range
    if img.ndim == 2:
        return img * 255.0
    if img.shape[-1] < 3:
        return img[..., 0] * 255.0
    return 16.0 + img[..., 0] * 65.481 + img[..., 1] * 128.553 + img[..., 2] * 24.966


def _prepare(a: np.ndarray, b: np.ndarray, shave: int, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    ya, yb = rgb_to_y(a, data_range), rgb_to_y(b, data_range)
    if shave:
        ya, yb = ya[shave:-shave, shave:-shave], yb[shave:-shave, shave:-shave]
    return ya, yb


def image_psnr(estimate: np.ndarray, truth: np.ndarray, shave: int = 0, data_range: float = 255.0) -> float:
    """PSNR in dB on the Y channel after shaving ``shave`` pixels from each border."""
    ya, yb = _prepare(estimate, truth, shave, data_range)
    mse = np.mean((ya - yb) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


def image_ssim(estimate: np.ndarray, truth: np.ndarray, shave: int = 0, data_range: float = 255.0) -> float:
    """SSIM (Gaussian window σ = 1.5, as Wang et al. / MATLAB) on Y after shaving."""
    from skimage.metrics import structural_similarity

    ya, yb = _prepare(estimate, truth, shave, data_range)
    return float(structural_similarity(ya, yb, data_range=255.0, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def profile_fwhm(profile: np.ndarray, step: float = 1.0) -> float:
    """Full width at half maximum of a single-peaked 1-D profile, in units of ``step`` (the sample spacing).

    The half-maximum crossings either side of the peak are interpolated linearly between samples, so a
    finely sampled profile gives its width to a small fraction of a sample (PSF widths, bead QC, axial
    profiles).
    """
    p = np.asarray(profile, dtype=np.float64)
    p = p / p.max()
    c = int(np.argmax(p))
    hi = c + int(np.argmax(p[c:] < 0.5))
    lo = c - int(np.argmax(p[c::-1] < 0.5))
    right = hi - 1 + (p[hi - 1] - 0.5) / (p[hi - 1] - p[hi])
    left = lo + 1 - (p[lo + 1] - 0.5) / (p[lo + 1] - p[lo])
    return float((right - left) * step)


TEXTURE_CUTOFF = 0.25
"""Cycles per pixel where :func:`texture_excess`'s high-pass passes half the amplitude: at ×2, the LR grid's Nyquist
frequency, above which every detail of an SR output is the method's own."""
TEXTURE_WINDOW = 2.0
"""σ in pixels of the Gaussian window over which :func:`texture_excess` compares local energies."""


def _local_high_energy(image: np.ndarray, cutoff: float, window: float) -> np.ndarray:
    """Energy above ``cutoff`` cycles/pixel, averaged over a Gaussian window of σ = ``window`` pixels."""
    from scipy import ndimage

    # A Gaussian low-pass of this σ has transfer exp(-2π²σ²f²) = 1/2 at f = cutoff.
    sigma = np.sqrt(np.log(2.0) / (2.0 * np.pi ** 2)) / cutoff
    high = image - ndimage.gaussian_filter(image, sigma, mode="reflect")
    return ndimage.gaussian_filter(high * high, window, mode="reflect")


def texture_excess(estimate: np.ndarray, truth: np.ndarray, shave: int = 0, data_range: float = 255.0, *,
                   cutoff: float = TEXTURE_CUTOFF, window: float = TEXTURE_WINDOW) -> float:
    """Spurious fine texture of an SR output: the high-frequency energy it has beyond the truth's, as a fraction of
    the truth's (0 = none added; 1 = as much added as the truth has).

    Both images (Y channel, ``shave`` pixels shaved) are high-passed above ``cutoff`` cycles per pixel
    (``x − G_σ * x``, half amplitude at ``cutoff``), squared and averaged locally (Gaussian window of σ =
    ``window`` pixels). The result is ``Σ max(E_est − E_truth, 0) / Σ E_truth`` over the pixels.

    Why this and not the error's energy: PSNR and SSIM already count detail an output lacks. This counts only
    detail it *adds* where the truth has less: ringing beside edges, a grid (checkerboard) pattern, amplified
    noise, invented texture. A smooth output scores about 0 at any PSNR; a ringing or gridded one of the same
    PSNR scores well above. Scale-free (a ratio of energies): ``data_range`` changes nothing and is there for the
    same call as :func:`image_psnr`.
    """
    ya, yb = _prepare(estimate, truth, shave, data_range)
    if not (0.0 < cutoff <= 0.5 and window > 0):
        raise ValueError(f"cutoff must be in (0, 0.5] cycles per pixel and window positive, got {cutoff}, {window}")
    est, ref = (_local_high_energy(y, cutoff, window) for y in (ya, yb))
    reference = float(ref.sum())
    if reference <= 1e-20 * float(np.sum(yb * yb)):  # a constant image's high-pass is rounding only
        raise ValueError("the truth has no detail above the cutoff frequency: texture_excess is undefined for a "
                         "flat image")
    return float(np.clip(est - ref, 0.0, None).sum() / reference)
