"""KernelGAN's fixed kernels (bicubic anchor, boundary mask), the edge anchor and the post-processing that
turns G's raw collapsed kernel into a stored one."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ...errors import BadOptionError
from ...physics.conventions import centre_kernel, pad_to, shift_kernel
from ...physics.kernels import gaussian_from_covariance
from ...physics.metrics import second_moments
from ...physics.resize import cubic
from ...vocabulary import KERNEL_SIZE
from ..edges import estimate_covariance
from .config import Config

__all__ = ["bicubic_kernel", "boundary_mask", "measure_anchor", "applied_anchor", "suppress_negligible",
           "gaussian_fit", "finalize_kernel", "combine_kernels", "combine_runs"]


def bicubic_kernel(size: int = 13, scale: int = 2) -> np.ndarray:
    """Antialiased bicubic ×``scale`` downscaling kernel in the subsampling-ready form.

    Its centre of mass sits at ``size // 2 + 0.5`` for ×2 (between two HR
    pixels), the phase :mod:`~napari_kernelgan.physics.conventions` prescribes.
    """
    centre = size // 2 + 0.5 * (scale - size % 2)
    taps = cubic((np.arange(size) - centre) / scale)
    k1 = taps / taps.sum()
    return np.outer(k1, k1)


def boundary_mask(size: int) -> np.ndarray:
    """Penalty growing towards the kernel's border; zero on the inner region."""
    r = np.arange(size) - size // 2
    dist = np.maximum(np.abs(r)[:, None], np.abs(r)[None, :])
    inner = size // 2 - 2
    return np.clip(dist - inner, 0, None).astype(np.float64) / 2.0


def measure_anchor(frames: np.ndarray, cfg: Config, seed: int) -> np.ndarray | None:
    """The kernel G is first held to: the sharp-edge estimate of ``frames``, or ``None`` for bicubic."""
    if cfg.anchor == "edges":
        cov, _ = estimate_covariance(frames, 2, seed, cfg.edge_quantile)
        return gaussian_from_covariance(cov, KERNEL_SIZE)
    if cfg.anchor != "bicubic":
        raise BadOptionError(f"anchor must be 'bicubic' or 'edges', got {cfg.anchor!r}")
    return None


def applied_anchor(anchor_kernel: np.ndarray | None, size: int) -> np.ndarray:
    """The anchor in the phase G applies it (centre of mass half a pixel off the middle, as bicubic's)."""
    return bicubic_kernel(size) if anchor_kernel is None else shift_kernel(pad_to(anchor_kernel, size), (0.5, 0.5))


def suppress_negligible(k: np.ndarray, n: int) -> np.ndarray:
    """Subtract 0.75 × the (n+1)-th largest tap and clip at 0: removes the faint noise floor."""
    flat = np.sort(k.ravel())
    floor = 0.75 * flat[-min(n, flat.size - 1) - 1]
    out = np.clip(k - floor, 0, None)
    return out / out.sum() if out.sum() > 0 else np.clip(k, 0, None) / max(np.clip(k, 0, None).sum(), 1e-12)


def gaussian_fit(k: np.ndarray) -> np.ndarray:
    """The anisotropic Gaussian with the kernel's own second moments, same size, centred."""
    return gaussian_from_covariance(second_moments(k), k.shape[0])


def finalize_kernel(raw: np.ndarray, cfg: Config, anchor: np.ndarray | None = None) -> np.ndarray:
    """Raw collapsed G kernel → stored kernel: suppress noise, Gaussian prior, anchor blend, centre."""
    k = suppress_negligible(np.asarray(raw, dtype=np.float64), cfg.negligible_n)
    k = centre_kernel(k)
    if cfg.gaussian_prior > 0:
        k = (1 - cfg.gaussian_prior) * k + cfg.gaussian_prior * gaussian_fit(k)
    if cfg.anchor_blend > 0 and anchor is not None:
        k = (1 - cfg.anchor_blend) * k / k.sum() + cfg.anchor_blend * centre_kernel(pad_to(anchor, k.shape[0]))
    return k / k.sum()


def combine_kernels(kernels: list[np.ndarray], scores: list[float]) -> np.ndarray:
    """Weighted mean of centred kernels; weights are softmax of D verdicts (temperature 0.05)."""
    s = np.asarray(scores, dtype=np.float64)
    w = np.exp((s - s.max()) / 0.05)
    w /= w.sum()
    out = sum(wi * centre_kernel(k) for wi, k in zip(w, kernels))
    return out / out.sum()


def combine_runs(kernels: list[np.ndarray], scores: list[float], cfg: Config,
                 anchor: np.ndarray | None) -> tuple[np.ndarray, list[np.ndarray]]:
    """(stored kernel, each run's noise-suppressed kernel) from the raw kernels of a fit's restarts."""
    processed = [suppress_negligible(k, cfg.negligible_n) for k in kernels]
    return finalize_kernel(combine_kernels(processed, scores), replace(cfg, negligible_n=10 ** 6), anchor), processed
