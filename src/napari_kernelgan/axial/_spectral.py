"""The spectral comparison behind the ``"spectral"`` axial estimate: lateral lines against z lines.

Under statistical isotropy of the object, a lateral line (along x or y, sampled every ``pixel_um``) blurred
along itself by the extra axial blur ``h`` and sampled every ``z_step_um`` has the statistics of a z line.
The comparison is made on second moments: the lateral lines' autocovariance ``R`` (at every pixel lag,
their white noise removed at lag 0) is blurred by ``h ⋆ h``, read at the z lags, and turned into the
expected periodogram of a z segment exactly as the z segments' periodogram is taken (each segment's mean
removed, Hann window), so windowing, mean removal and aliasing affect both sides alike. The z segments'
own white noise floor is removed from their periodogram.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["segment_design", "line_autocovariance", "z_periodogram", "expected_periodogram", "gaussian_g",
           "log_distance"]


def segment_design(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(U, norm)``: column ``f`` of ``U`` is the mean-removed, Hann-windowed Fourier vector of bin ``f``
    (``0 … n//2``) of an ``n``-sample segment; ``norm`` = Σw². A segment's periodogram is
    ``|Uᴴ x|² / norm`` and its expectation under covariance ``C`` is ``diag(Uᴴ C U) / norm``."""
    w = np.hanning(n + 2)[1:-1]
    m = np.eye(n) - 1.0 / n
    f = np.arange(n // 2 + 1)
    e = np.exp(-2j * np.pi * np.outer(np.arange(n), f) / n)
    u = m @ (w[:, None] * e)
    return u, float((w ** 2).sum())


def line_autocovariance(planes: np.ndarray, axis: int, max_lag: int) -> np.ndarray:
    """Autocovariance of the mean-removed lines of ``planes`` (…, y, x) along ``axis`` (-1: x, -2: y), at lags
    ``0 … max_lag`` pixels, averaged over lines (unbiased: each lag over the pairs it has)."""
    a = np.moveaxis(np.asarray(planes, dtype=np.float64), axis, -1)
    a = a.reshape(-1, a.shape[-1])
    a = a - a.mean(axis=1, keepdims=True)
    n = a.shape[1]
    size = 1 << math.ceil(math.log2(2 * n))
    spec = np.fft.rfft(a, size, axis=1)
    acf = np.fft.irfft((spec * spec.conj()).real.mean(axis=0), size)[:n]
    acf /= np.arange(n, 0, -1)
    out = np.zeros(max_lag + 1)
    k = min(max_lag + 1, n)
    out[:k] = acf[:k]
    return out


def z_periodogram(chunks, u: np.ndarray, norm: float) -> tuple[np.ndarray, int]:
    """Mean periodogram of z segments: ``chunks`` yields arrays ``(n, y, x)`` (``n`` consecutive planes);
    every (y, x) column of each is one segment. Returns ``(P over bins 0 … n//2, segment count)``."""
    total = np.zeros(u.shape[1])
    count = 0
    for chunk in chunks:
        c = np.asarray(chunk, dtype=np.float64).reshape(chunk.shape[0], -1)
        proj = u.conj().T @ c
        total += (np.abs(proj) ** 2).sum(axis=1)
        count += c.shape[1]
    return total / max(count * norm, 1e-300), count


def gaussian_g(sigma_px: float, half: int) -> np.ndarray:
    """``h ⋆ h`` for a Gaussian ``h`` of σ ``sigma_px`` (pixels), at lags ``-half … half`` (sum 1)."""
    t = np.arange(-half, half + 1, dtype=np.float64)
    s = max(float(sigma_px), 1e-3) * math.sqrt(2.0)
    g = np.exp(-0.5 * (t / s) ** 2)
    return g / g.sum()


def expected_periodogram(r_clean: np.ndarray, g: np.ndarray, lag_px: float, u: np.ndarray, norm: float
                         ) -> np.ndarray:
    """Expected periodogram of a z segment whose samples are ``lag_px`` lateral pixels apart, for lateral lines of
    noise-free autocovariance ``r_clean`` (lags ``0 …``) blurred by ``h`` with ``g = h ⋆ h`` (odd, centred)."""
    n = u.shape[0]
    r_sym = np.concatenate([r_clean[:0:-1], r_clean])
    blurred = np.convolve(r_sym, g, mode="same")[r_clean.size - 1:]
    lags = np.arange(n) * lag_px
    rz = np.interp(lags, np.arange(blurred.size), blurred, right=0.0)
    idx = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    cov = rz[idx]
    return np.einsum("if,ij,jf->f", u.conj(), cov, u).real / norm


def log_distance(observed: np.ndarray, model: np.ndarray, band: np.ndarray) -> tuple[float, float]:
    """``(rms, gain)``: the RMS log-spectral distance over ``band`` after the best common gain (the lateral
    planes and the z lines need not hold the same amount of light), and that gain."""
    o, m = observed[band], model[band]
    if o.size == 0 or (m <= 0).any():
        return math.inf, 1.0
    d = np.log(o) - np.log(m)
    gain = float(d.mean())
    return float(np.sqrt(np.mean((d - gain) ** 2))), math.exp(gain)
